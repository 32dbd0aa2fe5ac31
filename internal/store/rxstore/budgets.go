package rxstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nuskha/nuskha/internal/store/sqlstore"
)

// Budgets counts each caller's lookups of a day in the database
// (rxapi.Budgets), so that every rxd instance over it spends from one
// budget per caller: with the counts in each process, N instances behind a
// load balancer gave a caller N times its budget.
//
// A large budget is spent from a lease: an instance reserves a few lookups
// at a time in the database (at most LeaseMax, and a two-hundredth of the
// budget, so a budget under 400 is counted one by one) and spends them in
// memory, so that a busy caller — a vendor's software prescribing for a
// whole province under one certificate — does not make every request
// wait on one row's lock. What is reserved is counted: the caller never
// gets more than its budget, and at most LeaseMax-1 lookups per instance
// a day go unspent (a lease left when the day ends or the process stops).
type Budgets struct {
	db *sqlstore.DB

	mu     sync.Mutex
	purged string // the day before which rows were last deleted
	leases map[budgetKey]int
}

type budgetKey struct{ day, kind, holder string }

// LeaseMax is the most lookups an instance reserves at once.
const LeaseMax = 64

// leaseOf is how many lookups an instance reserves at once of a budget
// of limit.
func leaseOf(limit int) int { return max(1, min(LeaseMax, limit/200)) }

var budgetsSchema = sqlstore.Schema{Name: "budgets", Files: migrations}

// NewBudgets migrates the budgets' schema on db.
func NewBudgets(ctx context.Context, db *sqlstore.DB) (*Budgets, error) {
	if err := db.Migrate(ctx, budgetsSchema); err != nil {
		return nil, err
	}
	return &Budgets{db: db, leases: map[budgetKey]int{}}, nil
}

// reserveSQL reserves up to $5 lookups of a budget of $4 in one
// statement, atomic in both databases: the row is made with $5, or grows
// by what is left of the budget up to $5 while under the limit (SET reads
// the row as it was); at the limit the update's WHERE fails and no row is
// returned. PostgreSQL takes the row's lock and re-checks the WHERE on its
// latest version, so concurrent reservations on any number of instances
// never pass the limit.
const reserveSQL = `INSERT INTO lookup_budgets (day, kind, holder, spent, granted) SELECT $1, $2, $3, $5, $5 %s
ON CONFLICT (day, kind, holder) DO UPDATE SET
  spent = lookup_budgets.spent + CASE WHEN lookup_budgets.spent + $5 > $4 THEN $4 - lookup_budgets.spent ELSE $5 END,
  granted = CASE WHEN lookup_budgets.spent + $5 > $4 THEN $4 - lookup_budgets.spent ELSE $5 END
WHERE lookup_budgets.spent < $4
RETURNING granted`

// On PostgreSQL the statement's own transaction commits without waiting
// for the WAL to reach the disk and the synchronous standby
// (synchronous_commit off, for this transaction only): the row's lock is
// held until the commit, so a durable commit would serialise a busy
// caller's reservations on the disk's and the standby's latency (2.2–2.6
// ms each, against ~0.5 ms, measured). What a crash or a failover can lose
// is the last fraction of a second's counts — a few lookups more for a
// caller on that day, never an acknowledged write. SQLite, one process,
// commits as every write does.
var reserveFrom = map[string]string{
	sqlstore.Postgres: "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit",
	sqlstore.SQLite:   "",
}

// Spend counts one lookup against holder's budget of kind for day (a
// calendar day, as persian.Day gives it) and reports true, unless limit
// lookups are counted already: then it counts nothing and reports false.
// An error counts nothing: the caller MUST refuse the lookup.
//
// The first Spend of a later day deletes the rows of the days before the
// day before it; a Spend for a day whose rows may be deleted is refused.
func (s *Budgets) Spend(ctx context.Context, day time.Time, kind, holder string, limit int) (bool, error) {
	if limit < 1 {
		return false, fmt.Errorf("rxstore: a budget of %d lookups", limit)
	}
	d := day.Format(time.DateOnly)
	key := budgetKey{d, kind, holder}
	s.mu.Lock()
	if d < s.purged {
		// Its rows may be gone: counting afresh would grant the day's
		// budget again. (Only a clock a day and more behind gets here.)
		s.mu.Unlock()
		return false, nil
	}
	if s.leases[key] > 0 {
		s.leases[key]--
		s.mu.Unlock()
		return true, nil
	}
	s.mu.Unlock()
	lease := leaseOf(limit) // at most limit: 1, or a two-hundredth of it
	var granted int
	err := s.db.SQL().QueryRowContext(ctx, s.db.Rebind(fmt.Sprintf(reserveSQL, reserveFrom[s.db.Dialect()])), d, kind, holder, limit, lease).Scan(&granted)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("rxstore: counting a lookup: %w", err)
	}
	if granted > 1 {
		s.mu.Lock()
		s.leases[key] += granted - 1
		s.mu.Unlock()
	}
	s.purge(ctx, day.AddDate(0, 0, -1).Format(time.DateOnly))
	return true, nil
}

// purge deletes the rows of days before d — the day before the one being
// counted: yesterday's are kept, because around midnight an instance whose
// clock is a little behind, or a request that read the clock just before,
// still counts against yesterday's budget, and must find what was spent —
// once per day and process (every instance does it; the rows are then
// gone). A failure is left for the next Spend to retry: nothing depends
// on it but the table's size.
func (s *Budgets) purge(ctx context.Context, d string) {
	s.mu.Lock()
	if d <= s.purged {
		s.mu.Unlock()
		return
	}
	prev := s.purged
	s.purged = d
	for k := range s.leases {
		if k.day < d {
			delete(s.leases, k)
		}
	}
	s.mu.Unlock()
	if _, err := s.db.Exec(ctx, s.db.SQL(), "DELETE FROM lookup_budgets WHERE day < $1", d); err != nil {
		s.mu.Lock()
		if s.purged == d {
			s.purged = prev
		}
		s.mu.Unlock()
	}
}

// DB is the database the budgets are kept in (tests read the table).
func (s *Budgets) DB() *sqlstore.DB { return s.db }
