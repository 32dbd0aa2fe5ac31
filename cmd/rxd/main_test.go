package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/cli"
	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/lifecycle"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/rules"
	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/testutil/audittest"
	"github.com/nuskha/nuskha/internal/testutil/filemode"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

func TestImportRegistryCommand(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "rxd.db")
	good := filepath.Join(dir, "registry.csv")
	if err := os.WriteFile(good, []byte(insuredtest.Rows(1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"import-registry", "-db", db, "-create", "-mode", "full", good}, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "1000 persons — 750 main insured, 250 dependants") || !strings.Contains(errb.String(), "100.0%") ||
		!strings.Contains(errb.String(), "into the new SQLite database "+db+"\n") {
		t.Fatalf("summary %q, progress %q", out.String(), errb.String())
	}

	bad := filepath.Join(dir, "bad.csv")
	rows := insuredtest.Header() + insuredtest.Row(2000) + strings.Replace(insuredtest.Row(2001), ",active,", ",asleep,", 1) + insuredtest.Row(2000)
	if err := os.WriteFile(bad, []byte(rows), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err := run(context.Background(), []string{"import-registry", "-db", db, "-mode", "update", "-quiet", "-json", bad}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "2 bad row(s)") {
		t.Fatalf("bad file: %v", err)
	}
	var ie insured.ImportError
	if json.Unmarshal(out.Bytes(), &ie) != nil || ie.Total != 2 || ie.Rows[0].Line != 3 || ie.Rows[1].Line != 4 {
		t.Fatalf("reported %s", out.String())
	}
	d, _ := sqlstore.Open(context.Background(), sqlstore.SQLite, db)
	defer d.Close()
	s, _ := rxstore.NewInsured(context.Background(), d)
	if n, _ := s.Count(context.Background()); n != 1000 {
		t.Fatalf("count after a rejected update = %d", n)
	}
}

// TestCreatedDatabaseIsPrivate: the database -create makes holds the
// insured registry (national ids, names, coverage): it, its directory and
// its WAL and shared-memory files are the owner's alone, whatever the umask.
func TestCreatedDatabaseIsPrivate(t *testing.T) {
	filemode.PermissiveUmask(t)
	state := filepath.Join(t.TempDir(), "var", "rxd")
	csv := filepath.Join(t.TempDir(), "registry.csv")
	if err := os.WriteFile(csv, []byte(insuredtest.Rows(10)), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(state, "rxd.db")
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"import-registry", "-db", db, "-create", "-mode", "full", "-quiet", csv}, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	// As rxd serve holds it: open, with its WAL and shared memory.
	d, err := sqlstore.Open(context.Background(), sqlstore.SQLite, db)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s, err := rxstore.NewInsured(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Count(context.Background()); err != nil || n != 10 {
		t.Fatalf("count %d, %v", n, err)
	}
	seen := filemode.Private(t, filepath.Dir(state))
	for _, want := range []string{".", "rxd", "rxd/rxd.db", "rxd/rxd.db-wal", "rxd/rxd.db-shm"} {
		if !slices.Contains(seen, want) {
			t.Errorf("%s was not there to check (found %q)", want, seen)
		}
	}
}

func TestImportCatalogueAndCheckRulesCommands(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "rxd.db")
	drugs, services := catalogtest.Sample()
	df := filepath.Join(dir, "drugs.csv")
	sf := filepath.Join(dir, "services.csv")
	os.WriteFile(df, []byte(drugs), 0o600)
	os.WriteFile(sf, []byte(services), 0o600)
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"import-catalogue", "-db", db, "-create", "-label", "1405 Farvardin", "-valid-from", "1405-01-01", "-drugs", df, "-services", sf}, &out, &errb); err != nil {
		t.Fatalf("%v %s", err, errb.String())
	}
	if !strings.Contains(out.String(), "13 drugs, 6 services, in force from 2026-03-21") {
		t.Fatalf("summary %q", out.String())
	}
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte(catalogtest.DrugsHeader+"\n1,x,,N02BE01,tablet,1 mg,-5,70,false,1,,,0,0,,,true\n"), 0o600)
	out.Reset()
	err := run(context.Background(), []string{"import-catalogue", "-db", db, "-label", "bad", "-valid-from", "1405-07-01", "-drugs", bad}, &out, &errb)
	if err == nil || !strings.Contains(out.String(), "drugs line 2: price") {
		t.Fatalf("bad catalogue: %v %q", err, out.String())
	}

	rulesFile := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesFile, rules.StarterYAML(), 0o600)
	out.Reset()
	if err := run(context.Background(), []string{"check-rules", rulesFile}, &out, &errb); err != nil || !strings.Contains(out.String(), "15 rules, compiled and type-checked") {
		t.Fatalf("check-rules: %v %q", err, out.String())
	}
	os.WriteFile(rulesFile, bytes.Replace(rules.StarterYAML(), []byte("item.catalogue.coverage_percent > 0"), []byte("item.catalogue.coverage_pct > 0"), 1), 0o600)
	if err := run(context.Background(), []string{"check-rules", rulesFile}, &out, &errb); err == nil || !strings.Contains(err.Error(), "item-covered") || !strings.Contains(err.Error(), "coverage_pct") {
		t.Fatalf("a misspelled field: %v", err)
	}
}

