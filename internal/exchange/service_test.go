package exchange_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/adjudicate"
	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/exchange/exchangetest"
	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/persian"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/crl"
	"github.com/nuskha/nuskha/internal/pki/revocation"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/tlogstore"
	"github.com/nuskha/nuskha/internal/testutil/rxdtest"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

var ctx = context.Background()

// card is a key with its certificate chain (leaf, intermediate).
type card struct {
	key   crypto.Signer
	chain []*x509.Certificate
	sub   *registry.Subject
}

// fixture is the whole exchange on a real store (SQLite or PostgreSQL)
// with the generated registry, the sample catalogue and the starter rules,
// real certificates from a test CA, and a revocation checker fed by CRLs
// the test signs.
type fixture struct {
	now      time.Time
	pki      *testpki.PKI
	interKey crypto.Signer
	checker  *revocation.Checker
	crlNo    int64
	revoked  []crl.Entry
	verifier *rx.Verifier
	store    *rxstore.Exchange
	log      *tlogstore.Store
	registry *rxstore.Insured
	cfg      exchange.Config
	svc      *exchange.Service

	doctor, pharmacy, rival, lab, exch card
	vendor, vendor2                    exchange.Caller
}

func newKey() *ecdsa.PrivateKey {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return k
}

// start is 09:00 UTC on the day the generated registry's persons are
// covered (1405-06-15).
var start = insuredtest.Day.Add(9 * time.Hour)

func setup(t testing.TB, driver string) *fixture {
	return setupPersons(t, driver, 80)
}

