package rxapi_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/adjudicate"
	"github.com/nuskha/nuskha/internal/catalogue"
	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/httpedge"
	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/persian"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/crl"
	"github.com/nuskha/nuskha/internal/pki/revocation"
	"github.com/nuskha/nuskha/internal/problem"
	"github.com/nuskha/nuskha/internal/rules"
	"github.com/nuskha/nuskha/internal/rxapi"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/tlogstore"
	"github.com/nuskha/nuskha/internal/testutil/logbuf"
	"github.com/nuskha/nuskha/internal/testutil/rxdtest"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

type fixture struct {
	srv     *httptest.Server
	pki     *testpki.PKI
	now     time.Time
	clock   *clock // the API's; it starts at now
	clients map[string]*http.Client
	log     *tlogstore.Store // the audit log
}

// clock is the API's time, moved by a test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newKey() crypto.Signer {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return k
}

// setup serves the API over real TLS with client certificates from a test
// hierarchy, a SQLite registry and a revocation checker fed a CRL signed
// by the issuing key.
func setup(t *testing.T, extra ...func(*rxapi.API)) *fixture {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	interKey := newKey()
	p := testpki.New(t, interKey, func() time.Time { return now })
	f := &fixture{pki: p, now: now, clock: &clock{t: now}, clients: map[string]*http.Client{}}

	data := rxdtest.Open(t, sqlstore.SQLite, 40)

	issue := func(profile string, kind pki.Role, id string) tls.Certificate {
		k := newKey()
		c := p.Issue(t, profile, testpki.Subject(kind, id, now), k)
		return tls.Certificate{Certificate: [][]byte{c.Raw, p.Intermediate.Raw}, PrivateKey: k, Leaf: c}
	}
	serverCert := issue("service-tls-server", pki.RoleService, "rxd")
	vendor := issue("service-tls-client", pki.RoleVendor, "vendor-1")
	revoked := issue("service-tls-client", pki.RoleVendor, "vendor-2")
	vendorB := issue("service-tls-client", pki.RoleVendor, "vendor-3")
	service := issue("service-tls-client", pki.RoleService, "insurer-claims")
	officer := issue("officer", pki.RoleOfficer, "officer-1")

	status, err := revocation.New(revocation.Config{MaxAge: 24 * time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	der, err := crl.Sign(crl.Request{Number: big.NewInt(1), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour),
		Entries: []crl.Entry{{Serial: revoked.Leaf.SerialNumber, RevokedAt: now.Add(-time.Minute)}}}, p.Intermediate, interKey, p.Linter, nil)
	if err != nil {
		t.Fatal(err)
	}
	list, _ := x509.ParseRevocationList(der)
	if err := status.AddCRL(list, p.Intermediate); err != nil {
		t.Fatal(err)
	}
	if err := status.AddCRL(p.ARL(t, now.Add(-time.Minute)), p.Root); err != nil {
		t.Fatal(err)
	}

	api := &rxapi.API{
		Eligibility: data.Checker(),
		Adjudicator: data.Adjudicator(func() time.Time { return now }),
		Catalogue:   data.Catalogue,
		Rules:       data.Rules,
		DB:          data.DB,
		Budgets:     data.Budgets(t),
		Arc:         p.Arc, Status: status,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: f.clock.Now,
	}
	f.log = data.AuditLog(t)
	api.Pseudonyms, api.AuditLog, api.AuditStore = rxdtest.Pseudonyms(), f.log, f.log
	for _, e := range extra {
		e(api)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.Root)
	f.srv = httptest.NewUnstartedServer(api.Handler())
	f.srv.TLS = rxapi.ServerTLS(serverCert, roots)
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	for name, c := range map[string]tls.Certificate{"vendor": vendor, "revoked": revoked, "officer": officer, "vendor-b": vendorB, "service": service} {
		f.clients[name] = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{c}, ServerName: "localhost"}}}
	}
	f.clients["anonymous"] = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	return f
}

func (f *fixture) do(t *testing.T, who, method, path string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, body)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := f.clients[who].Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func wantProblem(t *testing.T, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	var p problem.Problem
	if resp.StatusCode != status || resp.Header.Get("Content-Type") != problem.ContentType || json.Unmarshal(body, &p) != nil || string(p.Code) != code {
		t.Fatalf("got %d %s %s, want %d problem %s", resp.StatusCode, resp.Header.Get("Content-Type"), body, status, code)
	}
}