func TestServeNeedsClientAuthentication(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"serve", "-db", filepath.Join(t.TempDir(), "rxd.db")}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "-client-ca") {
		t.Fatalf("serve without TLS: %v", err)
	}
}

// serveFixture is what `rxd serve` needs to start: a server certificate
// from a test hierarchy and its key, and the root for client certificates.
type serveFixture struct {
	dir   string
	pki   *testpki.PKI
	args  []string // serve and its TLS flags
	issue func(profile string, kind pki.Role, id string) (*ecdsa.PrivateKey, *x509.Certificate)
}

func newServeFixture(t *testing.T) *serveFixture {
	now := time.Now()
	p := testpki.New(t, nil, func() time.Time { return now })
	dir := t.TempDir()
	writePEM := func(name string, blocks ...*pem.Block) string {
		var b []byte
		for _, bl := range blocks {
			b = append(b, pem.EncodeToMemory(bl)...)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	issue := func(profile string, kind pki.Role, id string) (*ecdsa.PrivateKey, *x509.Certificate) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		return k, p.Issue(t, profile, testpki.Subject(kind, id, now), k)
	}
	sk, sc := issue("service-tls-server", pki.RoleService, "rxd")
	skDER, _ := x509.MarshalPKCS8PrivateKey(sk)
	certFile := writePEM("rxd.crt", &pem.Block{Type: "CERTIFICATE", Bytes: sc.Raw}, &pem.Block{Type: "CERTIFICATE", Bytes: p.Intermediate.Raw})
	keyFile := writePEM("rxd.key", &pem.Block{Type: "PRIVATE KEY", Bytes: skDER})
	caFile := writePEM("root.crt", &pem.Block{Type: "CERTIFICATE", Bytes: p.Root.Raw})
	return &serveFixture{dir: dir, pki: p, issue: issue,
		args: slices.Concat([]string{"serve", "-tls-cert", certFile, "-tls-key", keyFile, "-client-ca", caFile}, testAuditFlags(t))}
}

// TestServe starts the real command: TLS with a server certificate from a
// test hierarchy, client certificates required, and — since the test
// hierarchy's OCSP responder does not exist — every caller refused with the
// reason: the service fails closed.
func TestServe(t *testing.T) {
	f := newServeFixture(t)
	addr := serving(t, slices.Concat(f.args, []string{"-db", filepath.Join(f.dir, "rxd.db"), "-create"}))
	p := f.pki
	vk, vc := f.issue("service-tls-client", pki.RoleVendor, "vendor")
	roots := x509.NewCertPool()
	roots.AddCert(p.Root)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost",
		Certificates: []tls.Certificate{{Certificate: [][]byte{vc.Raw, p.Intermediate.Raw}, PrivateKey: vk}}}}}
	resp, err := c.Get("https://" + addr + "/v1/eligibility/" + insuredtest.NationalID(0))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(body), "no fresh evidence") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