// setupPersons is setup with a registry of the first persons of the
// generated one.
func setupPersons(t testing.TB, driver string, persons int) *fixture {
	t.Helper()
	f := &fixture{now: start, interKey: newKey()}
	clock := func() time.Time { return f.now }
	// The hierarchy is made two days before the tests' clock.
	f.pki = testpki.New(t, f.interKey, func() time.Time { return start.Add(-48 * time.Hour) })
	f.doctor = f.card(t, "practitioner-signing", testpki.Subject(pki.RolePractitioner, "sub_doctor", start))
	f.pharmacy = f.card(t, "pharmacy-signing", testpki.Subject(pki.RolePharmacy, "sub_ph", start))
	rival := testpki.Subject(pki.RolePharmacy, "sub_ph2", start)
	rival.LicenceNumber = "PH-9001"
	f.rival = f.card(t, "pharmacy-signing", rival)
	f.lab = f.card(t, "paraclinic-signing", testpki.Subject(pki.RoleParaclinic, "sub_lab", start))
	f.exch = f.card(t, "exchange-receipt-signing", testpki.Subject(pki.RoleService, "sub_rxd", start))
	for i, c := range []*exchange.Caller{&f.vendor, &f.vendor2} {
		v := f.card(t, "service-tls-client", testpki.Subject(pki.RoleVendor, []string{"sub_v1", "sub_v2"}[i], start))
		*c = exchange.Caller{Role: pki.RoleVendor, SubjectID: v.sub.ID, Thumbprint: rx.Thumbprint(v.chain[0]), CertSHA256: fingerprint(v.chain[0])}
	}

	var err error
	if f.checker, err = revocation.New(revocation.Config{MaxAge: 24 * time.Hour, Now: clock}); err != nil {
		t.Fatal(err)
	}
	f.publish(t)
	roots := []*x509.Certificate{f.pki.Root}
	if f.verifier, err = rx.NewVerifier(rx.Config{Roots: roots, Arc: f.pki.Arc, Status: f.checker, Now: clock}); err != nil {
		t.Fatal(err)
	}
	re, err := rx.NewVerifier(rx.Config{Roots: roots, Arc: f.pki.Arc, Status: exchange.AtAcceptance(f.checker), Now: clock, MaxAge: 2 * 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	data := rxdtest.Open(t, driver, persons)
	f.registry = data.Registry
	f.log = data.AuditLog(t)
	if f.store, err = rxstore.NewExchange(ctx, data.DB, f.log); err != nil {
		t.Fatal(err)
	}
	f.cfg = exchange.Config{Store: f.store, Verifier: f.verifier, Reverifier: re, Status: f.checker,
		Adjudicator: data.Adjudicator(clock), Key: exchange.SigningKey{Signer: f.exch.key, Chain: f.exch.chain}, Arc: f.pki.Arc, Now: clock,
		Pseudonyms: rxdtest.Pseudonyms(), AuditLog: f.log}
	f.svc, err = exchange.New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// card issues a certificate of profile to sub, valid from a day before
// the tests' clock for a year.
func (f *fixture) card(t testing.TB, profile string, sub *registry.Subject) card {
	t.Helper()
	k := newKey()
	leaf := f.pki.IssueWithValidity(t, profile, sub, k, start.Add(-24*time.Hour), start.Add(365*24*time.Hour))
	return card{k, []*x509.Certificate{leaf, f.pki.Intermediate}, sub}
}

// publish signs a new CRL at the clock's time listing what was revoked,
// and the root's ARL, and gives both to the checker.
func (f *fixture) publish(t testing.TB) {
	t.Helper()
	f.crlNo++
	der, err := crl.Sign(crl.Request{Number: big.NewInt(f.crlNo), ThisUpdate: f.now, NextUpdate: f.now.Add(24 * time.Hour), Entries: f.revoked},
		f.pki.Intermediate, f.interKey, f.pki.Linter, nil)
	if err != nil {
		t.Fatal(err)
	}
	list, _ := x509.ParseRevocationList(der)
	if err := f.checker.AddCRL(list, f.pki.Intermediate); err != nil {
		t.Fatal(err)
	}
	if err := f.checker.AddCRL(f.pki.ARL(t, f.now), f.pki.Root); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) revoke(t *testing.T, c card, at time.Time, reason int) {
	t.Helper()
	f.revoked = append(f.revoked, crl.Entry{Serial: c.chain[0].SerialNumber, RevokedAt: at, Reason: reason})
	f.publish(t)
}

// advance moves the clock, with fresh revocation evidence.
func (f *fixture) advance(t *testing.T, d time.Duration) {
	t.Helper()
	f.now = f.now.Add(d)
	f.publish(t)
}

func (f *fixture) sign(t testing.TB, c card, doc rx.Document) string {
	t.Helper()
	tok, err := rx.Sign(doc, c.key, c.chain, f.now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// prescription for person 0 of the registry (a woman born 1951, with
// supplementary insurance), by the doctor card's holder.
func (f *fixture) prescription(doctor card, items ...rx.Item) *rx.Prescription {
	return &rx.Prescription{V: rx.Version, Type: rx.KindPrescription, ID: rx.NewID(), IssuedAt: f.now,
		Patient:    rx.Patient{NationalID: insuredtest.NationalID(0), Name: "بیمار آزمایشی", BirthDate: "1951-03-21", Sex: "female"},
		Prescriber: rx.Prescriber{CouncilNumber: doctor.sub.CouncilNumber, Profession: string(doctor.sub.Profession), Specialty: doctor.sub.Specialty},
		Practice:   rx.Practice{Name: "درمانگاه نمونه"},
		Items:      items}
}

func drug(code string, qty int) rx.Item { return rx.Item{Kind: "drug", Code: code, Quantity: qty} }

func (f *fixture) prescribe(t *testing.T, doctor card, items ...rx.Item) (*rx.Prescription, string, *exchange.PrescriptionAccepted) {
	t.Helper()
	p := f.prescription(doctor, items...)
	jws := f.sign(t, doctor, p)
	ans, replay, err := f.svc.Prescribe(ctx, f.vendor, jws)
	if err != nil || replay {
		t.Fatalf("prescribe: %v (replay %v)", err, replay)
	}
	return p, jws, ans
}

// session opens a session for c through vendor.
func (f *fixture) session(t *testing.T, c card, vendor exchange.Caller) (string, *exchange.Actor) {
	t.Helper()
	jws := f.sign(t, c, &rx.Session{V: rx.Version, Type: rx.KindSession, ID: rx.NewID(), Aud: rx.SessionAudience, IssuedAt: f.now, Vendor: vendor.Thumbprint})
	s, err := f.svc.OpenSession(ctx, vendor, jws)
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	a, err := f.svc.Authenticate(ctx, vendor, s.Token)
	if err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	return s.Token, a
}

func (f *fixture) dispenseDoc(c card, jws string, id string, items ...rx.DispensedItem) *rx.Dispense {
	return &rx.Dispense{V: rx.Version, Type: rx.KindDispense, ID: rx.NewID(), DispensedAt: f.now,
		Prescription: rx.Reference{ID: id, JWSSHA256: rx.SHA256(jws)},
		Dispenser:    rx.Dispenser{LicenceNumber: c.sub.LicenceNumber, Role: string(c.sub.Kind)}, Items: items}
}

func find(ans *exchange.PrescriptionAccepted, p *rx.Prescription) exchange.Find {
	return exchange.Find{TrackingCode: strings.ToLower(ans.TrackingCode), NationalID: p.Patient.NationalID}
}

func wantCode(t *testing.T, err error, code errs.Code) {
	t.Helper()
	if !errors.Is(err, errs.Of(code)) {
		t.Fatalf("got %v, want %s", err, code)
	}
}

var drivers = []string{sqlstore.SQLite, sqlstore.Postgres}

// TestWholePath: prescribe, look up, claim, dispense in two visits' worth
// of items, close, and the receipt verifies as the exchange's and binds
// what happened.
func TestWholePath(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			p, jws, ans := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20), drug(catalogtest.Metformin, 60))
			if ans.ID != p.ID || ans.State != exchange.Active || len(ans.Lines) != 2 || !ans.Decision.Allowed || len(ans.TrackingCode) != 13 {
				t.Fatalf("answer %+v", ans)
			}
			ack, err := f.verifier.Verify(ctx, ans.Ack, rx.KindAck)
			if err != nil {
				t.Fatal(err)
			}
			if ack.Ack.Prescription.ID != p.ID || ack.Ack.Prescription.JWSSHA256 != rx.SHA256(jws) || ack.Ack.TrackingCode != strings.ReplaceAll(ans.TrackingCode, "-", "") ||
				!ack.Ack.AcceptedAt.Equal(ans.AcceptedAt) || ack.Signer.Role != pki.RoleService {
				t.Fatalf("ack %+v", ack.Ack)
			}

			// The same prescription again, even with its ECDSA signature
			// rewritten to (r, n−s): the first answer, nothing stored.
			again, replay, err := f.svc.Prescribe(ctx, f.vendor, malleate(t, jws))
			if err != nil || !replay || again.TrackingCode != ans.TrackingCode || again.Ack != ans.Ack {
				t.Fatalf("replay: %+v %v %v", again, replay, err)
			}
			// The first answer and its replay (read back from the store)
			// say the same, byte for byte.
			if first, _ := json.Marshal(ans); !bytes.Equal(first, mustJSON(t, again)) {
				t.Fatalf("the first answer and its replay differ:\n%s\n%s", first, mustJSON(t, again))
			}

			_, ph := f.session(t, f.pharmacy, f.vendor)
			view, err := f.svc.Lookup(ctx, ph, find(ans, p))
			if err != nil || view.JWS != jws || view.State != exchange.Active || view.ClaimedUntil != nil {
				t.Fatalf("lookup: %+v %v", view, err)
			}
			claim, err := f.svc.Claim(ctx, ph, find(ans, p))
			if err != nil || claim.Prescription.ClaimedUntil == nil || !claim.ExpiresAt.Equal(f.now.Add(2*time.Hour)) || len(claim.Secret) != 43 {
				t.Fatalf("claim: %+v %v", claim, err)
			}

			var ids []string
			var total exchange.Amounts
			for i, item := range []rx.DispensedItem{{Code: catalogtest.Amoxicillin, Quantity: 20}, {Code: catalogtest.Metformin, Quantity: 60}} {
				f.advance(t, 10*time.Minute)
				d := f.dispenseDoc(f.pharmacy, jws, p.ID, item)
				dj := f.sign(t, f.pharmacy, d)
				got, replay, err := f.svc.Dispense(ctx, ph, claim.ClaimID, claim.Secret, dj)
				if err != nil || replay {
					t.Fatalf("dispense %d: %v", i, err)
				}
				want := []exchange.State{exchange.PartlyDispensed, exchange.Dispensed}[i]
				if got.ID != d.ID || got.State != want || got.Amounts.Total == 0 || got.Amounts.Total != got.Amounts.Insurer+got.Amounts.Supplementary+got.Amounts.Patient {
					t.Fatalf("dispense %d: %+v", i, got)
				}
				// A retry answers the first answer.
				if again, replay, err := f.svc.Dispense(ctx, ph, claim.ClaimID, claim.Secret, dj); err != nil || !replay || again.Amounts != got.Amounts || again.State != want {
					t.Fatalf("dispense %d again: %+v %v %v", i, again, replay, err)
				}
				ids = append(ids, d.ID)
				total = exchange.Amounts{Total: total.Total + got.Amounts.Total, Insurer: total.Insurer + got.Amounts.Insurer,
					Supplementary: total.Supplementary + got.Amounts.Supplementary, Patient: total.Patient + got.Amounts.Patient}
			}

			closed, err := f.svc.Close(ctx, ph, claim.ClaimID, claim.Secret)
			if err != nil || closed.Amounts != total {
				t.Fatalf("close: %+v %v (want %+v)", closed, err, total)
			}
			r, err := f.verifier.Verify(ctx, closed.Receipt, rx.KindReceipt)
			if err != nil {
				t.Fatal(err)
			}
			rc := r.Receipt
			if rc.ID != closed.ReceiptID || rc.Prescription.ID != p.ID || rc.Prescription.JWSSHA256 != rx.SHA256(jws) || len(rc.Dispenses) != 2 ||
				rc.Dispenses[0].ID != ids[0] || rc.Dispenses[1].ID != ids[1] || rc.Amounts.Total != total.Total || rc.Amounts.Patient != total.Patient ||
				rc.Dispenser.LicenceNumber != f.pharmacy.sub.LicenceNumber || !rc.ClosedAt.Equal(f.now.Truncate(time.Second)) {
				t.Fatalf("receipt %+v", rc)
			}
			// One close, one receipt.
			f.advance(t, time.Minute)
			if again, err := f.svc.Close(ctx, ph, claim.ClaimID, claim.Secret); err != nil || again.Receipt != closed.Receipt {
				t.Fatalf("close again: %v", err)
			}
			// Fully dispensed: nothing more to claim.
			_, err = f.svc.Claim(ctx, ph, find(ans, p))
			wantCode(t, err, errs.PrescriptionNotDispensable)

			// The patient's history, for the insurer's services only.
			service := exchange.Caller{Role: pki.RoleService, SubjectID: "sub_portal", Thumbprint: "x", CertSHA256: portalSHA256}
			_, err = f.svc.History(ctx, f.vendor, exchange.HistoryQuery{NationalID: p.Patient.NationalID})
			wantCode(t, err, errs.RoleNotAllowed)
			page, err := f.svc.History(ctx, service, exchange.HistoryQuery{NationalID: p.Patient.NationalID})
			if err != nil || len(page.Prescriptions) != 1 || page.Prescriptions[0].State != exchange.Dispensed || len(page.Prescriptions[0].Dispenses) != 2 ||
				page.Prescriptions[0].Dispenses[0].Organisation != f.pharmacy.sub.LicenceNumber || page.Prescriptions[0].Prescriber.CouncilNumber != f.doctor.sub.CouncilNumber || page.Prescriptions[0].TrackingCode != ans.TrackingCode {
				t.Fatalf("history %+v %v", page, err)
			}
		})
	}
}

