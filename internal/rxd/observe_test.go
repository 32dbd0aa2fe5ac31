package rxd_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/internal/catalogue"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/loadgen"
	"github.com/nuskha/nuskha/internal/observe"
	"github.com/nuskha/nuskha/internal/persian"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/rules"
	"github.com/nuskha/nuskha/internal/rxapi"
	"github.com/nuskha/nuskha/internal/rxd"
	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/testutil/audittest"
	"github.com/nuskha/nuskha/internal/testutil/edgetest"
	"github.com/nuskha/nuskha/internal/testutil/logbuf"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
	"github.com/nuskha/nuskha/internal/testutil/promtool"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
	"github.com/nuskha/nuskha/internal/testutil/trustdtest"
	"github.com/nuskha/nuskha/internal/tlsconf"
)

// TestOperations runs trustd and rxd (on PostgreSQL, through a proxy the
// test can cut) as deployed, with their operations listeners, and puts
// real exchange traffic through them (loadgen: prescriptions claimed,
// dispensed and closed). Then:
//   - what both export on /metrics passes `promtool check metrics` and
//     counts that traffic (accepted, dispensed by province, verifications,
//     signatures, OCSP answers, certificates issued, evidence age);
//   - neither, nor any line rxd logged, holds a patient's national id
//     (ASCII or Persian digits) nor a patient's, practice's or pharmacy's
//     name;
//   - rxd is ready (every check passes), and once its database is gone
//     it is not — /readyz 503 naming the database check — and a
//     prescription is refused 503 with a Retry-After;
//   - a vendor's prescription whose body stalls holds its connection,
//     and the handler reading it, only until ReadTimeout (cut to 2 s here
//     from the 30 s default, so as not to wait it out).
func TestOperations(t *testing.T) {
	td := trustdtest.Start(t)
	ctx := context.Background()
	keys := hsm.NewManager(hsm.NoPrompt)
	defer keys.Close()
	officer := func(i int) loadgen.Officer {
		chain, err := pemutil.ReadCertificateBundle(td.Officers[i].CertFile)
		if err != nil {
			t.Fatal(err)
		}
		k, err := keys.OpenKey(ctx, td.Officers[i].KeyURI)
		if err != nil {
			t.Fatal(err)
		}
		return loadgen.Officer{Chain: chain, Key: k}
	}
	const n = 12
	manifest, err := loadgen.Setup(ctx, loadgen.SetupOptions{Dir: filepath.Join(t.TempDir(), "load"), AdminURL: td.AdminURL, RootFile: td.RootFile,
		Requester: officer(0), Approver: officer(1), Practitioners: 1, Pharmacies: 2, Persons: n + 1, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	m, err := loadgen.ReadManifest(manifest)
	if err != nil {
		t.Fatal(err)
	}

	proxy, dsn := pgtest.Through(t, pgtest.Schema(t))
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn), 0o600); err != nil {
		t.Fatal(err)
	}
	store := rxd.Store{Driver: sqlstore.Postgres, DSNFile: dsnFile}
	importData(t, store, m.Registry)

	var logs logbuf.Buffer
	h := &serving{addr: make(chan string, 1), Handler: slog.NewJSONHandler(&logs, nil)}
	cfg := rxd.Config{Store: store, Listen: "127.0.0.1:0", TLSCert: m.RxdTLS.Chain, TLSKey: m.RxdTLS.Key, ClientCA: m.Root,
		ExchangeKey: m.Exchange.Key, ExchangeCert: m.Exchange.Chain, MetricsListen: "127.0.0.1:0",
		Limits: rxapi.Limits{PerSecond: 1e6, Burst: 1e6, DailyLookups: 1e6}, ReadTimeout: 2 * time.Second}
	cfg.Audit, _ = audittest.Shared(t)
	svc, err := rxd.New(ctx, cfg, rxd.Deps{Log: slog.New(h), Now: time.Now, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	serveCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Serve(serveCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	var addr string
	select {
	case addr = <-h.addr:
	case err := <-done:
		t.Fatalf("Serve ended before it listened: %v", err)
	}
	ops := "http://" + logAttr(t, logs.String(), rxd.MsgServing, "metrics")
	// The certificate Setup made for rxd names localhost.
	addr = strings.Replace(addr, "127.0.0.1", "localhost", 1)

	rep, err := loadgen.Run(ctx, loadgen.RunOptions{Manifest: manifest, URL: "https://" + addr, N: n, Clients: 2, Dispense: true, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	for op, o := range rep.Ops {
		if o.Failed() > 0 {
			t.Fatalf("%d of the %s requests failed: %v", o.Failed(), op, o.Errors)
		}
	}

	rxdMetrics, trustdMetrics := get(t, ops+"/metrics", 200), get(t, td.OpsURL+"/metrics", 200)
	promtool.Check(t, "rxd's /metrics", rxdMetrics)
	promtool.Check(t, "trustd's /metrics", trustdMetrics)
	for _, c := range []struct {
		text, series string
		atLeast      float64
	}{
		{string(rxdMetrics), `nuskha_exchange_prescriptions_accepted_total{kind="electronic",province="unknown"}`, n},
		{string(rxdMetrics), `nuskha_exchange_dispenses_total{kind="electronic",province="IR-23"}`, n},
		{string(rxdMetrics), `nuskha_rx_verifications_total{kind="prescription",outcome="ok"}`, n},
		{string(rxdMetrics), `nuskha_rx_verifications_total{kind="dispense",outcome="ok"}`, n},
		{string(rxdMetrics), `nuskha_hsm_sign_duration_seconds_count{key="exchange"}`, 2 * n}, // acks and receipts
		{string(rxdMetrics), `nuskha_hsm_token_up{key="exchange"}`, 1},
		{string(rxdMetrics), `nuskha_http_requests_total{code="201",listener="main",method="POST",problem="",route="POST /v1/prescriptions"}`, n},
		{string(rxdMetrics), `nuskha_revocation_fetches_total{kind="ocsp",result="ok"}`, 1},
		{string(rxdMetrics), `nuskha_revocation_evidence_age_seconds{kind="ocsp"}`, 0},
		{string(rxdMetrics), `go_sql_open_connections{db_name="rxd"}`, 1},
		{string(trustdMetrics), `nuskha_ocsp_responses_total{status="good"}`, 1},
		{string(trustdMetrics), `nuskha_certificates_issued_total{profile="pharmacy-signing"}`, 2},
		{string(trustdMetrics), `nuskha_hsm_sign_duration_seconds_count{key="issuing"}`, 1},
		{string(trustdMetrics), `nuskha_crl_age_seconds`, 0},
		{string(rxdMetrics), `nuskha_db_commit_duration_seconds_count`, 2 * n},
		{string(trustdMetrics), `nuskha_db_commit_duration_seconds_count`, 1},
	} {
		if v := value(t, c.text, c.series); v < c.atLeast {
			t.Errorf("%s is %v, want at least %v", c.series, v, c.atLeast)
		}
	}
	if !strings.Contains(string(rxdMetrics), `nuskha_rules_info{digest="`) || !strings.Contains(string(rxdMetrics), `nuskha_catalogue_info{id="cat_`) {
		t.Error("rxd does not say which rule set and catalogue are in force")
	}
	// The runbook lists every metric of ours that either exports.
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{string(rxdMetrics), string(trustdMetrics)} {
		for line := range strings.Lines(text) {
			if f := strings.Fields(line); len(f) == 4 && f[1] == "TYPE" && strings.HasPrefix(f[2], "nuskha_") && !strings.Contains(string(doc), "`"+f[2]+"`") {
				t.Errorf("docs/operations.md does not list %s", f[2])
			}
		}
	}
	personal := []string{"بیمار آزمون", "درمانگاه آزمون", "داروخانه آزمون"}
	for i := range n + 1 {
		nid := loadgen.NationalID(m.Base, i)
		personal = append(personal, nid, strings.Map(func(r rune) rune { return '۰' + (r - '0') }, nid))
	}
	// Nor does rxd's own log, every line of it, after that traffic.
	for what, text := range map[string]string{"rxd's /metrics": string(rxdMetrics), "trustd's /metrics": string(trustdMetrics), "rxd's log": logs.String()} {
		for _, p := range personal {
			if strings.Contains(text, p) {
				t.Errorf("%s holds %q", what, p)
			}
		}
	}

	var ready struct {
		Status string                `json:"status"`
		Checks []observe.CheckResult `json:"checks"`
	}
	if err := json.Unmarshal(get(t, ops+"/readyz", 200), &ready); err != nil || ready.Status != "ready" || len(ready.Checks) != 4 {
		t.Fatalf("/readyz: %v %+v", err, ready)
	}
	get(t, td.OpsURL+"/readyz", 200)
	get(t, ops+"/healthz", 200)

	proxy.Cut()
	var notReady observe.NotReady
	if err := json.Unmarshal(get(t, ops+"/readyz", 503), &notReady); err != nil || notReady.Code != "unavailable" {
		t.Fatalf("/readyz without the database: %v %+v", err, notReady)
	}
	for _, c := range notReady.Checks {
		if c.OK == (c.Name == "database") {
			t.Errorf("without the database, check %s: %+v", c.Name, c)
		}
	}
	// The real daemon refuses a prescription as its API test does.
	rep, err = loadgen.Run(ctx, loadgen.RunOptions{Manifest: manifest, URL: "https://" + addr, N: 1, First: n, Clients: 1, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if o := rep.Ops[loadgen.OpPrescribe]; o == nil || o.Failed() != 1 {
		t.Fatalf("a prescription without the database: %+v", rep.Ops)
	}
	after := string(get(t, ops+"/metrics", 200))
	if v := value(t, after, `nuskha_http_requests_total{code="503",listener="main",method="POST",problem="unavailable",route="POST /v1/prescriptions"}`); v != 1 {
		t.Fatalf("the refusal is counted %v times as 503 unavailable", v)
	}

	// The vendor's request is admitted (its certificate is good, which
	// trustd still answers) and its body read until ReadTimeout ends the
	// stream: 400, the body could not be read. A refusal before the body
	// is read (401) would wait on nothing and prove nothing.
	vendorChain, err := pemutil.ReadCertificateBundle(m.Vendor.Chain)
	if err != nil {
		t.Fatal(err)
	}
	vendorKey, err := keys.OpenKey(ctx, m.Vendor.Key)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := pemutil.ReadCertificateBundle(m.Root)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{tlsconf.Certificate(vendorKey, vendorChain)}})
	if err != nil {
		t.Fatal(err)
	}
	edgetest.StalledBodyCut(t, conn, "/v1/prescriptions", 15*time.Second, "rxd, a vendor's prescription")
}

// importData loads the registry Setup wrote and the sample catalogue.
func importData(t *testing.T, store rxd.Store, registry string) {
	t.Helper()
	ctx := context.Background()
	db, _, err := rxd.OpenStore(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reg, err := rxstore.NewInsured(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(registry)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := insured.Import(ctx, reg, f, insured.Full, time.Now(), insured.Options{}); err != nil {
		t.Fatal(err)
	}
	cs, err := rxstore.NewCatalogue(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalogue.New(catalogue.Config{Store: cs})
	if err != nil {
		t.Fatal(err)
	}
	drugs, err := os.Open("../../deploy/sample/drugs.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer drugs.Close()
	services, err := os.Open("../../deploy/sample/services.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer services.Close()
	from, _ := persian.ParseDate("1400-01-01")
	if _, err := cat.Import(ctx, catalogue.ImportSpec{Label: "sample", ValidFrom: from}, drugs, services); err != nil {
		t.Fatal(err)
	}
}

// get fetches url over plain HTTP and checks its status.
func get(t *testing.T, url string, status int) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != status {
		t.Fatalf("%s: %d %s, want %d", url, resp.StatusCode, b, status)
	}
	if status == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
		t.Fatalf("%s: 503 without a Retry-After", url)
	}
	return b
}

// value is the value of one series (its name and labels as exposed) in
// a text exposition; the test fails when it is absent.
func value(t *testing.T, text, series string) float64 {
	t.Helper()
	for line := range strings.Lines(text) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return v
		}
	}
	t.Fatalf("no series %s in:\n%s", series, text)
	return 0
}

// logAttr is the attribute key of the first JSON log line with msg.
func logAttr(t *testing.T, logs, msg, key string) string {
	t.Helper()
	for line := range strings.Lines(logs) {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil && l["msg"] == msg {
			if v, ok := l[key].(string); ok {
				return v
			}
		}
	}
	t.Fatalf("no %q with %s in the log:\n%s", msg, key, logs)
	return ""
}

// TestReload: Reload (what SIGHUP does) puts a changed rule set file in
// force at once, without waiting for the file watch, and serves a
// replaced TLS certificate to new connections; a broken rule set file
// is reported and the running set stays.
func TestReload(t *testing.T) {
	cfg, roots, p := configPKI(t)
	dir := t.TempDir()
	cfg.RulesFile = filepath.Join(dir, "rules.yaml")
	cfg.RulesPoll = time.Hour // the watch never looks during the test
	cfg.MetricsListen = "127.0.0.1:0"
	setVersion := func(v string) {
		y := strings.Replace(string(rules.StarterYAML()), `version: "2026-11-01"`, `version: "`+v+`"`, 1)
		if err := os.WriteFile(cfg.RulesFile, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	setVersion("v1")
	var logs logbuf.Buffer
	h := &serving{addr: make(chan string, 1), Handler: slog.NewJSONHandler(&logs, nil)}
	svc, err := rxd.New(context.Background(), cfg, deps(t, h))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	addr := <-h.addr
	ops := "http://" + logAttr(t, logs.String(), rxd.MsgServing, "metrics")
	rulesVersion := func() string {
		text := string(get(t, ops+"/metrics", 200))
		_, after, ok := strings.Cut(text, "\nnuskha_rules_info{")
		if !ok {
			t.Fatalf("no nuskha_rules_info:\n%s", text)
		}
		_, v, _ := strings.Cut(after, `version="`)
		v, _, _ = strings.Cut(v, `"`)
		return v
	}
	serial := func() string {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	if v := rulesVersion(); v != "v1" {
		t.Fatalf("rule set %q in force, want v1", v)
	}
	get(t, ops+"/readyz", 200) // SQLite: its write lock taken and released
	before := serial()

	setVersion("v2")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert := p.Issue(t, "service-tls-server", testpki.Subject(pki.RoleService, "rxd", time.Now()), key)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	if err := os.WriteFile(cfg.TLSCert, append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Intermediate.Raw})...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.TLSKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := svc.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := rulesVersion(); v != "v2" {
		t.Fatalf("after Reload, rule set %q in force, want v2", v)
	}
	if after := serial(); after == before || after != cert.SerialNumber.String() {
		t.Fatalf("after Reload the server certificate is serial %s (before %s), want %s", after, before, cert.SerialNumber)
	}

	if err := os.WriteFile(cfg.RulesFile, []byte("version: broken\nrules: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := svc.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "the running set stays") {
		t.Fatalf("a broken rule set file: %v", err)
	}
	if v := rulesVersion(); v != "v2" {
		t.Fatalf("after a broken file, rule set %q in force, want v2", v)
	}
}
