package exchangetest

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/rx"
)

func testPaper(t *testing.T, s exchange.Store) {
	p := Prescription(t, drug("A", 2), drug("B", 1))
	p.Kind = exchange.Paper
	d := Dispense(p, Now, give(0, 2))
	got, err := s.InsertPrescription(ctx, Entry(), p, d)
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != exchange.Paper || got.State != exchange.PartlyDispensed || !slices.Equal(dispensed(got), []int{2, 0}) {
		t.Fatalf("paper: %s %s %v", got.Kind, got.State, dispensed(got))
	}
	r := read(t, s, p.ID, Now)
	if r.Kind != exchange.Paper || r.State != exchange.PartlyDispensed || !slices.Equal(dispensed(r), []int{2, 0}) {
		t.Fatalf("paper read back: %s %s %v", r.Kind, r.State, dispensed(r))
	}
	// Entered again: the first answer, dispensed once.
	if _, err := s.InsertPrescription(ctx, Entry(), p, Dispense(p, Now, give(0, 2))); !errors.Is(err, exchange.ErrReplay) {
		t.Fatalf("paper again: %v", err)
	}
	if r := read(t, s, p.ID, Now); !slices.Equal(dispensed(r), []int{2, 0}) {
		t.Fatalf("paper entered twice dispensed %v", dispensed(r))
	}
	// A paper dispense that asks too much stores nothing.
	q := Prescription(t, drug("A", 1))
	q.Kind = exchange.Paper
	_, err = s.InsertPrescription(ctx, Entry(), q, Dispense(q, Now, give(0, 2)))
	wantCode(t, err, errs.OverDispense)
	if _, err := s.PrescriptionByID(ctx, q.ID, Now); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("a refused paper prescription was stored: %v", err)
	}
	// Only paper is dispensed as it is entered.
	e := Prescription(t, drug("A", 1))
	if _, err := s.InsertPrescription(ctx, Entry(), e, Dispense(e, Now, give(0, 1))); err == nil {
		t.Fatal("an electronic prescription was dispensed without a claim")
	}
}

