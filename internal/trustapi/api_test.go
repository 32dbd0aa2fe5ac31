package trustapi_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/ca"
	"github.com/nuskha/nuskha/internal/pki/ceremony"
	"github.com/nuskha/nuskha/internal/pki/responder"
	"github.com/nuskha/nuskha/internal/problem"
	"github.com/nuskha/nuskha/internal/publish"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/truststore"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
	"github.com/nuskha/nuskha/internal/trustapi"
)

type env struct {
	t      *testing.T
	tally  *audit.Tally
	db     *truststore.Store
	svc    *enrol.Service
	pki    *testpki.PKI
	pub    *publish.Publisher
	rp     *httptest.Server // relying-party HTTP: CRL and OCSP
	admin  *httptest.Server
	public *httptest.Server
	alice  *http.Client
	bob    *http.Client
	roots  *x509.CertPool
}

var ctx = context.Background()

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvLogged(t, io.Discard)
}

// newEnvLogged is newEnv with the API's log (JSON) written to logs.
func newEnvLogged(t *testing.T, logs io.Writer) *env {
	t.Helper()
	now := time.Now
	interKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p := testpki.New(t, interKey, now)
	db, err := truststore.Open(ctx, sqlstore.SQLite, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log := slog.New(slog.NewJSONHandler(logs, nil))
	rec := audit.NewLog(db, log, now)
	enrolCfg := enrol.Config{Notify: enrol.NoNotify{}, Store: db, Issuer: p.CA, Profiles: p.Profiles, Arc: p.Arc, URLs: p.URLs, Audit: rec, Log: log, Now: now}
	svc, err := enrol.New(enrolCfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, db: db, svc: svc, pki: p, roots: x509.NewCertPool()}
	e.roots.AddCert(p.Root)
	serverCert := e.credential(pki.RoleService, "service-tls-server", nil)
	ocspCred := e.credential(pki.RoleService, "ocsp-responder", nil)
	bundleCred := e.credential(pki.RoleService, "trust-bundle-signing", nil)
	resp, err := responder.New(responder.Config{Issuer: p.Intermediate, Now: now, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.SetCredential(responder.Credential{Cert: ocspCred.Leaf, Key: ocspCred.PrivateKey.(crypto.Signer)}); err != nil {
		t.Fatal(err)
	}
	e.pub, err = publish.New(publish.Config{Store: db, Roots: []*x509.Certificate{p.Root}, Issuer: p.CA,
		Responder: resp, BundleSigner: publish.Signer{Key: bundleCred.PrivateKey.(crypto.Signer), Chain: []*x509.Certificate{bundleCred.Leaf, p.Intermediate}},
		Audit: rec, Log: log, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	enrolCfg.Notify = publish.Issued{Responder: resp}
	if e.svc, err = enrol.New(enrolCfg); err != nil {
		t.Fatal(err)
	}
	e.tally = audit.NewTally(rec, log, now, time.Minute)
	rev, err := revoke.New(revoke.Config{Store: db, Audit: rec, Refusals: e.tally, Publisher: e.pub, Log: log, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.NewService(registry.Config{Store: db, Quorum: rev, Audit: rec, Log: log, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	api, err := trustapi.New(trustapi.Config{Store: db, Registry: reg, Enrol: e.svc, Audit: rec, Refusals: e.tally, Roots: []*x509.Certificate{p.Root},
		Intermediates: []*x509.Certificate{p.Intermediate}, Arc: p.Arc, Log: log, Now: now,
		Revoke: rev, Status: e.pub, OCSP: resp.Handler("/ocsp"), CRLPath: "/crl/issuing-ca-1.crl", OCSPPath: "/ocsp", ARLPath: "/crl/root-ca.crl"})
	if err != nil {
		t.Fatal(err)
	}
	e.rp = httptest.NewServer(api.RelyingPartyHandler())
	t.Cleanup(e.rp.Close)
	e.admin = httptest.NewUnstartedServer(api.AdminHandler())
	e.admin.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: e.roots}
	e.admin.StartTLS()
	t.Cleanup(e.admin.Close)
	e.public = httptest.NewUnstartedServer(api.PublicHandler())
	e.public.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}}
	e.public.StartTLS()
	t.Cleanup(e.public.Close)
	e.alice = e.client(e.credential(pki.RoleOfficer, "officer", nil))
	e.bob = e.client(e.credential(pki.RoleOfficer, "officer", nil))
	return e
}

// credential registers a subject of kind, issues it a certificate of the
// profile (as init does) and returns it as a TLS credential.
func (e *env) credential(kind registry.Kind, profileName string, mod func(*registry.Subject)) tls.Certificate {
	e.t.Helper()
	sub := testpki.Subject(kind, "sub_"+randID(), time.Now())
	if kind == pki.RoleService {
		sub.DNSNames = []string{"127.0.0.1"}
	}
	if err := e.db.CreateSubject(ctx, sub, "test"); err != nil {
		e.t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rec, err := e.svc.Bootstrap(ctx, enrol.Ceremony, sub, profileName, testpki.CSR(e.t, key))
	if err != nil {
		e.t.Fatal(err)
	}
	if mod != nil {
		mod(sub)
		sub.Version++
		if err := e.db.UpdateSubject(ctx, sub, "test"); err != nil {
			e.t.Fatal(err)
		}
	}
	leaf, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		e.t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{rec.DER, e.pki.Intermediate.Raw}, PrivateKey: key, Leaf: leaf}
}

func randID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (e *env) client(cert tls.Certificate) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.roots, Certificates: []tls.Certificate{cert}}}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type response struct {
	status  int
	ctype   string
	body    []byte
	problem problem.Problem
}

func (e *env) do(c *http.Client, method, url, contentType string, body []byte) response {
	e.t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type"), body: b}
	if strings.HasPrefix(r.ctype, problem.ContentType) {
		_ = json.Unmarshal(b, &r.problem)
	}
	return r
}

func subjectBody(nid, council string) []byte {
	b, _ := json.Marshal(map[string]any{
		"kind": "practitioner", "name": "Dr Test", "national_id": nid, "council_number": council,
		"profession": "dentist", "specialty": "orthodontics", "licence_valid_from": "2025-01-01", "licence_valid_until": "2030-01-01",
	})
	return b
}

func (e *env) counts() (int, int, int) {
	subs, _ := e.db.ListSubjects(ctx, store.SubjectFilter{Limit: 1000})
	ens, _ := e.db.ListEnrolments(ctx, store.EnrolmentFilter{Limit: 1000})
	certs, _ := e.db.ListCertificates(ctx, store.CertificateFilter{Limit: 1000})
	return len(subs), len(ens), len(certs)
}

func TestRefusalsAreProblemsAndChangeNothing(t *testing.T) {
	e := newEnv(t)
	nid := testpki.NationalID()
	created := e.do(e.alice, "POST", e.admin.URL+"/admin/v1/subjects", "application/json", subjectBody(nid, "DC-1"))
	if created.status != http.StatusCreated {
		t.Fatalf("create: %d %s", created.status, created.body)
	}
	var sub registry.Subject
	_ = json.Unmarshal(created.body, &sub)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: testpki.CSR(t, key).Raw}))
	enrolBody := func(subject, profile, csr string) []byte {
		b, _ := json.Marshal(map[string]string{"subject_id": subject, "profile": profile, "csr": csr})
		return b
	}
	admin := e.admin.URL + "/admin/v1"
	big := bytes.Repeat([]byte(" "), problem.MaxBody+10)
	stale, _ := json.Marshal(map[string]any{"kind": "practitioner", "name": "Dr Test", "national_id": nid, "council_number": "DC-1",
		"profession": "dentist", "specialty": "orthodontics", "licence_valid_from": "2025-01-01", "licence_valid_until": "2030-01-01",
		"licence_status": "suspended", "version": 7})
	kindChange := bytes.Replace(stale, []byte(`"version":7`), []byte(`"version":1`), 1)
	kindChange = bytes.Replace(kindChange, []byte(`"kind":"practitioner"`), []byte(`"kind":"pharmacy"`), 1)

	for _, tc := range []struct {
		name, method, url, ctype string
		body                     []byte
		status                   int
		code, field              string
	}{
		{"malformed JSON", "POST", admin + "/subjects", "application/json", []byte(`{"kind":`), 400, "malformed-request", ""},
		{"unknown field", "POST", admin + "/subjects", "application/json", []byte(`{"kind":"practitioner","colour":"red"}`), 400, "malformed-request", "colour"},
		{"wrong JSON type", "POST", admin + "/subjects", "application/json", []byte(`{"kind":7}`), 400, "malformed-request", "kind"},
		{"trailing data", "POST", admin + "/subjects", "application/json", append(subjectBody(testpki.NationalID(), "DC-9"), []byte(`{}`)...), 400, "malformed-request", ""},
		{"body too large", "POST", admin + "/subjects", "application/json", big, 413, "request-too-large", ""},
		{"not JSON content type", "POST", admin + "/subjects", "text/plain", subjectBody(testpki.NationalID(), "DC-8"), 400, "malformed-request", ""},
		{"bad national id check digit", "POST", admin + "/subjects", "application/json", subjectBody("0499370898", "DC-7"), 422, "invalid-national-id", "national_id"},
		{"duplicate council number", "POST", admin + "/subjects", "application/json", subjectBody(testpki.NationalID(), "DC-1"), 409, "subject-exists", "council_number"},
		{"duplicate national id", "POST", admin + "/subjects", "application/json", subjectBody(nid, "DC-2"), 409, "subject-exists", "national_id"},
		{"bad licence date", "POST", admin + "/subjects", "application/json", bytes.Replace(subjectBody(testpki.NationalID(), "DC-3"), []byte("2030-01-01"), []byte("1409/01/32"), 1), 422, "invalid-field", "licence_valid_until"},
		{"update from a stale version", "PUT", admin + "/subjects/" + sub.ID, "application/json", stale, 409, "conflict", ""},
		{"update changing the kind", "PUT", admin + "/subjects/" + sub.ID, "application/json", kindChange, 422, "invalid-field", "kind"},
		{"unknown subject", "GET", admin + "/subjects/sub_nope", "", nil, 404, "not-found", ""},
		{"enrol: unknown profile", "POST", admin + "/enrolments", "application/json", enrolBody(sub.ID, "surgeon-signing", csr), 422, "unknown-profile", "profile"},
		{"enrol: unknown subject", "POST", admin + "/enrolments", "application/json", enrolBody("sub_nope", "practitioner-signing", csr), 404, "not-found", "subject_id"},
		{"enrol: garbage CSR", "POST", admin + "/enrolments", "application/json", enrolBody(sub.ID, "practitioner-signing", "not a csr"), 400, "bad-csr", "csr"},
		{"enrol: profile for another kind", "POST", admin + "/enrolments", "application/json", enrolBody(sub.ID, "pharmacy-signing", csr), 422, "profile-subject-mismatch", "profile"},
		{"approve unknown enrolment", "POST", admin + "/enrolments/enr_nope/approve", "application/json", []byte(`{}`), 404, "not-found", ""},
		{"reject without a reason", "POST", admin + "/enrolments/enr_nope/reject", "application/json", []byte(`{"reason":""}`), 422, "invalid-field", "reason"},
		{"bad status filter", "GET", admin + "/enrolments?status=maybe", "", nil, 422, "invalid-field", "status"},
		{"negative limit", "GET", admin + "/subjects?limit=-1", "", nil, 400, "malformed-request", "limit"},
		{"unknown path", "GET", admin + "/nothing", "", nil, 404, "not-found", ""},
		{"wrong method", "DELETE", admin + "/subjects/" + sub.ID, "", nil, 405, "method-not-allowed", ""},
		{"public: serial not hex", "GET", e.public.URL + "/v1/certificates/xyz", "", nil, 400, "malformed-request", "serial"},
		{"public: unknown serial", "GET", e.public.URL + "/v1/certificates/0badc0de", "", nil, 404, "not-found", ""},
		{"public: unknown enrolment", "GET", e.public.URL + "/v1/enrolments/enr_nope/certificate", "", nil, 404, "not-found", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s0, en0, c0 := e.counts()
			r := e.do(e.alice, tc.method, tc.url, tc.ctype, tc.body)
			if r.status != tc.status || string(r.problem.Code) != tc.code || r.problem.Field != tc.field {
				t.Fatalf("got %d %s (field %q): %s\nwant %d %s (field %q)", r.status, r.problem.Code, r.problem.Field, r.body, tc.status, tc.code, tc.field)
			}
			if !strings.HasPrefix(r.ctype, "application/problem+json") || r.problem.Type != problem.TypePrefix+tc.code || r.problem.Status != tc.status {
				t.Fatalf("not an RFC 9457 document: %s %s", r.ctype, r.body)
			}
			if s1, en1, c1 := e.counts(); s1 != s0 || en1 != en0 || c1 != c0 {
				t.Fatalf("a refused request changed the store: subjects %d->%d, enrolments %d->%d, certificates %d->%d", s0, s1, en0, en1, c0, c1)
			}
		})
	}
	got, _ := e.db.GetSubject(ctx, sub.ID)
	if got.Version != 1 || got.LicenceStatus != registry.Active {
		t.Fatalf("refused updates changed the subject: %+v", got)
	}
}

