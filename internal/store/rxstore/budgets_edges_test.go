package rxstore_test

import (
	"context"
	"testing"

	"github.com/nuskha/nuskha/internal/store/sqlstore"
)

// TestBudgetsStaleDayAfterPurge: a holder that spent its whole
// budget of day D must stay refused for D. Once an instance whose clock
// has passed midnight (or a request whose clock was read after it) purges
// D's rows, a Spend still dated D — an instance a few seconds behind, or
// a request that read its clock just before midnight — finds no row and
// is granted a fresh budget for D.
func TestBudgetsStaleDayAfterPurge(t *testing.T) {
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		t.Run(driver, func(t *testing.T) {
			s := openBudgets(t, driver, 2)
			const limit = 10
			for i := range limit {
				if !spend(t, s[0], budgetDay, "lookup", holderA, limit) {
					t.Fatalf("lookup %d of %d refused", i+1, limit)
				}
			}
			if spend(t, s[0], budgetDay, "lookup", holderA, limit) {
				t.Fatal("the 11th lookup of the day was counted")
			}
			// Instance 1 is past midnight: its first Spend of the next day
			// deletes the rows of the days before.
			spend(t, s[1], budgetDay.AddDate(0, 0, 1), "lookup", "card:other", limit)
			// Instance 0 (its clock a little behind) is still on day D.
			extra := 0
			for range limit {
				if spend(t, s[0], budgetDay, "lookup", holderA, limit) {
					extra++
				}
			}
			if extra != 0 {
				t.Fatalf("a holder that spent its %d lookups of the day got %d more for that day after another instance purged it", limit, extra)
			}
		})
	}
}

// TestBudgetsLimitAboveInt32: rxd accepts any positive
// -daily-lookups, but on PostgreSQL lookup_budgets.spent is INTEGER, so a
// limit above 2^31-1 makes every lookup fail (refused as unavailable)
// while SQLite counts it: the two stores disagree, and rxd fails closed
// for every caller instead of rejecting the configuration at start.
func TestBudgetsLimitAboveInt32(t *testing.T) {
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		t.Run(driver, func(t *testing.T) {
			s := openBudgets(t, driver, 1)[0]
			ok, err := s.Spend(context.Background(), budgetDay, "lookup", holderA, 3_000_000_000)
			if err != nil || !ok {
				t.Fatalf("a budget of 3e9 lookups: %t, %v", ok, err)
			}
		})
	}
}
