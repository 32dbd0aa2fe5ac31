package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/testutil/clitest"
)

// testVerifierKey is a note verifier key (of no log: the harness's server
// serves no checkpoint).
const testVerifierKey = "audit.test/log/k1+cf42bbd3+ARhHIodB3pTWgEgY2I7FwMd0bCZVwO6TnVpziuudjjiE"

// helpHarness is everything a command could act on, each watched: a TLS
// server standing in for trustd and rxd that records every request, a
// directory tree that must not change, a PKCS#11 module that does not exist
// (opening a token fails loudly) and a PIN prompt that fails the test.
// Every server URL and credential is also in the environment, so a command
// given nothing but -h would act if it ran.
type helpHarness struct {
	t      *testing.T
	keys   *hsm.Manager
	root   string
	out    string // the -out path: must not appear
	module string // a PKCS#11 module path that does not exist
	values map[string]string

	mu       sync.Mutex
	requests []string
}

func newHelpHarness(t *testing.T) *helpHarness {
	h := &helpHarness{t: t, root: t.TempDir()}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.requests = append(h.requests, r.Method+" "+r.URL.Path)
		h.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("{}"))
	}))
	t.Cleanup(srv.Close)
	h.keys = hsm.NewManager(func(_ context.Context, what string) ([]byte, error) {
		t.Errorf("a PIN was asked for %s", what)
		return nil, hsm.ErrNoPIN
	})
	t.Cleanup(func() { h.keys.Close() })

	in := filepath.Join(h.root, "in")
	write := func(name string, data []byte) string {
		path := filepath.Join(in, name)
		if err := os.MkdirAll(in, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	caFile := write("server.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	pass := write("officer.pass", []byte("officer key passphrase\n"))
	keyURI := "softkey:path=" + filepath.Join(in, "officer.key") + "?pin-source=" + pass
	key, err := h.keys.CreateKey(context.Background(), keyURI, hsm.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "officer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	certFile := write("officer.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	jsonFile := write("doc.json", []byte("{}"))
	pinFile := write("pin.txt", []byte("123456\n"))
	h.module = filepath.Join(h.root, "no-such-pkcs11-module.so")
	h.out = filepath.Join(h.root, "out", "written")
	if err := os.MkdirAll(filepath.Dir(h.out), 0o700); err != nil {
		t.Fatal(err)
	}
	cwd := filepath.Join(h.root, "cwd")
	if err := os.Mkdir(cwd, 0o700); err != nil {
		t.Fatal(err)
	}
	// Commands with a default output file (trust pull) write it here.
	t.Chdir(cwd)

	for k, v := range map[string]string{
		"NUSKHA_ADMIN_URL": srv.URL, "NUSKHA_PUBLIC_URL": srv.URL, "NUSKHA_RXD_URL": srv.URL, "NUSKHA_CA_FILE": caFile,
		"NUSKHA_OFFICER_CERT": certFile, "NUSKHA_OFFICER_KEY": keyURI, "NUSKHA_CLIENT_CERT": certFile, "NUSKHA_CLIENT_KEY": keyURI,
		"NUSKHA_PKCS11_MODULE": h.module,
	} {
		t.Setenv(k, v)
	}
	// A value for every flag that names a server, a credential, a file or
	// what to act on, so that the command would act if it ran.
	h.values = map[string]string{
		"admin": srv.URL, "public": srv.URL, "rxd": srv.URL, "ca-file": caFile,
		"cert": certFile, "key": keyURI, "chain": certFile,
		"key-uri": hsm.PKCS11URI(h.module, "card", "rx-signing", []byte{1}, pinFile),
		"module":  h.module, "token": "card", "key-id": "01", "pin-file": pinFile,
		"out": h.out, "file": jsonFile, "in": jsonFile, "csr": jsonFile, "prescription": jsonFile,
		"serial": "01", "reason": "keyCompromise", "comment": "why", "subject": "sub_1",
		"limit": "5", "online": "true", "pending": "false",
		"session": jsonFile, "claim": jsonFile, "signed": jsonFile, "code": "7K3QZ-M9XW2-P", "national-id": "0499370899",
		"claim-out": h.out, "ack-out": h.out, "receipt-out": h.out, "cursor": "c1",
		"log": srv.URL, "origin": "audit.test/log", "vkey": testVerifierKey, "tofu": "true", "entry": "0", "state": h.out,
	}
	return h
}

func (h *helpHarness) run(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb, h.keys)
	return out.String(), errb.String(), code
}

func (h *helpHarness) forgetRequests() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests = nil
}

func (h *helpHarness) requestsSeen() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.requests)
}

// TestHelpNeverActs: asking any rxctl command for help prints its usage on
// standard output, exits 0 and does nothing else — no request, no file, no
// token opened — wherever the help flag is put. It walks the commands
// table, so a new command is covered without editing this test.
func TestHelpNeverActs(t *testing.T) {
	h := newHelpHarness(t)
	before := clitest.Files(t, h.root)
	for group, cmds := range commands {
		for name := range cmds {
			t.Run(group+" "+name, func(t *testing.T) {
				h.forgetRequests()
				check := func(args []string) (usage string) {
					t.Helper()
					stdout, stderr, code := h.run(args...)
					if code != exitOK || stderr != "" || !strings.HasPrefix(stdout, "Usage of rxctl "+group+" "+name+":\n") {
						t.Errorf("%q: exit %d\nstdout %q\nstderr %q", args, code, stdout, stderr)
					}
					if r := h.requestsSeen(); len(r) != 0 {
						t.Fatalf("%q sent %q", args, r)
					}
					if after := clitest.Files(t, h.root); !slices.Equal(before, after) {
						t.Fatalf("%q changed the files: %q, was %q", args, after, before)
					}
					return stdout + stderr
				}
				flags := clitest.Args(check([]string{group, name, "-h"}), h.values)
				if len(flags) == 0 {
					t.Fatal("no flag in the usage has a value in the harness: -h would not be put after other flags")
				}
				for _, tail := range clitest.HelpArgs(flags) {
					check(slices.Concat([]string{group, name}, tail))
				}
			})
		}
	}
}

