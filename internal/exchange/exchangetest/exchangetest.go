// Package exchangetest is the conformance suite of exchange.Store: every
// backend (store/rxstore over PostgreSQL and over the embedded SQLite)
// runs exactly these tests, the concurrency tests among them.
package exchangetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/persian"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/tlog"
)

// Open gives each test a new, empty store.
type Open func(t *testing.T) exchange.Store

// Run runs the suite.
func Run(t *testing.T, open Open) {
	for _, tc := range []struct {
		name string
		f    func(*testing.T, exchange.Store)
	}{
		{"insert and look up", testInsertAndLookUp},
		{"insert again", testInsertAgain},
		{"insert refuses", testInsertRefuses},
		{"claims", testClaims},
		{"hold bounded across claims", testHoldBounded},
		{"hold bounded across claims made at one instant", testHoldBoundedSameInstant},
		{"dispense", testDispense},
		{"dispense replay", testDispenseReplay},
		{"dispense begun before its claim lapsed", testDispenseAcrossLapse},
		{"settlements", testSettlements},
		{"fills", testFills},
		{"expiry", testExpiry},
		{"close", testClose},
		{"cancel", testCancel},
		{"paper", testPaper},
		{"history", testHistory},
		{"sessions", testSessions},
		{"idempotency", testIdempotency},
		{"concurrent dispenses", testConcurrentDispenses},
		{"patient's dispenses", testPatientDispenses},
		{"patient's lock before a prescription's", testPatientLockOrder},
		{"concurrent closes", testConcurrentCloses},
		{"concurrent claims", testConcurrentClaims},
		{"concurrent inserts", testConcurrentInserts},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, open(t)) })
	}
}

var ctx = context.Background()

// Issued is when the suite's prescriptions are issued (10:00 in Tehran);
// Now is when the suite acts on them, an hour later.
var (
	Issued = time.Date(2026, 3, 10, 10, 0, 0, 0, persian.Tehran).UTC()
	Now    = Issued.Add(time.Hour)
)

// NationalID is the suite's patient.
const NationalID = "0499370899"

var codes atomic.Int64

// Prescription is a prescription of items to NationalID, issued at
// Issued, with a fresh id and tracking code.
func Prescription(t testing.TB, items ...rx.Item) *exchange.Prescription {
	t.Helper()
	lines, err := exchange.Fills(items, Issued, 0)
	if err != nil {
		t.Fatal(err)
	}
	id := rx.NewID()
	jws := "eyJhbGciOiJFUzI1NiJ9." + id + ".c2ln"
	return &exchange.Prescription{
		ID: id, TrackingCode: fmt.Sprintf("%05d-%05d-X", codes.Add(1), time.Now().UnixNano()%100000), Kind: exchange.Electronic,
		JWS: jws, JWSSHA256: rx.SHA256(jws), PatientNationalID: NationalID,
		PrescriberCouncil: "12345", PrescriberSerial: "0a1b", IssuedAt: Issued, AcceptedAt: Issued.Add(time.Second),
		Answer: []byte(`{"first":"` + id + `"}`), Lines: lines,
	}
}

func drug(code string, q int) rx.Item {
	return rx.Item{Kind: exchange.ItemDrug, Code: code, Quantity: q}
}

func insert(t testing.TB, s exchange.Store, p *exchange.Prescription) *exchange.Prescription {
	t.Helper()
	got, err := s.InsertPrescription(ctx, Entry(), p, nil)
	if err != nil {
		t.Fatalf("InsertPrescription: %v", err)
	}
	return got
}

// Secret is a claim secret and its hash.
func Secret() (secret, hash []byte) {
	secret = make([]byte, 32)
	_, _ = rand.Read(secret)
	h := sha256.Sum256(secret)
	return secret, h[:]
}

func newClaim(p *exchange.Prescription, org string, at time.Time) (*exchange.Claim, []byte) {
	_, h := Secret()
	return &exchange.Claim{ID: rx.NewID(), PrescriptionID: p.ID, Organisation: exchange.ClaimHolder(pki.RolePharmacy, org), CertSerial: "c0ffee", SecretSHA256: h, CreatedAt: at, ExpiresAt: at.Add(2 * time.Hour)}, h
}

func claim(t testing.TB, s exchange.Store, p *exchange.Prescription, org string, at time.Time) (*exchange.Claim, []byte) {
	t.Helper()
	c, h := newClaim(p, org, at)
	got, err := s.Claim(ctx, Entry(), c)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return got, h
}

// Dispense is a dispense record of p giving quantities (item → quantity).
func Dispense(p *exchange.Prescription, at time.Time, lines ...exchange.DispensedLine) *exchange.Dispense {
	id := rx.NewID()
	jws := "eyJhbGciOiJFUzI1NiJ9.d" + id + ".c2ln"
	return &exchange.Dispense{ID: id, PrescriptionID: p.ID, JWS: jws, JWSSHA256: rx.SHA256(jws), Lines: lines, At: at}
}

func give(item, q int) exchange.DispensedLine { return exchange.DispensedLine{Item: item, Quantity: q} }

func read(t testing.TB, s exchange.Store, id string, at time.Time) *exchange.Prescription {
	t.Helper()
	p, err := s.PrescriptionByID(ctx, id, at)
	if err != nil {
		t.Fatalf("PrescriptionByID: %v", err)
	}
	return p
}