func TestEligibilityEndpoint(t *testing.T) {
	f := setup(t)
	var r insured.Result
	resp, body := f.do(t, "service", "GET", "/v1/eligibility/"+insuredtest.NationalID(3)+"?date=1405-06-15&detail=full", nil)
	if resp.StatusCode != 200 || json.Unmarshal(body, &r) != nil || !r.Eligible || r.Date != "2026-09-06" || r.Coverage == nil || !r.Coverage.Dependant {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if strings.Contains(string(body), insuredtest.NationalID(3)) || strings.Contains(string(body), insuredtest.NationalID(0)) {
		t.Fatalf("the answer carries an unmasked national id: %s", body)
	}
	// Every day in both calendars.
	g, errG := persian.ParseDate(r.Coverage.CoverageStart)
	h, errH := persian.ParseDate(r.Coverage.CoverageStartHijri)
	if errG != nil || errH != nil || !g.Equal(h) || len(r.Coverage.CoverageStartHijri) != 10 || r.Coverage.CoverageStartHijri[0] != '1' {
		t.Fatalf("coverage_start %q, coverage_start_hijri %q: %s", r.Coverage.CoverageStart, r.Coverage.CoverageStartHijri, body)
	}
	// Persian digits and a Gregorian date mean the same.
	persianID := strings.Map(func(r rune) rune { return '۰' + (r - '0') }, insuredtest.NationalID(3))
	resp, body = f.do(t, "vendor", "GET", "/v1/eligibility/"+url.PathEscape(persianID)+"?date=2026-09-06", nil)
	r = insured.Result{}
	if resp.StatusCode != 200 || json.Unmarshal(body, &r) != nil || !r.Eligible || r.DateHijri != "1405-06-15" {
		t.Fatalf("Persian digits: %d %s", resp.StatusCode, body)
	}
	resp, body = f.do(t, "vendor", "GET", "/v1/eligibility/"+insuredtest.NationalID(99), nil)
	r = insured.Result{}
	if resp.StatusCode != 200 || json.Unmarshal(body, &r) != nil || r.Eligible || r.Reason != insured.NoRecord {
		t.Fatalf("no record: %d %s", resp.StatusCode, body)
	}
	bad := insuredtest.NationalID(3)[:9] + "x"
	resp, body = f.do(t, "vendor", "GET", "/v1/eligibility/"+bad, nil)
	wantProblem(t, resp, body, 422, "invalid-national-id")
	resp, body = f.do(t, "vendor", "GET", "/v1/eligibility/"+insuredtest.NationalID(3)+"?date=1405-13-01", nil)
	wantProblem(t, resp, body, 422, "invalid-field")
	resp, body = f.do(t, "vendor", "POST", "/v1/eligibility/"+insuredtest.NationalID(3), strings.NewReader("{}"))
	wantProblem(t, resp, body, 405, "method-not-allowed")
}

func TestCallersAreAuthenticated(t *testing.T) {
	f := setup(t)
	path := "/v1/eligibility/" + insuredtest.NationalID(0)
	resp, body := f.do(t, "officer", "GET", path, nil)
	wantProblem(t, resp, body, 403, "forbidden")
	resp, body = f.do(t, "revoked", "GET", path, nil)
	wantProblem(t, resp, body, 401, "unauthenticated")
	// Without a certificate: /healthz answers, every other route refuses
	// with a problem document, not a bare handshake failure.
	resp, body = f.do(t, "anonymous", "GET", "/healthz", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("/healthz without a certificate: %d %s", resp.StatusCode, body)
	}
	for _, r := range []struct{ method, path, body string }{
		{"GET", path, ""}, {"POST", "/v1/rules/check", checkBody("prescribe", "")}, {"GET", "/v1/rules", ""},
		{"GET", "/v1/catalogue/items?q=a", ""}, {"GET", "/v1/catalogue/items/" + catalogtest.Amoxicillin, ""},
	} {
		var b io.Reader
		if r.body != "" {
			b = strings.NewReader(r.body)
		}
		resp, body = f.do(t, "anonymous", r.method, r.path, b)
		wantProblem(t, resp, body, 401, "unauthenticated")
	}
	// A certificate the TLS layer cannot verify to our roots still fails
	// the handshake.
	other := testpki.New(t, nil, time.Now)
	k := newKey()
	stranger := other.Issue(t, "service-tls-client", testpki.Subject(pki.RoleVendor, "vendor-x", time.Now()), k)
	roots := x509.NewCertPool()
	roots.AddCert(f.pki.Root)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost",
		Certificates: []tls.Certificate{{Certificate: [][]byte{stranger.Raw, other.Intermediate.Raw}, PrivateKey: k}}}}}
	if resp, err := c.Get(f.srv.URL + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("a certificate from another CA completed the handshake")
	}
	// Fail closed: with no evidence of status, even a good vendor is refused.
	g := setup(t, func(a *rxapi.API) {
		a.Status, _ = revocation.New(revocation.Config{MaxAge: time.Hour, Now: time.Now})
	})
	resp, body = g.do(t, "vendor", "GET", path, nil)
	wantProblem(t, resp, body, 401, "unauthenticated")
	if !strings.Contains(string(body), "no fresh evidence") {
		t.Fatalf("the refusal does not say why: %s", body)
	}
}