// TestServeStopsInOrder: when its context ends, rxd serve stops the rules
// file watch and waits for it, and for the server, before it returns and
// closes the database and the keys.
func TestServeStopsInOrder(t *testing.T) {
	f := newServeFixture(t)
	rulesFile := filepath.Join(f.dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, rules.StarterYAML(), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &logWatch{found: make(chan string, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, slices.Concat(f.args, []string{"-db", filepath.Join(f.dir, "rxd.db"), "-create", "-rules", rulesFile, "-listen", "127.0.0.1:0"}), io.Discard, logs)
	}()
	select {
	case <-logs.found:
	case err := <-done:
		t.Fatalf("serve ended before it listened: %v\n%s", err, logs)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	var order []string
	for line := range strings.Lines(logs.String()) {
		var l struct{ Msg, Task string }
		if json.Unmarshal([]byte(line), &l) == nil && (l.Msg == lifecycle.MsgTaskStopped || l.Msg == lifecycle.MsgStopped) {
			order = append(order, strings.TrimSpace(l.Msg+" "+l.Task))
		}
	}
	// The tasks stop in any order, all before the service says it stopped.
	if len(order) > 0 && order[len(order)-1] == lifecycle.MsgStopped {
		slices.Sort(order[:len(order)-1])
	}
	if want := []string{lifecycle.MsgTaskStopped + " audit log", lifecycle.MsgTaskStopped + " rules watch", lifecycle.MsgStopped}; !slices.Equal(order, want) {
		t.Fatalf("serve returned after %q, want %q:\n%s", order, want, logs)
	}
}

// serving runs `rxd serve` with args on a port of the kernel's choosing
// until the test ends, and returns the address once rxd says it listens.
func serving(t *testing.T, args []string) string {
	t.Helper()
	addr, _ := servingLogged(t, args)
	return addr
}

// servingLogged is serving, with rxd's log.
func servingLogged(t *testing.T, args []string) (string, *logWatch) {
	t.Helper()
	logs := &logWatch{found: make(chan string, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, slices.Concat(args, []string{"-listen", "127.0.0.1:0"}), io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve ended with %v", err)
		}
	})
	select {
	case addr := <-logs.found:
		return addr, logs
	case err := <-done:
		done <- err
		t.Fatalf("serve ended before it listened: %v\n%s", err, logs)
	}
	return "", nil
}

// logWatch is rxd's stderr in a test: it keeps the log and hands over the
// address of the first "rxd serving" line.
type logWatch struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	seen  int
	found chan string
}

func (w *logWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		rest := w.buf.Bytes()[w.seen:]
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.seen += i + 1
		var line struct{ Msg, Listen string }
		if json.Unmarshal(rest[:i], &line) == nil && line.Msg == "rxd serving" {
			select {
			case w.found <- line.Listen:
			default:
			}
		}
	}
}

func (w *logWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestMissingDatabase: each command that opens the database refuses a
// SQLite file that is not there, naming the path, and creates nothing; a
// relative -db is named in full. With -create the file is made, and the
// command says so; later commands say which database they use.
func TestMissingDatabase(t *testing.T) {
	f := newServeFixture(t)
	dir := t.TempDir()
	registry := filepath.Join(dir, "registry.csv")
	drugsFile := filepath.Join(dir, "drugs.csv")
	drugs, _ := catalogtest.Sample()
	if os.WriteFile(registry, []byte(insuredtest.Rows(10)), 0o600) != nil || os.WriteFile(drugsFile, []byte(drugs), 0o600) != nil {
		t.Fatal("writing the input files")
	}
	db := filepath.Join(dir, "data", "rxd.db")
	openers := []struct {
		name string
		args []string // the flags after -db
	}{
		{"import-registry", []string{"-mode", "full", "-quiet", registry}},
		{"import-catalogue", []string{"-label", "sample", "-valid-from", "1405-01-01", "-drugs", drugsFile}},
		{"serve", slices.Concat(f.args[1:], []string{"-listen", "127.0.0.1:0"})},
	}
	for _, c := range openers {
		t.Run(c.name, func(t *testing.T) {
			// Were the database made, serve would serve until the deadline.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var out, errb bytes.Buffer
			err := run(ctx, slices.Concat([]string{c.name, "-db", db}, c.args), &out, &errb)
			if err == nil || !strings.Contains(err.Error(), "there is no database at "+db+": ") || !strings.Contains(err.Error(), "-create") {
				t.Fatalf("%v", err)
			}
			if _, err := os.Stat(filepath.Dir(db)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("%s was created (%v)", filepath.Dir(db), err)
			}
		})
	}
	t.Run("relative -db", func(t *testing.T) {
		cwd := t.TempDir()
		t.Chdir(cwd)
		var out, errb bytes.Buffer
		err := run(context.Background(), slices.Concat([]string{"import-registry"}, openers[0].args), &out, &errb)
		if want := "there is no database at " + filepath.Join(cwd, "var", "rxd", "rxd.db"); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%v, want %q", err, want)
		}
		if entries, _ := os.ReadDir(cwd); len(entries) != 0 {
			t.Fatalf("created %v", entries)
		}
	})
	t.Run("-create", func(t *testing.T) {
		var out, errb bytes.Buffer
		if err := run(context.Background(), slices.Concat([]string{"import-registry", "-db", db, "-create"}, openers[0].args), &out, &errb); err != nil {
			t.Fatal(err)
		}
		if want := "rxd: importing " + registry + " into the new SQLite database " + db + "\n"; !strings.Contains(errb.String(), want) {
			t.Fatalf("said %q, want %q", errb.String(), want)
		}
		errb.Reset()
		if err := run(context.Background(), slices.Concat([]string{"import-catalogue", "-db", db}, openers[1].args), &out, &errb); err != nil {
			t.Fatal(err)
		}
		if want := `rxd: importing catalogue version "sample" into the SQLite database ` + db + "\n"; !strings.Contains(errb.String(), want) {
			t.Fatalf("said %q, want %q", errb.String(), want)
		}
	})
	t.Run("-create with postgres", func(t *testing.T) {
		var out, errb bytes.Buffer
		err := run(context.Background(), slices.Concat([]string{"import-registry", "-db-driver", "postgres", "-dsn-file", "x", "-create"}, openers[0].args), &out, &errb)
		var ue cli.UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "-create is for SQLite") {
			t.Fatalf("%v", err)
		}
	})
}

