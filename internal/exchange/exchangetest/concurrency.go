package exchangetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/exchange"
)

// The sizes of the dispense race: the claim holder's terminals, each
// asking for one unit of one item, and the other organisations, each
// trying to claim and to dispense under the holder's claim with a secret
// of its own.
const (
	Terminals = 330
	Rivals    = 40
)

// testConcurrentDispenses is the race the issue asks for: hundreds of
// dispenses of one prescription at once. Whatever the interleaving, the
// total dispensed of each line never exceeds what was prescribed, exactly
// as many dispenses succeed as there are units, every refusal is the one
// its sender should get, and the prescription ends dispensed. (One item,
// D, is kept out of the race and dispensed after it, so that during the
// race the prescription stays dispensable and every refusal of the holder
// is over-dispense, not "fully dispensed".)
func testConcurrentDispenses(t *testing.T, s exchange.Store) {
	quantities := []int{40, 30, 50}
	p := insert(t, s, Prescription(t, drug("A", quantities[0]), drug("B", quantities[1]), drug("C", quantities[2]), drug("D", 1)))
	units := 0
	for _, q := range quantities {
		units += q
	}
	holder, h := claim(t, s, p, "pharmacy-A", Now)

	var ok, over, claimed, secret atomic.Int64
	var mu sync.Mutex
	var unexpected []error
	bad := func(who string, err error) {
		mu.Lock()
		unexpected = append(unexpected, fmt.Errorf("%s: %w", who, err))
		mu.Unlock()
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range Terminals {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			at := Now.Add(time.Duration(i) * time.Millisecond)
			_, _, err := s.Dispense(ctx, Entry(), holder.ID, h, Dispense(p, at, give(i%len(quantities), 1)), nil)
			switch {
			case err == nil:
				ok.Add(1)
			case errs.CodeOf(err) == errs.OverDispense:
				over.Add(1)
			default:
				bad("terminal", err)
			}
		}()
	}
	for i := range Rivals {
		wg.Add(2)
		org := fmt.Sprintf("pharmacy-R%d", i)
		go func() {
			defer wg.Done()
			<-start
			c, _ := newClaim(p, org, Now.Add(time.Second))
			_, err := s.Claim(ctx, Entry(), c)
			var ce *exchange.ClaimedError
			if errors.As(err, &ce) && ce.Until.Equal(holder.ExpiresAt) {
				claimed.Add(1)
				return
			}
			bad("rival claim", err)
		}()
		go func() {
			defer wg.Done()
			<-start
			_, guess := Secret()
			_, _, err := s.Dispense(ctx, Entry(), holder.ID, guess, Dispense(p, Now.Add(time.Second), give(i%len(quantities), 1)), nil)
			if errors.Is(err, exchange.ErrSecretWrong) {
				secret.Add(1)
				return
			}
			bad("rival dispense", err)
		}()
	}
	close(start)
	wg.Wait()
	for _, err := range unexpected {
		t.Error(err)
	}
	if ok.Load() != int64(units) || over.Load() != int64(Terminals-units) || claimed.Load() != Rivals || secret.Load() != Rivals {
		t.Errorf("%d dispensed (want %d), %d over-dispense (want %d), %d claimed, %d wrong secret (want %d each)",
			ok.Load(), units, over.Load(), Terminals-units, claimed.Load(), secret.Load(), Rivals)
	}

	// Read back: every raced line exactly at its quantity, and the
	// dispenses stored add up to it.
	r := read(t, s, p.ID, Now.Add(time.Hour))
	if r.State != exchange.PartlyDispensed {
		t.Errorf("state %s, want partly-dispensed", r.State)
	}
	for i, q := range quantities {
		if l := r.Lines[i]; l.Dispensed != q {
			t.Errorf("line %d: %d dispensed of %d", i, l.Dispensed, q)
		}
	}
	if _, after, err := s.Dispense(ctx, Entry(), holder.ID, h, Dispense(p, Now.Add(time.Hour), give(3, 1)), nil); err != nil || after.State != exchange.Dispensed {
		t.Fatalf("the last item: %v", err)
	}
	_, _, err := s.Dispense(ctx, Entry(), holder.ID, h, Dispense(p, Now.Add(time.Hour), give(0, 1)), nil)
	var nd *exchange.NotDispensableError
	if !errors.As(err, &nd) || nd.State != exchange.Dispensed {
		t.Errorf("a dispense after the last: %v", err)
	}
	history, _, err := s.History(ctx, NationalID, nil, 1, Now.Add(time.Hour))
	if err != nil || len(history) != 1 {
		t.Fatalf("history: %v %v", history, err)
	}
	sum := make([]int, len(quantities)+1)
	for _, d := range history[0].Dispenses {
		for _, l := range d.Lines {
			sum[l.Item] += l.Quantity
		}
	}
	if want := append(quantities, 1); len(history[0].Dispenses) != units+1 || fmt.Sprint(sum) != fmt.Sprint(want) {
		t.Errorf("%d dispenses stored adding up to %v, want %d adding up to %v", len(history[0].Dispenses), sum, units+1, want)
	}
}

