package rxstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/store"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
)

// Insured is the insured-person registry and supplementary-cap usage.
type Insured struct {
	*sqlstore.DB
	// The lookups, prepared once: SQLite through database/sql otherwise
	// parses and plans the statement on every call, which cost three times
	// the lookup itself.
	personMain, used, since *sql.Stmt
}

// NewInsured migrates the registry's schema on db.
func NewInsured(ctx context.Context, db *sqlstore.DB) (*Insured, error) {
	if err := db.Migrate(ctx, insuredSchema); err != nil {
		return nil, err
	}
	s := &Insured{DB: db}
	var err error
	for _, st := range []struct {
		to *(*sql.Stmt)
		q  string
	}{
		{&s.personMain, personMainQuery},
		{&s.used, usedQuery},
		{&s.since, sinceQuery},
	} {
		if *st.to, err = db.SQL().PrepareContext(ctx, db.Rebind(st.q)); err != nil {
			return nil, fmt.Errorf("sqlstore: preparing the registry's reads: %w", err)
		}
	}
	return s, nil
}

var insuredColumns = []string{
	"national_id", "insurance_number", "fund", "main_national_id", "relation",
	"coverage_start", "coverage_end", "status", "birth_date", "sex", "contributions",
	"supp_insurer", "supp_plan", "supp_start", "supp_end", "supp_caps",
}

func generationTable(gen int64) string { return "insured_g" + strconv.FormatInt(gen, 10) }

// createGeneration is the DDL of a generation table; the index is built
// after the load, which is several times faster than maintaining it.
func createGeneration(gen int64) string {
	cols := make([]string, len(insuredColumns))
	for i, c := range insuredColumns {
		null := " NOT NULL"
		switch c {
		case "main_national_id", "relation", "coverage_end", "supp_insurer", "supp_plan", "supp_start", "supp_end", "supp_caps":
			null = ""
		}
		cols[i] = c + " TEXT" + null
	}
	return "CREATE TABLE " + generationTable(gen) + " (" + strings.Join(cols, ", ") + ")"
}

func indexGeneration(gen int64) string {
	t := generationTable(gen)
	return "CREATE UNIQUE INDEX " + t + "_nid ON " + t + " (national_id)"
}

func dateText(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.Format(time.DateOnly)
}

// personValues is a person as a row, in insuredColumns order.
func personValues(p *insured.Person) []any {
	v := []any{
		p.NationalID, p.InsuranceNumber, string(p.Fund), sqlstore.Nullable(p.MainNationalID), sqlstore.Nullable(p.Relation),
		p.CoverageStart.Format(time.DateOnly), dateText(p.CoverageEnd), string(p.Status),
		p.BirthDate.Format(time.DateOnly), p.Sex, p.Contributions.String(),
		nil, nil, nil, nil, nil,
	}
	if s := p.Supplementary; s != nil {
		v[11], v[12], v[13], v[14], v[15] = s.Insurer, s.Plan, s.Start.Format(time.DateOnly), dateText(s.End), s.Caps.String()
	}
	return v
}

// Load writes an import in one transaction (see insured.Writer). Imports
// are serialised by a lock on the registry's state row.
func (s *Insured) Load(ctx context.Context, mode insured.Mode, src *insured.Source) (insured.Summary, error) {
	if s.Dialect() == sqlstore.Postgres {
		return s.loadPostgres(ctx, mode, src)
	}
	return s.loadSQLite(ctx, mode, src)
}

// copySource adapts an import source to pgx's COPY protocol.
type copySource struct{ src *insured.Source }

func (c copySource) Next() bool             { return c.src.Next() }
func (c copySource) Values() ([]any, error) { return personValues(c.src.Person()), nil }
func (c copySource) Err() error             { return c.src.Err() }

func (s *Insured) loadPostgres(ctx context.Context, mode insured.Mode, src *insured.Source) (insured.Summary, error) {
	started := time.Now().UTC()
	conn, err := s.SQL().Conn(ctx)
	if err != nil {
		return insured.Summary{}, err
	}
	defer conn.Close()
	var sum insured.Summary
	var drop int64 = -1
	err = conn.Raw(func(dc any) error {
		pc := dc.(*stdlib.Conn).Conn()
		tx, err := pc.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		var gen int64
		if err := tx.QueryRow(ctx, "SELECT generation FROM registry_state WHERE id = 1 FOR UPDATE").Scan(&gen); err != nil {
			return err
		}
		registered := func(ctx context.Context, ids []string) (map[string]bool, error) {
			rows, err := tx.Query(ctx, "SELECT national_id FROM "+generationTable(gen)+" WHERE national_id = ANY($1) AND main_national_id IS NULL", ids)
			if err != nil {
				return nil, err
			}
			ok := map[string]bool{}
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					return nil, err
				}
				ok[id] = true
			}
			return ok, rows.Err()
		}
		target := gen
		if mode == insured.Full {
			target = gen + 1
			if _, err := tx.Exec(ctx, createGeneration(target)); err != nil {
				return err
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{generationTable(target)}, insuredColumns, copySource{src}); err != nil {
				return err
			}
		} else {
			if _, err := tx.Exec(ctx, "CREATE TEMP TABLE insured_delta (LIKE "+generationTable(gen)+") ON COMMIT DROP"); err != nil {
				return err
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"insured_delta"}, insuredColumns, copySource{src}); err != nil {
				return err
			}
		}
		var current int64
		if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM "+generationTable(gen)).Scan(&current); err != nil {
			return err
		}
		if sum, err = src.Finish(ctx, registered, current); err != nil {
			return err
		}
		if mode == insured.Full {
			if _, err := tx.Exec(ctx, indexGeneration(target)); err != nil {
				return err
			}
			// Statistics now, not whenever autovacuum gets to a table
			// that has just appeared with millions of rows.
			if _, err := tx.Exec(ctx, "ANALYZE "+generationTable(target)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "CREATE OR REPLACE VIEW insured_current AS SELECT * FROM "+generationTable(target)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "UPDATE registry_state SET generation = $1 WHERE id = 1", target); err != nil {
				return err
			}
			drop = gen
		} else {
			set := make([]string, 0, len(insuredColumns)-1)
			for _, c := range insuredColumns[1:] {
				set = append(set, c+" = EXCLUDED."+c)
			}
			q := "INSERT INTO " + generationTable(gen) + " SELECT * FROM insured_delta ON CONFLICT (national_id) DO UPDATE SET " + strings.Join(set, ", ")
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		sum.Generation = target
		if _, err := tx.Exec(ctx, "INSERT INTO registry_imports (mode, generation, rows, main, dependants, started_at, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
			string(mode), target, sum.Rows, sum.Main, sum.Dependants, started, time.Now().UTC()); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
	if err != nil {
		return insured.Summary{}, err
	}
	if drop >= 0 {
		// After the commit nothing reads the old version through the
		// view; a query still running on it holds its lock and the drop
		// waits. A failed drop leaves only garbage, which the next full
		// import's drop of older tables does not need.
		if _, err := s.SQL().ExecContext(ctx, "DROP TABLE IF EXISTS "+generationTable(drop)); err != nil {
			return sum, fmt.Errorf("sqlstore: imported generation %d, but dropping generation %d: %w", sum.Generation, drop, err)
		}
	}
	return sum, nil
}

func (s *Insured) loadSQLite(ctx context.Context, mode insured.Mode, src *insured.Source) (insured.Summary, error) {
	started := time.Now().UTC()
	var sum insured.Summary
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		var gen int64
		if err := tx.QueryRowContext(ctx, "SELECT generation FROM registry_state WHERE id = 1").Scan(&gen); err != nil {
			return err
		}
		target := gen
		if mode == insured.Full {
			target = gen + 1
			if _, err := tx.ExecContext(ctx, createGeneration(target)); err != nil {
				return err
			}
		}
		ph := make([]string, len(insuredColumns))
		set := make([]string, 0, len(insuredColumns)-1)
		for i, c := range insuredColumns {
			ph[i] = "?" + strconv.Itoa(i+1)
			if i > 0 {
				set = append(set, c+" = excluded."+c)
			}
		}
		q := "INSERT INTO " + generationTable(target) + " (" + strings.Join(insuredColumns, ", ") + ") VALUES (" + strings.Join(ph, ", ") + ")"
		if mode == insured.Update {
			q += " ON CONFLICT (national_id) DO UPDATE SET " + strings.Join(set, ", ")
		}
		stmt, err := tx.PrepareContext(ctx, q)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for src.Next() {
			if _, err := stmt.ExecContext(ctx, personValues(src.Person())...); err != nil {
				if _, dup := s.Duplicate(err); dup && mode == insured.Full {
					continue // no index yet, so this cannot happen; Finish reports duplicates by line
				}
				return err
			}
		}
		if err := src.Err(); err != nil {
			return err
		}
		registered := func(ctx context.Context, ids []string) (map[string]bool, error) {
			ok := map[string]bool{}
			for len(ids) > 0 {
				n := min(len(ids), 500)
				args := make([]any, n)
				ph := make([]string, n)
				for i := range n {
					args[i], ph[i] = ids[i], "?"
				}
				rows, err := tx.QueryContext(ctx, "SELECT national_id FROM "+generationTable(gen)+" WHERE main_national_id IS NULL AND national_id IN ("+strings.Join(ph, ",")+")", args...)
				if err != nil {
					return nil, err
				}
				for rows.Next() {
					var id string
					if err := rows.Scan(&id); err != nil {
						rows.Close()
						return nil, err
					}
					ok[id] = true
				}
				if err := rows.Close(); err != nil {
					return nil, err
				}
				ids = ids[n:]
			}
			return ok, nil
		}
		var current int64
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+generationTable(gen)).Scan(&current); err != nil {
			return err
		}
		if sum, err = src.Finish(ctx, registered, current); err != nil {
			return err
		}
		if mode == insured.Full {
			for _, q := range []string{indexGeneration(target), "DROP VIEW insured_current", "CREATE VIEW insured_current AS SELECT * FROM " + generationTable(target), "DROP TABLE " + generationTable(gen)} {
				if _, err := tx.ExecContext(ctx, q); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, "UPDATE registry_state SET generation = ?1 WHERE id = 1", target); err != nil {
				return err
			}
		}
		sum.Generation = target
		_, err = tx.ExecContext(ctx, "INSERT INTO registry_imports (mode, generation, rows, main, dependants, started_at, finished_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
			string(mode), target, sum.Rows, sum.Main, sum.Dependants, started, time.Now().UTC())
		return err
	})
	if err != nil {
		return insured.Summary{}, err
	}
	return sum, nil
}

// Person reads one person from the registry version in force.
func (s *Insured) Person(ctx context.Context, nid string) (insured.Person, bool, error) {
	p, _, ok, err := s.PersonWithMain(ctx, nid)
	return p, ok, err
}

// The lookups' SQL, built once (and put in each dialect's placeholders when
// the store opens).
var (
	personMainQuery = "SELECT " + prefixed("p.", insuredColumns) + ", " + prefixed("m.", insuredColumns) +
		" FROM insured_current p LEFT JOIN insured_current m ON m.national_id = p.main_national_id WHERE p.national_id = $1"
)

const (
	usedQuery  = "SELECT used FROM supplementary_usage WHERE national_id = $1 AND insurer = $2 AND plan = $3 AND year = $4 AND category = $5"
	sinceQuery = "SELECT dispense_id, item, national_id, code, atc, quantity, days_supply, dispensed_at, prescription_id, fill FROM dispense_history WHERE national_id = $1 AND dispensed_at >= $2 ORDER BY dispensed_at DESC, dispense_id, item"
)