// TestClientCAMustBeRoots: a -client-ca file holding an intermediate (a
// common "CA chain" file) is refused at start: with the intermediate as a
// trust anchor, its revocation on the root's ARL would never be checked.
func TestClientCAMustBeRoots(t *testing.T) {
	f := newServeFixture(t)
	chainFile := filepath.Join(f.dir, "ca-chain.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.pki.Root.Raw})
	b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.pki.Intermediate.Raw})...)
	if err := os.WriteFile(chainFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	args := slices.Concat(f.args, []string{"-client-ca", chainFile, "-db", filepath.Join(f.dir, "rxd.db"), "-create", "-listen", "127.0.0.1:0"})
	err := run(context.Background(), args, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "not a self-signed root") {
		t.Fatalf("serve with an intermediate in -client-ca: %v", err)
	}
}

// TestServeRefusesBadLimitsAndKeys: serve refuses, before it serves,
// limits that are not positive, a negative recheck interval, and an audit
// log whose checkpoint key file is missing or not one, or without its
// origin.
func TestServeRefusesBadLimitsAndKeys(t *testing.T) {
	f := newServeFixture(t)
	short := filepath.Join(f.dir, "short.key")
	if err := os.WriteFile(short, []byte("sixteen bytes!!!"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		flags []string
		usage bool
		want  string
	}{
		{"no lookups a day", []string{"-daily-lookups", "0"}, true, "-daily-lookups must be positive"},
		{"no rate", []string{"-caller-rate", "0"}, true, "-caller-rate"},
		{"negative recheck", []string{"-revocation-recheck", "-1s"}, true, "-revocation-recheck must be 0"},
		{"note key file missing", []string{"-audit-note-key", filepath.Join(f.dir, "none.key")}, false, "-audit-note-key: open"},
		{"note key file not one", []string{"-audit-note-key", short}, false, "sealed note key"},
		{"no audit origin", []string{"-audit-origin", ""}, true, "-audit-origin are required"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Were the flags accepted, serve would serve until the deadline.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var out, errb bytes.Buffer
			args := slices.Concat(f.args, []string{"-db", filepath.Join(f.dir, "rxd.db"), "-create", "-listen", "127.0.0.1:0"}, c.flags)
			err := run(ctx, args, &out, &errb)
			var ue cli.UsageError
			if err == nil || !strings.Contains(err.Error(), c.want) || errors.As(err, &ue) != c.usage {
				t.Fatalf("got %v, want a refusal (usage: %v) saying %q", err, c.usage, c.want)
			}
		})
	}
}

// testAuditFlags name the audit log's keys, made once for the test process.
func testAuditFlags(t testing.TB) []string {
	a, _ := audittest.Shared(t)
	return audittest.Flags(a)
}