// malleate rewrites an ES256 signature (r, s) as (r, n−s), which verifies
// as well and leaves the signing input as it is.
func malleate(t *testing.T, jws string) string {
	t.Helper()
	i := strings.LastIndexByte(jws, '.')
	sig, err := base64.RawURLEncoding.DecodeString(jws[i+1:])
	if err != nil || len(sig) != 64 {
		t.Fatalf("signature %d bytes: %v", len(sig), err)
	}
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(elliptic.P256().Params().N, s)
	s.FillBytes(sig[32:])
	return jws[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}

// signPayload signs payload, as it is, under the header of the card's
// token tok: a document rx.Sign would never make.
func signPayload(t *testing.T, c card, tok string, payload []byte) string {
	t.Helper()
	return testpki.SignInput(t, tok[:strings.IndexByte(tok, '.')]+"."+base64.RawURLEncoding.EncodeToString(payload), c.key.(*ecdsa.PrivateKey))
}

// TestAmbiguousIDRefusedAsSuch: a signed document the verifier refuses is
// looked up by its id, in case it was accepted before (its first answer
// stands). That id was read with encoding/json, which takes the last of
// two "id" members and folds case, so a document naming a new id and,
// after it, a stored prescription's id as "ID" (or "id" again) was
// answered document-id-conflict — another document under a used id —
// rather than refused for what it is, a payload that means one thing to
// one reader and another to the next (invalid-document).
func TestAmbiguousIDRefusedAsSuch(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			amox := drug(catalogtest.Amoxicillin, 20)
			stored, _, _ := f.prescribe(t, f.doctor, amox)
			p := f.prescription(f.doctor, amox)
			tok := f.sign(t, f.doctor, p)
			payload := string(mustJSON(t, p))
			for name, ambiguous := range map[string]string{
				"a case variant": strings.Replace(payload, `"issued_at":`, `"ID":"`+stored.ID+`","issued_at":`, 1),
				"a second id":    strings.Replace(payload, `"issued_at":`, `"id":"`+stored.ID+`","issued_at":`, 1),
				"an escaped id":  strings.Replace(payload, `"issued_at":`, `"\u0069d":"`+stored.ID+`","issued_at":`, 1),
			} {
				t.Run(name, func(t *testing.T) {
					if ambiguous == payload {
						t.Fatal("the payload did not change")
					}
					_, _, err := f.svc.Prescribe(ctx, f.vendor, signPayload(t, f.doctor, tok, []byte(ambiguous)))
					wantCode(t, err, errs.InvalidDocument)
				})
			}
		})
	}
}

func decisionOf(t *testing.T, err error) *exchange.RuleViolationError {
	t.Helper()
	var rv *exchange.RuleViolationError
	if !errors.As(err, &rv) || rv.Decision == nil {
		t.Fatalf("no decision with %v", err)
	}
	return rv
}