func TestOfficerAuthentication(t *testing.T) {
	e := newEnv(t)
	url := e.admin.URL + "/admin/v1/whoami"
	if r := e.do(e.alice, "GET", url, "", nil); r.status != 200 {
		t.Fatalf("officer refused: %d %s", r.status, r.body)
	}
	t.Run("vendor TLS client certificate", func(t *testing.T) {
		vendor := e.client(e.credential(pki.RoleVendor, "service-tls-client", nil))
		r := e.do(vendor, "GET", url, "", nil)
		if r.status != 403 || r.problem.Code != "not-an-officer" {
			t.Fatalf("got %d %s", r.status, r.body)
		}
	})
	t.Run("suspended officer", func(t *testing.T) {
		suspended := e.client(e.credential(pki.RoleOfficer, "officer", func(s *registry.Subject) { s.LicenceStatus = registry.Suspended }))
		r := e.do(suspended, "GET", url, "", nil)
		if r.status != 403 || r.problem.Code != "not-an-officer" {
			t.Fatalf("got %d %s", r.status, r.body)
		}
	})
	t.Run("revoked officer certificate", func(t *testing.T) {
		cred := e.credential(pki.RoleOfficer, "officer", nil)
		carol := e.client(cred)
		if r := e.do(carol, "GET", url, "", nil); r.status != 200 {
			t.Fatalf("before revocation: %d %s", r.status, r.body)
		}
		e.revokeOfficer(pki.SerialHex(cred.Leaf.SerialNumber))
		r := e.do(e.client(cred), "GET", url, "", nil)
		if r.status != 403 || r.problem.Code != "not-an-officer" {
			t.Fatalf("revoked officer: %d %s", r.status, r.body)
		}
	})
	t.Run("certificate from a foreign CA", func(t *testing.T) {
		foreign := testpki.New(t, nil, time.Now)
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		sub := testpki.Subject(pki.RoleOfficer, "sub_foreign", time.Now())
		data, _ := enrol.CertificateData(sub, foreign.Arc, foreign.URLs)
		prof, _ := foreign.Profiles.Get("officer")
		serial, _ := ceremony.Serial()
		cert, err := foreign.CA.Issue(ctx, ca.Request{CSR: testpki.CSR(t, key), Template: prof.Template, Data: data.TemplateData(),
			Serial: serial, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		c := e.client(tls.Certificate{Certificate: [][]byte{cert.Raw, foreign.Intermediate.Raw}, PrivateKey: key})
		if _, err := c.Get(url); err == nil {
			t.Fatal("a certificate from another CA was accepted")
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.roots}}}
		if _, err := c.Get(url); err == nil {
			t.Fatal("a connection without a client certificate was accepted")
		}
	})
}

