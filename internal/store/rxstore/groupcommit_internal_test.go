package rxstore

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/exchange/exchangetest"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/tlogstore"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
)

func openGroup(t *testing.T, driver string) *Exchange {
	t.Helper()
	dsn := filepath.Join(t.TempDir(), "rxd.db")
	if driver == sqlstore.Postgres {
		dsn = pgtest.Schema(t)
	}
	db, err := sqlstore.Open(context.Background(), driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log, err := tlogstore.New(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewExchange(context.Background(), db, log)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wantPending fails t unless s's audit log holds want entries not yet
// sequenced.
func wantPending(t *testing.T, s *Exchange, want int64) {
	t.Helper()
	if n, err := s.log.(*tlogstore.Store).Pending(context.Background()); err != nil || n != want {
		t.Fatalf("%d audit entries pending (%v), want %d", n, err, want)
	}
}

// resigned is p under the same id with another signing input (mark
// spliced into it): another document.
func resigned(p *exchange.Prescription, mark string) *exchange.Prescription {
	out := *p
	out.JWS = strings.Replace(p.JWS, ".c2ln", mark+".c2ln", 1)
	out.JWSSHA256 = rx.SHA256(out.JWS)
	return &out
}

func item(code string, q int) rx.Item {
	return rx.Item{Kind: exchange.ItemDrug, Code: code, Quantity: q}
}

// TestBatchOutcomes: a batch is one transaction when all of it can be
// stored, and each member's outcome is its own when any of it cannot —
// a tracking code drawn twice refuses only the second, a replay in or
// before the batch is a replay, another document under a used id a
// conflict — and nothing is stored twice or half.
func TestBatchOutcomes(t *testing.T) {
	ctx := context.Background()
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		t.Run(driver, func(t *testing.T) {
			s := openGroup(t, driver)
			clean := make([]*queued, 5)
			for i := range clean {
				clean[i] = &queued{e: exchangetest.Entry(), p: prepared(exchangetest.Prescription(t, item("A", 1+i), item("B", 2)))}
			}
			if !s.runBatch(ctx, clean) {
				t.Error("a batch with nothing in the way was not written in one transaction")
			}
			wantPending(t, s, 5)
			for i, b := range clean {
				if b.err != nil || b.stored == nil || b.stored.State != exchange.Active {
					t.Fatalf("member %d: %+v, %v", i, b.stored, b.err)
				}
				got, err := s.PrescriptionByID(ctx, b.p.ID, exchangetest.Now)
				if err != nil || len(got.Lines) != 2 || got.Lines[0].Quantity != 1+i || got.JWSSHA256 != b.p.JWSSHA256 {
					t.Fatalf("member %d as stored: %+v, %v", i, got, err)
				}
			}

			before := prepared(exchangetest.Prescription(t, item("A", 1)))
			if _, err := s.insertOne(ctx, exchangetest.Entry(), before, nil); err != nil {
				t.Fatal(err)
			}
			a := prepared(exchangetest.Prescription(t, item("A", 1)))
			codeTwice := prepared(exchangetest.Prescription(t, item("A", 1)))
			codeTwice.TrackingCode = a.TrackingCode
			aAgain := *a
			c := prepared(exchangetest.Prescription(t, item("C", 3)))
			mixed := []*queued{{e: exchangetest.Entry(), p: a}, {e: exchangetest.Entry(), p: codeTwice}, {e: exchangetest.Entry(), p: &aAgain}, {e: exchangetest.Entry(), p: before}, {e: exchangetest.Entry(), p: resigned(a, "x")}, {e: exchangetest.Entry(), p: c}, {e: exchangetest.Entry(), p: resigned(before, "y")}}
			wantPending(t, s, 6)
			if s.runBatch(ctx, mixed) {
				t.Error("a batch with a tracking code drawn twice was written in one transaction")
			}
			// Each member inserted on its own, its entry with it: the two
			// stored and the two replays, not the three refused.
			wantPending(t, s, 10)
			want := []func(error) bool{
				func(err error) bool { return err == nil },
				func(err error) bool { return errors.Is(err, exchange.ErrTrackingCodeTaken) },
				func(err error) bool { return errors.Is(err, exchange.ErrReplay) },
				func(err error) bool { return errors.Is(err, exchange.ErrReplay) },
				func(err error) bool { return errs.CodeOf(err) == errs.DocumentIDConflict },
				func(err error) bool { return err == nil },
				func(err error) bool { return errs.CodeOf(err) == errs.DocumentIDConflict },
			}
			for i, b := range mixed {
				if !want[i](b.err) {
					t.Errorf("member %d: %v", i, b.err)
				}
			}
			if _, err := s.PrescriptionByID(ctx, codeTwice.ID, exchangetest.Now); errs.CodeOf(err) != errs.NotFound {
				t.Errorf("the refused member was stored: %v", err)
			}
			for _, p := range []*exchange.Prescription{a, c, before} {
				got, err := s.PrescriptionByID(ctx, p.ID, exchangetest.Now)
				if err != nil || got.JWSSHA256 != p.JWSSHA256 || len(got.Lines) != len(p.Lines) {
					t.Errorf("%s as stored: %+v, %v", p.ID, got, err)
				}
			}
		})
	}
}

// TestBatchOfOne: on PostgreSQL a batch of one prescription is written
// as any batch is, in one round trip (sqlstore.Pipeline), its audit entry
// with it; on SQLite in insertOne's transaction. Either way one that
// cannot be — a replay, another document under a used id, a tracking
// code taken — is answered as insertOne answers it, nothing stored twice
// or half.
func TestBatchOfOne(t *testing.T) {
	ctx := context.Background()
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		t.Run(driver, func(t *testing.T) {
			s := openGroup(t, driver)
			one := func(p *exchange.Prescription) (*queued, bool) {
				b := &queued{e: exchangetest.Entry(), p: p}
				return b, s.runBatch(ctx, []*queued{b})
			}
			a := prepared(exchangetest.Prescription(t, item("A", 1)))
			b, together := one(a)
			if together != (driver == sqlstore.Postgres) || b.err != nil || b.stored == nil || b.stored.State != exchange.Active {
				t.Fatalf("a lone prescription: together %v, %+v, %v", together, b.stored, b.err)
			}
			wantPending(t, s, 1)
			aAgain := *a
			codeTaken := prepared(exchangetest.Prescription(t, item("B", 2)))
			codeTaken.TrackingCode = a.TrackingCode
			for _, c := range []struct {
				name string
				p    *exchange.Prescription
				want func(error) bool
			}{
				{"the same again", &aAgain, func(err error) bool { return errors.Is(err, exchange.ErrReplay) }},
				{"another under its id", resigned(a, "x"), func(err error) bool { return errs.CodeOf(err) == errs.DocumentIDConflict }},
				{"its tracking code", codeTaken, func(err error) bool { return errors.Is(err, exchange.ErrTrackingCodeTaken) }},
			} {
				if b, together := one(c.p); together || !c.want(b.err) {
					t.Errorf("%s: together %v, %v", c.name, together, b.err)
				}
			}
			// The replay's entry, as insertOne writes it; not the refusals'.
			wantPending(t, s, 2)
			if _, err := s.PrescriptionByID(ctx, codeTaken.ID, exchangetest.Now); errs.CodeOf(err) != errs.NotFound {
				t.Errorf("the member whose code was taken was stored: %v", err)
			}
			got, err := s.PrescriptionByID(ctx, a.ID, exchangetest.Now)
			if err != nil || got.JWSSHA256 != a.JWSSHA256 || len(got.Lines) != 1 {
				t.Errorf("as stored: %+v, %v", got, err)
			}
		})
	}
}

// TestGroupInsertUnderLoad: many concurrent inserts through the leaders
// and the queue each learn their own outcome, and each is stored once.
func TestGroupInsertUnderLoad(t *testing.T) {
	ctx := context.Background()
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		t.Run(driver, func(t *testing.T) {
			s := openGroup(t, driver)
			const n = 300
			ps := make([]*exchange.Prescription, n)
			for i := range ps {
				ps[i] = exchangetest.Prescription(t, item("A", 1))
			}
			// Every tenth is sent twice: one of the two stores it.
			errsOf := make([]error, n+n/10)
			var wg sync.WaitGroup
			for i := range errsOf {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errsOf[i] = s.InsertPrescription(ctx, exchangetest.Entry(), ps[i%n], nil)
				}()
			}
			wg.Wait()
			stored := map[string]int{}
			for i, err := range errsOf {
				switch {
				case err == nil:
					stored[ps[i%n].ID]++
				case !errors.Is(err, exchange.ErrReplay):
					t.Errorf("insert %d: %v", i, err)
				}
			}
			for i, p := range ps {
				if stored[p.ID] != 1 {
					t.Errorf("prescription %d acknowledged as stored %d times", i, stored[p.ID])
				}
			}
			var rows int
			if err := s.SQL().QueryRowContext(ctx, "SELECT count(*) FROM prescriptions").Scan(&rows); err != nil || rows != n {
				t.Errorf("%d rows, want %d (%v)", rows, n, err)
			}
			if s.group.leaders != 0 || len(s.group.queue) != 0 {
				t.Errorf("after the load: %d leaders, %d queued", s.group.leaders, len(s.group.queue))
			}
		})
	}
}

