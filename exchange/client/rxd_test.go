package client_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
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
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/nuskha/nuskha/api"
	"github.com/nuskha/nuskha/exchange/client"
	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/crl"
	"github.com/nuskha/nuskha/internal/pki/revocation"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/rxapi"
	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/tlogstore"
	"github.com/nuskha/nuskha/internal/testutil/rxdtest"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
	"github.com/nuskha/nuskha/internal/tlog"
)

type card struct {
	key   crypto.Signer
	chain []*x509.Certificate
	sub   *registry.Subject
}

// realRxd is rxd's real handler (internal/rxapi) over the real exchange
// service and store (SQLite), the generated registry, the sample catalogue
// and the starter rules, on certificates from the real profiles; every
// request and answer is also validated against api/openapi.yaml.
type realRxd struct {
	audit                    *tlogstore.Store
	url                      string
	roots                    *x509.CertPool
	verifier                 *rx.Verifier
	now                      time.Time
	doctor, pharmacy, rival  card
	vendor, vendor2, service tls.Certificate
	violations               *[]string
}

func startRealRxd(t *testing.T) *realRxd {
	t.Helper()
	start := insuredtest.Day.Add(9 * time.Hour)
	r := &realRxd{now: start, violations: new([]string)}
	clock := func() time.Time { return r.now }
	interKey := ecKeyOther()
	p := testpki.New(t, interKey, func() time.Time { return start.Add(-48 * time.Hour) })
	issue := func(profile string, sub *registry.Subject) card {
		k := ecKeyOther()
		leaf := p.IssueWithValidity(t, profile, sub, k, start.Add(-24*time.Hour), start.Add(365*24*time.Hour))
		return card{k, []*x509.Certificate{leaf, p.Intermediate}, sub}
	}
	tlsCert := func(c card) tls.Certificate {
		return tls.Certificate{Certificate: [][]byte{c.chain[0].Raw, p.Intermediate.Raw}, PrivateKey: c.key, Leaf: c.chain[0]}
	}
	r.doctor = issue("practitioner-signing", testpki.Subject(pki.RolePractitioner, "sub_doctor", start))
	r.pharmacy = issue("pharmacy-signing", testpki.Subject(pki.RolePharmacy, "sub_ph", start))
	rival := testpki.Subject(pki.RolePharmacy, "sub_ph2", start)
	rival.LicenceNumber = "PH-9001"
	r.rival = issue("pharmacy-signing", rival)
	exch := issue("exchange-receipt-signing", testpki.Subject(pki.RoleService, "sub_rxd", start))
	server := issue("service-tls-server", testpki.Subject(pki.RoleService, "sub_rxd_tls", start))
	r.vendor = tlsCert(issue("service-tls-client", testpki.Subject(pki.RoleVendor, "sub_v1", start)))
	r.vendor2 = tlsCert(issue("service-tls-client", testpki.Subject(pki.RoleVendor, "sub_v2", start)))
	r.service = tlsCert(issue("service-tls-client", testpki.Subject(pki.RoleService, "sub_portal", start)))

	checker, err := revocation.New(revocation.Config{MaxAge: 24 * time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	der, err := crl.Sign(crl.Request{Number: big.NewInt(1), ThisUpdate: start, NextUpdate: start.Add(24 * time.Hour)}, p.Intermediate, interKey, p.Linter, nil)
	if err != nil {
		t.Fatal(err)
	}
	list, _ := x509.ParseRevocationList(der)
	if err := checker.AddCRL(list, p.Intermediate); err != nil {
		t.Fatal(err)
	}
	if err := checker.AddCRL(p.ARL(t, start), p.Root); err != nil {
		t.Fatal(err)
	}
	roots := []*x509.Certificate{p.Root}
	if r.verifier, err = rx.NewVerifier(rx.Config{Roots: roots, Arc: p.Arc, Status: checker, Now: clock}); err != nil {
		t.Fatal(err)
	}
	re, err := rx.NewVerifier(rx.Config{Roots: roots, Arc: p.Arc, Status: exchange.AtAcceptance(checker), Now: clock, MaxAge: 2 * 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	data := rxdtest.Open(t, sqlstore.SQLite, 20)
	r.audit = data.AuditLog(t)
	store, err := rxstore.NewExchange(ctx, data.DB, r.audit)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := exchange.New(exchange.Config{Store: store, Verifier: r.verifier, Reverifier: re, Status: checker,
		Adjudicator: data.Adjudicator(clock), Key: exchange.SigningKey{Signer: exch.key, Chain: exch.chain}, Arc: p.Arc, Now: clock, Log: log,
		Pseudonyms: rxdtest.Pseudonyms(), AuditLog: r.audit})
	if err != nil {
		t.Fatal(err)
	}
	a := &rxapi.API{Eligibility: data.Checker(), Adjudicator: data.Adjudicator(clock), Catalogue: data.Catalogue, Rules: data.Rules, DB: data.DB,
		Arc: p.Arc, Status: checker, Log: log, Now: clock, Exchange: svc, Idempotency: store,
		Pseudonyms: rxdtest.Pseudonyms(), AuditLog: r.audit, AuditStore: r.audit, Budgets: data.Budgets(t)}
	r.roots = x509.NewCertPool()
	r.roots.AddCert(p.Root)
	srv := httptest.NewUnstartedServer(validating(t, a.Handler(), r.violations))
	srv.TLS = rxapi.ServerTLS(tlsCert(server), r.roots)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	r.url = strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	t.Cleanup(func() {
		for _, v := range *r.violations {
			t.Errorf("rxd broke the contract: %s", v)
		}
	})
	return r
}

// validating validates each request and the real handler's answer to it
// against api/openapi.yaml.
func validating(t *testing.T, h http.Handler, violations *[]string) http.Handler {
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	doc.Servers = nil
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	openapi3filter.RegisterBodyDecoder("application/jose", openapi3filter.PlainBodyDecoder)
	var mu sync.Mutex
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		route, params, err := router.FindRoute(req)
		if err != nil {
			*violations = append(*violations, req.Method+" "+req.URL.Path+": "+err.Error())
			h.ServeHTTP(w, req)
			return
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: authenticate}}
		if err := openapi3filter.ValidateRequest(req.Context(), in); err != nil {
			*violations = append(*violations, "request "+req.Method+" "+route.Path+": "+err.Error())
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: rec.Code, Header: rec.Header(),
			Options: &openapi3filter.Options{MultiError: true, IncludeResponseStatus: true}}
		out.SetBodyBytes(rec.Body.Bytes())
		if err := openapi3filter.ValidateResponse(req.Context(), out); err != nil {
			*violations = append(*violations, "response "+req.Method+" "+route.Path+" "+http.StatusText(rec.Code)+": "+err.Error())
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	})
}

func (r *realRxd) client(t *testing.T, cert tls.Certificate) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{BaseURL: r.url, Roots: r.roots, Certificate: cert})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (r *realRxd) sign(t *testing.T, c card, doc rx.Document) string {
	t.Helper()
	tok, err := rx.Sign(doc, c.key, c.chain, r.now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// session opens a session for the card through c, signed by SignSession.
func (r *realRxd) session(t *testing.T, c *client.Client, holder card) *client.Session {
	t.Helper()
	jws, err := client.SignSession(c.NewSessionDocument(r.now), holder.key, holder.chain, r.now)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.OpenSession(context.Background(), jws)
	if err != nil {
		t.Fatalf("open session: %v", err)
	}
	return s
}

// TestClientAgainstRealRxd: the whole path through the client and rxd's
// real handlers — prescribe (and again: the first answer), a pharmacy's
// session signed by SignSession, lookup, claim, a rival pharmacy refused
// while the claim holds, a dispense, the close with a receipt the
// exchange's verifier accepts, a release after the close refused, and a
// session ended.
func TestClientAgainstRealRxd(t *testing.T) {
	r := startRealRxd(t)
	ctx := context.Background()
	doctorVendor := r.client(t, r.vendor)
	p := &rx.Prescription{V: rx.Version, Type: rx.KindPrescription, ID: rx.NewID(), IssuedAt: r.now,
		Patient:    rx.Patient{NationalID: insuredtest.NationalID(0), Name: "بیمار آزمایشی", BirthDate: "1951-03-21", Sex: "female"},
		Prescriber: rx.Prescriber{CouncilNumber: r.doctor.sub.CouncilNumber, Profession: string(r.doctor.sub.Profession), Specialty: r.doctor.sub.Specialty},
		Practice:   rx.Practice{Name: "درمانگاه نمونه"},
		Items:      []rx.Item{{Kind: "drug", Code: catalogtest.Amoxicillin, Quantity: 20}}}
	prescription := r.sign(t, r.doctor, p)
	acc, err := doctorVendor.Prescribe(ctx, prescription)
	if err != nil || acc.Replayed || acc.ID != p.ID || len(acc.TrackingCode) != 13 || acc.Decision == nil || !acc.Decision.Allowed {
		t.Fatalf("prescribe: %+v, %v", acc, err)
	}
	if ack, err := r.verifier.Verify(ctx, acc.Ack, rx.KindAck); err != nil || ack.Ack.Prescription.ID != p.ID {
		t.Fatalf("the acknowledgement: %v", err)
	}
	if again, err := doctorVendor.Prescribe(ctx, prescription); err != nil || !again.Replayed || again.TrackingCode != acc.TrackingCode {
		t.Fatalf("prescribe again: %+v, %v", again, err)
	}

	pharmacy := r.client(t, r.vendor)
	if s := r.session(t, pharmacy, r.pharmacy); s.Actor.Role != "pharmacy" {
		t.Fatalf("session: %+v", s)
	}
	find := client.Find{TrackingCode: strings.ToLower(acc.TrackingCode), NationalID: p.Patient.NationalID}
	view, err := pharmacy.Lookup(ctx, find)
	if err != nil || view.JWS != prescription || view.State != client.StateActive {
		t.Fatalf("lookup: %+v, %v", view, err)
	}
	if _, err := pharmacy.Lookup(ctx, client.Find{TrackingCode: acc.TrackingCode, NationalID: insuredtest.NationalID(1)}); !client.IsCode(err, "not-found") {
		t.Fatalf("lookup with another patient's id: %v", err)
	}
	g, err := pharmacy.Claim(ctx, find)
	if err != nil || g.Secret == "" {
		t.Fatalf("claim: %+v, %v", g, err)
	}

	rival := r.client(t, r.vendor2)
	r.session(t, rival, r.rival)
	_, err = rival.Claim(ctx, find)
	var prob *client.Problem
	if !errors.As(err, &prob) || prob.Status != 409 || prob.Code != "prescription-claimed" || prob.Type == "" || prob.Title == "" {
		t.Fatalf("a rival's claim: %#v", err)
	}

	d := &rx.Dispense{V: rx.Version, Type: rx.KindDispense, ID: rx.NewID(), DispensedAt: r.now,
		Prescription: rx.Reference{ID: p.ID, JWSSHA256: rx.SHA256(prescription)},
		Dispenser:    rx.Dispenser{LicenceNumber: r.pharmacy.sub.LicenceNumber, Role: "pharmacy"},
		Items:        []rx.DispensedItem{{Code: catalogtest.Amoxicillin, Quantity: 10}}}
	disp, err := pharmacy.Dispense(ctx, g.ClaimID, g.Secret, r.sign(t, r.pharmacy, d))
	if err != nil || disp.State != client.StatePartlyDispensed || disp.Amounts.Total == 0 {
		t.Fatalf("dispense: %+v, %v", disp, err)
	}
	closed, err := pharmacy.Close(ctx, g.ClaimID, g.Secret)
	if err != nil {
		t.Fatalf("close: %v", err)
	}
	receipt, err := r.verifier.Verify(ctx, closed.Receipt, rx.KindReceipt)
	if err != nil || receipt.Receipt.Prescription.ID != p.ID || receipt.Receipt.Amounts.Total != closed.Amounts.Total || closed.Amounts != disp.Amounts {
		t.Fatalf("the receipt: %v, %+v", err, closed)
	}
	if again, err := pharmacy.Close(ctx, g.ClaimID, g.Secret); err != nil || again.Receipt != closed.Receipt {
		t.Fatalf("close again: %v", err)
	}
	if err := pharmacy.Release(ctx, g.ClaimID, g.Secret); !client.IsCode(err, "claim-not-active") {
		t.Fatalf("release after close: %v", err)
	}

	// The prescriber cancels what remains; the same cancellation again is
	// the first answer.
	cancel := r.sign(t, r.doctor, &rx.Cancellation{V: rx.Version, Type: rx.KindCancellation, ID: rx.NewID(), CancelledAt: r.now,
		Prescription: rx.Reference{ID: p.ID, JWSSHA256: rx.SHA256(prescription)}, Prescriber: p.Prescriber, Reason: "دوز اشتباه"})
	if c, err := doctorVendor.Cancel(ctx, p.ID, cancel); err != nil || c.State != client.StateRemainderCancelled || c.Replayed {
		t.Fatalf("cancel: %+v, %v", c, err)
	}
	if c, err := doctorVendor.Cancel(ctx, p.ID, cancel); err != nil || !c.Replayed {
		t.Fatalf("cancel again: %+v, %v", c, err)
	}
	page, err := r.client(t, r.service).History(ctx, client.HistoryQuery{NationalID: p.Patient.NationalID, Limit: 10})
	if err != nil || len(page.Prescriptions) != 1 || page.Prescriptions[0].State != client.StateRemainderCancelled ||
		len(page.Prescriptions[0].Dispenses) != 1 || page.Prescriptions[0].Dispenses[0].Items[0].Quantity != 10 {
		t.Fatalf("history: %+v, %v", page, err)
	}
	if _, err := pharmacy.History(ctx, client.HistoryQuery{NationalID: p.Patient.NationalID}); !client.IsCode(err, "role-not-allowed") {
		t.Fatalf("history for a vendor: %v", err)
	}
	// The access log, once the audit log has sequenced: the pharmacy's
	// dispense is in it.
	l, err := tlog.New(r.audit, tlog.Config{Origin: "rxd.test/audit", Key: rxdtest.NoteKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Step(ctx); err != nil {
		t.Fatal(err)
	}
	accesses, err := r.client(t, r.service).AccessLog(ctx, client.AccessLogQuery{NationalID: p.Patient.NationalID, Limit: 200})
	if err != nil || !slices.ContainsFunc(accesses.Accesses, func(a client.Access) bool {
		return a.Action == "dispense" && a.Role == "pharmacy" && a.Outcome == "ok" && a.Prescription == p.ID
	}) {
		t.Fatalf("access log: %+v, %v", accesses, err)
	}
	if _, err := pharmacy.AccessLog(ctx, client.AccessLogQuery{NationalID: p.Patient.NationalID}); !client.IsCode(err, "role-not-allowed") {
		t.Fatalf("access log for a vendor: %v", err)
	}

	if err := pharmacy.EndSession(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := pharmacy.Lookup(ctx, find); !errors.Is(err, client.ErrNoSession) {
		t.Fatalf("lookup after the session ended: %v", err)
	}
}