// TestHelpHarnessSeesActions holds the harness to account: without -h the
// commands the issue named do reach the server, and the token commands do
// try to open the (missing) module, so TestHelpNeverActs could fail.
func TestHelpHarnessSeesActions(t *testing.T) {
	h := newHelpHarness(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cert", "revoke", "-serial", "01", "-reason", "keyCompromise"}, "POST /admin/v1/certificates/01/revoke"},
		{[]string{"cert", "revoke", "-request", "-serial", "01", "-reason", "keyCompromise", "-comment", "lost"}, "POST /admin/v1/status-changes"},
		{[]string{"cert", "status", "-serial", "01"}, "GET /v1/certificates/01/status"},
		{[]string{"subject", "list"}, "GET /admin/v1/subjects"},
		{[]string{"trust", "pull", "-out", h.out}, "GET /v1/trust-bundle"},
		{[]string{"rules", "show"}, "GET /v1/rules"},
		{[]string{"rx", "history", "-national-id", "0499370899"}, "POST /v1/patient-history"},
		{[]string{"rx", "access-log", "-national-id", "0499370899"}, "POST /v1/patient-access-log"},
		{[]string{"audit", "verify", "-log", h.values["log"], "-origin", "audit.test/log", "-vkey", testVerifierKey, "-tofu"}, "GET /checkpoint"},
	} {
		h.run(tc.args...)
		if r := h.requestsSeen(); !slices.Contains(r, tc.want) {
			t.Errorf("%q: requests %q, want %q among them", tc.args, r, tc.want)
		}
	}
	for _, args := range [][]string{
		{"token", "keygen", "-token", "card"},
		{"token", "show", "-token", "card"},
	} {
		if _, stderr, code := h.run(args...); code == exitOK || !strings.Contains(stderr, h.module) {
			t.Errorf("%q: exit %d, %q: the module was not tried", args, code, stderr)
		}
	}
}

// TestTopLevelHelpAndUsage: help for rxctl itself and for a group goes to
// standard output with exit 0; a bad command line gets the usage on
// standard error and exit 2.
func TestTopLevelHelpAndUsage(t *testing.T) {
	h := newHelpHarness(t)
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string // prefix
		stderr string // substring
	}{
		{"-h", []string{"-h"}, exitOK, "usage: rxctl <group> <command>", ""},
		{"--help", []string{"--help"}, exitOK, "usage: rxctl <group> <command>", ""},
		{"help", []string{"help"}, exitOK, "usage: rxctl <group> <command>", ""},
		{"group -h", []string{"cert", "-h"}, exitOK, "usage: rxctl cert <command>", ""},
		{"version -h", []string{"version", "-h"}, exitOK, "Usage of rxctl version:", ""},
		{"group help", []string{"help", "cert"}, exitOK, "usage: rxctl cert <command>", ""},
		{"help for a command", []string{"help", "cert", "revoke"}, exitOK, "Usage of rxctl cert revoke:", ""},
		{"nothing", nil, exitRefused, "", "usage: rxctl <group> <command>"},
		{"group alone", []string{"cert"}, exitRefused, "", "usage: rxctl cert <command>"},
		{"unknown group", []string{"certs", "revoke"}, exitRefused, "", `unknown group "certs"`},
		{"unknown command", []string{"cert", "revok"}, exitRefused, "", `unknown command "cert" "revok"`},
		{"unknown flag", []string{"cert", "revoke", "-serail", "01"}, exitRefused, "", "Usage of rxctl cert revoke:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := h.run(tc.args...)
			if code != tc.code || !strings.HasPrefix(stdout, tc.stdout) || !strings.Contains(stderr, tc.stderr) ||
				(tc.code != exitOK && stdout != "") || (tc.code == exitOK && stderr != "") {
				t.Errorf("exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
			}
		})
	}
	if r := h.requestsSeen(); len(r) != 0 {
		t.Fatalf("sent %q", r)
	}
}

// TestVersion: rxctl says which build it is.
func TestVersion(t *testing.T) {
	h := newHelpHarness(t)
	for _, arg := range []string{"version", "-version", "--version"} {
		stdout, stderr, code := h.run(arg)
		if code != exitOK || stderr != "" || !strings.HasPrefix(stdout, "rxctl version ") ||
			!strings.Contains(stdout, "\n  commit   ") || !strings.Contains(stdout, "\n  go       go1.") {
			t.Errorf("%s: exit %d\nstdout %q\nstderr %q", arg, code, stdout, stderr)
		}
	}
	if _, stderr, code := h.run("version", "extra"); code != exitRefused || !strings.Contains(stderr, "no arguments") {
		t.Errorf("version extra: exit %d, %q", code, stderr)
	}
}
