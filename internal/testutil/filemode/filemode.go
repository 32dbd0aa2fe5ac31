// Package filemode checks that a daemon's state directory is private: the
// national ids in trustd's registry, the insured registry in rxd's database
// and every key and password file are for their owner alone.
package filemode

import (
	"io/fs"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// PermissiveUmask sets the process umask to 0 for the rest of the test, so
// that only the modes the code asks for count: a file made 0644 "because the
// umask would fix it" shows up as 0644. It is process-wide: callers MUST NOT
// run in parallel with tests that create files expecting a stricter umask.
func PermissiveUmask(t *testing.T) {
	t.Helper()
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
}

// Private walks dir and fails the test for every directory that is not 0700
// and every file that group or others can read or write. Files whose
// extension is in public (".crt", ".crl": certificates and revocation lists,
// published anyway) may be readable, but not writable, by others. It returns
// the paths it checked, relative to dir, for the caller to assert on.
func Private(t *testing.T, dir string, public ...string) []string {
	t.Helper()
	var seen []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		seen = append(seen, rel)
		perm := fi.Mode().Perm()
		switch {
		case fi.IsDir():
			if perm != 0o700 {
				t.Errorf("directory %s is %v; want drwx------", rel, fi.Mode())
			}
		case slices.Contains(public, filepath.Ext(path)):
			if perm&0o022 != 0 {
				t.Errorf("%s is %v; others must not write it", rel, fi.Mode())
			}
		case perm&0o077 != 0:
			t.Errorf("%s is %v; want owner-only (-rw-------)", rel, fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return seen
}
