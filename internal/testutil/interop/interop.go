// Package interop runs test/interop's scripts, an independent JOSE
// implementation (panva/jose on Node.js) checking Nuskha's signed
// documents. Without Node.js or the scripts' packages a test skips, unless
// NUSKHA_REQUIRE_INTEROP=1, when it fails, so CI cannot pass by skipping.
package interop

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// RequireEnv, when 1, makes a missing Node.js or package a failure.
const RequireEnv = "NUSKHA_REQUIRE_INTEROP"

// Dir is test/interop in this checkout.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "test", "interop")
}

// Node runs a script of test/interop with args and returns its output,
// trimmed; the test fails if the script does.
func Node(t testing.TB, script string, args ...string) string {
	t.Helper()
	out, err := Run(t, script, args...)
	if err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, out)
	}
	return out
}

// Run runs a script of test/interop with args and returns its output,
// trimmed, and whether it failed.
func Run(t testing.TB, script string, args ...string) (string, error) {
	t.Helper()
	dir := Dir()
	if _, err := exec.LookPath("node"); err != nil || !exists(filepath.Join(dir, "node_modules", "jose")) {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("Node.js or test/interop/node_modules missing and %s=1 (deploy/test.sh installs them)", RequireEnv)
		}
		t.Skip("Node.js and `npm ci --prefix test/interop` are needed for the interoperability check")
	}
	out, err := exec.Command("node", append([]string{filepath.Join(dir, script)}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }
