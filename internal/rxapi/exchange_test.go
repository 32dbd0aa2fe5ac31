package rxapi_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/nuskha/nuskha/api"
	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/crl"
	"github.com/nuskha/nuskha/internal/pki/revocation"
	"github.com/nuskha/nuskha/internal/problem"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/rx/trackcode"
	"github.com/nuskha/nuskha/internal/rxapi"
	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/tlogstore"
	"github.com/nuskha/nuskha/internal/testutil/rxdtest"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
	"github.com/nuskha/nuskha/internal/tlog"
)

// contract is api/openapi.yaml, routed.
type contract struct {
	doc    *openapi3.T
	router routers.Router
}

var registerJOSE sync.Once

func loadContract(t *testing.T, serverURL string) *contract {
	t.Helper()
	// A compact JWS body is a string as it is.
	registerJOSE.Do(func() {
		openapi3filter.RegisterBodyDecoder("application/jose", func(r io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
			b, err := io.ReadAll(r)
			return string(b), err
		})
	})
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if serverURL != "" {
		doc.Servers = openapi3.Servers{{URL: serverURL}}
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &contract{doc: doc, router: router}
}

// card is a key on a card with its certificate chain (leaf, intermediate).
type card struct {
	key   crypto.Signer
	chain []*x509.Certificate
	sub   *registry.Subject
}

// xfixture is rxd's API with the exchange on SQLite (the generated
// registry, the sample catalogue, the starter rules), served over real
// TLS with client certificates from a test hierarchy and revocation
// checked against CRLs it signs; every request and answer is checked
// against api/openapi.yaml.
type xfixture struct {
	srv      *httptest.Server
	pki      *testpki.PKI
	clock    *clock
	verifier *rx.Verifier
	checker  *revocation.Checker
	contract *contract
	clients  map[string]*http.Client

	doctor, pharmacy, rival card
	log                     *tlogstore.Store
}

// xstart is 09:00 UTC on the day the generated registry's persons are
// covered.
var xstart = insuredtest.Day.Add(9 * time.Hour)

func xsetup(t *testing.T, extra ...func(*rxapi.API)) *xfixture {
	t.Helper()
	return xsetupOn(t, sqlstore.SQLite, extra...)
}

// xsetupOn is xsetup on the driver's database (sqlstore.SQLite, or
// sqlstore.Postgres through pgtest).
func xsetupOn(t *testing.T, driver string, extra ...func(*rxapi.API)) *xfixture {
	t.Helper()
	interKey := newKey()
	f := &xfixture{clock: &clock{t: xstart}, clients: map[string]*http.Client{}}
	f.pki = testpki.New(t, interKey, func() time.Time { return xstart.Add(-48 * time.Hour) })
	issue := func(profile string, sub *registry.Subject) card {
		k := newKey()
		leaf := f.pki.IssueWithValidity(t, profile, sub, k, xstart.Add(-24*time.Hour), xstart.Add(365*24*time.Hour))
		return card{k, []*x509.Certificate{leaf, f.pki.Intermediate}, sub}
	}
	f.doctor = issue("practitioner-signing", testpki.Subject(pki.RolePractitioner, "sub_doctor", xstart))
	f.pharmacy = issue("pharmacy-signing", testpki.Subject(pki.RolePharmacy, "sub_ph", xstart))
	rival := testpki.Subject(pki.RolePharmacy, "sub_ph2", xstart)
	rival.LicenceNumber = "PH-9001"
	f.rival = issue("pharmacy-signing", rival)
	exch := issue("exchange-receipt-signing", testpki.Subject(pki.RoleService, "sub_rxd", xstart))
	server := issue("service-tls-server", testpki.Subject(pki.RoleService, "rxd", xstart))

	checker, err := revocation.New(revocation.Config{MaxAge: 24 * time.Hour, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	der, err := crl.Sign(crl.Request{Number: big.NewInt(1), ThisUpdate: xstart, NextUpdate: xstart.Add(24 * time.Hour)}, f.pki.Intermediate, interKey, f.pki.Linter, nil)
	if err != nil {
		t.Fatal(err)
	}
	list, _ := x509.ParseRevocationList(der)
	if err := checker.AddCRL(list, f.pki.Intermediate); err != nil {
		t.Fatal(err)
	}
	if err := checker.AddCRL(f.pki.ARL(t, xstart), f.pki.Root); err != nil {
		t.Fatal(err)
	}
	f.checker = checker
	roots := []*x509.Certificate{f.pki.Root}
	if f.verifier, err = rx.NewVerifier(rx.Config{Roots: roots, Arc: f.pki.Arc, Status: checker, Now: f.clock.Now}); err != nil {
		t.Fatal(err)
	}
	re, err := rx.NewVerifier(rx.Config{Roots: roots, Arc: f.pki.Arc, Status: exchange.AtAcceptance(checker), Now: f.clock.Now, MaxAge: 2 * 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	data := rxdtest.Open(t, driver, 40)
	f.log = data.AuditLog(t)
	store, err := rxstore.NewExchange(context.Background(), data.DB, f.log)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := exchange.New(exchange.Config{Store: store, Verifier: f.verifier, Reverifier: re, Status: checker,
		Adjudicator: data.Adjudicator(f.clock.Now), Key: exchange.SigningKey{Signer: exch.key, Chain: exch.chain}, Arc: f.pki.Arc, Now: f.clock.Now,
		Pseudonyms: rxdtest.Pseudonyms(), AuditLog: f.log})
	if err != nil {
		t.Fatal(err)
	}
	a := &rxapi.API{
		Eligibility: data.Checker(), Adjudicator: data.Adjudicator(f.clock.Now), Catalogue: data.Catalogue, Rules: data.Rules, DB: data.DB,
		Arc: f.pki.Arc, Status: checker, Log: slog.New(slog.DiscardHandler), Now: f.clock.Now,
		Exchange: svc, Idempotency: store, Pseudonyms: rxdtest.Pseudonyms(), AuditLog: f.log, AuditStore: f.log, Budgets: data.Budgets(t),
	}
	for _, e := range extra {
		e(a)
	}
	pool := x509.NewCertPool()
	pool.AddCert(f.pki.Root)
	f.srv = httptest.NewUnstartedServer(a.Handler())
	f.srv.TLS = rxapi.ServerTLS(tls.Certificate{Certificate: [][]byte{server.chain[0].Raw, f.pki.Intermediate.Raw}, PrivateKey: server.key, Leaf: server.chain[0]}, pool)
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	f.contract = loadContract(t, f.srv.URL)
	for name, role := range map[string]pki.Role{"vendor": pki.RoleVendor, "vendor2": pki.RoleVendor, "service": pki.RoleService} {
		c := issue("service-tls-client", testpki.Subject(role, "sub_"+name, xstart))
		f.clients[name] = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost",
			Certificates: []tls.Certificate{{Certificate: [][]byte{c.chain[0].Raw, f.pki.Intermediate.Raw}, PrivateKey: c.key, Leaf: c.chain[0]}}}}}
	}
	return f
}

// thumbprint is the x5t#S256 of a client's TLS certificate.
func (f *xfixture) thumbprint(client string) string {
	leaf := f.clients[client].Transport.(*http.Transport).TLSClientConfig.Certificates[0].Leaf
	return rx.Thumbprint(leaf)
}

// req is one request to the exchange.
type req struct {
	client, method, path string
	body                 string
	contentType          string // application/jose when body is a JWS, else application/json
	token, secret, key   string // Authorization: Bearer, Claim-Secret, Idempotency-Key
	// invalid marks a request that breaks the contract on purpose: only
	// its answer is checked against it.
	invalid bool
}

// answer is a response, its body read.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) problem(t *testing.T) map[string]any {
	t.Helper()
	var p map[string]any
	if a.header.Get("Content-Type") != problem.ContentType || json.Unmarshal(a.body, &p) != nil {
		t.Fatalf("not a problem: %d %s %s", a.status, a.header.Get("Content-Type"), a.body)
	}
	return p
}

// do sends r, checking the request (unless it is invalid on purpose) and
// the answer against the contract.
func (f *xfixture) do(t *testing.T, r req) answer {
	t.Helper()
	hr, err := http.NewRequest(r.method, f.srv.URL+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if r.body != "" {
		ct := r.contentType
		if ct == "" {
			ct = "application/jose"
			if strings.HasPrefix(r.body, "{") {
				ct = "application/json"
			}
		}
		hr.Header.Set("Content-Type", ct)
	}
	for h, v := range map[string]string{"Authorization": bearerOf(r.token), "Claim-Secret": r.secret, "Idempotency-Key": r.key} {
		if v != "" {
			hr.Header.Set(h, v)
		}
	}
	route, params, err := f.contract.router.FindRoute(hr)
	if err != nil {
		t.Fatalf("%s %s is not in api/openapi.yaml: %v", r.method, r.path, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: hr, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	if !r.invalid {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Fatalf("%s %s: the request breaks the contract: %v", r.method, r.path, err)
		}
		hr.Body = io.NopCloser(strings.NewReader(r.body))
	}
	resp, err := f.clients[r.client].Do(hr)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Fatalf("%s %s: the answer %d breaks the contract: %v\n%s", r.method, r.path, resp.StatusCode, err, body)
	}
	// Every status but the default's (refusals) is one the contract lists.
	if resp.StatusCode < 400 && route.Operation.Responses.Status(resp.StatusCode) == nil {
		t.Fatalf("%s %s answered %d, which the contract does not list", r.method, r.path, resp.StatusCode)
	}
	return answer{resp.StatusCode, resp.Header, body}
}

func bearerOf(token string) string {
	if token == "" {
		return ""
	}
	return "Bearer " + token
}

// want checks an answer's status, and decodes a successful one into v.
func want(t *testing.T, a answer, status int, v any) {
	t.Helper()
	if a.status != status {
		t.Fatalf("got %d %s, want %d", a.status, a.body, status)
	}
	if v != nil {
		if err := json.Unmarshal(a.body, v); err != nil {
			t.Fatal(err)
		}
	}
}

// refused checks that an answer is a problem of status and code, and
// returns it.
func refused(t *testing.T, a answer, status int, code string) map[string]any {
	t.Helper()
	p := a.problem(t)
	if a.status != status || p["code"] != code || p["type"] != problem.TypePrefix+code || p["status"] != float64(status) {
		t.Fatalf("got %d %s, want %d %s", a.status, a.body, status, code)
	}
	return p
}

func (f *xfixture) sign(t *testing.T, c card, doc rx.Document) string {
	t.Helper()
	tok, err := rx.Sign(doc, c.key, c.chain, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (f *xfixture) prescription(items ...rx.Item) *rx.Prescription {
	d := f.doctor.sub
	return &rx.Prescription{V: rx.Version, Type: rx.KindPrescription, ID: rx.NewID(), IssuedAt: f.clock.Now(),
		Patient:    rx.Patient{NationalID: insuredtest.NationalID(0), Name: "بیمار آزمایشی", BirthDate: "1951-03-21", Sex: "female"},
		Prescriber: rx.Prescriber{CouncilNumber: d.CouncilNumber, Profession: string(d.Profession), Specialty: d.Specialty},
		Practice:   rx.Practice{Name: "درمانگاه نمونه"}, Items: items}
}

func drug(code string, qty int) rx.Item { return rx.Item{Kind: "drug", Code: code, Quantity: qty} }

// sessionDoc is a session document of c for the client's certificate.
func (f *xfixture) sessionDoc(t *testing.T, c card, client string) string {
	return f.sign(t, c, &rx.Session{V: rx.Version, Type: rx.KindSession, ID: rx.NewID(), Aud: rx.SessionAudience, IssuedAt: f.clock.Now(), Vendor: f.thumbprint(client)})
}

func (f *xfixture) session(t *testing.T, c card, client string) string {
	t.Helper()
	var s exchange.SessionOpened
	want(t, f.do(t, req{client: client, method: "POST", path: "/v1/sessions", body: f.sessionDoc(t, c, client)}), 201, &s)
	return s.Token
}

func (f *xfixture) dispenseDoc(c card, jws, id string, items ...rx.DispensedItem) *rx.Dispense {
	return &rx.Dispense{V: rx.Version, Type: rx.KindDispense, ID: rx.NewID(), DispensedAt: f.clock.Now(),
		Prescription: rx.Reference{ID: id, JWSSHA256: rx.SHA256(jws)},
		Dispenser:    rx.Dispenser{LicenceNumber: c.sub.LicenceNumber, Role: string(c.sub.Kind)}, Items: items}
}

func findBody(code, nid string) string {
	b, _ := json.Marshal(exchange.Find{TrackingCode: code, NationalID: nid})
	return string(b)
}

// withoutRequest is a problem document without what differs between two
// requests (its request id).
func withoutRequest(t *testing.T, a answer) map[string]any {
	p := a.problem(t)
	delete(p, "request_id")
	return p
}

// TestExchangeContract drives the exchange over HTTPS — prescribe, open a
// session, look up, claim, dispense twice, close with a receipt; cancel;
// a paper prescription; a patient's history; replays and refusals — and
// checks every request and answer against api/openapi.yaml.
func TestExchangeContract(t *testing.T) {
	f := xsetup(t)

	// Prescribe: 201, then the same document 200 with the first answer.
	p := f.prescription(drug(catalogtest.Amoxicillin, 20), drug(catalogtest.Metformin, 60))
	jws := f.sign(t, f.doctor, p)
	first := f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions", body: jws})
	var acc exchange.PrescriptionAccepted
	want(t, first, 201, &acc)
	if acc.ID != p.ID || acc.State != exchange.Active || len(acc.Lines) != 2 || len(acc.TrackingCode) != 13 {
		t.Fatalf("accepted %s", first.body)
	}
	if _, err := f.verifier.Verify(context.Background(), acc.Ack, rx.KindAck); err != nil {
		t.Fatalf("ack: %v", err)
	}
	// Vendors see the patient's eligibility at its least.
	if strings.Contains(string(first.body), "insurance_number") {
		t.Fatalf("a vendor is answered the patient's insurance number: %s", first.body)
	}
	again := f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions", body: jws})
	if want(t, again, 200, nil); !bytes.Equal(again.body, first.body) {
		t.Fatalf("replay answered\n%s\nnot the first answer\n%s", again.body, first.body)
	}

	// Sessions: bound to the certificate they were opened through.
	key := "sess-" + rx.NewID()[:8]
	sdoc := f.sessionDoc(t, f.pharmacy, "vendor")
	opened := f.do(t, req{client: "vendor", method: "POST", path: "/v1/sessions", body: sdoc, key: key})
	var sess exchange.SessionOpened
	want(t, opened, 201, &sess)
	if sess.Actor.Role != "pharmacy" || sess.Actor.RegistrationNumber != f.pharmacy.sub.LicenceNumber {
		t.Fatalf("session %s", opened.body)
	}
	// A retry with the key: the first answer, byte for byte, status included.
	replayed := f.do(t, req{client: "vendor", method: "POST", path: "/v1/sessions", body: sdoc, key: key})
	if replayed.status != 201 || !bytes.Equal(replayed.body, opened.body) || replayed.header.Get(rxapi.ReplayedHeader) != "true" {
		t.Fatalf("replay under the key: %d %s", replayed.status, replayed.body)
	}
	// The same document without the key is a second use of it.
	refused(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/sessions", body: sdoc}), 409, "session-id-used")
	// Another request under the key.
	refused(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/sessions", body: f.sessionDoc(t, f.pharmacy, "vendor"), key: key}), 422, "idempotency-key-reused")
	ph := sess.Token
	// The token through another certificate, or none at all.
	code, nid := acc.TrackingCode, p.Patient.NationalID
	refused(t, f.do(t, req{client: "vendor2", method: "POST", path: "/v1/prescriptions/lookup", body: findBody(code, nid), token: ph}), 401, "unauthenticated")
	noSession := f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions/lookup", body: findBody(code, nid)})
	if refused(t, noSession, 401, "unauthenticated"); !strings.HasPrefix(noSession.header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("no WWW-Authenticate: %v", noSession.header)
	}

	// Look up: with the code (as typed: lower case, spaces) and the
	// patient's national id.
	var view exchange.PrescriptionView
	want(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions/lookup", body: findBody(strings.ToLower(strings.ReplaceAll(code, "-", " ")), nid), token: ph}), 200, &view)
	if view.ID != p.ID || view.JWS != jws || view.State != exchange.Active {
		t.Fatalf("lookup %+v", view)
	}
	// No oracle: a wrong pair answers exactly as a code that does not exist.
	wrongPair := f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions/lookup", body: findBody(code, insuredtest.NationalID(1)), token: ph})
	missing := f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions/lookup", body: findBody(otherCode(t, code), nid), token: ph})
	refused(t, wrongPair, 404, "not-found")
	if a, b := withoutRequest(t, wrongPair), withoutRequest(t, missing); missing.status != wrongPair.status || !equalJSON(a, b) {
		t.Fatalf("a wrong pair answers\n%s\na missing code\n%s", wrongPair.body, missing.body)
	}

	// Claim under a key; its retry answers the same secret.
	ckey := "claim-" + rx.NewID()[:8]
	claimed := f.do(t, req{client: "vendor", method: "POST", path: "/v1/claims", body: findBody(code, nid), token: ph, key: ckey})
	var claim exchange.ClaimGranted
	want(t, claimed, 201, &claim)
	if again := f.do(t, req{client: "vendor", method: "POST", path: "/v1/claims", body: findBody(code, nid), token: ph, key: ckey}); again.status != 201 || !bytes.Equal(again.body, claimed.body) {
		t.Fatalf("claim retry: %d %s", again.status, again.body)
	}
	// Another pharmacy: claimed until when.
	rival := f.session(t, f.rival, "vendor2")
	p409 := refused(t, f.do(t, req{client: "vendor2", method: "POST", path: "/v1/claims", body: findBody(code, nid), token: rival}), 409, "prescription-claimed")
	if until, _ := time.Parse(time.RFC3339, p409["claimed_until"].(string)); !until.Equal(claim.ExpiresAt) {
		t.Fatalf("claimed_until %v, want %v", p409["claimed_until"], claim.ExpiresAt)
	}

	// Dispense twice; a retry of each answers 200 with the first answer.
	claimPath := "/v1/claims/" + claim.ClaimID
	var total exchange.Amounts
	for i, item := range []rx.DispensedItem{{Code: catalogtest.Amoxicillin, Quantity: 10}, {Code: catalogtest.Metformin, Quantity: 60}} {
		f.clock.Advance(10 * time.Minute)
		dj := f.sign(t, f.pharmacy, f.dispenseDoc(f.pharmacy, jws, p.ID, item))
		got := f.do(t, req{client: "vendor", method: "POST", path: claimPath + "/dispenses", body: dj, token: ph, secret: claim.Secret})
		var d exchange.DispenseAccepted
		want(t, got, 201, &d)
		if d.State != exchange.PartlyDispensed || d.Amounts.Total == 0 {
			t.Fatalf("dispense %d: %s", i, got.body)
		}
		if again := f.do(t, req{client: "vendor", method: "POST", path: claimPath + "/dispenses", body: dj, token: ph, secret: claim.Secret}); again.status != 200 || !bytes.Equal(again.body, got.body) {
			t.Fatalf("dispense %d again: %d %s", i, again.status, again.body)
		}
		total = exchange.Amounts{Total: total.Total + d.Amounts.Total, Insurer: total.Insurer + d.Amounts.Insurer,
			Supplementary: total.Supplementary + d.Amounts.Supplementary, Patient: total.Patient + d.Amounts.Patient}
	}
	// More than remains.
	over := f.sign(t, f.pharmacy, f.dispenseDoc(f.pharmacy, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 11}))
	po := refused(t, f.do(t, req{client: "vendor", method: "POST", path: claimPath + "/dispenses", body: over, token: ph, secret: claim.Secret}), 409, "over-dispense")
	if po["remaining"] != float64(10) || po["field"] != "items[0]" {
		t.Fatalf("over-dispense %v", po)
	}
	// The wrong secret.
	refused(t, f.do(t, req{client: "vendor", method: "POST", path: claimPath + "/close", token: ph, secret: strings.Repeat("x", 43)}), 403, "claim-secret-wrong")

	// Close under a key: the receipt, signed by the exchange; a retry
	// without the key answers the same receipt.
	closed := f.do(t, req{client: "vendor", method: "POST", path: claimPath + "/close", token: ph, secret: claim.Secret, key: "close-1"})
	var c exchange.Closed
	want(t, closed, 200, &c)
	if c.Amounts != total {
		t.Fatalf("closed %+v, dispensed %+v", c.Amounts, total)
	}
	r, err := f.verifier.Verify(context.Background(), c.Receipt, rx.KindReceipt)
	if err != nil || r.Receipt.ID != c.ReceiptID || r.Receipt.Prescription.JWSSHA256 != rx.SHA256(jws) || len(r.Receipt.Dispenses) != 2 {
		t.Fatalf("receipt: %+v %v", r, err)
	}
	var c2 exchange.Closed
	if want(t, f.do(t, req{client: "vendor", method: "POST", path: claimPath + "/close", token: ph, secret: claim.Secret}), 200, &c2); c2.Receipt != c.Receipt {
		t.Fatal("a second close answered another receipt")
	}
	// A closed claim cannot be released.
	refused(t, f.do(t, req{client: "vendor", method: "DELETE", path: claimPath, token: ph, secret: claim.Secret}), 409, "claim-not-active")

	// Release: 204 (and again, under its key, 204 with nothing).
	p2 := f.prescription(drug(catalogtest.Omeprazole, 14))
	jws2 := f.sign(t, f.doctor, p2)
	var acc2 exchange.PrescriptionAccepted
	want(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions", body: jws2}), 201, &acc2)
	var claim2 exchange.ClaimGranted
	want(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/claims", body: findBody(acc2.TrackingCode, nid), token: ph}), 201, &claim2)
	// While it is claimed, its prescriber cannot cancel it.
	cancelDoc := f.sign(t, f.doctor, &rx.Cancellation{V: rx.Version, Type: rx.KindCancellation, ID: rx.NewID(), CancelledAt: f.clock.Now(),
		Prescription: rx.Reference{ID: p2.ID, JWSSHA256: rx.SHA256(jws2)}, Prescriber: p2.Prescriber, Reason: "تغییر درمان"})
	cancelPath := "/v1/prescriptions/" + p2.ID + "/cancellations"
	refused(t, f.do(t, req{client: "vendor", method: "POST", path: cancelPath, body: cancelDoc}), 409, "prescription-claimed")
	for range 2 {
		rel := f.do(t, req{client: "vendor", method: "DELETE", path: "/v1/claims/" + claim2.ClaimID, token: ph, secret: claim2.Secret, key: "release-1"})
		if rel.status != 204 || len(rel.body) != 0 {
			t.Fatalf("release: %d %s", rel.status, rel.body)
		}
	}
	// Cancel: 201, then 200 for the same document.
	var cancelled exchange.CancellationAccepted
	want(t, f.do(t, req{client: "vendor", method: "POST", path: cancelPath, body: cancelDoc}), 201, &cancelled)
	if cancelled.State != exchange.Cancelled {
		t.Fatalf("cancelled %+v", cancelled)
	}
	want(t, f.do(t, req{client: "vendor", method: "POST", path: cancelPath, body: cancelDoc}), 200, nil)
	pnd := refused(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/claims", body: findBody(acc2.TrackingCode, nid), token: ph}), 409, "prescription-not-dispensable")
	if pnd["state"] != "cancelled" {
		t.Fatalf("not dispensable: %v", pnd)
	}

	// Paper: entered and dispensed at once, with a receipt; again, 200.
	pp := &rx.Paper{V: rx.Version, Type: rx.KindPaper, ID: rx.NewID(), EnteredAt: f.clock.Now(),
		Prescriber: rx.Prescriber{CouncilNumber: "MC-777", Profession: "physician", Specialty: "general", Name: "دکتر کاوه نیک"},
		Patient:    rx.Patient{NationalID: insuredtest.NationalID(0), Name: "بیمار آزمایشی", BirthDate: "1951-03-21", Sex: "female"},
		Items:      []rx.Item{drug(catalogtest.Omeprazole, 14)}, Dispensed: []rx.DispensedItem{{Code: catalogtest.Omeprazole, Quantity: 14}},
		Dispenser: rx.Dispenser{LicenceNumber: f.pharmacy.sub.LicenceNumber, Role: "pharmacy"}}
	paper := f.sign(t, f.pharmacy, pp)
	var pa exchange.PaperAccepted
	want(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/paper-prescriptions", body: paper}), 201, &pa)
	if _, err := f.verifier.Verify(context.Background(), pa.Receipt, rx.KindReceipt); err != nil || pa.ID != pp.ID {
		t.Fatalf("paper %+v: %v", pa, err)
	}
	want(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/paper-prescriptions", body: paper}), 200, nil)

	// History: the insurer's services only.
	hq := `{"national_id":"` + nid + `","limit":2}`
	refused(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/patient-history", body: hq}), 403, "role-not-allowed")
	var page exchange.HistoryPage
	want(t, f.do(t, req{client: "service", method: "POST", path: "/v1/patient-history", body: hq}), 200, &page)
	if len(page.Prescriptions) != 2 || page.NextCursor == "" {
		t.Fatalf("history page %+v", page)
	}
	var rest exchange.HistoryPage
	want(t, f.do(t, req{client: "service", method: "POST", path: "/v1/patient-history", body: `{"national_id":"` + nid + `","cursor":"` + page.NextCursor + `"}`}), 200, &rest)
	if len(rest.Prescriptions) != 1 {
		t.Fatalf("history's last page %+v", rest)
	}

	// The patient's access log, once the audit log has sequenced what
	// happened: the insurer's services only, and what the pharmacy did
	// is in it.
	auditLog, err := tlog.New(f.log, tlog.Config{Origin: "rxd.test/audit", Key: rxdtest.NoteKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := auditLog.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	aq := `{"national_id":"` + nid + `","limit":200}`
	refused(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/patient-access-log", body: aq}), 403, "role-not-allowed")
	var accesses exchange.AccessLogPage
	want(t, f.do(t, req{client: "service", method: "POST", path: "/v1/patient-access-log", body: aq}), 200, &accesses)
	seen := map[string]bool{}
	for _, a := range accesses.Accesses {
		if a.Role == "pharmacy" && a.Organisation == f.pharmacy.sub.LicenceNumber && a.Outcome == "ok" {
			seen[a.Action] = true
		}
	}
	for _, act := range []string{"view", "claim", "dispense", "close", "paper"} {
		if !seen[act] {
			t.Fatalf("the access log has no %s by the pharmacy: %+v", act, accesses)
		}
	}
	// The audit log itself: its checkpoint for the insurer's services and
	// auditors only, and the tiles it commits to.
	refused(t, f.do(t, req{client: "vendor", method: "GET", path: "/audit/checkpoint"}), 403, "forbidden")
	cp := f.do(t, req{client: "service", method: "GET", path: "/audit/checkpoint"})
	if cp.status != 200 || !strings.HasPrefix(string(cp.body), "rxd.test/audit\n") {
		t.Fatalf("checkpoint: %d %s", cp.status, cp.body)
	}
	tile, err := f.clients["service"].Get(f.srv.URL + "/audit/tile/entries/000.p/1")
	if err != nil {
		t.Fatal(err)
	}
	bundle, _ := io.ReadAll(tile.Body)
	tile.Body.Close()
	if entries, err := tlog.ParseBundle(bundle, 1); tile.StatusCode != 200 || err != nil || len(entries) != 1 {
		t.Fatalf("entry bundle: %d %v", tile.StatusCode, err)
	}

	// End the session: 204; its token then opens nothing.
	if a := f.do(t, req{client: "vendor", method: "DELETE", path: "/v1/sessions/current", token: ph}); a.status != 204 {
		t.Fatalf("end session: %d %s", a.status, a.body)
	}
	refused(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions/lookup", body: findBody(code, nid), token: ph}), 401, "unauthenticated")
}

// TestExchangeRefusals: each refusal over HTTPS with its problem code,
// every answer as the contract says.
func TestExchangeRefusals(t *testing.T) {
	f := xsetup(t)
	p := f.prescription(drug(catalogtest.Amoxicillin, 20))
	jws := f.sign(t, f.doctor, p)
	post := func(body string, invalid bool) answer {
		return f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions", body: body, invalid: invalid})
	}

	// A signature that does not verify.
	i := strings.LastIndexByte(jws, '.')
	sig := []byte(jws[i+1:])
	if sig[10] = 'A'; jws[i+11] == 'A' {
		sig[10] = 'B'
	}
	refused(t, post(jws[:i+1]+string(sig), false), 422, "signature-invalid")
	// A pharmacy prescribing.
	refused(t, post(f.sign(t, f.pharmacy, f.prescription(drug(catalogtest.Amoxicillin, 20))), false), 403, "role-not-allowed")
	// Accepted once; then another document under its id.
	want(t, post(jws, false), 201, nil)
	changed := *p
	changed.Items = []rx.Item{drug(catalogtest.Amoxicillin, 30)}
	refused(t, post(f.sign(t, f.doctor, &changed), false), 409, "document-id-conflict")
	// A body over the document limit.
	big := strings.Repeat("A", rx.MaxJWS) + "." + "A" + "." + "A"
	refused(t, post(big, true), 413, "request-too-large")
	// Not a JWS content type.
	refused(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions", body: jws, contentType: "text/plain", invalid: true}), 400, "malformed-request")
	// A JSON body over its limit, and one with a member the contract does not have.
	tok := f.session(t, f.pharmacy, "vendor")
	refused(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions/lookup", token: tok, invalid: true,
		body: `{"tracking_code":"` + strings.Repeat("0", 70<<10) + `","national_id":"x"}`}), 413, "request-too-large")
	refused(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions/lookup", token: tok, invalid: true,
		body: `{"tracking_code":"x","national_id":"x","extra":1}`}), 400, "malformed-request")
	// An Idempotency-Key outside its alphabet.
	refused(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/sessions", body: f.sessionDoc(t, f.pharmacy, "vendor"), key: "no spaces", invalid: true}), 400, "malformed-request")
	// A session document naming another certificate.
	refused(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/sessions", body: f.sessionDoc(t, f.pharmacy, "vendor2")}), 422, "invalid-document")
	// A rule with severity reject: the decision in the problem.
	prv := refused(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/paper-prescriptions", body: f.sign(t, f.pharmacy, &rx.Paper{V: rx.Version, Type: rx.KindPaper,
		ID: rx.NewID(), EnteredAt: f.clock.Now(), Prescriber: rx.Prescriber{CouncilNumber: "MC-777", Profession: "physician", Specialty: "general", Name: "دکتر کاوه نیک"},
		Patient: p.Patient, Items: []rx.Item{drug(catalogtest.Methylphenidate, 30)}, Dispensed: []rx.DispensedItem{{Code: catalogtest.Methylphenidate, Quantity: 30}},
		Dispenser: rx.Dispenser{LicenceNumber: f.pharmacy.sub.LicenceNumber, Role: "pharmacy"}})}), 422, "rule-violation")
	if d, ok := prv["decision"].(map[string]any); !ok || d["allowed"] != false || strings.Contains(string(must(json.Marshal(d))), "insurance_number") {
		t.Fatalf("rule-violation decision %v", prv["decision"])
	}
	// A practitioner looks nothing up.
	doc := f.session(t, f.doctor, "vendor")
	refused(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions/lookup", token: doc, body: findBody("00000-00000-0", p.Patient.NationalID)}), 403, "role-not-allowed")
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestExchangeLookupBudget: lookups and claims are counted per calling
// software and per card, found or not; a mistyped code (its check symbol
// fails) costs nothing.
func TestExchangeLookupBudget(t *testing.T) {
	f := xsetup(t, func(a *rxapi.API) { a.Limits = rxapi.Limits{DailyLookups: 3} })
	nid := insuredtest.NationalID(0)
	tok := f.session(t, f.pharmacy, "vendor")
	lookup := func(client, token, code string) answer {
		return f.do(t, req{client: client, method: "POST", path: "/v1/prescriptions/lookup", body: findBody(code, nid), token: token})
	}
	code := otherCode(t, "")
	typo := code[:len(code)-1] + map[bool]string{true: "1", false: "0"}[code[len(code)-1] == '0']
	for range 5 {
		refused(t, lookup("vendor", tok, typo), 422, "invalid-field")
	}
	for range 3 {
		refused(t, lookup("vendor", tok, otherCode(t, "")), 404, "not-found")
	}
	over := lookup("vendor", tok, code)
	if refused(t, over, 429, "quota-exceeded"); over.header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	// The same card through other software: the card's budget is spent too.
	refused(t, lookup("vendor2", f.session(t, f.pharmacy, "vendor2"), code), 429, "quota-exceeded")
	// Another card through fresh software still has its own.
	refused(t, lookup("vendor2", f.session(t, f.rival, "vendor2"), code), 404, "not-found")
}

// otherCode is a well-formed tracking code other than code.
func otherCode(t *testing.T, code string) string {
	t.Helper()
	for {
		if f := trackcode.Format(trackcode.New()); f != code {
			return f
		}
	}
}

func equalJSON(a, b map[string]any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// TestRoutesAreTheContract: every route rxd serves is in
// api/openapi.yaml, and every operation there is routed, so the two
// cannot drift apart.
func TestRoutesAreTheContract(t *testing.T) {
	c := loadContract(t, "")
	var inContract []string
	for path, item := range c.doc.Paths.Map() {
		for method := range item.Operations() {
			inContract = append(inContract, method+" "+path)
		}
	}
	slices.Sort(inContract)
	// A ServeMux wildcard matching the rest of a path ({path...}) is an
	// OpenAPI path parameter ({path}) whose value holds slashes.
	var routed []string
	for _, p := range rxapi.Patterns(&rxapi.API{}) {
		routed = append(routed, strings.ReplaceAll(p, "...}", "}"))
	}
	slices.Sort(routed)
	if !slices.Equal(routed, inContract) {
		t.Fatalf("routed:\n  %s\nin api/openapi.yaml:\n  %s", strings.Join(routed, "\n  "), strings.Join(inContract, "\n  "))
	}
}