// TestStoredMeanwhile: an insert refused for its tracking code whose id
// turns out to be stored by a concurrent call is a replay (its entry
// appended on its own) when the signing input is the same, and a
// conflict with no entry of the store's when it is not — not an entry
// saying the prescription was accepted.
func TestStoredMeanwhile(t *testing.T) {
	ctx := context.Background()
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		t.Run(driver, func(t *testing.T) {
			s := openGroup(t, driver)
			p := prepared(exchangetest.Prescription(t, item("A", 1)))
			if _, err := s.insertOne(ctx, exchangetest.Entry(), p, nil); err != nil {
				t.Fatal(err)
			}
			wantPending(t, s, 1)

			stored, found, err := s.storedMeanwhile(ctx, exchangetest.Entry(), resigned(p, "x"))
			if !found || stored == nil || errs.CodeOf(err) != errs.DocumentIDConflict {
				t.Fatalf("another document under the id: %v, %v, %v", stored, found, err)
			}
			wantPending(t, s, 1)

			again := *p
			stored, found, err = s.storedMeanwhile(ctx, exchangetest.Entry(), &again)
			if !found || stored == nil || !errors.Is(err, exchange.ErrReplay) {
				t.Fatalf("the same document: %v, %v, %v", stored, found, err)
			}
			wantPending(t, s, 2)

			other := prepared(exchangetest.Prescription(t, item("B", 1)))
			if _, found, err := s.storedMeanwhile(ctx, exchangetest.Entry(), other); found || err != nil {
				t.Fatalf("an id not stored: found %v, %v", found, err)
			}
			wantPending(t, s, 2)
		})
	}
}