func TestApprovalOverTheAPI(t *testing.T) {
	e := newEnv(t)
	created := e.do(e.alice, "POST", e.admin.URL+"/admin/v1/subjects", "application/json", subjectBody(testpki.NationalID(), "DC-5"))
	var sub registry.Subject
	_ = json.Unmarshal(created.body, &sub)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	body, _ := json.Marshal(map[string]string{"subject_id": sub.ID, "profile": "practitioner-signing",
		"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: testpki.CSR(t, key).Raw}))})
	r := e.do(e.alice, "POST", e.admin.URL+"/admin/v1/enrolments", "application/json", body)
	if r.status != 201 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var en enrol.Request
	_ = json.Unmarshal(r.body, &en)
	// Undecided: no decision, and no zero time standing in for one.
	if bytes.Contains(r.body, []byte(`"decision"`)) || bytes.Contains(r.body, []byte("0001-01-01")) {
		t.Fatalf("pending enrolment: %s", r.body)
	}
	self := e.do(e.alice, "POST", e.admin.URL+"/admin/v1/enrolments/"+en.ID+"/approve", "application/json", []byte(`{}`))
	if self.status != 403 || self.problem.Code != "dual-control-violation" {
		t.Fatalf("self-approval: %d %s", self.status, self.body)
	}
	ok := e.do(e.bob, "POST", e.admin.URL+"/admin/v1/enrolments/"+en.ID+"/approve", "application/json", []byte(`{}`))
	if ok.status != 201 {
		t.Fatalf("approval: %d %s", ok.status, ok.body)
	}
	var cert struct {
		Serial   string `json:"serial"`
		ChainPEM string `json:"chain_pem"`
	}
	if err := json.Unmarshal(ok.body, &cert); err != nil {
		t.Fatal(err)
	}
	pub := e.do(&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.roots}}}, "GET", e.public.URL+"/v1/certificates/"+cert.Serial, "", nil)
	if pub.status != 200 || !strings.Contains(string(pub.body), cert.Serial) {
		t.Fatalf("public fetch: %d %s", pub.status, pub.body)
	}
	if strings.Count(cert.ChainPEM, "BEGIN CERTIFICATE") != 2 {
		t.Fatal("chain_pem is not leaf + intermediate")
	}
}

