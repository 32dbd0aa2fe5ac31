package client_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/nuskha/nuskha/api"
	"github.com/nuskha/nuskha/exchange/client"
)

// contractServer stands in for rxd before its handlers exist and beside
// them: every request is validated against api/openapi.yaml with
// kin-openapi (path, method, headers, security, body), answered with a
// contract-valid example that is validated too, and recorded. Faults can
// be queued per operation to exercise the client's retries.
type contractServer struct {
	t      *testing.T
	srv    *httptest.Server
	router routers.Router
	roots  *x509.CertPool
	vendor tls.Certificate

	mu       sync.Mutex
	seen     []seen
	faults   map[string][]fault // by operation id ("POST /v1/claims")
	accepted map[string]bool    // prescription bodies seen
	invalid  []string           // contract violations found
}

type seen struct {
	op, idempotencyKey, authorization, claimSecret string
	body                                           string
	remote                                         string // the client's address: one per connection
}

// fault is what an attempt meets instead of (or after) being served.
type fault struct {
	status     int    // answer this problem status before serving
	code       string // its problem code
	retryAfter string // its Retry-After
	drop       bool   // serve, then cut the connection: the answer is lost
}

func newContractServer(t *testing.T) *contractServer {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	doc.Servers = nil // any host: the test server's
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	openapi3filter.RegisterBodyDecoder("application/jose", openapi3filter.PlainBodyDecoder)

	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, tmpl *x509.Certificate) tls.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = big.NewInt(serial), time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(der)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	}
	s := &contractServer{t: t, router: router, roots: x509.NewCertPool(), faults: map[string][]fault{}, accepted: map[string]bool{}}
	s.roots.AddCert(ca)
	s.vendor = issue(2, &x509.Certificate{Subject: pkix.Name{CommonName: "vendor"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	serverCert := issue(3, &x509.Certificate{Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: s.roots}
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, v := range s.invalid {
			t.Errorf("contract violation: %s", v)
		}
	})
	return s
}

// url is the server's address under the name in its certificate.
func (s *contractServer) url() string {
	return strings.Replace(s.srv.URL, "127.0.0.1", "localhost", 1)
}

func (s *contractServer) client(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	if cfg.BaseURL == "" {
		cfg.BaseURL = s.url()
	}
	if cfg.Roots == nil {
		cfg.Roots = s.roots
	}
	if cfg.Certificate.Certificate == nil {
		cfg.Certificate = s.vendor
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (s *contractServer) queue(op string, f ...fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[op] = append(s.faults[op], f...)
}

func (s *contractServer) requests(op string) []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []seen
	for _, r := range s.seen {
		if op == "" || r.op == op {
			out = append(out, r)
		}
	}
	return out
}

func (s *contractServer) violation(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invalid = append(s.invalid, fmt.Sprintf(format, args...))
}

func (s *contractServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	route, params, err := s.router.FindRoute(r)
	if err != nil {
		s.violation("%s %s: %v", r.Method, r.URL.Path, err)
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	op := r.Method + " " + route.Path
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: authenticate}}
	if err := openapi3filter.ValidateRequest(r.Context(), in); err != nil {
		s.violation("request %s: %v", op, err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))

	s.mu.Lock()
	s.seen = append(s.seen, seen{op: op, idempotencyKey: r.Header.Get("Idempotency-Key"), authorization: r.Header.Get("Authorization"),
		claimSecret: r.Header.Get("Claim-Secret"), body: string(body), remote: r.RemoteAddr})
	var f *fault
	if q := s.faults[op]; len(q) > 0 {
		f, s.faults[op] = &q[0], q[1:]
	}
	replay := op == "POST /v1/prescriptions" && s.accepted[string(body)]
	if op == "POST /v1/prescriptions" {
		s.accepted[string(body)] = true
	}
	s.mu.Unlock()

	status, answer := s.answer(op, params, replay)
	if f != nil && f.status != 0 {
		status, answer = f.status, map[string]any{"type": "urn:nuskha:problem:" + f.code, "title": "refused", "status": f.status,
			"code": f.code, "detail": "as the test asked", "request_id": "req-1", "retry": f.status == 503, "until": "2026-12-05T10:00:00Z"}
		if f.retryAfter != "" {
			w.Header().Set("Retry-After", f.retryAfter)
		}
	}
	var data []byte
	ctype := "application/json"
	if status/100 != 2 {
		ctype = "application/problem+json"
	}
	if answer != nil {
		data, _ = json.Marshal(answer)
		w.Header().Set("Content-Type", ctype)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: http.Header{"Content-Type": {ctype}},
		Options: &openapi3filter.Options{MultiError: true, IncludeResponseStatus: true}}
	out.SetBodyBytes(data)
	if answer == nil {
		out.Header = http.Header{}
	}
	if err := openapi3filter.ValidateResponse(r.Context(), out); err != nil {
		s.violation("response %s %d: %v", op, status, err)
	}
	if f != nil && f.drop {
		// Served, and the answer lost on the way: what a retry is for.
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.WriteHeader(status)
	w.Write(data)
}

// authenticate checks the security schemes: the client certificate, and
// a bearer token where the operation asks for a session.
func authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	r := in.RequestValidationInput.Request
	switch in.SecuritySchemeName {
	case "vendorCertificate":
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			return errors.New("no client certificate")
		}
	case "session":
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			return errors.New("no session token")
		}
	default:
		return fmt.Errorf("unknown scheme %s", in.SecuritySchemeName)
	}
	return nil
}

// Examples, as rxd answers them.
const (
	exampleJWS   = "eyJhbGciOiJFUzI1NiJ9.eyJ2IjoxfQ.c2lnbmF0dXJl"
	examplePID   = "0b9c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3"
	exampleClaim = "1c2d3e4f-5a6b-4c7d-9e8f-a0b1c2d3e4f5"
	exampleCode  = "7K3QZ-M9XW2-P"
)

func (s *contractServer) answer(op string, params map[string]string, replay bool) (int, any) {
	line := map[string]any{"fill": 0, "item": 0, "code": "1234567", "kind": "drug", "quantity": 30, "dispensed": 10,
		"valid_from": "2026-12-05T00:00:00Z", "valid_until": "2027-01-04T00:00:00Z"}
	decision := map[string]any{"scope": "prescribe", "date": "2026-12-05", "allowed": true,
		"items": []any{map[string]any{"index": 0, "code": "1234567", "kind": "drug", "allowed": true, "quantity": 30, "covered_quantity": 30,
			"unit_price": 1000, "total": 30000, "insurer_pays": 21000, "supplementary_pays": 6000, "patient_pays": 3000}},
		"violations": []any{}, "total": 30000, "insurer_pays": 21000, "supplementary_pays": 6000, "patient_pays": 3000}
	amounts := map[string]any{"total": 10000, "insurer": 7000, "supplementary": 2000, "patient": 1000}
	view := map[string]any{"id": examplePID, "tracking_code": exampleCode, "kind": "electronic", "state": "active", "jws": exampleJWS,
		"accepted_at": "2026-12-05T08:00:00Z", "lines": []any{line}}
	switch op {
	case "GET /readyz":
		return 200, map[string]any{"checks": []any{map[string]any{"name": "database", "ok": true}}}
	case "POST /v1/sessions":
		return 201, map[string]any{"token": "tok-" + exampleClaim, "expires_at": "2026-12-05T20:00:00Z",
			"actor": map[string]any{"role": "pharmacy", "registration_number": "PH-8812", "certificate_serial": "0a1b", "name": "داروخانه شفا"}}
	case "DELETE /v1/sessions/current", "DELETE /v1/claims/{claimId}":
		return 204, nil
	case "POST /v1/prescriptions":
		status := 201
		if replay {
			status = 200
		}
		return status, map[string]any{"id": examplePID, "tracking_code": exampleCode, "state": "active", "accepted_at": "2026-12-05T08:00:00Z",
			"lines": []any{line}, "decision": decision, "ack": exampleJWS}
	case "POST /v1/prescriptions/lookup":
		return 200, view
	case "POST /v1/claims":
		return 201, map[string]any{"claim_id": exampleClaim, "secret": "s3cr3t-s3cr3t-s3cr3t", "expires_at": "2026-12-05T10:00:00Z", "prescription": view}
	case "POST /v1/claims/{claimId}/dispenses":
		return 201, map[string]any{"id": examplePID, "prescription_id": examplePID, "state": "partly-dispensed", "decision": decision,
			"amounts": amounts, "lines": []any{line}}
	case "POST /v1/claims/{claimId}/close":
		return 200, map[string]any{"receipt_id": exampleClaim, "receipt": exampleJWS, "amounts": amounts}
	case "POST /v1/prescriptions/{id}/cancellations":
		return 201, map[string]any{"prescription_id": params["id"], "state": "cancelled", "cancelled_at": "2026-12-05T09:00:00Z"}
	case "POST /v1/paper-prescriptions":
		return 201, map[string]any{"id": examplePID, "tracking_code": exampleCode, "decision": decision, "amounts": amounts, "receipt": exampleJWS}
	case "POST /v1/patient-history":
		return 200, map[string]any{"prescriptions": []any{map[string]any{"id": examplePID, "tracking_code": exampleCode, "kind": "electronic", "state": "partly-dispensed",
			"issued_at": "2026-12-05T08:00:00Z", "prescriber": map[string]any{"council_number": "MC-2001"}, "lines": []any{line},
			"dispenses": []any{map[string]any{"id": examplePID, "at": "2026-12-05T09:00:00Z", "organisation": "PH-8812", "role": "pharmacy",
				"items": []any{map[string]any{"code": "1234567", "quantity": 10}}}}}}, "next_cursor": "c2"}
	case "POST /v1/patient-access-log":
		return 200, map[string]any{"accesses": []any{map[string]any{"at": "2026-12-05T09:00:00Z", "action": "dispense", "outcome": "ok", "role": "pharmacy",
			"organisation": "PH-8812", "prescription_id": examplePID, "log_index": 41}}, "next_cursor": "c2"}
	}
	return 404, map[string]any{"type": "urn:nuskha:problem:not-found", "title": "Not found", "status": 404, "code": "not-found"}
}

