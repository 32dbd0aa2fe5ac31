package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/cli"
	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/rules"
	"github.com/nuskha/nuskha/internal/testutil/clitest"
)

func runRxd(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	code = cli.Exit("rxd", run(context.Background(), args, &out, &errb), &errb)
	return out.String(), errb.String(), code
}

// TestHelpNeverActs: asking any rxd command for help prints its usage on
// standard output, exits 0 and creates nothing: `rxd import-registry -db F
// -mode full FILE -h` makes no database and imports nothing. It walks the
// commands table.
func TestHelpNeverActs(t *testing.T) {
	root := t.TempDir()
	in := filepath.Join(root, "in")
	cwd := filepath.Join(root, "cwd")
	for _, d := range []string{in, cwd} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, data string) string {
		path := filepath.Join(in, name)
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	drugs, services := catalogtest.Sample()
	// The default -db is relative (var/rxd/rxd.db): it would land here.
	t.Chdir(cwd)
	values := map[string]string{
		"db-driver": "sqlite", "db": filepath.Join(root, "data", "rxd.db"), "create": "true", "dsn-file": filepath.Join(in, "dsn"),
		"mode": "full", "quiet": "true", "json": "true",
		"label": "sample", "valid-from": "1405-01-01", "drugs": write("drugs.csv", drugs), "services": write("services.csv", services),
		"listen": "127.0.0.1:0", "tls-cert": filepath.Join(in, "tls.crt"), "tls-key": filepath.Join(in, "tls.key"),
		"client-ca": filepath.Join(in, "ca.crt"), "rules": write("rules.yaml", string(rules.StarterYAML())),
		"exchange-key": "softkey:path=" + filepath.Join(in, "exchange.key"), "exchange-cert": filepath.Join(in, "exchange.crt"),
		"out":                 filepath.Join(root, "data", "copy.db"),
		"audit-pseudonym-key": "softkey:path=" + filepath.Join(in, "pseudonym.key"), "audit-seal-key": "softkey:path=" + filepath.Join(in, "seal.key"),
		"audit-note-key": filepath.Join(in, "note.key"), "audit-origin": "rxd.test/audit", "name": "rxd.test/audit/k2",
	}
	registry := write("registry.csv", insuredtest.Rows(10))
	before := clitest.Files(t, root)
	for name := range commands {
		t.Run(name, func(t *testing.T) {
			check := func(args []string) (usage string) {
				t.Helper()
				stdout, stderr, code := runRxd(args...)
				if code != cli.ExitOK || stderr != "" || !strings.HasPrefix(stdout, "Usage of rxd "+name+":\n") {
					t.Errorf("%q: exit %d\nstdout %q\nstderr %q", args, code, stdout, stderr)
				}
				if after := clitest.Files(t, root); !slices.Equal(before, after) {
					t.Fatalf("%q changed the files: %q, was %q", args, after, before)
				}
				return stdout + stderr
			}
			usage := check([]string{name, "-h"})
			flags := clitest.Args(usage, values)
			if len(flags) == 0 && len(clitest.FlagNames(usage)) != 0 {
				t.Fatal("no flag in the usage has a value in the test: -h would not be put after other flags")
			}
			for _, tail := range append(clitest.HelpArgs(flags), slices.Concat(flags, []string{registry, "-h"})) {
				check(append([]string{name}, tail...))
			}
		})
	}
}

// TestUsage: help for rxd itself goes to standard output with exit 0; a bad
// command line gets the usage on standard error and exit 2.
func TestUsage(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string // prefix
		stderr string // substring
	}{
		{"-h", []string{"-h"}, cli.ExitOK, "usage:\n  rxd serve", ""},
		{"--help", []string{"--help"}, cli.ExitOK, "usage:\n  rxd serve", ""},
		{"help", []string{"help"}, cli.ExitOK, "usage:\n  rxd serve", ""},
		{"help serve", []string{"help", "serve"}, cli.ExitOK, "Usage of rxd serve:", ""},
		{"nothing", nil, cli.ExitUsage, "", "usage:\n  rxd serve"},
		{"unknown command", []string{"import"}, cli.ExitUsage, "", `unknown command "import"`},
		{"unknown flag", []string{"import-registry", "-mdoe", "full"}, cli.ExitUsage, "", "Usage of rxd import-registry:"},
		{"import-registry without a file", []string{"import-registry", "-mode", "full"}, cli.ExitUsage, "", "usage: rxd import-registry"},
		{"check-rules without a file", []string{"check-rules"}, cli.ExitUsage, "", "usage: rxd check-rules"},
		{"serve with an argument", []string{"serve", "extra"}, cli.ExitUsage, "", "no arguments"},
		{"witness without its URL", []string{"serve", "-audit-witness", "witness.example/w1+3fc31fea+BOuLrCoZ7GrLOqUffFcuaoTsE903Lrf1shbNHaw91Ef1"}, cli.ExitUsage, "", "-audit-witness"},
		{"witness with a plain note key", []string{"serve", "-audit-witness", "witness.example/w1+75ff98fe+AeuLrCoZ7GrLOqUffFcuaoTsE903Lrf1shbNHaw91Ef1 https://w.example"}, cli.ExitUsage, "", "cosignature/v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runRxd(tc.args...)
			if code != tc.code || !strings.HasPrefix(stdout, tc.stdout) || !strings.Contains(stderr, tc.stderr) ||
				(tc.code != cli.ExitOK && stdout != "") || (tc.code == cli.ExitOK && stderr != "") {
				t.Errorf("exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
			}
		})
	}
}

// TestVersion: rxd says which build it is.
func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "-version", "--version"} {
		stdout, stderr, code := runRxd(arg)
		if code != cli.ExitOK || stderr != "" || !strings.HasPrefix(stdout, "rxd version ") ||
			!strings.Contains(stdout, "\n  commit   ") || !strings.Contains(stdout, "\n  go       go1.") {
			t.Errorf("%s: exit %d\nstdout %q\nstderr %q", arg, code, stdout, stderr)
		}
	}
	if _, stderr, code := runRxd("version", "extra"); code != cli.ExitUsage || !strings.Contains(stderr, "no arguments") {
		t.Errorf("version extra: exit %d, %q", code, stderr)
	}
}