// revokeOfficer revokes an officer's certificate as two officers must:
// alice requests, bob approves.
func (e *env) revokeOfficer(serial string) {
	e.t.Helper()
	body, _ := json.Marshal(map[string]string{"serial": serial, "action": "revoke", "reason": "affiliationChanged", "comment": "left the service"})
	r := e.do(e.alice, "POST", e.admin.URL+"/admin/v1/status-changes", "application/json", body)
	var ch revoke.Change
	if err := json.Unmarshal(r.body, &ch); r.status != 201 || err != nil || ch.Reason != "affiliationChanged" {
		e.t.Fatalf("requesting the revocation: %d %s", r.status, r.body)
	}
	if r := e.do(e.bob, "POST", e.admin.URL+"/admin/v1/status-changes/"+ch.ID+"/approve", "application/json", []byte(`{}`)); r.status != 200 {
		e.t.Fatalf("approving the revocation: %d %s", r.status, r.body)
	}
}

// TestOfficersUnderDualControl: one officer cannot revoke another's
// certificate, and no change leaves fewer than two officers who can act —
// not a revocation, not a hold, not a suspension in the registry.
func TestOfficersUnderDualControl(t *testing.T) {
	e := newEnv(t)
	carol := e.credential(pki.RoleOfficer, "officer", nil)
	serial := pki.SerialHex(carol.Leaf.SerialNumber)
	r := e.do(e.alice, "POST", e.admin.URL+"/admin/v1/certificates/"+serial+"/revoke", "application/json", []byte(`{"reason":"affiliationChanged"}`))
	if r.status != 403 || r.problem.Code != "dual-control-violation" {
		t.Fatalf("one officer revoking another: %d %s", r.status, r.body)
	}
	if r := e.do(e.client(carol), "GET", e.admin.URL+"/admin/v1/whoami", "", nil); r.status != 200 {
		t.Fatalf("carol after a refused revocation: %d %s", r.status, r.body)
	}
	for name, body := range map[string]string{
		"no reason":            `{"serial":"` + serial + `","action":"revoke","comment":"x"}`,
		"unknown reason":       `{"serial":"` + serial + `","action":"revoke","reason":"boredom","comment":"x"}`,
		"a hold with a reason": `{"serial":"` + serial + `","action":"hold","reason":"keyCompromise","comment":"x"}`,
	} {
		if r := e.do(e.alice, "POST", e.admin.URL+"/admin/v1/status-changes", "application/json", []byte(body)); r.status != 422 || r.problem.Field != "reason" {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	e.revokeOfficer(serial)
	if r := e.do(e.client(carol), "GET", e.admin.URL+"/admin/v1/whoami", "", nil); r.status != 403 || r.problem.Code != "not-an-officer" {
		t.Fatalf("carol after her revocation: %d %s", r.status, r.body)
	}

	// Alice and Bob are the last two.
	var bob struct {
		ID string `json:"officer_id"`
	}
	_ = json.Unmarshal(e.do(e.bob, "GET", e.admin.URL+"/admin/v1/whoami", "", nil).body, &bob)
	certs, _ := e.db.ListCertificates(ctx, store.CertificateFilter{SubjectID: bob.ID})
	if len(certs) != 1 {
		t.Fatalf("bob has %d certificates", len(certs))
	}
	for _, action := range []string{`"action":"revoke","reason":"affiliationChanged"`, `"action":"hold"`} {
		body := `{"serial":"` + certs[0].SerialHex() + `",` + action + `,"comment":"x"}`
		if r := e.do(e.alice, "POST", e.admin.URL+"/admin/v1/status-changes", "application/json", []byte(body)); r.status != 409 || r.problem.Code != "officer-quorum" {
			t.Errorf("%s of the last but one officer: %d %s", action, r.status, r.body)
		}
	}
	cur, _ := e.db.GetSubject(ctx, bob.ID)
	first, last := cur.LicenceDays()
	update, _ := json.Marshal(map[string]any{"kind": "officer", "name": cur.Name, "national_id": cur.NationalID, "organization": cur.Organization,
		"licence_valid_from": first.Format(time.DateOnly), "licence_valid_until": last.Format(time.DateOnly), "licence_status": "suspended", "version": cur.Version})
	if r := e.do(e.alice, "PUT", e.admin.URL+"/admin/v1/subjects/"+bob.ID, "application/json", update); r.status != 409 || r.problem.Code != "officer-quorum" {
		t.Fatalf("suspending the last but one officer: %d %s", r.status, r.body)
	}
	if r := e.do(e.bob, "GET", e.admin.URL+"/admin/v1/whoami", "", nil); r.status != 200 {
		t.Fatalf("bob after the refusals: %d %s", r.status, r.body)
	}
}

// TestDamagedCertificateSerial: an enrolment whose certificate row has a
// serial that is not one (a damaged database) is answered with an
// internal error, not a panic.
func TestDamagedCertificateSerial(t *testing.T) {
	e := newEnv(t)
	created := e.do(e.alice, "POST", e.admin.URL+"/admin/v1/subjects", "application/json", subjectBody(testpki.NationalID(), "DC-7"))
	var sub registry.Subject
	_ = json.Unmarshal(created.body, &sub)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	body, _ := json.Marshal(map[string]string{"subject_id": sub.ID, "profile": "practitioner-signing",
		"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: testpki.CSR(t, key).Raw}))})
	r := e.do(e.alice, "POST", e.admin.URL+"/admin/v1/enrolments", "application/json", body)
	var en enrol.Request
	if err := json.Unmarshal(r.body, &en); err != nil || r.status != 201 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	// Behind the store's back: a certificate of this enrolment under a
	// serial that is not hex.
	if _, err := e.db.SQL().ExecContext(ctx, e.db.Rebind(`INSERT INTO certificates (serial, subject_id, profile, enrolment_id, der, fingerprint_sha256, spki_sha256, not_before, not_after, issued_at, issued_by)
		SELECT $1, subject_id, profile, $2, der, $3, spki_sha256, not_before, not_after, issued_at, issued_by FROM certificates LIMIT 1`),
		"not-a-serial", en.ID, "damaged"); err != nil {
		t.Fatal(err)
	}
	got := e.do(&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.roots}}}, "GET", e.public.URL+"/v1/enrolments/"+en.ID+"/certificate", "", nil)
	if got.status != 500 || got.problem.Code != "internal" {
		t.Fatalf("%d %s", got.status, got.body)
	}
}