// TestEveryOperationHoldsToTheContract: each method sends a request the
// contract accepts (the server validates method, path, headers, security
// and body) and decodes the contract's answer into its typed value.
func TestEveryOperationHoldsToTheContract(t *testing.T) {
	s := newContractServer(t)
	c := s.client(t, client.Config{})
	ctx := context.Background()
	find := client.Find{TrackingCode: exampleCode, NationalID: "0499370899"}

	// Without a session, the session's operations do not call rxd.
	if _, err := c.Lookup(ctx, find); !errors.Is(err, client.ErrNoSession) {
		t.Fatalf("lookup without a session: %v", err)
	}
	if len(s.requests("")) != 0 {
		t.Fatalf("sent without a session: %v", s.requests(""))
	}

	if err := c.Ready(ctx); err != nil {
		t.Fatalf("ready: %v", err)
	}
	acc, err := c.Prescribe(ctx, exampleJWS+"\n")
	if err != nil || acc.TrackingCode != exampleCode || acc.Replayed || acc.Decision == nil || acc.Decision.Items[0].PatientPays != 3000 ||
		len(acc.Lines) != 1 || acc.Lines[0].ValidUntil.IsZero() || acc.Ack != exampleJWS {
		t.Fatalf("prescribe: %+v, %v", acc, err)
	}
	if again, err := c.Prescribe(ctx, exampleJWS); err != nil || !again.Replayed {
		t.Fatalf("prescribe again: %+v, %v", again, err)
	}

	sess, err := c.OpenSession(ctx, exampleJWS)
	if err != nil || sess.Actor.Role != "pharmacy" || c.Token() != sess.Token {
		t.Fatalf("open session: %+v, %v", sess, err)
	}
	view, err := c.Lookup(ctx, find)
	if err != nil || view.JWS != exampleJWS || view.State != client.StateActive || view.Lines[0].Dispensed != 10 {
		t.Fatalf("lookup: %+v, %v", view, err)
	}
	g, err := c.Claim(ctx, find)
	if err != nil || g.ClaimID != exampleClaim || g.Secret == "" || g.Prescription == nil {
		t.Fatalf("claim: %+v, %v", g, err)
	}
	d, err := c.Dispense(ctx, g.ClaimID, g.Secret, exampleJWS)
	if err != nil || d.Amounts.Patient != 1000 || d.State != client.StatePartlyDispensed || d.Replayed {
		t.Fatalf("dispense: %+v, %v", d, err)
	}
	closed, err := c.Close(ctx, g.ClaimID, g.Secret)
	if err != nil || closed.Receipt != exampleJWS || closed.Amounts.Total != 10000 {
		t.Fatalf("close: %+v, %v", closed, err)
	}
	if err := c.Release(ctx, g.ClaimID, g.Secret); err != nil {
		t.Fatalf("release: %v", err)
	}
	cancelled, err := c.Cancel(ctx, examplePID, exampleJWS)
	if err != nil || cancelled.State != client.StateCancelled || cancelled.PrescriptionID != examplePID || cancelled.Replayed {
		t.Fatalf("cancel: %+v, %v", cancelled, err)
	}
	paper, err := c.Paper(ctx, exampleJWS)
	if err != nil || paper.Receipt != exampleJWS || paper.Amounts.Insurer != 7000 {
		t.Fatalf("paper: %+v, %v", paper, err)
	}
	page, err := c.History(ctx, client.HistoryQuery{NationalID: "0499370899", Limit: 10})
	if err != nil || len(page.Prescriptions) != 1 || page.NextCursor != "c2" || page.Prescriptions[0].Dispenses[0].Items[0].Quantity != 10 {
		t.Fatalf("history: %+v, %v", page, err)
	}
	accesses, err := c.AccessLog(ctx, client.AccessLogQuery{NationalID: "0499370899", Limit: 10})
	if err != nil || len(accesses.Accesses) != 1 || accesses.NextCursor != "c2" || accesses.Accesses[0].Action != "dispense" || accesses.Accesses[0].LogIndex != 41 {
		t.Fatalf("access log: %+v, %v", accesses, err)
	}
	if err := c.EndSession(ctx); err != nil || c.Token() != "" {
		t.Fatalf("end session: %v, token %q", err, c.Token())
	}

	// What travelled: the session token on the session's operations only,
	// the claim's secret, and an Idempotency-Key where the contract takes
	// one.
	for _, r := range s.requests("") {
		needsSession := map[string]bool{"POST /v1/prescriptions/lookup": true, "POST /v1/claims": true, "DELETE /v1/claims/{claimId}": true,
			"POST /v1/claims/{claimId}/dispenses": true, "POST /v1/claims/{claimId}/close": true, "DELETE /v1/sessions/current": true}[r.op]
		if got := r.authorization == "Bearer "+sess.Token; got != needsSession {
			t.Errorf("%s: Authorization %q", r.op, r.authorization)
		}
		keyed := map[string]bool{"POST /v1/sessions": true, "POST /v1/claims": true, "DELETE /v1/claims/{claimId}": true,
			"POST /v1/claims/{claimId}/close": true}[r.op]
		if (r.idempotencyKey != "") != keyed {
			t.Errorf("%s: Idempotency-Key %q", r.op, r.idempotencyKey)
		}
		if strings.HasPrefix(r.op, "POST /v1/claims/{claimId}") && r.claimSecret != g.Secret {
			t.Errorf("%s: Claim-Secret %q", r.op, r.claimSecret)
		}
		if r.op == "POST /v1/prescriptions" && r.body != exampleJWS {
			t.Errorf("prescribe sent %q: the JWS as signed, without the file's newline", r.body)
		}
	}
	if n := len(s.requests("")); n != 14 {
		t.Errorf("%d requests, want 14 (one per call)", n)
	}
}