func testHistory(t *testing.T, s exchange.Store) {
	var mine []*exchange.Prescription
	for _, hours := range []int{5, 1, 3, 3, 2} { // two issued at the same instant: id decides
		p := Prescription(t, drug("A", 2))
		p.IssuedAt = Issued.Add(-time.Duration(hours) * time.Hour)
		mine = append(mine, insert(t, s, p))
	}
	other := Prescription(t, drug("A", 1))
	other.PatientNationalID = "0013542419"
	insert(t, s, other)

	c, h := claim(t, s, mine[1], "pharmacy-A", Now)
	d := Dispense(mine[1], Now, give(0, 1))
	if _, _, err := s.Dispense(ctx, Entry(), c.ID, h, d, nil); err != nil {
		t.Fatal(err)
	}
	cn := cancellation(mine[0], Now)
	if _, _, err := s.Cancel(ctx, Entry(), cn); err != nil {
		t.Fatal(err)
	}

	want := slices.Clone(mine)
	slices.SortFunc(want, func(a, b *exchange.Prescription) int {
		if c := b.IssuedAt.Compare(a.IssuedAt); c != 0 {
			return c
		}
		return -bytes.Compare([]byte(a.ID), []byte(b.ID))
	})
	var got []exchange.HistoryEntry
	var cursor *exchange.Cursor
	pages := 0
	for {
		page, next, err := s.History(ctx, NationalID, cursor, 2, Now)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		got = append(got, page...)
		if next == nil {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		cursor = next
	}
	if pages != 3 || len(got) != len(want) {
		t.Fatalf("%d pages, %d entries; want 3 pages, %d entries", pages, len(got), len(want))
	}
	for i, e := range got {
		if e.Prescription.ID != want[i].ID || e.Prescription.PatientNationalID != NationalID {
			t.Errorf("entry %d is %s (issued %s), want %s", i, e.Prescription.ID, e.Prescription.IssuedAt, want[i].ID)
		}
		switch e.Prescription.ID {
		case mine[1].ID:
			if len(e.Dispenses) != 1 || e.Dispenses[0].ID != d.ID || e.Dispenses[0].Lines[0].Quantity != 1 || e.Prescription.State != exchange.PartlyDispensed {
				t.Errorf("dispensed entry: %+v", e)
			}
		case mine[0].ID:
			if len(e.Cancellations) != 1 || e.Cancellations[0].ID != cn.ID || e.Prescription.State != exchange.Cancelled {
				t.Errorf("cancelled entry: %+v", e)
			}
		default:
			if len(e.Dispenses)+len(e.Cancellations) != 0 || e.Prescription.State != exchange.Active {
				t.Errorf("entry %+v", e)
			}
		}
	}
	if page, next, err := s.History(ctx, "0084575948", nil, 10, Now); err != nil || len(page) != 0 || next != nil {
		t.Errorf("a patient with no prescriptions: %v %v %v", page, next, err)
	}
	for _, limit := range []int{0, -1, exchange.MaxHistoryPage + 1} {
		if _, _, err := s.History(ctx, NationalID, nil, limit, Now); errs.CodeOf(err) != errs.Invalid {
			t.Errorf("limit %d: %v", limit, err)
		}
	}
}

func session(at time.Time) *exchange.Session {
	_, h := Secret()
	return &exchange.Session{
		TokenSHA256: h, DocumentID: rx.NewID(),
		Actor:            exchange.Actor{CertSerial: "0abc", Role: "pharmacy", Organisation: "PH-1", CouncilNumber: "p-77"},
		VendorThumbprint: "x5t-vendor", CardChain: cardChain(), CreatedAt: at, ExpiresAt: at.Add(12 * time.Hour),
	}
}

// cardChain stands for a card's chain: two DER values (the store keeps
// them as given, without parsing them as certificates), the first with a
// long-form length.
func cardChain() [][]byte {
	leaf, _ := asn1.Marshal(struct {
		Serial int
		Name   string
	}{0xabc, strings.Repeat("leaf ", 40)})
	issuer, _ := asn1.Marshal(struct{ Name string }{"issuing CA"})
	return [][]byte{leaf, issuer}
}

func testSessions(t *testing.T, s exchange.Store) {
	se := session(Now)
	if err := s.CreateSession(ctx, Entry(), se); err != nil {
		t.Fatal(err)
	}
	got, err := s.Session(ctx, se.TokenSHA256, Now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.TokenSHA256, se.TokenSHA256) || got.DocumentID != se.DocumentID || got.Actor != se.Actor || got.VendorThumbprint != se.VendorThumbprint ||
		!got.CreatedAt.Equal(se.CreatedAt) || !got.ExpiresAt.Equal(se.ExpiresAt) ||
		!slices.EqualFunc(got.CardChain, se.CardChain, bytes.Equal) {
		t.Errorf("session read %+v, stored %+v", got, se)
	}
	// A session is nothing without the chain its card's revocation is
	// checked by on every call.
	for _, chain := range [][][]byte{nil, {[]byte("not DER")}, {append(slices.Clone(se.CardChain[0]), 0)}} {
		bad := session(Now)
		bad.CardChain = chain
		if err := s.CreateSession(ctx, Entry(), bad); err == nil {
			t.Errorf("a session stored with card chain %x", chain)
		}
	}
	_, err = s.Session(ctx, se.TokenSHA256, se.ExpiresAt)
	wantCode(t, err, errs.Unauthorized)
	_, other := Secret()
	_, err = s.Session(ctx, other, Now)
	wantCode(t, err, errs.Unauthorized)

	// A session document opens one session.
	again := session(Now)
	again.DocumentID = se.DocumentID
	if err := s.CreateSession(ctx, Entry(), again); !errors.Is(err, exchange.ErrSessionUsed) {
		t.Fatalf("document used twice: %v", err)
	}
	wantCode(t, s.CreateSession(ctx, Entry(), again), errs.SessionIDUsed)
	if _, err := s.Session(ctx, again.TokenSHA256, Now); errs.CodeOf(err) != errs.Unauthorized {
		t.Fatalf("the refused session was stored: %v", err)
	}

	if err := s.EndSession(ctx, Entry(), se.TokenSHA256); err != nil {
		t.Fatal(err)
	}
	_, err = s.Session(ctx, se.TokenSHA256, Now)
	wantCode(t, err, errs.Unauthorized)
	if err := s.EndSession(ctx, Entry(), se.TokenSHA256); err != nil {
		t.Fatalf("ending an ended session: %v", err)
	}
	// Ended, its document is still used.
	again.DocumentID = se.DocumentID
	if err := s.CreateSession(ctx, Entry(), again); !errors.Is(err, exchange.ErrSessionUsed) {
		t.Fatalf("document of an ended session reused: %v", err)
	}

	// Purge removes what has expired, and only that.
	live := session(Now)
	if err := s.CreateSession(ctx, Entry(), live); err != nil {
		t.Fatal(err)
	}
	old := session(Now.Add(-13 * time.Hour))
	if err := s.CreateSession(ctx, Entry(), old); err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx, Now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, live.TokenSHA256, Now); err != nil {
		t.Fatalf("purge removed a live session: %v", err)
	}
}

