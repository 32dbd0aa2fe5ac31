// Package audittest makes the keys of rxd's audit log for tests that
// start rxd: software key files under a password file, as the embedded
// default keeps them (rxd audit-keys, through rxd.CreateAuditKeys).
package audittest

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/rxd"
)

// Origin is the tests' audit log origin.
const Origin = "rxd.test/audit"

var (
	once   sync.Once
	shared rxd.Audit
	vkey   string
	err    error
)

// Shared are keys made once per test process (PBKDF2 makes each soft key
// cost most of a second), in a directory of their own that outlives the
// tests that use it: they are only read. Use Keys for keys of a test's
// own.
func Shared(t testing.TB) (rxd.Audit, string) {
	t.Helper()
	once.Do(func() {
		var dir string
		if dir, err = os.MkdirTemp("", "nuskha-audittest-"); err != nil {
			return
		}
		shared, vkey, err = create(dir)
	})
	if err != nil {
		t.Fatal(err)
	}
	return shared, vkey
}

// Keys makes the audit log's keys in dir and returns the Audit naming
// them, and the checkpoint key's verifier key.
func Keys(t testing.TB, dir string) (rxd.Audit, string) {
	t.Helper()
	a, vkey, err := create(dir)
	if err != nil {
		t.Fatal(err)
	}
	return a, vkey
}

func create(dir string) (rxd.Audit, string, error) {
	pass := filepath.Join(dir, "audit-keys.pass")
	if err := os.WriteFile(pass, []byte("audit keys of the test, a password"), 0o600); err != nil {
		return rxd.Audit{}, "", err
	}
	a := rxd.Audit{
		PseudonymKey: hsm.SoftKeyURI(filepath.Join(dir, "audit-pseudonym.key"), pass),
		SealKey:      hsm.SoftKeyURI(filepath.Join(dir, "audit-seal.key"), pass),
		NoteKeyFile:  filepath.Join(dir, "audit-note.key"),
		Origin:       Origin,
	}
	keys := hsm.NewManager(hsm.NoPrompt)
	defer keys.Close()
	vkey, err := rxd.CreateAuditKeys(context.Background(), keys, a, Origin)
	return a, vkey, err
}

// Flags are rxd serve's flags for a.
func Flags(a rxd.Audit) []string {
	return []string{"-audit-pseudonym-key", a.PseudonymKey, "-audit-seal-key", a.SealKey, "-audit-note-key", a.NoteKeyFile, "-audit-origin", a.Origin}
}