// TestRefusals: each refusal, with its code, on both stores.
func TestRefusals(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			amox := drug(catalogtest.Amoxicillin, 20)
			_, ph := f.session(t, f.pharmacy, f.vendor)

			t.Run("bad signature", func(t *testing.T) {
				jws := f.sign(t, f.doctor, f.prescription(f.doctor, amox))
				i := strings.LastIndexByte(jws, '.')
				sig, _ := base64.RawURLEncoding.DecodeString(jws[i+1:])
				sig[5] ^= 1
				_, _, err := f.svc.Prescribe(ctx, f.vendor, jws[:i+1]+base64.RawURLEncoding.EncodeToString(sig))
				wantCode(t, err, errs.SignatureInvalid)
			})
			t.Run("not eligible", func(t *testing.T) {
				p := f.prescription(f.doctor, amox)
				p.Patient.NationalID = insuredtest.NationalID(99) // not in the registry
				_, _, err := f.svc.Prescribe(ctx, f.vendor, f.sign(t, f.doctor, p))
				wantCode(t, err, errs.NotEligible)
			})
			t.Run("rule violation", func(t *testing.T) {
				// Sildenafil is for men; the patient is a woman.
				p := f.prescription(f.doctor, amox, drug(catalogtest.Sildenafil, 4))
				_, _, err := f.svc.Prescribe(ctx, f.vendor, f.sign(t, f.doctor, p))
				wantCode(t, err, errs.RuleViolation)
				if rv := decisionOf(t, err); rv.Decision.Allowed || !rv.Decision.Items[0].Allowed || rv.Decision.Items[1].Allowed {
					t.Fatalf("decision %+v", rv.Decision.Items)
				}
				if _, err := f.store.PrescriptionByID(ctx, p.ID, f.now); !errors.Is(err, errs.Of(errs.NotFound)) {
					t.Fatalf("a refused prescription was stored: %v", err)
				}
			})
			t.Run("pharmacy prescribing", func(t *testing.T) {
				p := f.prescription(f.doctor, amox)
				_, _, err := f.svc.Prescribe(ctx, f.vendor, f.sign(t, f.pharmacy, p))
				wantCode(t, err, errs.RoleNotAllowed)
			})
			t.Run("replay with changed content", func(t *testing.T) {
				p, _, _ := f.prescribe(t, f.doctor, amox)
				p.Items[0].Quantity = 30
				_, _, err := f.svc.Prescribe(ctx, f.vendor, f.sign(t, f.doctor, p))
				wantCode(t, err, errs.DocumentIDConflict)
			})
			t.Run("practitioner dispensing", func(t *testing.T) {
				p, jws, ans := f.prescribe(t, f.doctor, amox)
				_, doc := f.session(t, f.doctor, f.vendor)
				_, err := f.svc.Claim(ctx, doc, find(ans, p))
				wantCode(t, err, errs.RoleNotAllowed)
				c, err := f.svc.Claim(ctx, ph, find(ans, p))
				if err != nil {
					t.Fatal(err)
				}
				d := f.dispenseDoc(f.pharmacy, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 5})
				_, _, err = f.svc.Dispense(ctx, ph, c.ClaimID, c.Secret, f.sign(t, f.doctor, d))
				wantCode(t, err, errs.RoleNotAllowed)
				_, _, err = f.svc.Dispense(ctx, doc, c.ClaimID, c.Secret, f.sign(t, f.pharmacy, d))
				wantCode(t, err, errs.RoleNotAllowed)
			})
			t.Run("paraclinic claiming a drugs-only prescription", func(t *testing.T) {
				p, _, ans := f.prescribe(t, f.doctor, amox)
				_, lab := f.session(t, f.lab, f.vendor)
				_, err := f.svc.Claim(ctx, lab, find(ans, p))
				wantCode(t, err, errs.RoleNotAllowed)
				if c, err := f.svc.Claim(ctx, ph, find(ans, p)); err != nil || c.ClaimID == "" {
					t.Fatalf("the pharmacy's claim after the centre's refused one: %+v %v", c, err)
				}
			})
			t.Run("paraclinic dispensing a drug", func(t *testing.T) {
				p, jws, ans := f.prescribe(t, f.doctor, amox, rx.Item{Kind: "lab", Code: catalogtest.CBC, Quantity: 1})
				_, lab := f.session(t, f.lab, f.vendor)
				c, err := f.svc.Claim(ctx, lab, find(ans, p))
				if err != nil {
					t.Fatal(err)
				}
				_, _, err = f.svc.Dispense(ctx, lab, c.ClaimID, c.Secret, f.sign(t, f.lab, f.dispenseDoc(f.lab, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 5})))
				wantCode(t, err, errs.RoleNotAllowed)
				// The lab item it performs.
				got, _, err := f.svc.Dispense(ctx, lab, c.ClaimID, c.Secret, f.sign(t, f.lab, f.dispenseDoc(f.lab, jws, p.ID, rx.DispensedItem{Code: catalogtest.CBC, Quantity: 1})))
				if err != nil || got.State != exchange.PartlyDispensed {
					t.Fatalf("lab: %+v %v", got, err)
				}
				if _, err := f.svc.Close(ctx, lab, c.ClaimID, c.Secret); err != nil {
					t.Fatal(err)
				}
			})
			t.Run("over-dispense, wrong secret, claimed by another", func(t *testing.T) {
				p, jws, ans := f.prescribe(t, f.doctor, amox)
				c, err := f.svc.Claim(ctx, ph, find(ans, p))
				if err != nil {
					t.Fatal(err)
				}
				_, rival := f.session(t, f.rival, f.vendor2)
				_, err = f.svc.Claim(ctx, rival, find(ans, p))
				wantCode(t, err, errs.PrescriptionClaimed)

				d := f.sign(t, f.pharmacy, f.dispenseDoc(f.pharmacy, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 15}))
				_, _, err = f.svc.Dispense(ctx, ph, c.ClaimID, "not-the-secret-0123456789", d)
				wantCode(t, err, errs.ClaimSecretWrong)
				// The rival, even knowing the claim id and the secret, signs
				// for another organisation.
				_, _, err = f.svc.Dispense(ctx, rival, c.ClaimID, c.Secret, f.sign(t, f.rival, f.dispenseDoc(f.rival, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 1})))
				wantCode(t, err, errs.Forbidden)
				if _, _, err := f.svc.Dispense(ctx, ph, c.ClaimID, c.Secret, d); err != nil {
					t.Fatal(err)
				}
				more := f.sign(t, f.pharmacy, f.dispenseDoc(f.pharmacy, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 6}))
				_, _, err = f.svc.Dispense(ctx, ph, c.ClaimID, c.Secret, more)
				wantCode(t, err, errs.OverDispense)
				// Cancelling while claimed is refused; once closed, the
				// remainder is cancelled.
				cancel := f.sign(t, f.doctor, &rx.Cancellation{V: rx.Version, Type: rx.KindCancellation, ID: rx.NewID(), CancelledAt: f.now,
					Prescription: rx.Reference{ID: p.ID, JWSSHA256: rx.SHA256(jws)}, Prescriber: p.Prescriber, Reason: "تغییر درمان"})
				_, _, err = f.svc.Cancel(ctx, f.vendor, p.ID, cancel)
				wantCode(t, err, errs.PrescriptionClaimed)
				if _, err := f.svc.Close(ctx, ph, c.ClaimID, c.Secret); err != nil {
					t.Fatal(err)
				}
				got, _, err := f.svc.Cancel(ctx, f.vendor, p.ID, cancel)
				if err != nil || got.State != exchange.RemainderCancelled {
					t.Fatalf("cancel: %+v %v", got, err)
				}
				_, err = f.svc.Claim(ctx, ph, find(ans, p))
				wantCode(t, err, errs.PrescriptionNotDispensable)
			})
			t.Run("cancelled by another practitioner, then by its own", func(t *testing.T) {
				p, jws, ans := f.prescribe(t, f.doctor, amox)
				other := testpki.Subject(pki.RolePractitioner, "sub_doctor2", start)
				other.CouncilNumber = "MC-54321"
				od := f.card(t, "practitioner-signing", other)
				c := &rx.Cancellation{V: rx.Version, Type: rx.KindCancellation, ID: rx.NewID(), CancelledAt: f.now,
					Prescription: rx.Reference{ID: p.ID, JWSSHA256: rx.SHA256(jws)}, Reason: "اشتباه"}
				c.Prescriber = rx.Prescriber{CouncilNumber: other.CouncilNumber, Profession: string(other.Profession), Specialty: other.Specialty}
				_, _, err := f.svc.Cancel(ctx, f.vendor, p.ID, f.sign(t, od, c))
				wantCode(t, err, errs.RoleNotAllowed)
				c.ID, c.Prescriber = rx.NewID(), p.Prescriber
				got, _, err := f.svc.Cancel(ctx, f.vendor, p.ID, f.sign(t, f.doctor, c))
				if err != nil || got.State != exchange.Cancelled {
					t.Fatalf("cancel: %+v %v", got, err)
				}
				_, err = f.svc.Claim(ctx, ph, find(ans, p))
				wantCode(t, err, errs.PrescriptionNotDispensable)
			})
			t.Run("a wrong pair answers as a missing prescription", func(t *testing.T) {
				p, _, ans := f.prescribe(t, f.doctor, amox)
				q := find(ans, p)
				q.NationalID = insuredtest.NationalID(1)
				_, err := f.svc.Lookup(ctx, ph, q)
				wantCode(t, err, errs.NotFound)
			})
			t.Run("sessions", func(t *testing.T) {
				doc := func(vendor string) string {
					return f.sign(t, f.pharmacy, &rx.Session{V: rx.Version, Type: rx.KindSession, ID: rx.NewID(), Aud: rx.SessionAudience, IssuedAt: f.now, Vendor: vendor})
				}
				jws := doc(f.vendor.Thumbprint)
				s, err := f.svc.OpenSession(ctx, f.vendor, jws)
				if err != nil || !s.ExpiresAt.Equal(f.now.Add(12*time.Hour)) || s.Actor.RegistrationNumber != f.pharmacy.sub.LicenceNumber {
					t.Fatalf("session %+v %v", s, err)
				}
				// The same session document again.
				_, err = f.svc.OpenSession(ctx, f.vendor, jws)
				wantCode(t, err, errs.SessionIDUsed)
				// The token through another vendor's certificate.
				_, err = f.svc.Authenticate(ctx, f.vendor2, s.Token)
				wantCode(t, err, errs.Unauthorized)
				// A session document for another vendor's certificate.
				_, err = f.svc.OpenSession(ctx, f.vendor2, doc(f.vendor.Thumbprint))
				wantCode(t, err, errs.InvalidDocument)
				// Issued more than 5 minutes ago.
				old := &rx.Session{V: rx.Version, Type: rx.KindSession, ID: rx.NewID(), Aud: rx.SessionAudience, IssuedAt: f.now.Add(-6 * time.Minute), Vendor: f.vendor.Thumbprint}
				_, err = f.svc.OpenSession(ctx, f.vendor, f.sign(t, f.pharmacy, old))
				wantCode(t, err, errs.InvalidDocument)
				// Ended, it is gone.
				if err := f.svc.EndSession(ctx, f.vendor, s.Token); err != nil {
					t.Fatal(err)
				}
				_, err = f.svc.Authenticate(ctx, f.vendor, s.Token)
				wantCode(t, err, errs.Unauthorized)
			})
		})
	}
}