func wantCode(t testing.TB, err error, code errs.Code) {
	t.Helper()
	if got := errs.CodeOf(err); err == nil || got != code {
		t.Fatalf("error %v (code %s), want code %s", err, got, code)
	}
}

func dispensed(p *exchange.Prescription) []int {
	var out []int
	for _, l := range p.Lines {
		out = append(out, l.Dispensed)
	}
	return out
}

func testInsertAndLookUp(t *testing.T, s exchange.Store) {
	p := Prescription(t, drug("A", 2), rx.Item{Kind: exchange.ItemLab, Code: "L1", Quantity: 1})
	got := insert(t, s, p)
	if got.State != exchange.Active || !got.ExpiresAt.Equal(exchange.LastUntil(p.Lines)) {
		t.Fatalf("inserted: state %s, expires %s", got.State, got.ExpiresAt)
	}
	for name, read := range map[string]func() (*exchange.Prescription, error){
		"by code": func() (*exchange.Prescription, error) {
			return s.PrescriptionByCode(ctx, p.TrackingCode, NationalID, Now)
		},
		"by id": func() (*exchange.Prescription, error) { return s.PrescriptionByID(ctx, p.ID, Now) },
	} {
		r, err := read()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.ID != p.ID || r.TrackingCode != p.TrackingCode || r.Kind != p.Kind || r.JWS != p.JWS || r.JWSSHA256 != p.JWSSHA256 ||
			r.PatientNationalID != NationalID || r.PrescriberCouncil != p.PrescriberCouncil || r.PrescriberSerial != p.PrescriberSerial ||
			!r.IssuedAt.Equal(p.IssuedAt) || !r.AcceptedAt.Equal(p.AcceptedAt) || r.State != exchange.Active || !bytes.Equal(r.Answer, p.Answer) || r.Claim != nil {
			t.Errorf("%s: read %+v, stored %+v", name, r, p)
		}
		if len(r.Lines) != len(p.Lines) {
			t.Fatalf("%s: %d lines, want %d", name, len(r.Lines), len(p.Lines))
		}
		for i, l := range r.Lines {
			w := p.Lines[i]
			if l.Fill != w.Fill || l.Item != w.Item || l.Code != w.Code || l.Kind != w.Kind || l.Quantity != w.Quantity || l.Dispensed != 0 || !l.From.Equal(w.From) || !l.Until.Equal(w.Until) {
				t.Errorf("%s: line %d %+v, want %+v", name, i, l, w)
			}
		}
	}
	// A code with another patient's national id, and a code that does not
	// exist, answer alike: no oracle for which part was wrong.
	_, errOther := s.PrescriptionByCode(ctx, p.TrackingCode, "0013542419", Now)
	_, errMissing := s.PrescriptionByCode(ctx, "ZZZZZ-ZZZZZ-Z", NationalID, Now)
	wantCode(t, errOther, errs.NotFound)
	if errOther.Error() != errMissing.Error() || errs.CodeOf(errMissing) != errs.NotFound {
		t.Errorf("wrong national id: %v; missing code: %v", errOther, errMissing)
	}
	_, err := s.PrescriptionByID(ctx, rx.NewID(), Now)
	wantCode(t, err, errs.NotFound)
}

func testInsertAgain(t *testing.T, s exchange.Store) {
	p := Prescription(t, drug("A", 2))
	insert(t, s, p)

	// The same signed document again (a rewritten ECDSA signature has the
	// same signing input): the first answer, nothing stored.
	again := *p
	again.JWS = p.JWS[:len(p.JWS)-4] + "U0lH"
	again.TrackingCode = "OTHER-CODE0-1"
	again.Answer = []byte(`{"second":true}`)
	got, err := s.InsertPrescription(ctx, Entry(), &again, nil)
	if !errors.Is(err, exchange.ErrReplay) || got == nil || !bytes.Equal(got.Answer, p.Answer) || got.TrackingCode != p.TrackingCode || got.JWS != p.JWS {
		t.Fatalf("replay: %+v, %v", got, err)
	}
	if _, err := s.PrescriptionByCode(ctx, again.TrackingCode, NationalID, Now); errs.CodeOf(err) != errs.NotFound {
		t.Errorf("a replay stored its tracking code: %v", err)
	}

	// Another document under the same id: refused, the first stands.
	other := Prescription(t, drug("B", 1))
	other.ID = p.ID
	got, err = s.InsertPrescription(ctx, Entry(), other, nil)
	wantCode(t, err, errs.DocumentIDConflict)
	if got == nil || got.JWSSHA256 != p.JWSSHA256 {
		t.Errorf("conflict returned %+v", got)
	}
	if r := read(t, s, p.ID, Now); r.JWS != p.JWS || len(r.Lines) != 1 || r.Lines[0].Code != "A" {
		t.Errorf("after a conflict the stored prescription is %+v", r)
	}

	// A tracking code already in use: the caller draws again.
	clash := Prescription(t, drug("C", 1))
	clash.TrackingCode = p.TrackingCode
	if _, err := s.InsertPrescription(ctx, Entry(), clash, nil); !errors.Is(err, exchange.ErrTrackingCodeTaken) {
		t.Fatalf("tracking code clash: %v", err)
	}
	if _, err := s.PrescriptionByID(ctx, clash.ID, Now); errs.CodeOf(err) != errs.NotFound {
		t.Errorf("the clashing prescription was stored: %v", err)
	}
	clash.TrackingCode = "FRESH-CODE0-2"
	insert(t, s, clash)
}

