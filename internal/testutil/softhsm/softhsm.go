// Package softhsm makes throwaway SoftHSM2 tokens for tests, so that the
// PKCS#11 code path a smart card uses is exercised against a real token.
//
// Every test process gets its own token directory: SOFTHSM2_CONF is set once
// per process, before the module is first loaded, because SoftHSM2 reads it
// only when the library is initialised.
package softhsm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// RequireEnv, when set to 1, turns a missing SoftHSM2 into a test failure
// instead of a skip. deploy/test.sh sets it, so CI cannot pass by skipping.
const RequireEnv = "NUSKHA_REQUIRE_SOFTHSM"

// Module paths where Debian and other distributions install SoftHSM2.
var modulePaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// Token is a freshly initialised SoftHSM2 token.
type Token struct {
	Module  string // path of libsofthsm2.so
	Label   string // token label, unique per test
	PIN     string
	PINFile string // a file holding PIN, for pin-source
	SOPIN   string
	Dir     string // the process's token directory (holds every token)
}

var (
	once     sync.Once
	baseDir  string
	setupErr error
)

// Module returns the SoftHSM2 module path, skipping (or failing, when
// RequireEnv is set) the test if SoftHSM2 is not installed.
func Module(t testing.TB) string {
	t.Helper()
	for _, p := range modulePaths {
		if _, err := os.Stat(p); err == nil {
			if _, err := exec.LookPath("softhsm2-util"); err == nil {
				setup(t)
				return p
			}
		}
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("SoftHSM2 is not installed and %s=1: run deploy/test.sh, which installs it", RequireEnv)
	}
	t.Skip("SoftHSM2 not installed (apt-get install softhsm2 opensc, or run deploy/test.sh)")
	return ""
}

func setup(t testing.TB) {
	once.Do(func() {
		baseDir, setupErr = os.MkdirTemp("", "nuskha-softhsm-")
		if setupErr != nil {
			return
		}
		tokens := filepath.Join(baseDir, "tokens")
		if setupErr = os.MkdirAll(tokens, 0o700); setupErr != nil {
			return
		}
		conf := filepath.Join(baseDir, "softhsm2.conf")
		setupErr = os.WriteFile(conf, []byte(fmt.Sprintf(
			"directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)), 0o600)
		if setupErr == nil {
			setupErr = os.Setenv("SOFTHSM2_CONF", conf)
		}
	})
	if setupErr != nil {
		t.Fatalf("softhsm: setting up token directory: %v", setupErr)
	}
}

// TokenDir is where this process's tokens live.
func TokenDir(t testing.TB) string {
	Module(t)
	return filepath.Join(baseDir, "tokens")
}

// NewToken initialises a new token whose label starts with prefix. Tokens are
// never reused between tests; labels are unique so tests select by label.
func NewToken(t testing.TB, prefix string) *Token {
	t.Helper()
	mod := Module(t)
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	tok := &Token{
		Module: mod,
		Label:  prefix + "-" + hex.EncodeToString(suffix),
		PIN:    "user-" + hex.EncodeToString(suffix),
		SOPIN:  "so-" + hex.EncodeToString(suffix),
		Dir:    TokenDir(t),
	}
	out, err := exec.Command("softhsm2-util", "--init-token", "--free",
		"--label", tok.Label, "--pin", tok.PIN, "--so-pin", tok.SOPIN).CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	tok.PINFile = filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(tok.PINFile, []byte(tok.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return tok
}

// PKCS11Tool runs OpenSC's pkcs11-tool against the token, logged in.
func (tok *Token) PKCS11Tool(t testing.TB, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("pkcs11-tool"); err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("pkcs11-tool (opensc) is not installed")
		}
		t.Skip("pkcs11-tool (opensc) not installed")
	}
	full := append([]string{"--module", tok.Module, "--token-label", tok.Label, "--login", "--pin", tok.PIN}, args...)
	out, err := exec.Command("pkcs11-tool", full...).CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool %v: %v\n%s", args, err, out)
	}
	return out
}

// Pull takes the token away, as a card pulled from its reader: its
// directory (every token of the process's, as one reader) is moved aside
// until putBack, or until the test ends if it is never called. putBack may
// be called more than once.
func (tok *Token) Pull(t testing.TB) (putBack func()) {
	t.Helper()
	away := tok.Dir + ".away"
	if err := os.Rename(tok.Dir, away); err != nil {
		t.Fatal(err)
	}
	back := false
	putBack = func() {
		t.Helper()
		if back {
			return
		}
		if err := os.Rename(away, tok.Dir); err != nil {
			t.Fatal(err)
		}
		back = true
	}
	t.Cleanup(func() {
		if !back {
			os.Rename(away, tok.Dir)
		}
	})
	return putBack
}

// InOwnProcess runs the test t again in a process of its own, the
// environment variable env set to 1 there, and reports whether this is
// that process: a test whose token fault could break every later test of
// the process (a lock held for ever, SoftHSM2's own aborts) calls it
// first and, when it reports false, returns — the child's run has passed
// or t has failed. A timeout above zero kills a child that runs longer.
func InOwnProcess(t *testing.T, env string, timeout time.Duration) bool {
	t.Helper()
	if os.Getenv(env) == "1" {
		return true
	}
	Module(t)
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("the test process: %v\n%s", err, out)
	}
	return false
}
