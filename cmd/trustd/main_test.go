package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/nuskha/nuskha/internal/cli"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/testutil/clitest"
	"github.com/nuskha/nuskha/internal/tlog"
	"github.com/nuskha/nuskha/internal/trustd"
)

func runTrustd(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	code = cli.Exit("trustd", run(context.Background(), args, &out, &errb), &errb)
	return out.String(), errb.String(), code
}

// TestHelpNeverActs: asking any trustd command for help prints its usage
// on standard output, exits 0 and creates nothing: `trustd init -dir X -h`
// makes no X and no key. It walks the commands table.
func TestHelpNeverActs(t *testing.T) {
	root := t.TempDir()
	cwd := filepath.Join(root, "cwd")
	if err := os.Mkdir(cwd, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Chdir(cwd)
	key := func(name string) string {
		return "softkey:path=" + filepath.Join(root, "keys", name+".key") + "?pin-source=" + filepath.Join(root, "keys", "pass")
	}
	values := map[string]string{
		"dir": filepath.Join(root, "ca"), "officer": "alice", "root-key": key("root"), "intermediate-key": key("issuing"),
		"tls-key": key("tls"), "store": "sqlite", "dsn-file": filepath.Join(root, "dsn"), "dns": "localhost",
		"admin-listen": "127.0.0.1:0", "public-listen": "127.0.0.1:0", "http-listen": "127.0.0.1:0",
		"config": filepath.Join(root, "ca", "trustd.json"),
		"out":    filepath.Join(root, "archive.json"), "before-index": "5", "before": "2026-12-05", "prune": "true",
	}
	before := clitest.Files(t, root)
	for name := range commands {
		t.Run(name, func(t *testing.T) {
			check := func(args []string) (usage string) {
				t.Helper()
				stdout, stderr, code := runTrustd(args...)
				if code != cli.ExitOK || stderr != "" || !strings.HasPrefix(stdout, "Usage of trustd "+name+":\n") {
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
			for _, tail := range clitest.HelpArgs(flags) {
				check(append([]string{name}, tail...))
			}
		})
	}
}

// TestUsage: help for trustd itself goes to standard output with exit 0; a
// bad command line gets the usage on standard error and exit 2.
func TestUsage(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string // prefix
		stderr string // substring
	}{
		{"-h", []string{"-h"}, cli.ExitOK, "usage:\n  trustd init", ""},
		{"--help", []string{"--help"}, cli.ExitOK, "usage:\n  trustd init", ""},
		{"help", []string{"help"}, cli.ExitOK, "usage:\n  trustd init", ""},
		{"help init", []string{"help", "init"}, cli.ExitOK, "Usage of trustd init:", ""},
		{"nothing", nil, cli.ExitUsage, "", "usage:\n  trustd init"},
		{"unknown command", []string{"start"}, cli.ExitUsage, "", `unknown command "start"`},
		{"unknown flag", []string{"init", "-dri", "x"}, cli.ExitUsage, "", "Usage of trustd init:"},
		{"init without -dir", []string{"init", "-officer", "a"}, cli.ExitUsage, "", "-dir is required"},
		{"init with a missing CSR", []string{"init", "-dir", "ca", "-officer", "a", "-officer", "b=csr:absent.csr"}, cli.ExitUsage, "", "-officer b=csr:absent.csr: open absent.csr: no such file"},
		{"init with a short -other-log", []string{"init", "-dir", "ca", "-officer", "a", "-officer", "b", "-other-log", "rxd.example/rxd-audit https://rxd.example/audit"}, cli.ExitUsage, "", `want "ORIGIN VKEY URL"`},
		{"init with a bad -other-log key", []string{"init", "-dir", "ca", "-officer", "a", "-officer", "b", "-other-log", "rxd.example/rxd-audit notakey https://rxd.example/audit"}, cli.ExitUsage, "", "verifier key"},
		{"init with a bad -other-log URL", []string{"init", "-dir", "ca", "-officer", "a", "-officer", "b", "-other-log", "rxd.example/rxd-audit " + otherLogKey + " ftp://rxd.example/audit"}, cli.ExitUsage, "", "is not an http(s) URL"},
		{"serve without -config", []string{"serve"}, cli.ExitUsage, "", "-config is required"},
		{"serve with an argument", []string{"serve", "-config", "x.json", "extra"}, cli.ExitUsage, "", "no arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runTrustd(tc.args...)
			if code != tc.code || !strings.HasPrefix(stdout, tc.stdout) || !strings.Contains(stderr, tc.stderr) ||
				(tc.code != cli.ExitOK && stdout != "") || (tc.code == cli.ExitOK && stderr != "") {
				t.Errorf("exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
			}
		})
	}
}

// TestVersion: trustd says which build it is.
func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "-version", "--version"} {
		stdout, stderr, code := runTrustd(arg)
		if code != cli.ExitOK || stderr != "" || !strings.HasPrefix(stdout, "trustd version ") ||
			!strings.Contains(stdout, "\n  commit   ") || !strings.Contains(stdout, "\n  go       go1.") {
			t.Errorf("%s: exit %d\nstdout %q\nstderr %q", arg, code, stdout, stderr)
		}
	}
	if _, stderr, code := runTrustd("version", "extra"); code != cli.ExitUsage || !strings.Contains(stderr, "no arguments") {
		t.Errorf("version extra: exit %d, %q", code, stderr)
	}
}