func testClaims(t *testing.T, s exchange.Store) {
	p := insert(t, s, Prescription(t, drug("A", 2)))
	a, aHash := claim(t, s, p, "pharmacy-A", Now)
	if r := read(t, s, p.ID, Now); r.Claim == nil || r.Claim.ID != a.ID || r.Claim.Organisation != exchange.ClaimHolder(pki.RolePharmacy, "pharmacy-A") || !r.Claim.ExpiresAt.Equal(a.ExpiresAt) || r.Claim.SecretSHA256 != nil {
		t.Fatalf("claim as read: %+v", r.Claim)
	}
	if got, err := s.ClaimByID(ctx, a.ID); err != nil || got.ID != a.ID || got.Organisation != exchange.ClaimHolder(pki.RolePharmacy, "pharmacy-A") || !bytes.Equal(got.SecretSHA256, aHash) {
		t.Fatalf("claim by id: %+v %v", got, err)
	}
	if _, err := s.ClaimByID(ctx, rx.NewID()); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("unknown claim by id: %v", err)
	}

	// Another organisation: refused, told until when.
	c, _ := newClaim(p, "pharmacy-B", Now.Add(time.Minute))
	_, err := s.Claim(ctx, Entry(), c)
	var claimed *exchange.ClaimedError
	if !errors.As(err, &claimed) || !claimed.Until.Equal(a.ExpiresAt) {
		t.Fatalf("second organisation: %v", err)
	}
	wantCode(t, err, errs.PrescriptionClaimed)

	// The same organisation again: its claim back, a new secret; the old
	// one stops working.
	again, newHash := claim(t, s, p, "pharmacy-A", Now.Add(time.Minute))
	if again.ID != a.ID || bytes.Equal(newHash, aHash) {
		t.Fatalf("claim again: %+v", again)
	}
	if err := s.Release(ctx, Entry(), a.ID, aHash, Now.Add(2*time.Minute)); !errors.Is(err, exchange.ErrSecretWrong) {
		t.Fatalf("release with the old secret: %v", err)
	}
	_, _, err = s.Dispense(ctx, Entry(), a.ID, aHash, Dispense(p, Now.Add(2*time.Minute), give(0, 1)), nil)
	wantCode(t, err, errs.ClaimSecretWrong)
	if err := s.Release(ctx, Entry(), rx.NewID(), newHash, Now); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("release of no claim: %v", err)
	}
	// Claimed again and again, the hold is never extended past twice
	// the claim's time to live from its first creation.
	if !again.ExpiresAt.Equal(Now.Add(time.Minute + 2*time.Hour)) {
		t.Fatalf("renewed within the cap: expires %s", again.ExpiresAt)
	}
	claim(t, s, p, "pharmacy-A", Now.Add(2*time.Hour))
	late, lateHash := claim(t, s, p, "pharmacy-A", Now.Add(3*time.Hour))
	if late.ID != a.ID || !late.ExpiresAt.Equal(Now.Add(4*time.Hour)) {
		t.Fatalf("renewed past the cap: %+v", late)
	}
	if r := read(t, s, p.ID, Now.Add(4*time.Hour)); r.Claim != nil {
		t.Fatalf("held past the cap: %+v", r.Claim)
	}
	newHash = lateHash

	// Released: another organisation may claim; the released claim can
	// no longer dispense; releasing again changes nothing.
	if err := s.Release(ctx, Entry(), a.ID, newHash, Now.Add(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, Entry(), a.ID, newHash, Now.Add(4*time.Minute)); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if r := read(t, s, p.ID, Now.Add(3*time.Minute)); r.Claim != nil {
		t.Fatalf("released, still held: %+v", r.Claim)
	}
	_, _, err = s.Dispense(ctx, Entry(), a.ID, newHash, Dispense(p, Now.Add(4*time.Minute), give(0, 1)), nil)
	wantCode(t, err, errs.ClaimNotActive)
	b, _ := claim(t, s, p, "pharmacy-B", Now.Add(4*time.Minute))
	if b.ID == a.ID {
		t.Fatal("a new claim has the released claim's id")
	}

	// Expired: another organisation may claim.
	after := b.ExpiresAt
	if r := read(t, s, p.ID, after); r.Claim != nil {
		t.Errorf("claim read as holding at its expiry")
	}
	claim(t, s, p, "pharmacy-C", after)

	_, err = s.Claim(ctx, Entry(), &exchange.Claim{ID: rx.NewID(), PrescriptionID: rx.NewID(), Organisation: "x", SecretSHA256: newHash, CreatedAt: Now, ExpiresAt: Now.Add(time.Hour)})
	wantCode(t, err, errs.NotFound)
}