// checkBody is a rules-check request as a vendor's software sends it.
func checkBody(scope, extra string) string {
	return `{"scope":"` + scope + `","date":"1405-06-15"` + extra + `,"prescription":{"v":1,"type":"prescription","id":"0b6f3f1e-8f0a-4c1e-9d2a-5b7c9e1f2a3b",
		"issued_at":"2026-09-06T06:00:00Z","patient":{"national_id":"` + insuredtest.NationalID(0) + `","name":"بيمار آزمايشي","birth_date":"1951-03-21","sex":"female"},
		"prescriber":{"council_number":"MC-1","profession":"physician","specialty":"general"},"practice":{"name":"درمانگاه"},
		"items":[{"kind":"drug","code":"` + catalogtest.Amoxicillin + `","quantity":20},{"kind":"drug","code":"` + catalogtest.Metformin + `","quantity":200}]}}`
}

func TestRulesCheckEndpoint(t *testing.T) {
	f := setup(t)
	resp, body := f.do(t, "vendor", "POST", "/v1/rules/check", strings.NewReader(checkBody("prescribe", "")))
	var d adjudicate.Decision
	if resp.StatusCode != 200 || json.Unmarshal(body, &d) != nil {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	// Arabic yeh in the patient's name is normalised, not refused: a
	// draft is a draft. Amoxicillin covered (and its patient share paid
	// by supplementary insurance), metformin over its maximum.
	if d.Allowed || len(d.Items) != 2 || !d.Items[0].Allowed || d.Items[0].InsurerPays != 448000 || d.Items[0].PatientPays != 0 ||
		d.Items[1].Allowed || d.Items[1].MaxCoveredQuantity != 180 || d.Items[1].Violations[0].RuleID != "quantity-limit" || d.Items[1].Violations[0].MessageFA == "" {
		t.Fatalf("decision %s", body)
	}
	if strings.Contains(string(body), insuredtest.NationalID(0)) {
		t.Fatalf("the decision carries the national id unmasked: %s", body)
	}
	for _, c := range []struct {
		name, body, code string
		status           int
	}{
		{"unknown scope", checkBody("dispensary", ""), "unknown-scope", 422},
		{"unknown member", checkBody("prescribe", `,"discount":true`), "malformed-request", 400},
		{"repeated member", checkBody("prescribe", `,"scope":"paper"`), "malformed-request", 400},
		{"case-folded member", checkBody("prescribe", `,"Date":"1405-06-01"`), "malformed-request", 400},
		{"not JSON", "scope=prescribe", "malformed-request", 400},
		{"null member", checkBody("prescribe", `,"dispensed":null`), "malformed-request", 400},
		{"bad national id", strings.Replace(checkBody("prescribe", ""), insuredtest.NationalID(0), "0000000001", 1), "invalid-national-id", 422},
	} {
		resp, body := f.do(t, "vendor", "POST", "/v1/rules/check", strings.NewReader(c.body))
		t.Run(c.name, func(t *testing.T) { wantProblem(t, resp, body, c.status, c.code) })
	}
	// A vendor's mistake is shown where it is, in JSON's terms.
	for _, c := range []struct{ name, from, to, field, detail string }{
		{"quantity as a string", `"quantity":20}`, `"quantity":"20"}`, "prescription.items.0.quantity", "line 4, column 55: prescription.items.0.quantity must be a whole number"},
		{"issued_at not a time", `"issued_at":"2026-09-06T06:00:00Z"`, `"issued_at":"1405-06-15"`, "prescription.issued_at", "line 2, column 15: prescription.issued_at must be a time in RFC 3339 form (2026-09-06T10:30:00Z)"},
		{"items as an object", `"items":[`, `"items":{"0":`, "prescription.items", "line 4, column 11: prescription.items must be an array"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := f.do(t, "vendor", "POST", "/v1/rules/check", strings.NewReader(strings.Replace(checkBody("prescribe", ""), c.from, c.to, 1)))
			var p problem.Problem
			if resp.StatusCode != 400 || json.Unmarshal(body, &p) != nil || p.Code != "malformed-request" || p.Field != c.field || p.Detail != c.detail {
				t.Fatalf("got %d %s\nwant field %q, detail %q", resp.StatusCode, body, c.field, c.detail)
			}
		})
	}
	resp, body = f.do(t, "vendor", "GET", "/v1/rules", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"item-covered"`) {
		t.Fatalf("rule set: %d %s", resp.StatusCode, body)
	}
	// Expressions as the insurer's staff wrote them.
	if !strings.Contains(string(body), `h.atc == item.catalogue.atc && h.code != item.code && h.days_ago <= 30`) || strings.Contains(string(body), `\u0026`) {
		t.Fatalf("rule expressions are not sent as written: %s", body)
	}
}

func TestCatalogueEndpoints(t *testing.T) {
	f := setup(t)
	var page struct {
		Version string           `json:"catalogue_version"`
		Items   []catalogue.Item `json:"items"`
	}
	// Typed with an Arabic kaf and yeh, found in Persian spelling.
	resp, body := f.do(t, "vendor", "GET", "/v1/catalogue/items?q="+url.QueryEscape("آموكسي")+"&date=1405-06-15", nil)
	if resp.StatusCode != 200 || json.Unmarshal(body, &page) != nil || len(page.Items) != 1 || page.Items[0].Code != catalogtest.Amoxicillin {
		t.Fatalf("search: %d %s", resp.StatusCode, body)
	}
	resp, body = f.do(t, "vendor", "GET", "/v1/catalogue/items?q=mri&kind=imaging", nil)
	if resp.StatusCode != 200 || json.Unmarshal(body, &page) != nil || len(page.Items) != 1 || page.Items[0].Code != catalogtest.BrainMRI {
		t.Fatalf("search by kind: %d %s", resp.StatusCode, body)
	}
	resp, body = f.do(t, "vendor", "GET", "/v1/catalogue/items/"+catalogtest.Morphine, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"narcotic"`) {
		t.Fatalf("lookup: %d %s", resp.StatusCode, body)
	}
	resp, body = f.do(t, "vendor", "GET", "/v1/catalogue/items/999999", nil)
	wantProblem(t, resp, body, 404, "not-found")
	resp, body = f.do(t, "vendor", "GET", "/v1/catalogue/items/"+catalogtest.Morphine+"?date=2025-06-01", nil)
	wantProblem(t, resp, body, 422, "catalogue-not-in-force")
	resp, body = f.do(t, "vendor", "GET", "/v1/catalogue/items?q=x&limit=0", nil)
	wantProblem(t, resp, body, 422, "invalid-field")
}

