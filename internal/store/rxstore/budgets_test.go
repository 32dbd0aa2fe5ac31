package rxstore_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
)

// openBudgets opens n stores over one database, as n rxd instances would.
func openBudgets(t testing.TB, driver string, n int) []*rxstore.Budgets {
	t.Helper()
	dsn := dsnFor(t, driver)
	var out []*rxstore.Budgets
	for range n {
		db, err := sqlstore.Open(context.Background(), driver, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		s, err := rxstore.NewBudgets(context.Background(), db)
		if err != nil {
			t.Fatalf("NewBudgets(%s): %v", driver, err)
		}
		out = append(out, s)
	}
	return out
}

var (
	budgetDay = time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC) // as persian.Day gives it
	holderA   = "3b1f0c0e5a4d1f7e8c2b9a6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f"
)

func spend(t *testing.T, s *rxstore.Budgets, day time.Time, kind, holder string, limit int) bool {
	t.Helper()
	ok, err := s.Spend(context.Background(), day, kind, holder, limit)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestBudgets, on each database: two instances over one database spend
// from one budget (limit 10: 6 through one, 4 through the other, and the
// 11th through either is refused); a budget is per day, kind and holder;
// a later day starts afresh and deletes the days before; a limit below 1
// is an error, not a pass.
func TestBudgets(t *testing.T) {
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		t.Run(driver, func(t *testing.T) {
			s := openBudgets(t, driver, 2)
			for i := range 10 {
				if !spend(t, s[min(i/6, 1)], budgetDay, "lookup", holderA, 10) {
					t.Fatalf("lookup %d of 10 refused", i+1)
				}
			}
			for i, inst := range s {
				if spend(t, inst, budgetDay, "lookup", holderA, 10) {
					t.Fatalf("the 11th lookup through instance %d was counted", i+1)
				}
			}
			// Other holders, kinds and days have budgets of their own.
			if !spend(t, s[0], budgetDay, "lookup", "card:01ab", 10) || !spend(t, s[1], budgetDay, "find", holderA, 10) {
				t.Fatal("another holder's or kind's budget was spent")
			}
			// A larger limit (a restart with a new -daily-lookups) lets more.
			if !spend(t, s[1], budgetDay, "lookup", holderA, 11) || spend(t, s[0], budgetDay, "lookup", holderA, 11) {
				t.Fatal("the budget does not follow the limit asked for")
			}
			next := budgetDay.AddDate(0, 0, 1)
			if !spend(t, s[0], next, "lookup", holderA, 10) {
				t.Fatal("the next day's first lookup refused")
			}
			rows := func(where string) int {
				t.Helper()
				var n int
				if err := s[0].DB().SQL().QueryRow(s[0].DB().Rebind("SELECT count(*) FROM lookup_budgets WHERE day "+where+" $1"), budgetDay.Format(time.DateOnly)).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			// Yesterday's rows are kept (a clock a little behind still
			// counts against them); the day after, they go.
			if rows("=") == 0 {
				t.Fatal("yesterday's rows were deleted")
			}
			after := next.AddDate(0, 0, 1)
			if !spend(t, s[0], after, "lookup", holderA, 10) {
				t.Fatal("the day after's first lookup refused")
			}
			if n := rows("<="); n != 0 {
				t.Fatalf("%d rows of the day before yesterday left", n)
			}
			// A day whose rows may be gone is refused, not counted afresh.
			if spend(t, s[0], budgetDay, "lookup", "card:late", 10) {
				t.Fatal("a lookup for a purged day was counted afresh")
			}
			if ok, err := s[0].Spend(context.Background(), after, "lookup", holderA, 0); ok || err == nil {
				t.Fatalf("a limit of 0: %t, %v", ok, err)
			}
		})
	}
}

// TestBudgetsConcurrent: many goroutines spending through two instances
// at once never count past the limit, and count exactly up to it.
func TestBudgetsConcurrent(t *testing.T) {
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		t.Run(driver, func(t *testing.T) {
			s := openBudgets(t, driver, 2)
			const limit, workers, each = 50, 24, 5
			var counted atomic.Int32
			var wg sync.WaitGroup
			errs := make(chan error, workers*each)
			for w := range workers {
				wg.Go(func() {
					for range each {
						ok, err := s[w%2].Spend(context.Background(), budgetDay, "find", holderA, limit)
						if err != nil {
							errs <- err
							return
						}
						if ok {
							counted.Add(1)
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if n := counted.Load(); n != limit {
				t.Fatalf("%d of %d lookups counted against a limit of %d", n, workers*each, limit)
			}
		})
	}
}

// TestBudgetLeases: a large budget is reserved a lease at a time (the
// database holds what was reserved, not one row update per lookup), and
// two instances spending concurrently, then each spending its lease to
// the end, count exactly the budget — never more, and nothing reserved
// but unspent while the instance runs.
func TestBudgetLeases(t *testing.T) {
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		t.Run(driver, func(t *testing.T) {
			s := openBudgets(t, driver, 2)
			const limit = 2000 // a lease of 10
			reserved := func() int {
				t.Helper()
				var n int
				if err := s[0].DB().SQL().QueryRow(s[0].DB().Rebind("SELECT spent FROM lookup_budgets WHERE holder = $1"), holderA).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			if !spend(t, s[0], budgetDay, "lookup", holderA, limit) || reserved() != 10 {
				t.Fatalf("one lookup reserved %d", reserved())
			}
			for range 9 { // from the lease: nothing more reserved
				spend(t, s[0], budgetDay, "lookup", holderA, limit)
			}
			if reserved() != 10 {
				t.Fatalf("ten lookups from one lease reserved %d", reserved())
			}
			counted := atomic.Int32{}
			counted.Store(10)
			var wg sync.WaitGroup
			errs := make(chan error, 16)
			for w := range 16 {
				wg.Go(func() {
					for {
						ok, err := s[w%2].Spend(context.Background(), budgetDay, "lookup", holderA, limit)
						if err != nil {
							errs <- err
							return
						}
						if !ok {
							return
						}
						counted.Add(1)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			for _, inst := range s { // what is left of each instance's lease
				for spend(t, inst, budgetDay, "lookup", holderA, limit) {
					counted.Add(1)
				}
			}
			if n := counted.Load(); n != limit || reserved() != limit {
				t.Fatalf("%d lookups counted, %d reserved, against a budget of %d", n, reserved(), limit)
			}
		})
	}
}

// TestBudgetsUnavailable: with the database gone, Spend is an error — the
// lookup is refused, not let through uncounted.
func TestBudgetsUnavailable(t *testing.T) {
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		t.Run(driver, func(t *testing.T) {
			s := openBudgets(t, driver, 1)[0]
			s.DB().Close()
			if ok, err := s.Spend(context.Background(), budgetDay, "lookup", holderA, 10); ok || err == nil {
				t.Fatalf("with the database closed: %t, %v", ok, err)
			}
		})
	}
}

// BenchmarkSpend is the cost a lookup pays for a shared budget of the
// default size: one reservation statement (and its commit) per lease of
// LeaseMax lookups, the rest counted in memory.
func BenchmarkSpend(b *testing.B) {
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		b.Run(driver, func(b *testing.B) {
			s := openBudgets(b, driver, 1)[0]
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Spend(context.Background(), budgetDay, "lookup", holderA, 1<<30); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
