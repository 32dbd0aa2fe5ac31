package rxapi_test

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/rxapi"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

// send is one request as a hostile client sends it: no contract check,
// the path sent as written (percent-escapes included).
func (f *xfixture) send(t *testing.T, client, method, path string, header map[string]string, body string) answer {
	t.Helper()
	hr, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		hr.Header.Set(k, v)
	}
	resp, err := f.clients[client].Do(hr)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, b}
}

// syncBuffer is a log written by the server's goroutines and read by the
// test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestPathIDsNotText: a claim or prescription id in the path that is not
// text — a NUL, bytes that are not UTF-8 — names nothing, on either
// store: refused as malformed, never a 500 from PostgreSQL ("invalid byte
// sequence for encoding UTF8") logged as the server's failure.
func TestPathIDsNotText(t *testing.T) {
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		t.Run(driver, func(t *testing.T) {
			var logs syncBuffer
			f := xsetupOn(t, driver, func(a *rxapi.API) { a.Log = slog.New(slog.NewJSONHandler(&logs, nil)) })
			p := f.prescription(drug(catalogtest.Amoxicillin, 20))
			jws := f.sign(t, f.doctor, p)
			want(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions", body: jws}), 201, nil)
			tok := f.session(t, f.pharmacy, "vendor")
			dispense := f.sign(t, f.pharmacy, f.dispenseDoc(f.pharmacy, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 1}))
			auth := map[string]string{"Authorization": "Bearer " + tok, "Claim-Secret": strings.Repeat("x", 43)}
			jose := map[string]string{"Authorization": "Bearer " + tok, "Claim-Secret": strings.Repeat("x", 43), "Content-Type": "application/jose"}
			for _, id := range []string{"%00", "a%00b", "%FF", "%C0%AF"} {
				for _, r := range []struct {
					method, path string
					header       map[string]string
					body         string
				}{
					{"POST", "/v1/claims/" + id + "/close", auth, ""},
					{"DELETE", "/v1/claims/" + id, auth, ""},
					{"POST", "/v1/claims/" + id + "/dispenses", jose, dispense},
					{"POST", "/v1/prescriptions/" + id + "/cancellations", map[string]string{"Content-Type": "application/jose"}, jws},
				} {
					refused(t, f.send(t, "vendor", r.method, r.path, r.header, r.body), 400, "malformed-request")
				}
			}
			if strings.Contains(logs.String(), `"level":"ERROR"`) {
				t.Fatalf("a client's bad path logged as the server's failure:\n%s", logs.String())
			}
		})
	}
}