// TestHealthAndAccessLog: /healthz says what rxd answers with; every
// request is logged by its route, never its path (which may hold a
// national id) or its query, with the caller (named even when refused)
// and the request id; a log captured over lookups, rules checks and
// refusals holds none of the national ids' digits.
func TestHealthAndAccessLog(t *testing.T) {
	var logs logbuf.Buffer
	f := setup(t, func(a *rxapi.API) { a.Log = slog.New(slog.NewJSONHandler(&logs, nil)) })
	resp, body := f.do(t, "vendor", "GET", "/healthz", nil)
	var h rxapi.Health
	if resp.StatusCode != 200 || json.Unmarshal(body, &h) != nil || h.Status != "ok" || h.RuleSet != rules.Starter().Version() || h.CatalogueVersion == "" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	id := insuredtest.NationalID(3)
	persianID := strings.Map(func(r rune) rune { return '۰' + (r - '0') }, id)
	f.do(t, "vendor", "GET", "/v1/eligibility/"+id+"?date=1405-06-15&detail=minimal", nil)
	f.do(t, "vendor", "GET", "/v1/eligibility/"+url.PathEscape(persianID), nil)
	f.do(t, "officer", "GET", "/v1/eligibility/"+id, nil)
	f.do(t, "anonymous", "GET", "/v1/eligibility/"+id, nil)
	f.do(t, "vendor", "GET", "/v1/eligibility/"+id[:9]+"x", nil)
	f.do(t, "vendor", "POST", "/v1/rules/check", strings.NewReader(checkBody("prescribe", "")))
	f.do(t, "vendor", "POST", "/v1/rules/check", strings.NewReader(checkBody("prescribe", `,"colour":"`+id+`"`)))
	f.do(t, "vendor", "DELETE", "/v1/eligibility/"+id, nil)
	out := logs.String()
	for _, nid := range []string{id, insuredtest.NationalID(0)} {
		for _, part := range []string{nid, nid[:8], nid[2:], persianID, url.PathEscape(persianID)} {
			if strings.Contains(out, part) {
				t.Fatalf("the log holds %q:\n%s", part, out)
			}
		}
	}
	for _, want := range []string{
		`"route":"GET /v1/eligibility/{nationalId}","status":200`,
		`"caller":"vendor-1","role":"vendor"`,
		`"route":"GET /v1/eligibility/{nationalId}","status":403`,
		`"caller":"officer-1","role":"officer"`,
		`"status":401`, `"caller":"anonymous"`,
		`"route":"POST /v1/rules/check","status":200`,
		`"route":"POST /v1/rules/check","status":400`,
		`"route":"(no route)","status":405`,
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("no %s in the access log:\n%s", want, out)
		}
	}
	if strings.Contains(out, "1405-06-15") || strings.Contains(out, "minimal") {
		t.Fatalf("the access log holds the query:\n%s", out)
	}
	// A lookup's audit line and its access line share the request id.
	// (An answer this small is sent only once the edge has logged it.)
	req, _ := http.NewRequest("GET", f.srv.URL+"/v1/eligibility/"+id, nil)
	req.Header.Set(problem.RequestIDHeader, "his-7781")
	r2, err := f.clients["vendor"].Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	rid := r2.Header.Get(problem.RequestIDHeader)
	if rid == "" || rid == "his-7781" || r2.Header.Get(httpedge.ClientRequestIDHeader) != "his-7781" {
		t.Fatalf("request ids answered: %q, client's %q", rid, r2.Header.Get(httpedge.ClientRequestIDHeader))
	}
	if n := strings.Count(logs.String(), `"request_id":"`+rid+`"`); n != 2 {
		t.Fatalf("%d lines with the request id, want the lookup's and the access line:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `"request_id":"`+rid+`","client_request_id":"his-7781"`) {
		t.Fatalf("the access line does not keep the client's request id:\n%s", logs.String())
	}
}