// TestRevocation: a revoked prescriber's new prescription is refused; a
// stored one stays dispensable after a revocation for another reason than
// a compromise, not after a compromise or a revocation backdated before
// its acceptance; a revoked pharmacy's session stops working at once.
func TestRevocation(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			amox := drug(catalogtest.Amoxicillin, 20)
			phToken, ph := f.session(t, f.pharmacy, f.vendor)
			rivalToken, _ := f.session(t, f.rival, f.vendor2)
			newDoctor := func(id string) card {
				return f.card(t, "practitioner-signing", testpki.Subject(pki.RolePractitioner, id, start))
			}

			revoked := newDoctor("sub_d1")
			f.revoke(t, revoked, f.now.Add(-time.Minute), 4)
			_, _, err := f.svc.Prescribe(ctx, f.vendor, f.sign(t, revoked, f.prescription(revoked, amox)))
			wantCode(t, err, errs.CertificateRevoked)

			type stored struct {
				doctor card
				p      *rx.Prescription
				ans    *exchange.PrescriptionAccepted
			}
			prescribeBy := func(id string) stored {
				d := newDoctor(id)
				p, _, ans := f.prescribe(t, d, amox)
				return stored{d, p, ans}
			}
			superseded, compromised, backdated := prescribeBy("sub_d2"), prescribeBy("sub_d3"), prescribeBy("sub_d4")
			accepted := f.now
			f.advance(t, 2*time.Hour)
			f.revoked = append(f.revoked,
				crl.Entry{Serial: superseded.doctor.chain[0].SerialNumber, RevokedAt: accepted.Add(time.Hour), Reason: 4},
				crl.Entry{Serial: compromised.doctor.chain[0].SerialNumber, RevokedAt: accepted.Add(time.Hour), Reason: 1},
				crl.Entry{Serial: backdated.doctor.chain[0].SerialNumber, RevokedAt: accepted.Add(-time.Hour), Reason: 4})
			f.publish(t)

			if _, err := f.svc.Lookup(ctx, ph, find(superseded.ans, superseded.p)); err != nil {
				t.Fatalf("superseded after acceptance: %v", err)
			}
			_, err = f.svc.Lookup(ctx, ph, find(compromised.ans, compromised.p))
			wantCode(t, err, errs.CertificateRevoked)
			_, err = f.svc.Claim(ctx, ph, find(backdated.ans, backdated.p))
			wantCode(t, err, errs.CertificateRevoked)

			// The pharmacy's card revoked: its session refuses the next call,
			// and it cannot open another; another pharmacy's goes on.
			f.revoke(t, f.pharmacy, f.now.Add(-time.Minute), 5)
			_, err = f.svc.Authenticate(ctx, f.vendor, phToken)
			wantCode(t, err, errs.Unauthorized)
			if _, err := f.svc.Authenticate(ctx, f.vendor2, rivalToken); err != nil {
				t.Fatal(err)
			}
			_, err = f.svc.OpenSession(ctx, f.vendor, f.sign(t, f.pharmacy, &rx.Session{V: rx.Version, Type: rx.KindSession, ID: rx.NewID(), Aud: rx.SessionAudience, IssuedAt: f.now, Vendor: f.vendor.Thumbprint}))
			wantCode(t, err, errs.CertificateRevoked)
		})
	}
}

// TestExpired: a prescription past its window cannot be claimed, and a
// session ends after 12 hours.
func TestExpired(t *testing.T) {
	f := setup(t, sqlstore.SQLite)
	p, _, ans := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20))
	token, _ := f.session(t, f.pharmacy, f.vendor)
	f.advance(t, 12*time.Hour)
	_, err := f.svc.Authenticate(ctx, f.vendor, token)
	wantCode(t, err, errs.Unauthorized)
	f.advance(t, 31*24*time.Hour)
	_, ph := f.session(t, f.pharmacy, f.vendor)
	_, err = f.svc.Claim(ctx, ph, find(ans, p))
	wantCode(t, err, errs.PrescriptionNotDispensable)
	var nd *exchange.NotDispensableError
	if !errors.As(err, &nd) || nd.State != exchange.Expired {
		t.Fatalf("%v", err)
	}
}