func record(key, caller string, request []byte, body string, at time.Time) *exchange.IdempotencyRecord {
	return &exchange.IdempotencyRecord{Key: key, Caller: caller, RequestSHA256: request, Status: 201, Body: []byte(body), CreatedAt: at, ExpiresAt: at.Add(24 * time.Hour)}
}

func testIdempotency(t *testing.T, s exchange.Store) {
	_, req := Secret()
	_, otherReq := Secret()
	if r, err := s.Idempotent(ctx, "k1", "caller-1", req, Now); r != nil || err != nil {
		t.Fatalf("before: %v %v", r, err)
	}
	kept, err := s.Remember(ctx, record("k1", "caller-1", req, `{"a":1}`, Now))
	if err != nil || string(kept.Body) != `{"a":1}` {
		t.Fatalf("remember: %+v %v", kept, err)
	}
	r, err := s.Idempotent(ctx, "k1", "caller-1", req, Now.Add(time.Hour))
	if err != nil || r == nil || r.Status != 201 || string(r.Body) != `{"a":1}` || !r.ExpiresAt.Equal(Now.Add(24*time.Hour)) {
		t.Fatalf("lookup: %+v %v", r, err)
	}
	// Another request under the key: refused, in lookup and in remember.
	_, err = s.Idempotent(ctx, "k1", "caller-1", otherReq, Now)
	wantCode(t, err, errs.IdempotencyKeyReused)
	_, err = s.Remember(ctx, record("k1", "caller-1", otherReq, `{"b":2}`, Now))
	wantCode(t, err, errs.IdempotencyKeyReused)
	// The same request remembered again: the first answer wins.
	if kept, err := s.Remember(ctx, record("k1", "caller-1", req, `{"late":1}`, Now)); err != nil || string(kept.Body) != `{"a":1}` {
		t.Fatalf("remember again: %+v %v", kept, err)
	}
	// Keys are per caller.
	if r, err := s.Idempotent(ctx, "k1", "caller-2", otherReq, Now); r != nil || err != nil {
		t.Fatalf("another caller's key: %v %v", r, err)
	}
	if _, err := s.Remember(ctx, record("k1", "caller-2", otherReq, `{"c":3}`, Now)); err != nil {
		t.Fatal(err)
	}
	// Expired: gone, and the key may be used again.
	later := Now.Add(24 * time.Hour)
	if r, err := s.Idempotent(ctx, "k1", "caller-1", otherReq, later); r != nil || err != nil {
		t.Fatalf("expired: %v %v", r, err)
	}
	if kept, err := s.Remember(ctx, record("k1", "caller-1", otherReq, `{"new":1}`, later)); err != nil || string(kept.Body) != `{"new":1}` {
		t.Fatalf("reuse after expiry: %+v %v", kept, err)
	}
	if err := s.Purge(ctx, later.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Idempotent(ctx, "k1", "caller-1", otherReq, later); r != nil || err != nil {
		t.Fatalf("after purge: %v %v", r, err)
	}

	// Racing callers with one key and one request: one answer kept, every
	// caller given it.
	var wg sync.WaitGroup
	bodies := make([]string, 16)
	errsSeen := make([]error, 16)
	start := make(chan struct{})
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			k, err := s.Remember(ctx, record("race", "caller-1", req, string(rune('a'+i)), Now))
			if err == nil {
				bodies[i] = string(k.Body)
			}
			errsSeen[i] = err
		}()
	}
	close(start)
	wg.Wait()
	for i := range bodies {
		if errsSeen[i] != nil || bodies[i] != bodies[0] {
			t.Fatalf("racing remember %d: %q %v (first %q)", i, bodies[i], errsSeen[i], bodies[0])
		}
	}
}