// TestIntermediateAsAnchorRefused: when the TLS pool holds the
// intermediate as well as the root (a "CA chain" file), Go builds the
// chain [leaf, intermediate] with the intermediate as the anchor; the
// caller is still refused once the root revokes the intermediate, since a
// chain must end at a root for its revocation to be checked. (rxd refuses
// such a -client-ca file at start too.)
func TestIntermediateAsAnchorRefused(t *testing.T) {
	var api *rxapi.API
	f := setup(t, func(a *rxapi.API) { api = a })
	st := api.Status.(*revocation.Checker)
	// The root revokes the intermediate.
	if err := st.AddCRL(f.pki.ARL(t, f.now, f.pki.Intermediate), f.pki.Root); err != nil {
		t.Fatal(err)
	}
	path := "/v1/eligibility/" + insuredtest.NationalID(0)
	// Control: the roots-only server refuses the vendor now.
	resp, body := f.do(t, "vendor", "GET", path, nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("client-ca = root only: %d %s", resp.StatusCode, body)
	}

	// Same API, client-ca = root + intermediate.
	k := newKey()
	sc := f.pki.Issue(t, "service-tls-server", testpki.Subject(pki.RoleService, "rxd2", f.now), k)
	pool := x509.NewCertPool()
	pool.AddCert(f.pki.Root)
	pool.AddCert(f.pki.Intermediate)
	srv := httptest.NewUnstartedServer(api.Handler())
	srv.TLS = rxapi.ServerTLS(tls.Certificate{Certificate: [][]byte{sc.Raw, f.pki.Intermediate.Raw}, PrivateKey: k}, pool)
	srv.StartTLS()
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	r2, err := f.clients["vendor"].Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Body.Close()
	if r2.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a vendor under a revoked intermediate is served (%d) when the intermediate is a trust anchor", r2.StatusCode)
	}
}