// TestRetriesKeepTheIdempotencyKey: a call whose answer is lost, or that
// rxd asks to repeat later (503 with Retry-After), is sent again with the
// same Idempotency-Key and the same body, and answers as the first try
// would have; the next call draws a new key.
// TestConcurrentCallsKeepTheirConnections: a Client used by 16 goroutines
// at once, round after round, keeps the connections it opened (rxd speaks
// HTTP/1.1: one request at a time on each) — with the transport's
// default of two kept, every round after the first opened most of its
// connections again, a TLS handshake and a client certificate each. More
// goroutines than the 64 connections it keeps queue for them rather than
// open more (rxd closes a client address's connections past its cap).
func TestConcurrentCallsKeepTheirConnections(t *testing.T) {
	s := newContractServer(t)
	c := s.client(t, client.Config{})
	const workers, rounds, most = 16, 8, 64
	round := func(workers int) {
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				<-start
				if _, err := c.Prescribe(context.Background(), exampleJWS); err != nil {
					t.Error(err)
				}
			})
		}
		close(start)
		wg.Wait()
	}
	conns := func() int {
		seen := map[string]bool{}
		for _, r := range s.requests("POST /v1/prescriptions") {
			seen[r.remote] = true
		}
		return len(seen)
	}
	for range rounds {
		round(workers)
	}
	if n := conns(); n > workers {
		t.Fatalf("%d calls, never more than %d at once, used %d connections", workers*rounds, workers, n)
	}
	round(2 * most)
	if n := conns(); n > most {
		t.Fatalf("%d calls at once opened %d connections, more than the %d a Client keeps", 2*most, n, most)
	}
}

