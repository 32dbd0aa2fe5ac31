package main

import (
	"bytes"
	"context"
	"database/sql"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/cli"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/rxapi"
	"github.com/nuskha/nuskha/internal/rxd"
	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/testutil/audittest"
	"github.com/nuskha/nuskha/internal/testutil/clitest"
	"github.com/nuskha/nuskha/internal/testutil/trustdtest"
)

func runLoad(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	code = cli.Exit("rxload", run(context.Background(), args, &out, &errb), &errb)
	return out.String(), errb.String(), code
}

// setupArgs are setup's flags for trustd's two officers.
func setupArgs(td *trustdtest.Trustd, dir string) []string {
	alice, bob := td.Officers[0], td.Officers[1]
	return []string{"setup", "-dir", dir, "-admin-url", td.AdminURL, "-ca-file", td.RootFile,
		"-requester-cert", alice.CertFile, "-requester-key", alice.KeyURI, "-approver-cert", bob.CertFile, "-approver-key", bob.KeyURI}
}

// serveRxd starts the real rxd (internal/rxd, as rxd serve builds it) on
// a new SQLite database holding setup's registry and the sample
// catalogue, with the TLS and exchange flags setup wrote, and returns its
// URL once it listens (on listen, or a port of the kernel's choosing).
func serveRxd(t *testing.T, dir string, listen ...string) (url, db string) {
	t.Helper()
	ctx := context.Background()
	db = filepath.Join(t.TempDir(), "rxd.db")
	d, err := sqlstore.Open(ctx, sqlstore.SQLite, db)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := rxstore.NewInsured(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "registry.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := insured.Import(ctx, reg, f, insured.Full, time.Now(), insured.Options{}); err != nil {
		t.Fatal(err)
	}
	cs, err := rxstore.NewCatalogue(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	catalogtest.InForce(t, cs)
	d.Close()

	b, err := os.ReadFile(filepath.Join(dir, RxdArgsFile))
	if err != nil {
		t.Fatal(err)
	}
	a := strings.Fields(string(b))
	flag := map[string]string{}
	for i := 0; i+1 < len(a); i += 2 {
		flag[a[i]] = a[i+1]
	}
	cfg := rxd.Config{Store: rxd.Store{Driver: sqlstore.SQLite, Path: db}, Listen: append(listen, "127.0.0.1:0")[0],
		TLSCert: flag["-tls-cert"], TLSKey: flag["-tls-key"], ClientCA: flag["-client-ca"],
		ExchangeKey: flag["-exchange-key"], ExchangeCert: flag["-exchange-cert"], Recheck: time.Minute,
		Limits: rxapi.Limits{PerSecond: 1e6, Burst: 1e6, DailyLookups: 1e6}}
	cfg.Audit, _ = audittest.Shared(t)
	keys := hsm.NewManager(hsm.NoPrompt)
	t.Cleanup(func() { keys.Close() })
	h := &listening{Handler: slog.DiscardHandler, addr: make(chan string, 1)}
	svc, err := rxd.New(ctx, cfg, rxd.Deps{Log: slog.New(h), Now: time.Now, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Serve(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
		svc.Close()
	})
	select {
	case addr := <-h.addr:
		_, port, _ := strings.Cut(addr, ":")
		return "https://localhost:" + port, db
	case err := <-done:
		t.Fatalf("rxd stopped before it listened: %v", err)
	}
	return "", ""
}

// listening hands over the address of rxd's "rxd serving" line.
type listening struct {
	slog.Handler
	addr chan string
}

func (h *listening) Enabled(context.Context, slog.Level) bool { return true }

func (h *listening) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == rxd.MsgServing {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "listen" {
				h.addr <- a.Value.String()
			}
			return true
		})
	}
	return nil
}

var row = regexp.MustCompile(`(?m)^(\w+)\s+(\d+)\s+(\d+)\s`)