// panicking is an Eligibility with a bug.
type panicking struct{}

func (panicking) Check(context.Context, string, time.Time) (insured.Result, error) {
	var none []insured.Result
	return none[len(none)], nil
}

// TestPanicIsAProblem: a bug behind a route answers 500 with a problem
// document carrying the request id, logs its stack by route, and rxd goes
// on serving.
func TestPanicIsAProblem(t *testing.T) {
	var logs logbuf.Buffer
	f := setup(t, func(a *rxapi.API) {
		a.Log = slog.New(slog.NewJSONHandler(&logs, nil))
		a.Eligibility = panicking{}
	})
	id := insuredtest.NationalID(3)
	resp, body := f.do(t, "vendor", "GET", "/v1/eligibility/"+id, nil)
	wantProblem(t, resp, body, 500, "internal")
	var p problem.Problem
	_ = json.Unmarshal(body, &p)
	if p.RequestID == "" || p.RequestID != resp.Header.Get(problem.RequestIDHeader) || strings.Contains(string(body), "index out of range") {
		t.Fatalf("problem %s, header %q", body, resp.Header.Get(problem.RequestIDHeader))
	}
	out := logs.String()
	if !strings.Contains(out, `"msg":"panic serving a request"`) || !strings.Contains(out, `"route":"GET /v1/eligibility/{nationalId}","request_id":"`+p.RequestID+`"`) ||
		!strings.Contains(out, "index out of range") || !strings.Contains(out, "api_test.go") || strings.Contains(out, id) || strings.Contains(out, id[:8]) {
		t.Fatalf("panic log:\n%s", out)
	}
	if resp, body := f.do(t, "vendor", "GET", "/v1/rules", nil); resp.StatusCode != 200 {
		t.Fatalf("after a panic: %d %s", resp.StatusCode, body)
	}
}

// TestURLRefusalNamesCaller: a path or query the edge refuses before any
// route's handler runs (httpedge's checkURL: a NUL, bytes that are not
// UTF-8, a parameter given twice) is logged with the caller its
// certificate names, as every other refusal is: a hostile-input sweep is
// attributed to the vendor that sent it, not to "anonymous".
func TestURLRefusalNamesCaller(t *testing.T) {
	var logs logbuf.Buffer
	f := setup(t, func(a *rxapi.API) { a.Log = slog.New(slog.NewJSONHandler(&logs, nil)) })
	for _, path := range []string{"/v1/eligibility/%00", "/v1/catalogue/items/%FF", "/v1/catalogue/items?q=a&q=b"} {
		resp, body := f.do(t, "vendor", "GET", path, nil)
		wantProblem(t, resp, body, 400, "malformed-request")
	}
	refusals := 0
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var l struct {
			Msg    string `json:"msg"`
			Status int    `json:"status"`
			Caller string `json:"caller"`
			Role   string `json:"role"`
		}
		if json.Unmarshal([]byte(line), &l) != nil || l.Msg != "request" || l.Status != 400 {
			continue
		}
		refusals++
		if l.Caller != "vendor-1" || l.Role != "vendor" {
			t.Errorf("a refused path or query is logged with caller %q, role %q: %s", l.Caller, l.Role, line)
		}
	}
	if refusals != 3 {
		t.Fatalf("%d access lines for the 3 refusals:\n%s", refusals, logs.String())
	}
}