// The answers are the contract's: every member named as api/openapi.yaml
// names it.
func TestAnswerMembers(t *testing.T) {
	b, _ := json.Marshal(exchange.ClaimGranted{})
	for _, m := range []string{"claim_id", "secret", "expires_at", "prescription"} {
		if !strings.Contains(string(b), `"`+m+`"`) {
			t.Errorf("ClaimGranted lacks %s: %s", m, b)
		}
	}
}

func (f *fixture) paper(pharmacy card, items []rx.Item, given ...rx.DispensedItem) *rx.Paper {
	return &rx.Paper{V: rx.Version, Type: rx.KindPaper, ID: rx.NewID(), EnteredAt: f.now,
		Prescriber: rx.Prescriber{CouncilNumber: "MC-777", Profession: "physician", Specialty: "general", Name: "دکتر کاوه نیک"},
		Patient:    rx.Patient{NationalID: insuredtest.NationalID(0), Name: "بیمار آزمایشی", BirthDate: "1951-03-21", Sex: "female"},
		Items:      items, Dispensed: given,
		Dispenser: rx.Dispenser{LicenceNumber: pharmacy.sub.LicenceNumber, Role: "pharmacy"}}
}

// TestPaper: a paper prescription entered and dispensed at once, with a
// receipt; the same again answers the first answer; only a pharmacy
// enters one, and the paper rules apply.
func TestPaper(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			doc := f.paper(f.pharmacy, []rx.Item{drug(catalogtest.Amoxicillin, 20), drug(catalogtest.Metformin, 60)},
				rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 20})
			jws := f.sign(t, f.pharmacy, doc)
			ans, replay, err := f.svc.Paper(ctx, f.vendor, jws)
			if err != nil || replay || ans.ID != doc.ID || ans.Amounts.Total != 20*32000 {
				t.Fatalf("paper: %+v %v %v", ans, replay, err)
			}
			r, err := f.verifier.Verify(ctx, ans.Receipt, rx.KindReceipt)
			if err != nil {
				t.Fatal(err)
			}
			if rc := r.Receipt; rc.Prescription.ID != doc.ID || rc.Prescription.JWSSHA256 != rx.SHA256(jws) || len(rc.Dispenses) != 1 ||
				rc.Amounts.Total != ans.Amounts.Total || rc.Dispenser.LicenceNumber != f.pharmacy.sub.LicenceNumber {
				t.Fatalf("receipt %+v", rc)
			}
			stored, err := f.store.PrescriptionByID(ctx, doc.ID, f.now)
			if err != nil || stored.Kind != exchange.Paper || stored.State != exchange.PartlyDispensed || stored.Lines[0].Dispensed != 20 {
				t.Fatalf("stored %+v %v", stored, err)
			}
			again, replay, err := f.svc.Paper(ctx, f.vendor, jws)
			if err != nil || !replay || again.Receipt != ans.Receipt {
				t.Fatalf("again: %v %v", replay, err)
			}
			// Another document under the same id.
			doc.Dispensed[0].Quantity = 10
			_, _, err = f.svc.Paper(ctx, f.vendor, f.sign(t, f.pharmacy, doc))
			wantCode(t, err, errs.DocumentIDConflict)

			// A practitioner does not enter paper prescriptions.
			_, _, err = f.svc.Paper(ctx, f.vendor, f.sign(t, f.doctor, f.paper(f.pharmacy, []rx.Item{drug(catalogtest.Amoxicillin, 20)}, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 20})))
			wantCode(t, err, errs.RoleNotAllowed)
			// Methylphenidate, a controlled drug, is not accepted on paper.
			_, _, err = f.svc.Paper(ctx, f.vendor, f.sign(t, f.pharmacy, f.paper(f.pharmacy, []rx.Item{drug(catalogtest.Methylphenidate, 30)}, rx.DispensedItem{Code: catalogtest.Methylphenidate, Quantity: 30})))
			wantCode(t, err, errs.RuleViolation)
		})
	}
}

// TestHistoryPages: newest first, keyset-paged with an opaque cursor; a
// cursor that is not one is refused.
func TestHistoryPages(t *testing.T) {
	f := setup(t, sqlstore.SQLite)
	var ids []string
	for range 3 {
		p, _, _ := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20))
		ids = append(ids, p.ID)
		f.advance(t, time.Minute)
	}
	service := exchange.Caller{Role: pki.RoleService, SubjectID: "sub_portal", CertSHA256: portalSHA256}
	q := exchange.HistoryQuery{NationalID: insuredtest.NationalID(0), Limit: 2}
	page, err := f.svc.History(ctx, service, q)
	if err != nil || len(page.Prescriptions) != 2 || page.Prescriptions[0].ID != ids[2] || page.Prescriptions[1].ID != ids[1] || page.NextCursor == "" {
		t.Fatalf("first page %+v %v", page, err)
	}
	q.Cursor = page.NextCursor
	page, err = f.svc.History(ctx, service, q)
	if err != nil || len(page.Prescriptions) != 1 || page.Prescriptions[0].ID != ids[0] || page.NextCursor != "" {
		t.Fatalf("second page %+v %v", page, err)
	}
	q.Cursor = "bm90LWEtY3Vyc29y"
	_, err = f.svc.History(ctx, service, q)
	wantCode(t, err, errs.Invalid)
}

// TestExchangeKeyRevoked: the exchange signs nothing with a revoked key,
// and stores nothing it could not acknowledge.
func TestExchangeKeyRevoked(t *testing.T) {
	f := setup(t, sqlstore.SQLite)
	f.revoke(t, f.exch, f.now.Add(-time.Minute), 4)
	p := f.prescription(f.doctor, drug(catalogtest.Amoxicillin, 20))
	_, _, err := f.svc.Prescribe(ctx, f.vendor, f.sign(t, f.doctor, p))
	wantCode(t, err, errs.Internal)
	if _, err := f.store.PrescriptionByID(ctx, p.ID, f.now); !errors.Is(err, errs.Of(errs.NotFound)) {
		t.Fatalf("stored without an acknowledgement: %v", err)
	}
}