func TestRetriesKeepTheIdempotencyKey(t *testing.T) {
	s := newContractServer(t)
	c := s.client(t, client.Config{SessionToken: "resumed"})
	ctx := context.Background()
	find := client.Find{TrackingCode: exampleCode, NationalID: "0499370899"}

	s.queue("POST /v1/claims", fault{drop: true}, fault{status: 503, code: "unavailable", retryAfter: "0"})
	g, err := c.Claim(ctx, find)
	if err != nil || g.ClaimID != exampleClaim {
		t.Fatalf("claim after a lost answer and a 503: %+v, %v", g, err)
	}
	tries := s.requests("POST /v1/claims")
	if len(tries) != 3 {
		t.Fatalf("%d attempts, want 3", len(tries))
	}
	for _, r := range tries {
		if r.idempotencyKey != tries[0].idempotencyKey || r.body != tries[0].body || r.authorization != "Bearer resumed" {
			t.Fatalf("a retry differs from the first attempt: %+v vs %+v", r, tries[0])
		}
	}
	if _, err := c.Claim(ctx, find); err != nil {
		t.Fatal(err)
	}
	if next := s.requests("POST /v1/claims")[3]; next.idempotencyKey == tries[0].idempotencyKey {
		t.Fatal("a new call reused the last call's Idempotency-Key")
	}

	// A document is its own key: sent again as it was.
	s.queue("POST /v1/claims/{claimId}/dispenses", fault{drop: true})
	if _, err := c.Dispense(ctx, exampleClaim, "s3cr3t-s3cr3t-s3cr3t", exampleJWS); err != nil {
		t.Fatal(err)
	}
	if d := s.requests("POST /v1/claims/{claimId}/dispenses"); len(d) != 2 || d[0].body != d[1].body {
		t.Fatalf("dispense attempts: %+v", d)
	}

	// Retries run out: the last problem is the answer.
	limited := s.client(t, client.Config{SessionToken: "resumed", Retries: 1})
	s.queue("POST /v1/claims/{claimId}/close", fault{status: 503, code: "unavailable", retryAfter: "0"}, fault{status: 503, code: "unavailable", retryAfter: "0"})
	if _, err := limited.Close(ctx, exampleClaim, "s3cr3t-s3cr3t-s3cr3t"); !client.IsCode(err, "unavailable") {
		t.Fatalf("close after retries ran out: %v", err)
	}
	if n := len(s.requests("POST /v1/claims/{claimId}/close")); n != 2 {
		t.Fatalf("%d attempts with Retries 1, want 2", n)
	}
}