// TestExchangeProblemsHoldNoPath: the exchange's refusals that carry
// more than their code (claimed until, state, remaining, a decision) have
// the route as their instance, as every other problem document has
// (docs/problems.md), never the path with its ids.
func TestExchangeProblemsHoldNoPath(t *testing.T) {
	f := xsetup(t)
	p := f.prescription(drug(catalogtest.Amoxicillin, 20))
	jws := f.sign(t, f.doctor, p)
	var acc exchange.PrescriptionAccepted
	want(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions", body: jws}), 201, &acc)
	tok := f.session(t, f.pharmacy, "vendor")
	var claim exchange.ClaimGranted
	want(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/claims", body: findBody(acc.TrackingCode, p.Patient.NationalID), token: tok}), 201, &claim)

	dispenses := "/v1/claims/" + claim.ClaimID + "/dispenses"
	some := f.sign(t, f.pharmacy, f.dispenseDoc(f.pharmacy, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 15}))
	want(t, f.do(t, req{client: "vendor", method: "POST", path: dispenses, body: some, token: tok, secret: claim.Secret}), 201, nil)
	over := f.sign(t, f.pharmacy, f.dispenseDoc(f.pharmacy, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 10}))
	po := refused(t, f.do(t, req{client: "vendor", method: "POST", path: dispenses, body: over, token: tok, secret: claim.Secret}), 409, "over-dispense")
	cancel := f.sign(t, f.doctor, &rx.Cancellation{V: rx.Version, Type: rx.KindCancellation, ID: rx.NewID(), CancelledAt: f.clock.Now(),
		Prescription: rx.Reference{ID: p.ID, JWSSHA256: rx.SHA256(jws)}, Prescriber: p.Prescriber, Reason: "تغییر درمان"})
	pc := refused(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions/" + p.ID + "/cancellations", body: cancel}), 409, "prescription-claimed")
	for route, doc := range map[string]map[string]any{"/v1/claims/{claimId}/dispenses": po, "/v1/prescriptions/{id}/cancellations": pc} {
		got, _ := json.Marshal(doc)
		if doc["instance"] != route || strings.Contains(string(got), claim.ClaimID) || strings.Contains(string(got), p.ID) {
			t.Errorf("problem %s: want instance %s and no id", got, route)
		}
	}
}

// TestRepeatedQueryParameter: a parameter given twice is refused, not
// read as its first value (a proxy in front may read the last).
func TestRepeatedQueryParameter(t *testing.T) {
	f := xsetup(t)
	nid := insuredtest.NationalID(0)
	for _, query := range []string{"date=2026-09-06&date=1405-06-15", "detail=minimal&detail=full"} {
		refused(t, f.send(t, "vendor", "GET", "/v1/eligibility/"+nid+"?"+query, nil, ""), 400, "malformed-request")
	}
	want(t, f.send(t, "vendor", "GET", "/v1/eligibility/"+nid+"?date=2026-09-06&detail=minimal", nil, ""), 200, nil)
}

// TestBodyReadAsLabelled: a signed document is read only as the
// representation its headers name. rxd read a body labelled gzip, or
// UTF-16, as it came, so a proxy or filter that honours those headers saw
// another body than the exchange accepted; each is refused, nothing stored,
// and the same document sent plainly is accepted.
func TestBodyReadAsLabelled(t *testing.T) {
	f := xsetup(t)
	p := f.prescription(drug(catalogtest.Amoxicillin, 20))
	jws := f.sign(t, f.doctor, p)
	for name, header := range map[string]map[string]string{
		"gzip":             {"Content-Type": "application/jose", "Content-Encoding": "gzip"},
		"charset utf-16":   {"Content-Type": "application/jose; charset=utf-16"},
		"JSON serialised":  {"Content-Type": "application/jose+json"},
		"charset latin-1":  {"Content-Type": "application/jose; charset=iso-8859-1"},
		"deflate, then br": {"Content-Type": "application/jose", "Content-Encoding": "deflate, br"},
	} {
		t.Run(name, func(t *testing.T) {
			refused(t, f.send(t, "vendor", "POST", "/v1/prescriptions", header, jws), 400, "malformed-request")
		})
	}
	// Not stored: the first plain submission is the first acceptance.
	want(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions", body: jws}), 201, nil)
}

// signPayload signs payload, as it is, under the header of the card's
// token tok: a document rx.Sign would never make.
func signPayload(t *testing.T, c card, tok string, payload []byte) string {
	t.Helper()
	return testpki.SignInput(t, tok[:strings.IndexByte(tok, '.')]+"."+base64.RawURLEncoding.EncodeToString(payload), c.key.(*ecdsa.PrivateKey))
}

// TestAmbiguousPatientRefusedAsSuch: before a prescription is verified,
// the patient it names is looked up (the lookup's budget, its national
// id's form). That national id was read with encoding/json, which folds
// "PATIENT" onto patient and takes the last of two members, so a payload
// naming a second patient was judged by that patient's national id (here
// one whose check digit fails: invalid-national-id) rather than refused
// for what it is, a payload that names one patient to one reader and
// another to the next (invalid-document).
func TestAmbiguousPatientRefusedAsSuch(t *testing.T) {
	f := xsetup(t)
	p := f.prescription(drug(catalogtest.Amoxicillin, 20))
	tok := f.sign(t, f.doctor, p)
	payload, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	for name, ambiguous := range map[string]string{
		"a case variant":        strings.Replace(string(payload), `"prescriber":`, `"PATIENT":{"national_id":"1234567890"},"prescriber":`, 1),
		"a second member":       strings.Replace(string(payload), `"prescriber":`, `"patient":{"national_id":"1234567890"},"prescriber":`, 1),
		"a nested case variant": strings.Replace(string(payload), `"name":`, `"National_ID":"1234567890","name":`, 1),
	} {
		t.Run(name, func(t *testing.T) {
			if ambiguous == string(payload) {
				t.Fatal("the payload did not change")
			}
			refused(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions", body: signPayload(t, f.doctor, tok, []byte(ambiguous))}), 422, "invalid-document")
		})
	}
}