// testConcurrentCloses: one claim closed by many at once gets one receipt,
// signed once, and every closer is given it.
func testConcurrentCloses(t *testing.T, s exchange.Store) {
	p := insert(t, s, Prescription(t, drug("A", 3)))
	c, h := claim(t, s, p, "pharmacy-A", Now)
	if _, _, err := s.Dispense(ctx, Entry(), c.ID, h, Dispense(p, Now, give(0, 2)), nil); err != nil {
		t.Fatal(err)
	}
	const n = 24
	var calls atomic.Int64
	receipts := make([]*exchange.Receipt, n)
	failures := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			receipts[i], failures[i] = s.Close(ctx, Entry(), c.ID, h, Now.Add(time.Minute), receiptFor(&calls))
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if failures[i] != nil || receipts[i] == nil || *receipts[i] != *receipts[0] {
			t.Fatalf("close %d: %+v %v (first %+v)", i, receipts[i], failures[i], receipts[0])
		}
	}
	if calls.Load() != 1 {
		t.Errorf("the receipt was signed %d times", calls.Load())
	}
}

// testConcurrentClaims: many organisations claiming at once; exactly one
// holds it, the others are told until when.
func testConcurrentClaims(t *testing.T, s exchange.Store) {
	p := insert(t, s, Prescription(t, drug("A", 3)))
	const n = 24
	claims := make([]*exchange.Claim, n)
	refusals := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c, _ := newClaim(p, fmt.Sprintf("pharmacy-%d", i), Now)
			claims[i], refusals[i] = s.Claim(ctx, Entry(), c)
		}()
	}
	close(start)
	wg.Wait()
	var winner *exchange.Claim
	for i := range n {
		if refusals[i] == nil {
			if winner != nil {
				t.Fatalf("two holders: %s and %s", winner.Organisation, claims[i].Organisation)
			}
			winner = claims[i]
		}
	}
	if winner == nil {
		t.Fatal("nobody holds the claim")
	}
	for i := range n {
		var ce *exchange.ClaimedError
		if refusals[i] != nil && (!errors.As(refusals[i], &ce) || !ce.Until.Equal(winner.ExpiresAt)) {
			t.Errorf("claim %d: %v", i, refusals[i])
		}
	}
	if r := read(t, s, p.ID, Now); r.Claim == nil || r.Claim.ID != winner.ID {
		t.Errorf("held by %+v, want %s", r.Claim, winner.ID)
	}
}

// testConcurrentInserts: the same prescription submitted many times at
// once is stored once; every other submission is a replay.
func testConcurrentInserts(t *testing.T, s exchange.Store) {
	p := Prescription(t, drug("A", 3))
	const n = 16
	refusals := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, refusals[i] = s.InsertPrescription(ctx, Entry(), p, nil)
		}()
	}
	close(start)
	wg.Wait()
	stored := 0
	for i, err := range refusals {
		switch {
		case err == nil:
			stored++
		case !errors.Is(err, exchange.ErrReplay):
			t.Errorf("insert %d: %v", i, err)
		}
	}
	if stored != 1 {
		t.Errorf("stored %d times", stored)
	}
}