// TestRefusalsAreTypedAndNotRetried: a refusal is a *Problem with every
// member of the problem document, found by errors.As and errors.Is, and
// sent once; a Retry-After longer than the client may wait is not waited.
func TestRefusalsAreTypedAndNotRetried(t *testing.T) {
	s := newContractServer(t)
	c := s.client(t, client.Config{SessionToken: "resumed"})
	ctx := context.Background()
	find := client.Find{TrackingCode: exampleCode, NationalID: "0499370899"}

	s.queue("POST /v1/claims", fault{status: 409, code: "prescription-claimed"})
	_, err := c.Claim(ctx, find)
	var p *client.Problem
	if !errors.As(err, &p) || p.Status != 409 || p.Code != "prescription-claimed" || p.Type != "urn:nuskha:problem:prescription-claimed" ||
		p.RequestID != "req-1" || p.Detail == "" || p.Retry || !strings.Contains(string(p.Raw), `"until"`) {
		t.Fatalf("claim refused: %#v", err)
	}
	if !errors.Is(fmt.Errorf("wrapped: %w", err), &client.Problem{Code: "prescription-claimed"}) || errors.Is(err, &client.Problem{Code: "not-found"}) {
		t.Fatal("errors.Is does not match problems by code")
	}
	if !strings.Contains(err.Error(), "409 prescription-claimed") || !strings.Contains(err.Error(), "req-1") {
		t.Fatalf("message: %v", err)
	}

	s.queue("POST /v1/prescriptions/lookup", fault{status: 429, code: "quota-exceeded", retryAfter: "3600"})
	start := time.Now()
	if _, err := c.Lookup(ctx, find); !client.IsCode(err, "quota-exceeded") || time.Since(start) > 5*time.Second {
		t.Fatalf("lookup over quota: %v after %s", err, time.Since(start))
	}
	if n := len(s.requests("POST /v1/claims")) + len(s.requests("POST /v1/prescriptions/lookup")); n != 2 {
		t.Fatalf("%d attempts for two refusals, want 2", n)
	}

	// An ended session answers unauthenticated; ending it is still done.
	s.queue("DELETE /v1/sessions/current", fault{status: 401, code: "unauthenticated"})
	if err := c.EndSession(ctx); err != nil || c.Token() != "" {
		t.Fatalf("ending an ended session: %v", err)
	}
}

// TestUntrustedServerIsNotRetried: a server whose certificate the roots do
// not vouch for is refused at once, not retried.
func TestUntrustedServerIsNotRetried(t *testing.T) {
	s := newContractServer(t)
	var handshakes int
	var mu sync.Mutex
	s.srv.TLS.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		mu.Lock()
		handshakes++
		mu.Unlock()
		return nil, nil
	}
	other := newContractServer(t)
	c := s.client(t, client.Config{Roots: other.roots})
	_, err := c.Prescribe(context.Background(), exampleJWS)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("prescribe to an untrusted server: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if handshakes != 1 {
		t.Fatalf("%d handshakes, want 1", handshakes)
	}
}

// TestNewRefusesWhatCannotWork: a Client needs https, trust anchors and a
// client certificate.
func TestNewRefusesWhatCannotWork(t *testing.T) {
	s := newContractServer(t)
	for name, cfg := range map[string]client.Config{
		"http":           {BaseURL: "http://localhost", Roots: s.roots, Certificate: s.vendor},
		"no roots":       {BaseURL: s.url(), Certificate: s.vendor},
		"no certificate": {BaseURL: s.url(), Roots: s.roots},
	} {
		if _, err := client.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestContractServerSeesViolations holds the stand-in to account: a
// request the contract refuses is reported, so the tests above could fail.
func TestContractServerSeesViolations(t *testing.T) {
	s := newContractServer(t)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.roots, Certificates: []tls.Certificate{s.vendor}}}}
	for _, tc := range []struct{ method, path, ctype, body string }{
		{"POST", "/v1/prescriptions/lookup", "application/json", `{"tracking_code": "X", "national_id": "1", "extra": 1}`},
		{"POST", "/v1/prescriptions", "application/jose", "not a JWS"},
		{"POST", "/v1/claims/" + exampleClaim + "/close", "", ""},
	} {
		req, _ := http.NewRequest(tc.method, s.url()+tc.path, strings.NewReader(tc.body))
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	s.mu.Lock()
	found := len(s.invalid)
	s.invalid = nil
	s.mu.Unlock()
	if found != 3 {
		t.Fatalf("%d violations reported, want 3", found)
	}
}
