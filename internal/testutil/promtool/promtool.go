// Package promtool checks what a daemon exports on /metrics with the
// Prometheus project's own linter, `promtool check metrics` (Debian
// package prometheus), rather than with our reading of the conventions.
package promtool

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
)

// RequireEnv, when set to 1, turns a missing promtool into a test failure
// instead of a skip. deploy/test.sh sets it, so CI cannot pass by
// skipping.
const RequireEnv = "NUSKHA_REQUIRE_PROMTOOL"

// Check runs `promtool check metrics` on exposition (the text format)
// and fails the test with what it reports: a metric's name, type, help or
// unit that breaks the conventions, or text that does not parse.
func Check(t testing.TB, what string, exposition []byte) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("promtool is not installed and %s=1: run deploy/test.sh, which installs it (Debian package prometheus)", RequireEnv)
		}
		t.Skip("promtool not installed (apt-get install prometheus, or run deploy/test.sh)")
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics on %s: %v\n%s", what, err, out)
	}
}