// testPatientDispenses: a dispense judged when the patient had n
// dispenses (Dispense.Seen) is recorded only while the patient still has
// n — by claim or on paper — and of many judged at once, for the same
// patient on different prescriptions, exactly one is recorded.
func testPatientDispenses(t *testing.T, s exchange.Store) {
	count := func(want int, unsettled ...string) {
		t.Helper()
		n, us, err := s.PatientDispenses(ctx, NationalID)
		var ids []string
		for _, u := range us {
			ids = append(ids, u.ID)
		}
		slices.Sort(ids)
		slices.Sort(unsettled)
		if err != nil || n != want || fmt.Sprint(ids) != fmt.Sprint(unsettled) {
			t.Fatalf("patient's dispenses: %d, unsettled %v, %v; want %d, %v", n, ids, err, want, unsettled)
		}
	}
	seen := func(n int) *int { return &n }
	count(0)
	p1 := insert(t, s, Prescription(t, drug("A", 2)))
	p2 := insert(t, s, Prescription(t, drug("A", 2)))
	c1, h1 := claim(t, s, p1, "pharmacy-A", Now)
	c2, h2 := claim(t, s, p2, "pharmacy-B", Now)

	d1 := Dispense(p1, Now, give(0, 1))
	d1.Seen = seen(0)
	if _, _, err := s.Dispense(ctx, Entry(), c1.ID, h1, d1, nil); err != nil {
		t.Fatal(err)
	}
	count(1, d1.ID)
	d2 := Dispense(p2, Now, give(0, 1))
	d2.Seen = seen(0)
	_, _, err := s.Dispense(ctx, Entry(), c2.ID, h2, d2, nil)
	if !errors.Is(err, exchange.ErrJudgedStale) {
		t.Fatalf("judged before the patient's last dispense: %v", err)
	}
	if r := read(t, s, p2.ID, Now); r.Lines[0].Dispensed != 0 {
		t.Fatalf("a stale dispense was counted: %v", dispensed(r))
	}
	if _, err := s.Settle(ctx, Entry(), d1.ID, []byte(`{}`), Now); err != nil {
		t.Fatal(err)
	}
	count(1)
	d2.Seen = seen(1)
	if _, _, err := s.Dispense(ctx, Entry(), c2.ID, h2, d2, nil); err != nil {
		t.Fatal(err)
	}

	paper := Prescription(t, drug("A", 1))
	paper.Kind = exchange.Paper
	pd := Dispense(paper, Now, give(0, 1))
	pd.Seen = seen(1)
	if _, err := s.InsertPrescription(ctx, Entry(), paper, pd); !errors.Is(err, exchange.ErrJudgedStale) {
		t.Fatalf("a paper judged before the patient's last dispense: %v", err)
	}
	if _, err := s.PrescriptionByID(ctx, paper.ID, Now); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("a stale paper prescription was stored: %v", err)
	}
	pd.Seen = seen(2)
	if _, err := s.InsertPrescription(ctx, Entry(), paper, pd); err != nil {
		t.Fatal(err)
	}
	count(3, d2.ID, pd.ID)

	// Another patient's dispenses are not counted.
	other := Prescription(t, drug("A", 1))
	other.PatientNationalID = "0013542419"
	other = insert(t, s, other)
	oc, oh := claim(t, s, other, "pharmacy-A", Now)
	od := Dispense(other, Now, give(0, 1))
	od.Seen = seen(0)
	if _, _, err := s.Dispense(ctx, Entry(), oc.ID, oh, od, nil); err != nil {
		t.Fatalf("another patient's dispense: %v", err)
	}
	count(3, d2.ID, pd.ID)

	// Judged at once, all having seen the same three: one is recorded.
	const racers = 24
	type racer struct {
		claim *exchange.Claim
		hash  []byte
		d     *exchange.Dispense
	}
	rs := make([]racer, racers)
	for i := range rs {
		p := insert(t, s, Prescription(t, drug("A", 1)))
		c, h := claim(t, s, p, fmt.Sprintf("pharmacy-%d", i), Now)
		d := Dispense(p, Now, give(0, 1))
		d.Seen = seen(3)
		rs[i] = racer{c, h, d}
	}
	// The store's connections opened first, so that the racers overlap
	// rather than queue for connections being opened.
	warm := make(chan struct{})
	var warming sync.WaitGroup
	for range rs {
		warming.Add(1)
		go func() {
			defer warming.Done()
			<-warm
			if _, _, err := s.PatientDispenses(ctx, NationalID); err != nil {
				t.Error(err)
			}
		}()
	}
	close(warm)
	warming.Wait()
	var ok, stale atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, _, err := s.Dispense(ctx, Entry(), r.claim.ID, r.hash, r.d, nil)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, exchange.ErrJudgedStale):
				stale.Add(1)
			default:
				t.Errorf("racing dispense: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok.Load() != 1 || stale.Load() != racers-1 {
		t.Fatalf("%d recorded, %d stale, of %d judged having seen the same dispenses", ok.Load(), stale.Load(), racers)
	}
}