// TestPartialDispensing: an item given in parts — over two visits, or in
// two dispenses under one claim — is one supply, not a refill; another
// prescription of the same drug given too early is still refused.
func TestPartialDispensing(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			_, ph := f.session(t, f.pharmacy, f.vendor)
			give := func(c *exchange.ClaimGranted, jws, id, code string, qty int) (*exchange.DispenseAccepted, error) {
				t.Helper()
				d := f.dispenseDoc(f.pharmacy, jws, id, rx.DispensedItem{Code: code, Quantity: qty})
				got, _, err := f.svc.Dispense(ctx, ph, c.ClaimID, c.Secret, f.sign(t, f.pharmacy, d))
				return got, err
			}
			claim := func(p *rx.Prescription, ans *exchange.PrescriptionAccepted) *exchange.ClaimGranted {
				t.Helper()
				c, err := f.svc.Claim(ctx, ph, find(ans, p))
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			wantState := func(got *exchange.DispenseAccepted, err error, want exchange.State) {
				t.Helper()
				if err != nil || got.State != want {
					t.Fatalf("dispense: %+v %v (want %s)", got, err, want)
				}
			}

			// Two visits: 4 on one claim, 6 on another the next day.
			p, jws, ans := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 10))
			c := claim(p, ans)
			got, err := give(c, jws, p.ID, catalogtest.Amoxicillin, 4)
			wantState(got, err, exchange.PartlyDispensed)
			if _, err := f.svc.Close(ctx, ph, c.ClaimID, c.Secret); err != nil {
				t.Fatal(err)
			}
			f.advance(t, 24*time.Hour)
			c = claim(p, ans)
			got, err = give(c, jws, p.ID, catalogtest.Amoxicillin, 6)
			wantState(got, err, exchange.Dispensed)
			if _, err := f.svc.Close(ctx, ph, c.ClaimID, c.Secret); err != nil {
				t.Fatal(err)
			}

			// One visit, two parts.
			p2, jws2, ans2 := f.prescribe(t, f.doctor, drug(catalogtest.Metformin, 10))
			c = claim(p2, ans2)
			got, err = give(c, jws2, p2.ID, catalogtest.Metformin, 4)
			wantState(got, err, exchange.PartlyDispensed)
			f.advance(t, 10*time.Minute)
			got, err = give(c, jws2, p2.ID, catalogtest.Metformin, 6)
			wantState(got, err, exchange.Dispensed)

			// Another prescription of amoxicillin the day after: too early.
			p3, jws3, ans3 := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 10))
			_, err = give(claim(p3, ans3), jws3, p3.ID, catalogtest.Amoxicillin, 10)
			wantCode(t, err, errs.RuleViolation)
			if rv := decisionOf(t, err); rv.Decision.Items[0].Violations[0].RuleID != "refill-too-early" {
				t.Fatalf("violations %+v", rv.Decision.Items[0].Violations)
			}
		})
	}
}

// TestSessionsAcrossInstances: rxd runs as stateless instances — a session
// opened through one is honoured by another over the same store, which
// checks the card's revocation on every call as the first would.
func TestSessionsAcrossInstances(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			token, _ := f.session(t, f.pharmacy, f.vendor)
			other, err := exchange.New(f.cfg)
			if err != nil {
				t.Fatal(err)
			}
			a, err := other.Authenticate(ctx, f.vendor, token)
			if err != nil || a.Organisation != f.pharmacy.sub.LicenceNumber || a.CertSerial != fmt.Sprintf("%x", f.pharmacy.chain[0].SerialNumber) {
				t.Fatalf("another instance: %+v %v", a, err)
			}
			_, err = other.Authenticate(ctx, f.vendor2, token)
			wantCode(t, err, errs.Unauthorized)
			f.revoke(t, f.pharmacy, f.now.Add(-time.Minute), 5)
			_, err = other.Authenticate(ctx, f.vendor, token)
			wantCode(t, err, errs.Unauthorized)
			if !strings.Contains(err.Error(), "revoked") {
				t.Fatalf("refused for another reason: %v", err)
			}
		})
	}
}

// checkBarrier lets every one of n dispenses be judged before any goes on:
// each sees the supplementary cap (and the patient's history) as it was
// before the others were recorded. Judgements after the first n (a
// dispense judged again) go on at once.
type checkBarrier struct {
	exchange.Adjudicator
	judged *sync.WaitGroup
	n      int64
	calls  *atomic.Int64
}

// racing is the fixture's exchange with its adjudicator behind a
// checkBarrier for n dispenses.
func (f *fixture) racing(t *testing.T, n int) *exchange.Service {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(n)
	cfg := f.cfg
	cfg.Adjudicator = checkBarrier{Adjudicator: f.cfg.Adjudicator, judged: &wg, n: int64(n), calls: new(atomic.Int64)}
	svc, err := exchange.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func (b checkBarrier) Check(ctx context.Context, req adjudicate.Request) (*adjudicate.Decision, error) {
	d, err := b.Adjudicator.Check(ctx, req)
	if b.calls.Add(1) <= b.n {
		b.judged.Done()
		b.judged.Wait()
	}
	return d, err
}

// TestSettledAmounts: two dispenses of one patient, judged while the
// supplementary cap had 100 000 rials left, both estimating it: the caps
// pay it once, and the answers, their replays and the receipts say what
// was paid — never more than the cap.
func TestSettledAmounts(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			nid := insuredtest.NationalID(0)
			person, _, err := f.registry.Person(ctx, nid)
			if err != nil || person.Supplementary == nil {
				t.Fatalf("person 0: %+v %v", person, err)
			}
			const limit, left = 50_000_000, 100_000
			drugCap := insured.Cap{NationalID: nid, Insurer: person.Supplementary.Insurer, Plan: person.Supplementary.Plan,
				Year: persian.Hijri(f.now).Year, Category: "drug"}
			if paid, err := f.registry.Consume(ctx, insured.Consumption{Key: "earlier", Cap: drugCap, Limit: limit, Amount: limit - left}); err != nil || paid != limit-left {
				t.Fatalf("earlier use of the cap: %d %v", paid, err)
			}

			_, ph := f.session(t, f.pharmacy, f.vendor)
			racing := f.racing(t, 2)
			type visit struct {
				claim *exchange.ClaimGranted
				doc   string
				ans   *exchange.DispenseAccepted
				err   error
			}
			visits := make([]*visit, 2)
			for i, item := range []rx.Item{drug(catalogtest.Amoxicillin, 20), drug(catalogtest.Atorvastatin, 30)} {
				p, jws, ans := f.prescribe(t, f.doctor, item)
				c, err := f.svc.Claim(ctx, ph, find(ans, p))
				if err != nil {
					t.Fatal(err)
				}
				doc := f.sign(t, f.pharmacy, f.dispenseDoc(f.pharmacy, jws, p.ID, rx.DispensedItem{Code: item.Code, Quantity: item.Quantity}))
				visits[i] = &visit{claim: c, doc: doc}
			}
			var wg sync.WaitGroup
			for _, v := range visits {
				wg.Add(1)
				go func() {
					defer wg.Done()
					v.ans, _, v.err = racing.Dispense(ctx, ph, v.claim.ClaimID, v.claim.Secret, v.doc)
				}()
			}
			wg.Wait()

			var supplementary int64
			for i, v := range visits {
				if v.err != nil {
					t.Fatalf("dispense %d: %v", i, v.err)
				}
				a := v.ans.Amounts
				if a.Total != a.Insurer+a.Supplementary+a.Patient || a.Supplementary != v.ans.Decision.SupplementaryPay {
					t.Fatalf("dispense %d: amounts %+v, decision %+v", i, a, v.ans.Decision)
				}
				again, replay, err := f.svc.Dispense(ctx, ph, v.claim.ClaimID, v.claim.Secret, v.doc)
				if err != nil || !replay || again.Amounts != a {
					t.Fatalf("dispense %d again: %+v %v %v, first %+v", i, again, replay, err, a)
				}
				closed, err := f.svc.Close(ctx, ph, v.claim.ClaimID, v.claim.Secret)
				if err != nil || closed.Amounts != a {
					t.Fatalf("close %d: %+v %v, dispensed %+v", i, closed, err, a)
				}
				r, err := f.verifier.Verify(ctx, closed.Receipt, rx.KindReceipt)
				if err != nil {
					t.Fatal(err)
				}
				supplementary += r.Receipt.Amounts.Supplementary
			}
			if used, err := f.registry.Used(ctx, drugCap); err != nil || used != limit {
				t.Fatalf("cap used %d %v", used, err)
			}
			if supplementary != left {
				t.Fatalf("the receipts say supplementary insurance paid %d; it paid the %d left", supplementary, left)
			}
		})
	}
}