func prefixed(prefix string, cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = prefix + c
	}
	return strings.Join(out, ", ")
}

// PersonWithMain reads a person and, for a dependant, the main insured, in
// one statement: both from the same registry version even while a full
// import commits, and one round trip instead of two (see
// insured.Lookup). main is nil for a main insured, or when the main
// insured is missing.
func (s *Insured) PersonWithMain(ctx context.Context, nid string) (p insured.Person, main *insured.Person, found bool, err error) {
	p, main, found, err = personWithMain(s.personMain.QueryRowContext(ctx, nid).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return insured.Person{}, nil, false, nil
	}
	return p, main, found, err
}

// personWithMain reads a row of personMainQuery through scan.
func personWithMain(scan func(dest ...any) error) (p insured.Person, main *insured.Person, found bool, err error) {
	var f, g [16]sql.NullString
	dest := make([]any, 0, 32)
	for i := range f {
		dest = append(dest, &f[i])
	}
	for i := range g {
		dest = append(dest, &g[i])
	}
	if err := scan(dest...); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return insured.Person{}, nil, false, err
		}
		return insured.Person{}, nil, false, fmt.Errorf("sqlstore: reading an insured person: %w", err)
	}
	if p, err = personFromRow(f); err != nil {
		return insured.Person{}, nil, false, fmt.Errorf("sqlstore: insured person row: %w", err)
	}
	if g[0].Valid {
		m, err := personFromRow(g)
		if err != nil {
			return insured.Person{}, nil, false, fmt.Errorf("sqlstore: insured person row: %w", err)
		}
		main = &m
	}
	return p, main, true, nil
}

// PersonWithHistory implements insured.Facts: PersonWithMain and Since
// in one round trip on PostgreSQL. The person and their main insured come
// from one statement, so from one registry generation; the history is read
// by a statement of its own, on a snapshot of its own (sqlstore.Read), as
// Since after PersonWithMain would.
func (s *Insured) PersonWithHistory(ctx context.Context, nid string, since time.Time) (p insured.Person, main *insured.Person, found bool, hist []insured.Dispensed, err error) {
	err = s.Read(ctx,
		sqlstore.Query{Statement: sqlstore.Statement{Query: personMainQuery, Args: []any{nid}}, Rows: func(rows sqlstore.Rows) error {
			if !rows.Next() {
				return nil
			}
			p, main, found, err = personWithMain(rows.Scan)
			return err
		}},
		sqlstore.Query{Statement: sqlstore.Statement{Query: sinceQuery, Args: []any{nid, since.UTC()}}, Rows: func(rows sqlstore.Rows) error {
			hist, err = readHistory(rows)
			return err
		}})
	if err != nil {
		return insured.Person{}, nil, false, nil, fmt.Errorf("sqlstore: reading an insured person and the dispense history: %w", err)
	}
	return p, main, found, hist, nil
}

func personFromRow(f [16]sql.NullString) (insured.Person, error) {
	date := func(i int) (time.Time, error) {
		if !f[i].Valid {
			return time.Time{}, nil
		}
		return time.Parse(time.DateOnly, f[i].String)
	}
	p := insured.Person{
		NationalID: f[0].String, InsuranceNumber: f[1].String, Fund: insured.Fund(f[2].String),
		MainNationalID: f[3].String, Relation: f[4].String, Status: insured.Status(f[7].String), Sex: f[9].String,
	}
	var errs [4]error
	p.CoverageStart, errs[0] = date(5)
	p.CoverageEnd, errs[1] = date(6)
	p.BirthDate, errs[2] = date(8)
	p.Contributions, errs[3] = insured.ParseContributions(f[10].String)
	if err := errors.Join(errs[:]...); err != nil {
		return p, err
	}
	if f[11].Valid {
		sp := &insured.Supplementary{Insurer: f[11].String, Plan: f[12].String}
		var e [3]error
		sp.Start, e[0] = date(13)
		sp.End, e[1] = date(14)
		sp.Caps, e[2] = insured.ParseCaps(f[15].String)
		if err := errors.Join(e[:]...); err != nil {
			return p, err
		}
		p.Supplementary = sp
	}
	return p, nil
}