// otherLogKey is an rxd audit log's note verifier key, for -other-log.
var otherLogKey = func() string {
	_, vkey, err := note.GenerateKey(rand.Reader, "rxd.example/rxd-audit/k1")
	if err != nil {
		panic(err)
	}
	return vkey
}()

// TestInitSaysWhatToHandOver: keys init makes for officers are each in the
// officer's own directory, and init says they must leave the CA host; an
// -other-log given to init is in trustd.json's audit_log.other_logs, for
// the trust bundle to name.
func TestInitSaysWhatToHandOver(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	stdout, stderr, code := runTrustd("init", "-dir", dir, "-officer", "alice", "-officer", "bob",
		"-admin-listen", "127.0.0.1:0", "-public-listen", "127.0.0.1:0", "-http-listen", "127.0.0.1:0",
		"-other-log", "rxd.example/rxd-audit "+otherLogKey+" https://rxd.example:8543/audit")
	if code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	cfg, err := trustd.LoadConfig(filepath.Join(dir, "trustd.json"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []trustd.LogKeyConfig{{Origin: "rxd.example/rxd-audit", VerifierKey: otherLogKey, URL: "https://rxd.example:8543/audit"}}; !slices.Equal(cfg.AuditLog.OtherLogs, want) {
		t.Fatalf("audit_log.other_logs %+v, want %+v", cfg.AuditLog.OtherLogs, want)
	}
	for _, want := range []string{
		"officer alice (sub_", "cert " + filepath.Join(dir, "officers", "alice.crt") + "; key, password and certificate to hand over in " + filepath.Join(dir, "handover", "alice") + "\n",
		"Hand each officer their directory under handover/ and remove it from this host",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("init's output lacks %q:\n%s", want, stdout)
		}
	}
}

// TestAuditExport: trustd audit-export archives the entries a checkpoint
// covers and, with -prune, removes them from the database once the
// archive is on disk; the archive verifies under the log's key.
func TestAuditExport(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "ca")
	stdout, stderr, code := runTrustd("init", "-dir", dir, "-officer", "alice", "-officer", "bob",
		"-admin-listen", "127.0.0.1:0", "-public-listen", "127.0.0.1:0", "-http-listen", "127.0.0.1:0")
	if code != cli.ExitOK {
		t.Fatalf("init: exit %d: %s", code, stderr)
	}
	_, vkey, _ := strings.Cut(stdout, "its key:   ")
	vkey, _, _ = strings.Cut(vkey, "\n")
	cfg, err := trustd.LoadConfig(filepath.Join(dir, "trustd.json"))
	if err != nil {
		t.Fatal(err)
	}
	keys := hsm.NewManager(hsm.NoPrompt)
	defer keys.Close()
	svc, err := trustd.New(ctx, cfg, trustd.Deps{Log: slog.New(slog.DiscardHandler), Now: time.Now, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.AuditLog().Step(ctx); err != nil {
		t.Fatal(err)
	}
	svc.Close()

	out := filepath.Join(t.TempDir(), "archive.json")
	if _, stderr, code := runTrustd("audit-export", "-config", filepath.Join(dir, "trustd.json"), "-out", out); code != cli.ExitUsage ||
		!strings.Contains(stderr, "-before-index N or -before TIME") {
		t.Fatalf("without a range: exit %d, %s", code, stderr)
	}
	stdout, stderr, code = runTrustd("audit-export", "-config", filepath.Join(dir, "trustd.json"), "-before-index", "5", "-out", out, "-prune")
	if code != cli.ExitOK || !strings.Contains(stdout, "archived entries 0 to 4 of ") || !strings.Contains(stdout, "pruned them") {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	a, err := tlog.ParseArchive(raw)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatalf("init printed the key %q: %v", vkey, err)
	}
	if _, err := a.Verify(cfg.AuditLog.Origin, v); err != nil {
		t.Fatal(err)
	}
	db, err := trustd.OpenStore(ctx, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if w, err := db.AuditLog().Pruned(ctx); err != nil || w != 5 {
		t.Fatalf("watermark %d, %v", w, err)
	}
}