// TestRunAgainstRealRxd: setup has a real trustd certify every key; a run
// against the real rxd on SQLite submits N prescriptions for N persons of
// setup's registry, then claims, dispenses and closes each; the report's
// counts add up (every one accepted, claimed, dispensed and closed, none
// refused), and rxd's tables hold exactly that many of each.
func TestRunAgainstRealRxd(t *testing.T) {
	td := trustdtest.Start(t)
	dir := filepath.Join(t.TempDir(), "load")
	out, errOut, code := runLoad(append(setupArgs(td, dir), "-practitioners", "2", "-pharmacies", "3", "-persons", "100")...)
	if code != 0 {
		t.Fatalf("setup: exit %d\n%s%s", code, out, errOut)
	}
	url, db := serveRxd(t, dir)
	const n = 60
	out, errOut, code = runLoad("run", "-dir", dir, "-url", url, "-n", strconv.Itoa(n), "-c", "4")
	if code != 0 {
		t.Fatalf("run: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("rxload run:\n%s%s", errOut, out)
	got := map[string][2]int{}
	for _, m := range row.FindAllStringSubmatch(out, -1) {
		ok, _ := strconv.Atoi(m[2])
		failed, _ := strconv.Atoi(m[3])
		got[m[1]] = [2]int{ok, failed}
	}
	for op, want := range map[string][2]int{"prescribe": {n, 0}, "claim": {n, 0}, "dispense": {n, 0}, "close": {n, 0}} {
		if got[op] != want {
			t.Errorf("%s: ok, failed = %v, want %v\n%s", op, got[op], want, out)
		}
	}
	// A connection per client, opened before the clock starts.
	if c := got["connect"]; c != [2]int{4, 0} {
		t.Errorf("connections: %v\n%s", c, out)
	}
	// A session per client and pharmacy.
	if s := got["session"]; s[1] != 0 || s[0] < 3 || s[0] > 12 {
		t.Errorf("sessions: %v\n%s", s, out)
	}
	if !strings.Contains(out, "claimed+dispensed+closed: 60 prescriptions") {
		t.Errorf("no closed count:\n%s", out)
	}
	conn, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for table, want := range map[string]int{"prescriptions": n, "dispenses": n, "receipts": n, "prescription_lines": 2 * n} {
		var c int
		if err := conn.QueryRow("SELECT count(*) FROM " + table).Scan(&c); err != nil || c != want {
			t.Errorf("%s: %d rows (%v), want %d", table, c, err, want)
		}
	}

	// A second run for persons already prescribed for by the first is
	// refused before anything is signed or sent: the registry is too small.
	if _, errOut, code := runLoad("run", "-dir", dir, "-url", url, "-n", "50", "-first", "60"); code != 1 || !strings.Contains(errOut, "the registry holds 100 persons") {
		t.Fatalf("a run past the registry: exit %d, %s", code, errOut)
	}
}

// TestRunRetriesUntilRxdAnswers: with -retry, prescriptions sent before
// rxd listens (as during a failover, nothing answers) are sent again until
// it does; every one is acknowledged, each acknowledgement is a line of
// the -acked file as it arrives, those lines name exactly the
// prescriptions rxd stored, and the report counts the attempts that found
// no one listening.
func TestRunRetriesUntilRxdAnswers(t *testing.T) {
	td := trustdtest.Start(t)
	dir := filepath.Join(t.TempDir(), "load")
	if out, errOut, code := runLoad(append(setupArgs(td, dir), "-practitioners", "1", "-pharmacies", "1", "-persons", "30")...); code != 0 {
		t.Fatalf("setup: exit %d\n%s%s", code, out, errOut)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there until rxd does
	_, port, _ := strings.Cut(addr, ":")
	acked := filepath.Join(t.TempDir(), "acked")
	const n = 30
	signed := &lineWatch{want: "signed ", seen: make(chan struct{})}
	type result struct {
		out  string
		code int
	}
	done := make(chan result, 1)
	go func() {
		var out bytes.Buffer
		code := cli.Exit("rxload", run(context.Background(), []string{"run", "-dir", dir, "-url", "https://localhost:" + port, "-n", strconv.Itoa(n), "-c", "3",
			"-dispense=false", "-retry", "2m", "-acked", acked}, &out, signed), io.Discard)
		done <- result{out.String(), code}
	}()
	select {
	case <-signed.seen: // the prescriptions are being sent, to no one
	case r := <-done:
		t.Fatalf("run ended before it submitted: exit %d\n%s", r.code, r.out)
	}
	_, db := serveRxd(t, dir, addr)
	r := <-done
	if r.code != 0 {
		t.Fatalf("run: exit %d\n%s", r.code, r.out)
	}
	t.Logf("rxload run:\n%s", r.out)
	table := map[string][]string{}
	for _, m := range row.FindAllStringSubmatch(r.out, -1) {
		table[m[1]] = m
	}
	if m := table["prescribe"]; m == nil || m[2] != strconv.Itoa(n) || m[3] != "0" {
		t.Fatalf("want %d prescriptions accepted, none failed:\n%s", n, r.out)
	}
	// Opening the connections first found no rxd: counted, not fatal.
	if m := table["connect"]; m == nil || m[2] != "0" || m[3] != "3" {
		t.Fatalf("want 3 connections that found no rxd:\n%s", r.out)
	}
	if !regexp.MustCompile(`retried after transport\s+[1-9]`).MatchString(r.out) {
		t.Fatalf("no attempt without an answer was counted:\n%s", r.out)
	}
	b, err := os.ReadFile(acked)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[1] != "prescribe" {
			t.Fatalf("acked line %q is not UNIX-NANOSECONDS prescribe ID", line)
		}
		if _, err := strconv.ParseInt(f[0], 10, 64); err != nil {
			t.Fatalf("acked line %q: %v", line, err)
		}
		ids[f[2]] = true
	}
	conn, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rows, err := conn.Query("SELECT id FROM prescriptions")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	stored := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		stored[id] = true
	}
	if len(ids) != n || !maps.Equal(ids, stored) {
		t.Fatalf("%d acknowledged, %d stored: not the same prescriptions", len(ids), len(stored))
	}
}

// lineWatch closes seen once a line beginning with want is written.
type lineWatch struct {
	want string
	seen chan struct{}
	once sync.Once
}

func (w *lineWatch) Write(p []byte) (int, error) {
	if strings.HasPrefix(string(p), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

// TestHelpNeverActs: help for any command prints on standard output, exits
// 0 and makes nothing, even with every flag given; bad usage exits 2.
func TestHelpNeverActs(t *testing.T) {
	root := t.TempDir()
	before := clitest.Files(t, root)
	for name := range commands {
		for _, args := range [][]string{{name, "-h"}, {"help", name},
			{name, "-dir", filepath.Join(root, "new"), "-admin-url", "https://127.0.0.1:1", "-ca-file", "x", "-url", "https://localhost:1", "-h"}} {
			if name == "version" && len(args) > 2 {
				continue
			}
			out, errOut, code := runLoad(args...)
			if code != 0 || !strings.Contains(out, "Usage") && !strings.Contains(out, "usage") || errOut != "" {
				t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
			}
		}
	}
	if after := clitest.Files(t, root); !slices.Equal(after, before) {
		t.Errorf("help made files: %v", after)
	}
	for _, args := range [][]string{
		{}, {"nonsense"}, {"setup"}, {"setup", "-dir", "d", "-admin-url", "u", "-ca-file", "f"},
		{"run"}, {"run", "-dir", "d", "-url", "u", "-n", "0"}, {"run", "-dir", "d", "-url", "u", "-rate", "-1"}, {"run", "-bogus"},
	} {
		if _, errOut, code := runLoad(args...); code != 2 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q; want a usage error (2)", args, code, errOut)
		}
	}
}