// unsettledDispense prescribes 20 amoxicillin, claims it for the pharmacy
// and stores a dispense of all 20 straight into the store, never settled,
// as rxd leaves one when it stops between the store and the commit. It
// returns the prescription, the pharmacy, its claim and the dispense's id.
func (f *fixture) unsettledDispense(t *testing.T) (*rx.Prescription, *exchange.Actor, *exchange.ClaimGranted, string) {
	t.Helper()
	p, jws, ans := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20))
	_, ph := f.session(t, f.pharmacy, f.vendor)
	c, err := f.svc.Claim(ctx, ph, find(ans, p))
	if err != nil {
		t.Fatal(err)
	}
	doc := f.dispenseDoc(f.pharmacy, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 20})
	dj := f.sign(t, f.pharmacy, doc)
	stored := &exchange.Dispense{ID: doc.ID, PrescriptionID: p.ID, JWS: dj, JWSSHA256: rx.SHA256(dj), Lines: []exchange.DispensedLine{{Item: 0, Quantity: 20}}, At: f.now}
	answer := func(p *exchange.Prescription, d *exchange.Dispense) ([]byte, error) {
		return json.Marshal(&exchange.DispenseAccepted{ID: d.ID, PrescriptionID: p.ID, State: p.State})
	}
	if _, _, err := f.store.Dispense(ctx, exchangetest.Entry(), c.ClaimID, sha(c.Secret), stored, answer); err != nil {
		t.Fatal(err)
	}
	return p, ph, c, doc.ID
}

// TestCloseSettlesFirst: a dispense stored but never settled (rxd stopped
// between the store and the commit) is committed and settled by the close,
// whose receipt then has its amounts.
func TestCloseSettlesFirst(t *testing.T) {
	f := setup(t, sqlstore.SQLite)
	p, ph, c, dispenseID := f.unsettledDispense(t)
	closed, err := f.svc.Close(ctx, ph, c.ClaimID, c.Secret)
	// 20 × 32 000; the insurer's 70 %, the rest within the cap.
	if err != nil || closed.Amounts != (exchange.Amounts{Total: 640000, Insurer: 448000, Supplementary: 192000}) {
		t.Fatalf("close: %+v %v", closed, err)
	}
	hist, err := f.registry.Since(ctx, p.Patient.NationalID, f.now.AddDate(0, 0, -1))
	if err != nil || len(hist) != 1 || hist[0].DispenseID != dispenseID || hist[0].PrescriptionID != p.ID {
		t.Fatalf("history %+v %v", hist, err)
	}
	if d, err := f.store.DispenseByID(ctx, dispenseID); err != nil || d.Settled == nil {
		t.Fatalf("not settled: %+v %v", d, err)
	}
}

func sha(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// TestReplaysAfterRevocation: a document accepted before and sent again
// after its signer's card was revoked gets its first answer: it was
// judged when it came, and a retry is not a new act.
func TestReplaysAfterRevocation(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			doctor := f.card(t, "practitioner-signing", testpki.Subject(pki.RolePractitioner, "sub_d9", start))
			ph := f.card(t, "pharmacy-signing", testpki.Subject(pki.RolePharmacy, "sub_ph9", start))
			p, jws, ans := f.prescribe(t, doctor, drug(catalogtest.Amoxicillin, 20))
			p2, jws2, _ := f.prescribe(t, doctor, drug(catalogtest.Metformin, 60))
			cancel := f.sign(t, doctor, &rx.Cancellation{V: rx.Version, Type: rx.KindCancellation, ID: rx.NewID(), CancelledAt: f.now,
				Prescription: rx.Reference{ID: p2.ID, JWSSHA256: rx.SHA256(jws2)}, Prescriber: p2.Prescriber, Reason: "تغییر درمان"})
			cancelled, _, err := f.svc.Cancel(ctx, f.vendor, p2.ID, cancel)
			if err != nil {
				t.Fatal(err)
			}
			paper := f.sign(t, ph, f.paper(ph, []rx.Item{drug(catalogtest.Omeprazole, 10)}, rx.DispensedItem{Code: catalogtest.Omeprazole, Quantity: 10}))
			entered, _, err := f.svc.Paper(ctx, f.vendor, paper)
			if err != nil {
				t.Fatal(err)
			}

			f.advance(t, time.Hour)
			f.revoke(t, doctor, f.now.Add(-time.Minute), 4)
			f.revoke(t, ph, f.now.Add(-time.Minute), 4)
			// New documents of theirs are refused ...
			_, _, err = f.svc.Prescribe(ctx, f.vendor, f.sign(t, doctor, f.prescription(doctor, drug(catalogtest.Amoxicillin, 20))))
			wantCode(t, err, errs.CertificateRevoked)
			// ... the ones accepted before answer as they did.
			again, replay, err := f.svc.Prescribe(ctx, f.vendor, jws)
			if err != nil || !replay || again.Ack != ans.Ack || again.ID != p.ID {
				t.Fatalf("prescription again: %+v %v %v", again, replay, err)
			}
			c, replay, err := f.svc.Cancel(ctx, f.vendor, p2.ID, cancel)
			if err != nil || !replay || *c != *cancelled {
				t.Fatalf("cancellation again: %+v %v %v", c, replay, err)
			}
			e, replay, err := f.svc.Paper(ctx, f.vendor, paper)
			if err != nil || !replay || e.Receipt != entered.Receipt || e.Amounts != entered.Amounts {
				t.Fatalf("paper again: %+v %v %v", e, replay, err)
			}
		})
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
