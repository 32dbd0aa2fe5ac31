package insuredtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/persian"
)

// Store is what the registry needs from a database.
type Store interface {
	insured.Writer
	insured.Lookup
	Person(ctx context.Context, nationalID string) (insured.Person, bool, error)
	insured.Usage
	insured.History
	Generation(ctx context.Context) (int64, error)
	Count(ctx context.Context) (int64, error)
}

var ctx = context.Background()

// Now is the import clock used by the suite.
var Now = time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)

// Day 1405-06-15 (2026-09-06): inside the generated persons' coverage.
var Day = time.Date(2026, 9, 6, 0, 0, 0, 0, time.UTC)

// Import loads csv in mode.
func Import(t testing.TB, s Store, mode insured.Mode, csv string) (insured.Summary, error) {
	t.Helper()
	return insured.Import(ctx, s, strings.NewReader(csv), mode, Now, insured.Options{AllowShrink: true})
}

// MustImport loads csv or fails the test.
func MustImport(t testing.TB, s Store, mode insured.Mode, csv string) insured.Summary {
	t.Helper()
	sum, err := Import(t, s, mode, csv)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	return sum
}

// Rows joins rows 0..n-1 after the header.
func Rows(n int) string {
	var b strings.Builder
	b.WriteString(Header())
	for i := 0; i < n; i++ {
		b.WriteString(Row(i))
	}
	return b.String()
}

// Run is the conformance suite every registry store passes.
func Run(t *testing.T, open func(t *testing.T) Store) {
	t.Run("FullImportAndLookup", func(t *testing.T) { testFullImport(t, open(t)) })
	t.Run("ImportErrorsCommitNothing", func(t *testing.T) { testImportErrors(t, open(t)) })
	t.Run("Update", func(t *testing.T) { testUpdate(t, open(t)) })
	t.Run("FullImportReplaces", func(t *testing.T) { testReplace(t, open(t)) })
	t.Run("EligibilityReasons", func(t *testing.T) { testEligibility(t, open(t)) })
	t.Run("ReadsDuringImport", func(t *testing.T) { testReadsDuringImport(t, open(t)) })
	t.Run("CapsUnderConcurrency", func(t *testing.T) { testCaps(t, open(t)) })
	t.Run("History", func(t *testing.T) { testHistory(t, open(t)) })
	t.Run("ConcurrentReads", func(t *testing.T) { testConcurrentReads(t, open(t)) })
}

// testConcurrentReads: many callers reading at once (which a store may
// serve together) each get their own person, main insured and history —
// the same as read one at a time — and a missing person is missing. A
// store that reads both together (insured.Facts) is read that way at
// once, and must agree with its two reads one at a time.
func testConcurrentReads(t *testing.T, s Store) {
	const persons, readers = 40, 200
	MustImport(t, s, insured.Full, Rows(persons))
	at := func(d int) time.Time { return Day.AddDate(0, 0, -d).Add(time.Duration(d) * time.Minute) }
	var hist []insured.Dispensed
	for i := range persons {
		for k := range i % 4 { // person i has i%4 dispensed items, k days apart
			hist = append(hist, insured.Dispensed{DispenseID: fmt.Sprintf("d%d-%d", i, k), NationalID: NationalID(i), Code: "A", ATC: "N02BE01",
				Quantity: 1 + i, DaysSupply: 10, DispensedAt: at(10 * (k + 1))})
		}
	}
	if err := s.Record(ctx, hist); err != nil {
		t.Fatal(err)
	}
	type read struct {
		p     insured.Person
		main  *insured.Person
		found bool
		hist  []insured.Dispensed
	}
	// i%(persons+5) ≥ persons: someone not in the registry. since: 15 or
	// 35 days back, so two callers of one person may ask for different
	// histories.
	one := func(i int, together bool) (read, error) {
		nid := NationalID(i % (persons + 5))
		since := Day.AddDate(0, 0, -15-20*(i%2))
		var r read
		var err error
		if f, ok := s.(insured.Facts); ok && together {
			r.p, r.main, r.found, r.hist, err = f.PersonWithHistory(ctx, nid, since)
			return r, err
		}
		if r.p, r.main, r.found, err = s.PersonWithMain(ctx, nid); err != nil {
			return r, err
		}
		r.hist, err = s.Since(ctx, nid, since)
		return r, err
	}
	want := make([]read, readers)
	for i := range readers {
		var err error
		if want[i], err = one(i, false); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]read, readers)
	errc := make(chan error, readers)
	var wg sync.WaitGroup
	for i := range readers {
		wg.Go(func() {
			r, err := one(i, true)
			if err != nil {
				errc <- err
			}
			got[i] = r
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	for i := range readers {
		g, w := got[i], want[i]
		n := i % (persons + 5)
		if g.found != (n < persons) || g.found != w.found {
			t.Fatalf("reader %d: person %d found=%v, alone found=%v", i, n, g.found, w.found)
		}
		if !g.found {
			if len(g.hist) != 0 {
				t.Fatalf("reader %d: history of someone not in the registry: %+v", i, g.hist)
			}
			continue
		}
		if g.p.NationalID != NationalID(n) || g.p.InsuranceNumber != fmt.Sprintf("INS-%d", n) || g.p.InsuranceNumber != w.p.InsuranceNumber {
			t.Fatalf("reader %d asked for person %d, got %+v", i, n, g.p)
		}
		if (g.main == nil) != (n%4 != 3) || (g.main != nil && (g.main.NationalID != NationalID(n-3) || w.main == nil || w.main.NationalID != g.main.NationalID)) {
			t.Fatalf("reader %d: person %d's main insured %+v, alone %+v", i, n, g.main, w.main)
		}
		wantItems := min(n%4, 1+2*(i%2)) // 10, 20, 30 days back; within 15 or 35
		if len(g.hist) != wantItems || len(w.hist) != wantItems {
			t.Fatalf("reader %d: person %d's history has %d items (alone %d), want %d", i, n, len(g.hist), len(w.hist), wantItems)
		}
		for k, d := range g.hist {
			if d.NationalID != NationalID(n) || d.Quantity != 1+n || !d.DispensedAt.Equal(at(10*(k+1))) || d.DispenseID != w.hist[k].DispenseID {
				t.Fatalf("reader %d: person %d's history item %d = %+v, alone %+v", i, n, k, d, w.hist[k])
			}
		}
	}
}

func testHistory(t *testing.T, s Store) {
	nid := NationalID(0)
	at := func(d int) time.Time { return Day.AddDate(0, 0, -d).Add(10 * time.Hour) }
	first := []insured.Dispensed{
		{DispenseID: "d1", Item: 0, NationalID: nid, Code: "A", ATC: "N02BE01", Quantity: 20, DaysSupply: 10, DispensedAt: at(40)},
		{DispenseID: "d1", Item: 1, NationalID: nid, Code: "B", ATC: "C10AA05", Quantity: 30, DaysSupply: 30, DispensedAt: at(40), PrescriptionID: "rx-1", Fill: 2},
	}
	for range 2 { // recording a dispense again adds nothing
		if err := s.Record(ctx, first); err != nil {
			t.Fatal(err)
		}
	}
	// The same dispense item with other content is not a retry.
	changed := first[1]
	changed.Quantity = 60
	if err := s.Record(ctx, []insured.Dispensed{changed}); !errors.Is(err, &errs.Error{Code: errs.Conflict}) {
		t.Fatalf("a reused dispense id: %v", err)
	}
	changed = first[1]
	changed.Fill = 1
	if err := s.Record(ctx, []insured.Dispensed{changed}); !errors.Is(err, &errs.Error{Code: errs.Conflict}) {
		t.Fatalf("a dispense item recorded again against another fill: %v", err)
	}
	if err := s.Record(ctx, []insured.Dispensed{
		{DispenseID: "d2", NationalID: nid, Code: "B", ATC: "C10AA05", Quantity: 30, DaysSupply: 30, DispensedAt: at(5)},
		{DispenseID: "d3", NationalID: NationalID(1), Code: "B", ATC: "C10AA05", Quantity: 30, DaysSupply: 30, DispensedAt: at(1)},
	}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Since(ctx, nid, Day.AddDate(0, 0, -90))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].DispenseID != "d2" || !got[0].DispensedAt.Equal(at(5)) || got[2].Code != "B" || got[1].ATC != "N02BE01" ||
		got[2].PrescriptionID != "rx-1" || got[2].Fill != 2 || got[1].PrescriptionID != "" || got[1].Fill != 0 {
		t.Fatalf("history = %+v", got)
	}
	if got, _ := s.Since(ctx, nid, Day.AddDate(0, 0, -30)); len(got) != 1 {
		t.Fatalf("since 30 days: %+v", got)
	}
}

func testFullImport(t *testing.T, s Store) {
	sum := MustImport(t, s, insured.Full, Rows(100))
	if sum.Rows != 100 || sum.Main != 75 || sum.Dependants != 25 || sum.Generation != 1 {
		t.Fatalf("summary = %+v", sum)
	}
	if n, _ := s.Count(ctx); n != 100 {
		t.Fatalf("count = %d", n)
	}
	p, ok, err := s.Person(ctx, NationalID(3))
	if err != nil || !ok {
		t.Fatalf("person 3: %v %v", ok, err)
	}
	if p.MainNationalID != NationalID(0) || p.Relation != "child" || p.InsuranceNumber != "INS-3" || p.Status != insured.Active {
		t.Fatalf("person 3 = %+v", p)
	}
	m, _, _ := s.Person(ctx, NationalID(0))
	if m.Supplementary == nil || m.Supplementary.Caps["drug"] != 50000000 || m.Supplementary.Insurer != "دی" || len(m.Contributions) != 13 {
		t.Fatalf("person 0 = %+v", m)
	}
	if _, ok, _ := s.Person(ctx, NationalID(100)); ok {
		t.Fatal("a person not imported was found")
	}
}

// testImportErrors: every kind of bad row is reported by line, and a
// rejected import leaves the registry exactly as it was.
func testImportErrors(t *testing.T, s Store) {
	MustImport(t, s, insured.Full, Rows(8))
	gen, _ := s.Generation(ctx)
	badCheckDigit := NationalID(20)
	badCheckDigit = badCheckDigit[:9] + string('0'+(badCheckDigit[9]-'0'+1)%10)
	lines := []string{
		Row(0), Row(1), // 2, 3
		strings.Replace(Row(20), NationalID(20), badCheckDigit, 1), // 4: bad check digit
		Row(1),                                 // 5: duplicate of line 3
		"x,a \"quote\" in an unquoted field\n", // 6: malformed CSV
		"1,2,3\n",                              // 7: wrong number of fields
		strings.Replace(Row(21), ",self-employed,", ",gold-plated,", 1), // 8: unknown fund
		strings.Replace(Row(22), "1395-01-01", "1395-13-01", 1),         // 9: bad Solar Hijri date
		strings.Replace(Row(23), NationalID(20), NationalID(40), 1),     // 10: dependant of someone not in the file
		strings.Replace(Row(24), "drug=50000000", "drug=-5", 1),         // 11: negative cap
		strings.Replace(Row(25), ",active,", ",dormant,", 1),            // 12: unknown status
		strings.Replace(Row(27), NationalID(24), NationalID(27), 1),     // 13: own main insured
		Row(26), // 14: fine
		strings.Replace(Row(33), ",1404-01:30|", ",1404-01:45|", 1),             // 15: 45 paid days in a month
		strings.Replace(Row(29), ",male,", ",unknown,", 1),                      // 16: bad sex
		strings.Replace(Row(30), ",1395-01-01,,", ",1395-01-01,1390-01-01,", 1), // 17: ends before it starts
	}
	csv := Header() + strings.Join(lines, "")
	_, err := Import(t, s, insured.Full, csv)
	var ie *insured.ImportError
	if !errors.As(err, &ie) || !errors.Is(err, &errs.Error{Code: errs.ImportRejected}) {
		t.Fatalf("import error = %v", err)
	}
	want := map[int]string{4: "national_id", 5: "national_id", 6: "", 7: "", 8: "fund", 9: "coverage_start", 10: "main_national_id",
		11: "supp_caps", 12: "status", 13: "main_national_id", 15: "contributions", 16: "sex", 17: "coverage_end"}
	got := map[int]string{}
	for _, r := range ie.Rows {
		got[r.Line] = r.Field
		if strings.Contains(r.Reason, NationalID(1)) || strings.Contains(r.Reason, NationalID(40)) {
			t.Errorf("line %d: the reason repeats a national id: %s", r.Line, r.Reason)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || ie.Total != len(want) {
		t.Fatalf("bad rows reported %v (total %d), want %v\n%v", got, ie.Total, want, ie.Rows)
	}
	if g, _ := s.Generation(ctx); g != gen {
		t.Fatalf("generation moved from %d to %d on a rejected import", gen, g)
	}
	if n, _ := s.Count(ctx); n != 8 {
		t.Fatalf("count = %d after a rejected import", n)
	}
	if _, ok, _ := s.Person(ctx, NationalID(26)); ok {
		t.Fatal("a good row of a rejected import was committed")
	}
	// A rejected update changes nothing either, including the good rows.
	upd := Header() + strings.Replace(Row(1), "INS-1", "INS-NEW", 1) + strings.Replace(Row(2), ",active,", ",dormant,", 1)
	if _, err := Import(t, s, insured.Update, upd); !errors.As(err, &ie) || ie.Total != 1 || ie.Rows[0].Line != 3 {
		t.Fatalf("update error = %v", err)
	}
	if p, _, _ := s.Person(ctx, NationalID(1)); p.InsuranceNumber != "INS-1" {
		t.Fatalf("a rejected update changed a person: %+v", p)
	}
	// A header that is not ours is refused before any row.
	if _, err := Import(t, s, insured.Full, "nid,name\n"+Row(0)); !errors.Is(err, &errs.Error{Code: errs.ImportRejected}) {
		t.Fatalf("wrong header: %v", err)
	}
}

func testUpdate(t *testing.T, s Store) {
	MustImport(t, s, insured.Full, Rows(8))
	upd := Header() +
		strings.Replace(Row(1), ",active,", ",suspended,", 1) + // changed
		Row(8) + // new main insured
		strings.Replace(Row(11), NationalID(8), NationalID(4), 1) // new dependant of a registered main insured
	sum := MustImport(t, s, insured.Update, upd)
	if sum.Rows != 3 || sum.Generation != 1 {
		t.Fatalf("summary = %+v", sum)
	}
	if p, _, _ := s.Person(ctx, NationalID(1)); p.Status != insured.Suspended {
		t.Fatalf("person 1 status = %s", p.Status)
	}
	if n, _ := s.Count(ctx); n != 10 {
		t.Fatalf("count = %d", n)
	}
	// An update that makes a main insured (0, with dependant 3) a
	// dependant leaves 3 with a chain; eligibility fails closed on it.
	MustImport(t, s, insured.Update, Header()+strings.Replace(Row(0), ",salaried,,,", ",salaried,"+NationalID(1)+",spouse,", 1))
	c := insured.Checker{Registry: s, Policy: insured.DefaultPolicy()}
	if r, _ := c.Check(ctx, NationalID(3), Day); r.Eligible || r.Reason != insured.MainInsuredNotEligible {
		t.Fatalf("dependant of a dependant: %+v", r)
	}
	// A dependant of a registered dependant is refused.
	bad := Header() + strings.Replace(Row(15), NationalID(12), NationalID(3), 1)
	var ie *insured.ImportError
	if _, err := Import(t, s, insured.Update, bad); !errors.As(err, &ie) || ie.Rows[0].Field != "main_national_id" {
		t.Fatalf("dependant of a dependant: %v", err)
	}
}

func testReplace(t *testing.T, s Store) {
	MustImport(t, s, insured.Full, Rows(12))
	sum := MustImport(t, s, insured.Full, Header()+Row(4)+Row(5))
	if sum.Generation != 2 {
		t.Fatalf("generation = %d", sum.Generation)
	}
	if n, _ := s.Count(ctx); n != 2 {
		t.Fatalf("count = %d after replacing", n)
	}
	if _, ok, _ := s.Person(ctx, NationalID(0)); ok {
		t.Fatal("a person absent from the new full import is still there")
	}
	// A full import that would empty the registry, or shrink it by more
	// than 10 % without being told to, is refused.
	MustImport(t, s, insured.Full, Rows(20))
	for _, c := range []struct {
		csv  string
		opts insured.Options
	}{
		{Header(), insured.Options{AllowShrink: true}},
		{Rows(17), insured.Options{}},
	} {
		if _, err := insured.Import(ctx, s, strings.NewReader(c.csv), insured.Full, Now, c.opts); !errors.Is(err, &errs.Error{Code: errs.ImportRejected}) {
			t.Fatalf("shrinking import: %v", err)
		}
	}
	if n, _ := s.Count(ctx); n != 20 {
		t.Fatalf("count = %d after refused imports", n)
	}
	if _, err := insured.Import(ctx, s, strings.NewReader(Rows(18)), insured.Full, Now, insured.Options{}); err != nil {
		t.Fatalf("10 %% fewer is allowed: %v", err)
	}
}

func testEligibility(t *testing.T, s Store) {
	rows := []string{
		Row(0), // 0: eligible main insured with supplementary
		Row(3), // 1: eligible dependant of 0
		strings.Replace(Row(4), ",1395-01-01,,", ",1395-01-01,1405-03-31,", 1), // ended 1405-03-31
		strings.Replace(Row(5), ",1395-01-01,", ",1405-07-01,", 1),             // not started
		strings.Replace(Row(6), ",active,", ",suspended,", 1),
		strings.Replace(Row(8), ",active,", ",unpaid,", 1),
		strings.NewReplacer("1404-", "1401-", "1405-01", "1402-01").Replace(Row(9)), // contributions too old
		Row(11), // dependant of 8, which is unpaid
		Row(12),
		strings.Replace(Row(15), ",active,", ",suspended,", 1), // dependant, own record suspended
	}
	MustImport(t, s, insured.Full, Header()+strings.Join(rows, "")+strings.Replace(Row(13), ",child,", ",spouse,", 1))
	c := insured.Checker{Registry: s, Policy: insured.DefaultPolicy()}
	for _, tc := range []struct {
		i      int
		reason insured.Reason
	}{
		{0, ""}, {3, ""}, {4, insured.CoverageEnded}, {5, insured.CoverageNotStarted}, {6, insured.StatusSuspended},
		{8, insured.StatusUnpaid}, {9, insured.InsufficientContributions}, {11, insured.MainInsuredNotEligible},
		{15, insured.StatusSuspended}, {99, insured.NoRecord},
	} {
		r, err := c.Check(ctx, NationalID(tc.i), Day)
		if err != nil {
			t.Fatal(err)
		}
		if r.Eligible != (tc.reason == "") || r.Reason != tc.reason {
			t.Errorf("person %d: eligible=%v reason=%q (%s), want %q", tc.i, r.Eligible, r.Reason, r.Detail, tc.reason)
		}
		if strings.Contains(r.NationalID, NationalID(tc.i)[:8]) {
			t.Errorf("the answer shows the national id unmasked: %s", r.NationalID)
		}
	}
	// The day coverage ends is still covered; the next is not.
	last, _ := persian.ParseDate("1405-03-31")
	if r, _ := c.Check(ctx, NationalID(4), last); !r.Eligible {
		t.Errorf("the last covered day refused: %+v", r)
	}
	if r, _ := c.Check(ctx, NationalID(4), last.AddDate(0, 0, 1)); r.Reason != insured.CoverageEnded {
		t.Errorf("the day after coverage ends: %+v", r)
	}
	r, _ := c.Check(ctx, NationalID(0), Day)
	if r.Coverage == nil || r.Coverage.Supplementary == nil || r.Coverage.Supplementary.Caps["lab"] != 20000000 || r.Coverage.PaidDays != 240 || r.DateHijri != "1405-06-15" {
		t.Fatalf("coverage = %+v", r.Coverage)
	}
}

// testReadsDuringImport: while a full import runs, readers see the old
// version, whole; afterwards the new one.
func testReadsDuringImport(t *testing.T, s Store) {
	MustImport(t, s, insured.Full, Rows(40))
	done := make(chan struct{})
	var wg sync.WaitGroup
	var mismatch error
	var mu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			p, ok, err := s.Person(ctx, NationalID(1))
			mu.Lock()
			switch {
			case err != nil:
				mismatch = err
			case !ok:
				mismatch = errors.New("person 1 vanished during the import")
			case p.InsuranceNumber != "INS-1" && p.InsuranceNumber != "INS-1-NEW":
				mismatch = fmt.Errorf("person 1 read as %q", p.InsuranceNumber)
			}
			mu.Unlock()
		}
	}()
	var b strings.Builder
	b.WriteString(Header())
	for i := 0; i < 2000; i++ {
		r := Row(i)
		if i == 1 {
			r = strings.Replace(r, "INS-1,", "INS-1-NEW,", 1)
		}
		b.WriteString(r)
	}
	MustImport(t, s, insured.Full, b.String())
	close(done)
	wg.Wait()
	if mismatch != nil {
		t.Fatal(mismatch)
	}
	if p, _, _ := s.Person(ctx, NationalID(1)); p.InsuranceNumber != "INS-1-NEW" {
		t.Fatalf("after the import: %q", p.InsuranceNumber)
	}
}

// testCaps: 40 dispenses race for one cap; together they are paid exactly
// the cap, each retry of a key gets its first answer, and the cap never
// goes below zero.
func testCaps(t *testing.T, s Store) {
	k := insured.Cap{NationalID: NationalID(0), Insurer: "دی", Plan: "gold", Year: 1405, Category: "drug"}
	const limit, each, n = 1_000_000, 30_000, 40 // 40 × 30 000 = 1 200 000 > cap
	paid := make([]int64, n)
	var wg sync.WaitGroup
	errc := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := s.Consume(ctx, insured.Consumption{Key: fmt.Sprintf("dispense-%d/item-0", i), Cap: k, Limit: limit, Amount: each})
			if err != nil {
				errc <- err
				return
			}
			paid[i] = p
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	var total int64
	partial := 0
	for _, p := range paid {
		total += p
		if p != each && p != 0 {
			partial++
		}
	}
	if total != limit || partial > 1 {
		t.Fatalf("paid %d in total (%d partial payments), want exactly the cap %d", total, partial, limit)
	}
	if used, _ := s.Used(ctx, k); used != limit {
		t.Fatalf("used = %d", used)
	}
	// A retry gets the first answer and consumes nothing more.
	again, err := s.Consume(ctx, insured.Consumption{Key: "dispense-0/item-0", Cap: k, Limit: limit, Amount: each})
	if err != nil || again != paid[0] {
		t.Fatalf("retry paid %d (%v), first time %d", again, err, paid[0])
	}
	// The same key for a different consumption (another patient, another
	// amount) is refused, not answered with the first one's payment.
	other := k
	other.NationalID = NationalID(1)
	for _, c := range []insured.Consumption{
		{Key: "dispense-0/item-0", Cap: other, Limit: limit, Amount: each},
		{Key: "dispense-0/item-0", Cap: k, Limit: limit, Amount: each + 1},
	} {
		if _, err := s.Consume(ctx, c); !errors.Is(err, &errs.Error{Code: errs.Conflict}) {
			t.Fatalf("a reused key: %v", err)
		}
	}
	if used, _ := s.Used(ctx, other); used != 0 {
		t.Fatalf("a refused consumption charged %d", used)
	}
	// Nothing left: a new dispense is paid nothing, and nothing goes negative.
	if p, _ := s.Consume(ctx, insured.Consumption{Key: "late", Cap: k, Limit: limit, Amount: 5}); p != 0 {
		t.Fatalf("paid %d past the cap", p)
	}
	// Concurrent retries of one key pay once.
	k2 := k
	k2.Category = "lab"
	var wg2 sync.WaitGroup
	for range 8 {
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			if _, err := s.Consume(ctx, insured.Consumption{Key: "same", Cap: k2, Limit: limit, Amount: 100}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg2.Wait()
	if used, _ := s.Used(ctx, k2); used != 100 {
		t.Fatalf("one key retried concurrently consumed %d", used)
	}
}
