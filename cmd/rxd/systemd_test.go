package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestSystemdUnitFlags: deploy/systemd/rxd@.service starts
// `rxd serve` with flags rxd serve defines, and with the audit log's
// flags it requires. systemd-analyze verify (deploy/systemd_test.go)
// checks the directives, not the command line: a unit passing a flag
// rxd no longer has, or missing one it requires, fails at every start
// and restarts in a loop.
func TestSystemdUnitFlags(t *testing.T) {
	unit, err := os.ReadFile("../../deploy/systemd/rxd@.service")
	if err != nil {
		t.Fatal(err)
	}
	var exec string
	for _, l := range strings.Split(strings.ReplaceAll(string(unit), "\\\n", " "), "\n") {
		if strings.HasPrefix(l, "ExecStart=") {
			exec = l
		}
	}
	var help, stderr bytes.Buffer
	_ = cmdServe(context.Background(), []string{"-help"}, &help, &stderr)
	defined := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(help.String(), -1) {
		defined[m[1]] = true
	}
	if len(defined) < 10 {
		t.Fatalf("read %d flags from rxd serve -help:\n%s", len(defined), help.String())
	}
	used := map[string]bool{}
	for _, m := range regexp.MustCompile(`\s-([a-z][a-z0-9-]+)\s`).FindAllStringSubmatch(exec+" ", -1) {
		used[m[1]] = true
		if !defined[m[1]] {
			t.Errorf("rxd@.service passes -%s, which rxd serve does not define", m[1])
		}
	}
	for _, f := range []string{"audit-pseudonym-key", "audit-seal-key", "audit-note-key", "audit-origin"} {
		if !used[f] {
			t.Errorf("rxd@.service does not pass -%s, which rxd serve requires", f)
		}
	}
}