// Generation is the registry version in force (0 before the first import).
func (s *Insured) Generation(ctx context.Context) (int64, error) {
	var g int64
	err := s.SQL().QueryRowContext(ctx, "SELECT generation FROM registry_state WHERE id = 1").Scan(&g)
	return g, err
}

// Count is how many persons the version in force holds.
func (s *Insured) Count(ctx context.Context) (int64, error) {
	var n int64
	err := s.SQL().QueryRowContext(ctx, "SELECT COUNT(*) FROM insured_current").Scan(&n)
	return n, err
}

// Consume pays against a supplementary cap (see insured.Usage). The usage
// row is locked (FOR UPDATE on PostgreSQL; SQLite transactions take the
// write lock up front), so concurrent dispenses are serialised per cap.
func (s *Insured) Consume(ctx context.Context, c insured.Consumption) (int64, error) {
	if c.Amount < 0 || c.Limit < 0 || c.Key == "" {
		return 0, errors.New("sqlstore: a consumption needs a key and non-negative amounts")
	}
	var paid int64
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		done, p, err := s.consumed(ctx, tx, c)
		if err != nil || done {
			paid = p // already consumed: the same answer again
			return err
		}
		k := c.Cap
		if _, err := s.Exec(ctx, tx, "INSERT INTO supplementary_usage (national_id, insurer, plan, year, category, used) VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT DO NOTHING",
			k.NationalID, k.Insurer, k.Plan, k.Year, k.Category); err != nil {
			return err
		}
		lock := ""
		if s.Dialect() == sqlstore.Postgres {
			lock = " FOR UPDATE"
		}
		var used int64
		if err := tx.QueryRowContext(ctx, s.Rebind("SELECT used FROM supplementary_usage WHERE national_id = $1 AND insurer = $2 AND plan = $3 AND year = $4 AND category = $5"+lock),
			k.NationalID, k.Insurer, k.Plan, k.Year, k.Category).Scan(&used); err != nil {
			return err
		}
		paid = min(c.Amount, max(0, c.Limit-used))
		if _, err := s.Exec(ctx, tx, "UPDATE supplementary_usage SET used = used + $1 WHERE national_id = $2 AND insurer = $3 AND plan = $4 AND year = $5 AND category = $6",
			paid, k.NationalID, k.Insurer, k.Plan, k.Year, k.Category); err != nil {
			return err
		}
		_, err = s.Exec(ctx, tx, "INSERT INTO supplementary_ledger (key, national_id, insurer, plan, year, category, requested, paid, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
			c.Key, k.NationalID, k.Insurer, k.Plan, k.Year, k.Category, c.Amount, paid, time.Now().UTC())
		return err
	})
	if _, dup := store.IsDuplicate(err); dup {
		// A concurrent call with the same key committed first: its
		// answer is the answer, if it was the same request.
		if done, p, err2 := s.consumed(ctx, s.SQL(), c); done || err2 != nil {
			return p, err2
		}
	}
	if err != nil {
		return 0, fmt.Errorf("sqlstore: consuming a supplementary cap: %w", err)
	}
	return paid, nil
}