// testPatientLockOrder: every write that takes both the patient's lock
// and a prescription's (a dispense by claim, a paper prescription) takes
// the patient's first, and none that holds a prescription's (a claim, a
// renewal, a close) waits for the patient's: run all of them at once on
// one patient's prescriptions, none fails but for a reason of its own
// (judged stale, a claim ended or renewed) — never a deadlock, which the
// store would report as an internal error — and none hangs.
func testPatientLockOrder(t *testing.T, s exchange.Store) {
	const prescriptions, rounds = 8, 6
	type held struct {
		p    *exchange.Prescription
		c    *exchange.Claim
		hash []byte
	}
	hs := make([]held, prescriptions)
	for i := range hs {
		p := insert(t, s, Prescription(t, drug("A", 100)))
		c, h := claim(t, s, p, fmt.Sprintf("pharmacy-%d", i), Now)
		hs[i] = held{p, c, h}
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []error
		calls    atomic.Int64
	)
	check := func(what string, err error) {
		if err == nil || errors.Is(err, exchange.ErrJudgedStale) || errs.CodeOf(err) != errs.Internal {
			return
		}
		mu.Lock()
		failures = append(failures, fmt.Errorf("%s: %w", what, err))
		mu.Unlock()
	}
	seen := func() *int {
		n, _, err := s.PatientDispenses(ctx, NationalID)
		check("counting", err)
		return &n
	}
	start := make(chan struct{})
	run := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f()
		}()
	}
	for i, h := range hs {
		// Two dispensers a claim, and its close among them: a close
		// holding the prescription's lock and waiting for the patient's
		// would meet a dispense holding the patient's and waiting for the
		// prescription's.
		for range 2 {
			run(func() {
				for range rounds {
					d := Dispense(h.p, Now, give(0, 1))
					d.Seen = seen()
					_, _, err := s.Dispense(ctx, Entry(), h.c.ID, h.hash, d, nil)
					check("dispense", err)
				}
			})
		}
		run(func() {
			for range rounds {
				c, _ := newClaim(h.p, fmt.Sprintf("pharmacy-%d", i), Now.Add(time.Minute))
				_, err := s.Claim(ctx, Entry(), c)
				check("claim", err)
			}
		})
		run(func() {
			paper := Prescription(t, drug("A", 1))
			paper.Kind = exchange.Paper
			d := Dispense(paper, Now, give(0, 1))
			d.Seen = seen()
			_, err := s.InsertPrescription(ctx, Entry(), paper, d)
			check("paper", err)
		})
		run(func() {
			_, err := s.Close(ctx, Entry(), h.c.ID, h.hash, Now.Add(time.Minute), receiptFor(&calls))
			check("close", err)
		})
	}
	close(start)
	wg.Wait()
	for _, err := range failures {
		t.Error(err)
	}
}