// testHoldBounded: an organisation's hold goes on through new claims made
// less than a time to live after its last one ended (released or
// expired), and lasts at most twice a time to live; then its next claim
// is refused until a time to live after its last one ended. A close ends
// a hold.
func testHoldBounded(t *testing.T, s exchange.Store) {
	p := insert(t, s, Prescription(t, drug("A", 10)))
	a, aHash := claim(t, s, p, "pharmacy-A", Now)
	if err := s.Release(ctx, Entry(), a.ID, aHash, Now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	b, _ := claim(t, s, p, "pharmacy-A", Now.Add(time.Hour))
	if b.ID == a.ID || !b.ExpiresAt.Equal(Now.Add(3*time.Hour)) {
		t.Fatalf("a new claim after a release: %+v", b)
	}
	// b expires at Now+3h; claimed again at once, held to Now+4h only.
	c, _ := claim(t, s, p, "pharmacy-A", b.ExpiresAt)
	if !c.ExpiresAt.Equal(Now.Add(4 * time.Hour)) {
		t.Fatalf("a new claim after an expiry: expires %s, not at the hold's bound", c.ExpiresAt)
	}
	again, _ := newClaim(p, "pharmacy-A", c.ExpiresAt)
	_, err := s.Claim(ctx, Entry(), again)
	var claimed *exchange.ClaimedError
	if !errors.As(err, &claimed) || !claimed.Own || !claimed.Until.Equal(c.ExpiresAt.Add(2*time.Hour)) {
		t.Fatalf("claimed at the hold's bound: %v", err)
	}
	// Meanwhile another organisation may claim; and pharmacy-A again a
	// time to live after its hold ended.
	other, otherHash := claim(t, s, p, "pharmacy-B", c.ExpiresAt)
	if err := s.Release(ctx, Entry(), other.ID, otherHash, c.ExpiresAt.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	d, dHash := claim(t, s, p, "pharmacy-A", c.ExpiresAt.Add(2*time.Hour))
	if !d.ExpiresAt.Equal(c.ExpiresAt.Add(4 * time.Hour)) {
		t.Fatalf("a new hold: %+v", d)
	}
	// A close ends the hold: the next visit's claim starts a new one.
	at := d.CreatedAt.Add(time.Minute)
	if _, _, err := s.Dispense(ctx, Entry(), d.ID, dHash, Dispense(p, at, give(0, 1)), nil); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	if _, err := s.Close(ctx, Entry(), d.ID, dHash, at, receiptFor(&calls)); err != nil {
		t.Fatal(err)
	}
	e, _ := claim(t, s, p, "pharmacy-A", at)
	if !e.ExpiresAt.Equal(at.Add(2 * time.Hour)) {
		t.Fatalf("after a close: %+v", e)
	}
}

// testHoldBoundedSameInstant: claims made at the same instant (a clock
// standing still) still make one hold — a claim released at once and the
// claim made after it, in whatever order the database keeps them.
func testHoldBoundedSameInstant(t *testing.T, s exchange.Store) {
	p := insert(t, s, Prescription(t, drug("A", 10)))
	a, aHash := claim(t, s, p, "pharmacy-A", Now)
	if err := s.Release(ctx, Entry(), a.ID, aHash, Now); err != nil {
		t.Fatal(err)
	}
	b, _ := claim(t, s, p, "pharmacy-A", Now)
	if b.ID == a.ID {
		t.Fatalf("a new claim after a release: %+v", b)
	}
	// b expired at Now+2h; claimed again 10 minutes later, the hold is
	// still the one begun at Now.
	c, _ := claim(t, s, p, "pharmacy-A", b.ExpiresAt.Add(10*time.Minute))
	if !c.ExpiresAt.Equal(Now.Add(4 * time.Hour)) {
		t.Fatalf("a new claim after an expiry: expires %s, not at the hold's bound %s", c.ExpiresAt, Now.Add(4*time.Hour))
	}
}

func testDispense(t *testing.T, s exchange.Store) {
	p := insert(t, s, Prescription(t, drug("A", 3), drug("B", 1)))
	c, h := claim(t, s, p, "pharmacy-A", Now)
	at := Now.Add(time.Minute)

	d := Dispense(p, at, give(0, 2))
	got, after, err := s.Dispense(ctx, Entry(), c.ID, h, d, func(p *exchange.Prescription, d *exchange.Dispense) ([]byte, error) {
		return []byte(fmt.Sprintf(`{"state":%q,"remaining":%d,"fill":%d}`, p.State, p.Lines[0].Remaining(), d.Lines[0].Fill)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.ClaimID != c.ID || got.Lines[0].Fill != 0 || string(got.Answer) != `{"state":"partly-dispensed","remaining":1,"fill":0}` {
		t.Errorf("dispense %+v answer %s", got, got.Answer)
	}
	if after.State != exchange.PartlyDispensed || !slices.Equal(dispensed(after), []int{2, 0}) {
		t.Errorf("after: %s %v", after.State, dispensed(after))
	}

	// More than remains: refused, nothing changes.
	_, _, err = s.Dispense(ctx, Entry(), c.ID, h, Dispense(p, at, give(1, 1), give(0, 2)), nil)
	var over *exchange.OverDispenseError
	if !errors.As(err, &over) || over.Item != 0 || over.Remaining != 1 || over.Asked != 2 {
		t.Fatalf("over-dispense: %v", err)
	}
	wantCode(t, err, errs.OverDispense)
	if r := read(t, s, p.ID, at); !slices.Equal(dispensed(r), []int{2, 0}) || r.State != exchange.PartlyDispensed {
		t.Fatalf("a refused dispense changed the lines: %v", dispensed(r))
	}
	for name, lines := range map[string][]exchange.DispensedLine{
		"no such item":   {give(7, 1)},
		"zero":           {give(0, 0)},
		"an item twice:": {give(1, 1), give(1, 1)},
	} {
		if _, _, err := s.Dispense(ctx, Entry(), c.ID, h, Dispense(p, at, lines...), nil); errs.CodeOf(err) != errs.Invalid {
			t.Errorf("%s: %v", name, err)
		}
	}
	_, _, err = s.Dispense(ctx, Entry(), rx.NewID(), h, Dispense(p, at, give(0, 1)), nil)
	wantCode(t, err, errs.NotFound)

	// The rest: dispensed, and then nothing more may be, nor claimed.
	_, after, err = s.Dispense(ctx, Entry(), c.ID, h, Dispense(p, at, give(0, 1), give(1, 1)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if after.State != exchange.Dispensed || !slices.Equal(dispensed(after), []int{3, 1}) {
		t.Errorf("after all: %s %v", after.State, dispensed(after))
	}
	_, _, err = s.Dispense(ctx, Entry(), c.ID, h, Dispense(p, at, give(0, 1)), nil)
	var nd *exchange.NotDispensableError
	if !errors.As(err, &nd) || nd.State != exchange.Dispensed {
		t.Fatalf("dispense of a dispensed prescription: %v", err)
	}
	_, err = s.Claim(ctx, Entry(), func() *exchange.Claim { c, _ := newClaim(p, "pharmacy-B", at); return c }())
	wantCode(t, err, errs.PrescriptionNotDispensable)

	// A dispense under one prescription's claim for another: refused.
	q := insert(t, s, Prescription(t, drug("A", 1)))
	qc, qh := claim(t, s, q, "pharmacy-A", at)
	_, _, err = s.Dispense(ctx, Entry(), qc.ID, qh, Dispense(p, at, give(0, 1)), nil)
	if err == nil {
		t.Fatal("a claim dispensed another prescription")
	}
}

// testDispenseAcrossLapse: a dispense begun while its claim held the
// prescription (d.At) and recorded once it had lapsed is recorded under
// it — unless a claim made since holds the prescription: the holder's own
// new claim (the visit would be split over two claims, each to close) or
// another organisation's (two would dispense at once). Then it is refused
// and nothing changes.
func testDispenseAcrossLapse(t *testing.T, s exchange.Store) {
	begun := Now.Add(2*time.Hour - time.Minute) // the claim below lapses at Now+2h
	after := Now.Add(2*time.Hour + time.Minute)

	p := insert(t, s, Prescription(t, drug("A", 3)))
	c, h := claim(t, s, p, "pharmacy-A", Now)
	if _, _, err := s.Dispense(ctx, Entry(), c.ID, h, Dispense(p, begun, give(0, 1)), nil); err != nil {
		t.Fatalf("a dispense begun in time, no claim since: %v", err)
	}

	for _, org := range []string{"pharmacy-A", "pharmacy-B"} {
		t.Run(org, func(t *testing.T) {
			p := insert(t, s, Prescription(t, drug("A", 3)))
			c, h := claim(t, s, p, "pharmacy-A", Now)
			next, _ := claim(t, s, p, org, after)
			if next.ID == c.ID {
				t.Fatalf("the lapsed claim, nothing dispensed under it, was given back")
			}
			_, _, err := s.Dispense(ctx, Entry(), c.ID, h, Dispense(p, begun, give(0, 1)), nil)
			wantCode(t, err, errs.ClaimNotActive)
			if r := read(t, s, p.ID, after); !slices.Equal(dispensed(r), []int{0}) || r.Claim == nil || r.Claim.ID != next.ID {
				t.Fatalf("after the refused dispense: dispensed %v, claim %+v", dispensed(r), r.Claim)
			}
		})
		// The claim made since has already ended — closed, its visit
		// done and its receipt given, or released — by the time the
		// dispense is recorded: it still held the prescription after the
		// dispense began, so the dispense is refused all the same.
		// Recorded, it would be a second visit under the lapsed claim
		// after the one closed (the pharmacy's own: a visit split over two
		// claims, the first receipt missing it) or another organisation's
		// visit begun and ended while this one dispensed.
		for _, end := range []string{"closed", "released"} {
			t.Run(org+"/"+end, func(t *testing.T) {
				p := insert(t, s, Prescription(t, drug("A", 3)))
				c, h := claim(t, s, p, "pharmacy-A", Now)
				next, nh := claim(t, s, p, org, after)
				if end == "closed" {
					if _, _, err := s.Dispense(ctx, Entry(), next.ID, nh, Dispense(p, after, give(0, 1)), nil); err != nil {
						t.Fatalf("dispensing under the claim made since: %v", err)
					}
					var calls atomic.Int64
					if _, err := s.Close(ctx, Entry(), next.ID, nh, after.Add(time.Minute), receiptFor(&calls)); err != nil {
						t.Fatalf("closing the claim made since: %v", err)
					}
				} else if err := s.Release(ctx, Entry(), next.ID, nh, after.Add(time.Minute)); err != nil {
					t.Fatalf("releasing the claim made since: %v", err)
				}
				_, _, err := s.Dispense(ctx, Entry(), c.ID, h, Dispense(p, begun, give(0, 1)), nil)
				wantCode(t, err, errs.ClaimNotActive)
				want := []int{0}
				if end == "closed" {
					want = []int{1}
				}
				if r := read(t, s, p.ID, after.Add(2*time.Minute)); !slices.Equal(dispensed(r), want) {
					t.Fatalf("after the refused dispense: dispensed %v, want %v", dispensed(r), want)
				}
			})
		}
	}
}

func testDispenseReplay(t *testing.T, s exchange.Store) {
	p := insert(t, s, Prescription(t, drug("A", 3)))
	c, h := claim(t, s, p, "pharmacy-A", Now)
	d := Dispense(p, Now, give(0, 1))
	d.Answer = []byte(`{"first":true}`)
	if _, _, err := s.Dispense(ctx, Entry(), c.ID, h, d, nil); err != nil {
		t.Fatal(err)
	}
	// The same dispense again: the stored one and its answer, counted
	// once — even after the claim was released.
	if err := s.Release(ctx, Entry(), c.ID, h, Now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	again := *d
	again.Answer = []byte(`{"second":true}`)
	got, after, err := s.Dispense(ctx, Entry(), c.ID, h, &again, func(*exchange.Prescription, *exchange.Dispense) ([]byte, error) {
		t.Error("answer called for a replay")
		return nil, nil
	})
	if !errors.Is(err, exchange.ErrReplay) || got == nil || string(got.Answer) != `{"first":true}` || after == nil || after.Lines[0].Dispensed != 1 {
		t.Fatalf("replay: %+v %v", got, err)
	}
	// A replay with a wrong secret, or under a claim that does not
	// exist: refused, the claim checked before the replay.
	wrong := sha256.Sum256([]byte("wrong"))
	_, _, err = s.Dispense(ctx, Entry(), c.ID, wrong[:], &again, nil)
	wantCode(t, err, errs.ClaimSecretWrong)
	_, _, err = s.Dispense(ctx, Entry(), rx.NewID(), h, &again, nil)
	wantCode(t, err, errs.NotFound)
	// Another document under its id: refused.
	other := Dispense(p, Now, give(0, 2))
	other.ID = d.ID
	_, _, err = s.Dispense(ctx, Entry(), c.ID, h, other, nil)
	wantCode(t, err, errs.DocumentIDConflict)
	if r := read(t, s, p.ID, Now); r.Lines[0].Dispensed != 1 {
		t.Errorf("dispensed %d after a replay and a conflict, want 1", r.Lines[0].Dispensed)
	}
	// An answer that fails: nothing recorded.
	c2, h2 := claim(t, s, p, "pharmacy-A", Now.Add(2*time.Minute))
	failing := Dispense(p, Now.Add(2*time.Minute), give(0, 1))
	if _, _, err := s.Dispense(ctx, Entry(), c2.ID, h2, failing, func(*exchange.Prescription, *exchange.Dispense) ([]byte, error) {
		return nil, errors.New("signer down")
	}); err == nil || err.Error() != "signer down" {
		t.Fatalf("failing answer: %v", err)
	}
	if r := read(t, s, p.ID, Now); r.Lines[0].Dispensed != 1 {
		t.Errorf("a dispense whose answer failed was counted: %d", r.Lines[0].Dispensed)
	}
}

func testFills(t *testing.T, s exchange.Store) {
	// 30 a fill, three fills 28 days apart; B in fill 0 only.
	p := insert(t, s, Prescription(t, rx.Item{Kind: exchange.ItemDrug, Code: "A", Quantity: 30, Repeats: 2, RepeatIntervalDays: 28}, drug("B", 1)))
	c, h := claim(t, s, p, "pharmacy-A", Now)
	if _, _, err := s.Dispense(ctx, Entry(), c.ID, h, Dispense(p, Now, give(0, 30)), nil); err != nil {
		t.Fatal(err)
	}
	// Fill 1 has not begun: nothing of A in force with anything left.
	_, _, err := s.Dispense(ctx, Entry(), c.ID, h, Dispense(p, Now, give(0, 1)), nil)
	wantCode(t, err, errs.OverDispense)

	fill1 := p.Lines[2].From // lines: (0,A) (0,B) (1,A) (2,A)
	if p.Lines[2].Fill != 1 {
		t.Fatalf("lines %+v", p.Lines)
	}
	c, h = claim(t, s, p, "pharmacy-A", fill1)
	got, after, err := s.Dispense(ctx, Entry(), c.ID, h, Dispense(p, fill1, give(0, 30), give(1, 1)), nil)
	if err != nil {
		t.Fatalf("fill 1: %v", err)
	}
	if got.Lines[0].Fill != 1 || got.Lines[1].Fill != 0 || !slices.Equal(dispensed(after), []int{30, 1, 30, 0}) || after.State != exchange.PartlyDispensed {
		t.Fatalf("fill 1: %+v, %v %s", got.Lines, dispensed(after), after.State)
	}
	// B's only fill has ended by fill 2: no fill of it in force.
	fill2 := p.Lines[3].From
	c, h = claim(t, s, p, "pharmacy-A", fill2)
	_, _, err = s.Dispense(ctx, Entry(), c.ID, h, Dispense(p, fill2, give(1, 1)), nil)
	var nd *exchange.NotDispensableError
	if !errors.As(err, &nd) || nd.Item != 1 {
		t.Fatalf("item with no fill in force: %v", err)
	}
	if _, after, err = s.Dispense(ctx, Entry(), c.ID, h, Dispense(p, fill2, give(0, 30)), nil); err != nil || after.State != exchange.Dispensed {
		t.Fatalf("fill 2: %v %+v", err, after)
	}
}

func testExpiry(t *testing.T, s exchange.Store) {
	p := insert(t, s, Prescription(t, drug("A", 3)))
	end := p.ExpiresAt
	if r := read(t, s, p.ID, end.Add(-time.Second)); r.State != exchange.Active {
		t.Fatalf("before expiry: %s", r.State)
	}
	if r := read(t, s, p.ID, end); r.State != exchange.Expired {
		t.Fatalf("at expiry: %s", r.State)
	}
	c, _ := newClaim(p, "pharmacy-A", end)
	_, err := s.Claim(ctx, Entry(), c)
	var nd *exchange.NotDispensableError
	if !errors.As(err, &nd) || nd.State != exchange.Expired {
		t.Fatalf("claim of an expired prescription: %v", err)
	}
	// A claim taken before expiry cannot dispense after it.
	c2, h := claim(t, s, p, "pharmacy-A", end.Add(-time.Minute))
	_, _, err = s.Dispense(ctx, Entry(), c2.ID, h, Dispense(p, end, give(0, 1)), nil)
	if !errors.As(err, &nd) || nd.State != exchange.Expired {
		t.Fatalf("dispense at expiry: %v", err)
	}
	_, _, err = s.Cancel(ctx, Entry(), cancellation(p, end.Add(time.Hour)))
	wantCode(t, err, errs.PrescriptionNotDispensable)
}

func receiptFor(calls *atomic.Int64) func(*exchange.Claim, *exchange.Prescription, []*exchange.Dispense) (*exchange.Receipt, error) {
	return func(c *exchange.Claim, p *exchange.Prescription, ds []*exchange.Dispense) (*exchange.Receipt, error) {
		calls.Add(1)
		jws := fmt.Sprintf("receipt.%s.%s.%d", c.ID, p.ID, len(ds))
		for _, d := range ds {
			jws += "." + d.ID
		}
		return &exchange.Receipt{ID: rx.NewID(), JWS: jws}, nil
	}
}

func testClose(t *testing.T, s exchange.Store) {
	p := insert(t, s, Prescription(t, drug("A", 3)))
	c, h := claim(t, s, p, "pharmacy-A", Now)
	d1 := Dispense(p, Now, give(0, 1))
	d2 := Dispense(p, Now.Add(time.Second), give(0, 1))
	for _, d := range []*exchange.Dispense{d1, d2} {
		if _, _, err := s.Dispense(ctx, Entry(), c.ID, h, d, nil); err != nil {
			t.Fatal(err)
		}
	}
	var calls atomic.Int64
	if _, err := s.Close(ctx, Entry(), c.ID, h, Now, func(*exchange.Claim, *exchange.Prescription, []*exchange.Dispense) (*exchange.Receipt, error) {
		return nil, errors.New("HSM down")
	}); err == nil {
		t.Fatal("close with a failing signer succeeded")
	}
	_, wrong := Secret()
	_, err := s.Close(ctx, Entry(), c.ID, wrong, Now, receiptFor(&calls))
	wantCode(t, err, errs.ClaimSecretWrong)

	r, err := s.Close(ctx, Entry(), c.ID, h, Now.Add(time.Minute), receiptFor(&calls))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("receipt.%s.%s.2.%s.%s", c.ID, p.ID, d1.ID, d2.ID); r.JWS != want || r.ClaimID != c.ID || !r.At.Equal(Now.Add(time.Minute)) {
		t.Fatalf("receipt %+v, want JWS %s", r, want)
	}
	again, err := s.Close(ctx, Entry(), c.ID, h, Now.Add(2*time.Minute), receiptFor(&calls))
	if err != nil || *again != *r || calls.Load() != 1 {
		t.Fatalf("second close: %+v %v (signed %d times)", again, err, calls.Load())
	}
	// Closed: the claim no longer holds, dispenses or releases.
	if rd := read(t, s, p.ID, Now.Add(2*time.Minute)); rd.Claim != nil {
		t.Errorf("closed claim still holds")
	}
	_, _, err = s.Dispense(ctx, Entry(), c.ID, h, Dispense(p, Now.Add(2*time.Minute), give(0, 1)), nil)
	wantCode(t, err, errs.ClaimNotActive)
	wantCode(t, s.Release(ctx, Entry(), c.ID, h, Now.Add(2*time.Minute)), errs.ClaimNotActive)

	// A released claim is not closed.
	c2, h2 := claim(t, s, p, "pharmacy-B", Now.Add(3*time.Minute))
	if err := s.Release(ctx, Entry(), c2.ID, h2, Now.Add(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	_, err = s.Close(ctx, Entry(), c2.ID, h2, Now.Add(4*time.Minute), receiptFor(&calls))
	wantCode(t, err, errs.ClaimNotActive)
	_, err = s.Close(ctx, Entry(), rx.NewID(), h2, Now, receiptFor(&calls))
	wantCode(t, err, errs.NotFound)

	// An expired claim is closed: what it dispensed needs its receipt.
	c3, h3 := claim(t, s, p, "pharmacy-C", Now.Add(5*time.Minute))
	d3 := Dispense(p, Now.Add(6*time.Minute), give(0, 1))
	if _, _, err := s.Dispense(ctx, Entry(), c3.ID, h3, d3, nil); err != nil {
		t.Fatal(err)
	}
	r3, err := s.Close(ctx, Entry(), c3.ID, h3, c3.ExpiresAt.Add(time.Hour), receiptFor(&calls))
	if err != nil || r3.JWS != fmt.Sprintf("receipt.%s.%s.1.%s", c3.ID, p.ID, d3.ID) {
		t.Fatalf("close of an expired claim: %+v %v", r3, err)
	}
}

func testInsertRefuses(t *testing.T, s exchange.Store) {
	for name, change := range map[string]func(*exchange.Prescription){
		"no lines":          func(p *exchange.Prescription) { p.Lines = nil },
		"no tracking code":  func(p *exchange.Prescription) { p.TrackingCode = "" },
		"no JWS":            func(p *exchange.Prescription) { p.JWS = "" },
		"unknown kind":      func(p *exchange.Prescription) { p.Kind = "fax" },
		"a zero quantity":   func(p *exchange.Prescription) { p.Lines[0].Quantity = 0 },
		"already dispensed": func(p *exchange.Prescription) { p.Lines[0].Dispensed = 1 },
	} {
		p := Prescription(t, drug("A", 2))
		change(p)
		if _, err := s.InsertPrescription(ctx, Entry(), p, nil); err == nil {
			t.Errorf("%s: stored", name)
		}
		if _, err := s.PrescriptionByID(ctx, p.ID, Now); errs.CodeOf(err) != errs.NotFound {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func cancellation(p *exchange.Prescription, at time.Time) *exchange.Cancellation {
	id := rx.NewID()
	jws := "eyJhbGciOiJFUzI1NiJ9.c" + id + ".c2ln"
	return &exchange.Cancellation{ID: id, PrescriptionID: p.ID, JWS: jws, JWSSHA256: rx.SHA256(jws), At: at}
}

func testCancel(t *testing.T, s exchange.Store) {
	// Nothing dispensed: cancelled; then nothing more happens to it.
	p := insert(t, s, Prescription(t, drug("A", 3)))
	c := cancellation(p, Now)
	got, after, err := s.Cancel(ctx, Entry(), c)
	if err != nil || got.RemainderOnly || after.State != exchange.Cancelled {
		t.Fatalf("cancel: %+v %+v %v", got, after, err)
	}
	if _, _, err := s.Cancel(ctx, Entry(), c); !errors.Is(err, exchange.ErrReplay) {
		t.Fatalf("cancel again: %v", err)
	}
	if byID, err := s.CancellationByID(ctx, c.ID); err != nil || byID.JWSSHA256 != c.JWSSHA256 || byID.PrescriptionID != p.ID || !byID.At.Equal(got.At) {
		t.Fatalf("cancellation by id: %+v %v", byID, err)
	}
	_, err = s.CancellationByID(ctx, rx.NewID())
	wantCode(t, err, errs.NotFound)
	other := cancellation(p, Now)
	other.ID = c.ID
	_, _, err = s.Cancel(ctx, Entry(), other)
	wantCode(t, err, errs.DocumentIDConflict)
	_, _, err = s.Cancel(ctx, Entry(), cancellation(p, Now))
	wantCode(t, err, errs.PrescriptionNotDispensable)
	cl, _ := newClaim(p, "pharmacy-A", Now)
	_, err = s.Claim(ctx, Entry(), cl)
	wantCode(t, err, errs.PrescriptionNotDispensable)

	// Claimed: refused, with until when; partly dispensed: the remainder.
	q := insert(t, s, Prescription(t, drug("A", 3)))
	qc, qh := claim(t, s, q, "pharmacy-A", Now)
	if _, _, err := s.Dispense(ctx, Entry(), qc.ID, qh, Dispense(q, Now, give(0, 1)), nil); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Cancel(ctx, Entry(), cancellation(q, Now))
	var claimed *exchange.ClaimedError
	if !errors.As(err, &claimed) || !claimed.Until.Equal(qc.ExpiresAt) {
		t.Fatalf("cancel while claimed: %v", err)
	}
	if _, err := s.Close(ctx, Entry(), qc.ID, qh, Now, receiptFor(new(atomic.Int64))); err != nil {
		t.Fatal(err)
	}
	got, after, err = s.Cancel(ctx, Entry(), cancellation(q, Now))
	if err != nil || !got.RemainderOnly || after.State != exchange.RemainderCancelled || after.Lines[0].Dispensed != 1 {
		t.Fatalf("cancel the remainder: %+v %+v %v", got, after, err)
	}
	if r := read(t, s, q.ID, Now); r.State != exchange.RemainderCancelled {
		t.Fatalf("read back: %s", r.State)
	}
	_, _, err = s.Cancel(ctx, Entry(), cancellation(&exchange.Prescription{ID: rx.NewID()}, Now))
	wantCode(t, err, errs.NotFound)
}

// Entry is an audit entry for a write of the suite: every write takes
// its action's entry (exchange.Store).
func Entry() *tlog.Entry {
	return &tlog.Entry{Time: Now, Actor: tlog.Actor{Kind: tlog.ActorSystem, ID: "exchangetest"}, Action: "test", Outcome: audit.OK}
}