// consumed looks the key up in the ledger: done with what was paid if the
// same consumption was made before, a conflict if the key was used for a
// different one (another patient's cap, another amount) — a retry must be
// the same request, or a reused dispense id would be handed someone
// else's payment.
func (s *Insured) consumed(ctx context.Context, q sqlstore.Execer, c insured.Consumption) (bool, int64, error) {
	var k insured.Cap
	var requested, paid int64
	err := q.QueryRowContext(ctx, s.Rebind("SELECT national_id, insurer, plan, year, category, requested, paid FROM supplementary_ledger WHERE key = $1"), c.Key).
		Scan(&k.NationalID, &k.Insurer, &k.Plan, &k.Year, &k.Category, &requested, &paid)
	if errors.Is(err, sql.ErrNoRows) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, err
	}
	if k != c.Cap || requested != c.Amount {
		return false, 0, errs.New(errs.Conflict, "the key %q was used for a different consumption", c.Key)
	}
	return true, paid, nil
}

// Used is how much of a cap has been paid out.
func (s *Insured) Used(ctx context.Context, k insured.Cap) (int64, error) {
	var used int64
	err := s.used.QueryRowContext(ctx, k.NationalID, k.Insurer, k.Plan, k.Year, k.Category).Scan(&used)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return used, err
}

// Record appends dispensed items (see insured.History).
func (s *Insured) Record(ctx context.Context, items []insured.Dispensed) error {
	return s.Tx(ctx, func(tx *sql.Tx) error {
		for _, it := range items {
			res, err := s.Exec(ctx, tx, "INSERT INTO dispense_history (dispense_id, item, national_id, code, atc, quantity, days_supply, dispensed_at, prescription_id, fill) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
				it.DispenseID, it.Item, it.NationalID, it.Code, it.ATC, it.Quantity, it.DaysSupply, it.DispensedAt.UTC(), it.PrescriptionID, it.Fill)
			if err != nil {
				return fmt.Errorf("sqlstore: recording a dispense: %w", err)
			}
			if n, err := res.RowsAffected(); err != nil || n == 1 {
				continue
			}
			// Already recorded: only the same item again is a retry.
			var had insured.Dispensed
			if err := tx.QueryRowContext(ctx, s.Rebind("SELECT national_id, code, atc, quantity, days_supply, dispensed_at, prescription_id, fill FROM dispense_history WHERE dispense_id = $1 AND item = $2"), it.DispenseID, it.Item).
				Scan(&had.NationalID, &had.Code, &had.ATC, &had.Quantity, &had.DaysSupply, &had.DispensedAt, &had.PrescriptionID, &had.Fill); err != nil {
				return fmt.Errorf("sqlstore: recording a dispense: %w", err)
			}
			if had.NationalID != it.NationalID || had.Code != it.Code || had.ATC != it.ATC || had.Quantity != it.Quantity || had.DaysSupply != it.DaysSupply || had.PrescriptionID != it.PrescriptionID || had.Fill != it.Fill || !had.DispensedAt.UTC().Truncate(time.Microsecond).Equal(it.DispensedAt.UTC().Truncate(time.Microsecond)) {
				return errs.New(errs.Conflict, "dispense %s item %d was recorded with different content", it.DispenseID, it.Item)
			}
		}
		return nil
	})
}

// Since reads a person's dispensed items, newest first.
func (s *Insured) Since(ctx context.Context, nid string, since time.Time) ([]insured.Dispensed, error) {
	rows, err := s.since.QueryContext(ctx, nid, since.UTC())
	if err != nil {
		return nil, fmt.Errorf("sqlstore: reading dispense history: %w", err)
	}
	defer rows.Close()
	out, err := readHistory(rows)
	if err != nil {
		return nil, err
	}
	return out, rows.Err()
}

// readHistory reads the rows of sinceQuery.
func readHistory(rows sqlstore.Rows) ([]insured.Dispensed, error) {
	var out []insured.Dispensed
	for rows.Next() {
		var d insured.Dispensed
		if err := rows.Scan(&d.DispenseID, &d.Item, &d.NationalID, &d.Code, &d.ATC, &d.Quantity, &d.DaysSupply, &d.DispensedAt, &d.PrescriptionID, &d.Fill); err != nil {
			return nil, err
		}
		d.DispensedAt = d.DispensedAt.UTC()
		out = append(out, d)
	}
	return out, nil
}
