// Package deploy holds what an operator installs; its tests check the
// files themselves.
package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// systemdAnalyzeEnv, when set to 1, turns a missing systemd-analyze into a
// failure instead of a skip. deploy/test.sh sets it.
const systemdAnalyzeEnv = "NUSKHA_REQUIRE_SYSTEMD_ANALYZE"

// TestSystemdUnitsVerify: every unit in deploy/systemd passes
// `systemd-analyze verify` (the template as an instance), and each is
// sandboxed as docs/operations-ha.md says: a read-only system with only
// its data directory writable, its own /tmp, no new privileges, no
// capabilities. A unit with a misspelt directive is refused, so a pass
// means something.
func TestSystemdUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv(systemdAnalyzeEnv) == "1" {
			t.Fatalf("systemd-analyze not installed and %s=1", systemdAnalyzeEnv)
		}
		t.Skip("systemd-analyze not installed (Debian's systemd package)")
	}
	units, err := filepath.Glob("systemd/*.service")
	if err != nil || len(units) < 2 {
		t.Fatalf("units %v, %v", units, err)
	}
	// verify checks that ExecStart's binary exists: stand-ins where the
	// units expect the installed ones.
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"trustd", "rxd"} {
		if err := os.WriteFile(filepath.Join(bin, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	verify := func(t *testing.T, name, text string) (string, error) {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, "/usr/local/bin/", bin+"/")), 0o644); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(name, "@.") { // a template is verified as an instance of it
			inst := strings.Replace(name, "@.", "@1.", 1)
			if err := os.Symlink(path, filepath.Join(dir, inst)); err != nil && !os.IsExist(err) {
				t.Fatal(err)
			}
			path = filepath.Join(dir, inst)
		}
		cmd := exec.Command(analyze, "verify", "--man=no", path)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, u := range units {
		name := filepath.Base(u)
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(u)
			if err != nil {
				t.Fatal(err)
			}
			text := string(b)
			if out, err := verify(t, name, text); err != nil || strings.TrimSpace(out) != "" {
				t.Fatalf("systemd-analyze verify %s: %v\n%s", name, err, out)
			}
			for _, want := range []string{"ProtectSystem=strict", "ReadWritePaths=/var/lib/nuskha/", "PrivateTmp=yes", "NoNewPrivileges=yes",
				"CapabilityBoundingSet=\n", "ProtectHome=yes", "SystemCallFilter=@system-service", "UMask=0077", "User=nuskha-"} {
				if !strings.Contains(text, want) {
					t.Errorf("%s lacks %q", name, strings.TrimSpace(want))
				}
			}
			if strings.Contains(text, "User=root") {
				t.Errorf("%s runs as root", name)
			}
			bad := strings.Replace(text, "PrivateTmp=yes", "PrivateTmp=yes\nProtectSystm=strict", 1)
			if out, err := verify(t, "bad-"+name, bad); err == nil && !strings.Contains(out, "ProtectSystm") {
				t.Fatalf("a misspelt directive passed systemd-analyze verify: %s", out)
			}
		})
	}
}