// testSettlements: a dispense's settled answer is kept once, the first of
// racing settlements wins, and every read of the dispense carries it.
func testSettlements(t *testing.T, s exchange.Store) {
	p := insert(t, s, Prescription(t, drug("A", 3)))
	c, h := claim(t, s, p, "pharmacy-A", Now)
	d := Dispense(p, Now, give(0, 1))
	d.Answer = []byte(`{"estimated":true}`)
	if _, _, err := s.Dispense(ctx, Entry(), c.ID, h, d, nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.DispenseByID(ctx, d.ID)
	if err != nil || got.Settled != nil || string(got.Answer) != `{"estimated":true}` || got.Lines[0].Fill != 0 || got.JWSSHA256 != d.JWSSHA256 {
		t.Fatalf("before settling: %+v %v", got, err)
	}
	_, err = s.DispenseByID(ctx, rx.NewID())
	wantCode(t, err, errs.NotFound)
	_, err = s.Settle(ctx, Entry(), rx.NewID(), []byte(`{}`), Now)
	wantCode(t, err, errs.NotFound)

	const n = 8
	kept := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if kept[i], err = s.Settle(ctx, Entry(), d.ID, fmt.Appendf(nil, `{"settled":%d}`, i), Now.Add(time.Minute)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i := range n {
		if !bytes.Equal(kept[i], kept[0]) {
			t.Fatalf("settlements %d and 0 answered %s and %s", i, kept[i], kept[0])
		}
	}
	if again, err := s.Settle(ctx, Entry(), d.ID, []byte(`{"late":true}`), Now.Add(time.Hour)); err != nil || !bytes.Equal(again, kept[0]) {
		t.Fatalf("settled again: %s %v", again, err)
	}
	// Every read of the dispense carries it: by id, in a replay, to a close.
	if got, err := s.DispenseByID(ctx, d.ID); err != nil || !bytes.Equal(got.Settled, kept[0]) || string(got.Answer) != `{"estimated":true}` {
		t.Fatalf("after settling: %+v %v", got, err)
	}
	if got, _, err := s.Dispense(ctx, Entry(), c.ID, h, d, nil); !errors.Is(err, exchange.ErrReplay) || !bytes.Equal(got.Settled, kept[0]) {
		t.Fatalf("replay: %+v %v", got, err)
	}
	unsettled := Dispense(p, Now.Add(time.Minute), give(0, 1))
	if _, _, err := s.Dispense(ctx, Entry(), c.ID, h, unsettled, nil); err != nil {
		t.Fatal(err)
	}
	_, err = s.Close(ctx, Entry(), c.ID, h, Now.Add(2*time.Minute), func(_ *exchange.Claim, _ *exchange.Prescription, ds []*exchange.Dispense) (*exchange.Receipt, error) {
		if len(ds) != 2 || !bytes.Equal(ds[0].Settled, kept[0]) || ds[1].Settled != nil {
			t.Errorf("close sees %+v", ds)
		}
		return &exchange.Receipt{ID: rx.NewID(), JWS: "receipt"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
