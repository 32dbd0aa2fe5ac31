// Package rxdtest opens rxd's stores, filled with test data, for the tests
// of everything built on them: a generated insured-person registry (see
// insuredtest), the sample catalogue in force from 2026-01-01 (see
// catalogtest) and the starter rules.
package rxdtest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/adjudicate"
	"github.com/nuskha/nuskha/internal/catalogue"
	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/rules"
	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
)

// Data is rxd's database with its stores.
type Data struct {
	DB        *sqlstore.DB
	Registry  *rxstore.Insured
	Catalogue *catalogue.Catalogue
	Rules     *rules.Engine
}

// Open makes a fresh database of the driver (SQLite in a temporary
// directory, or a PostgreSQL schema through pgtest) holding the first
// persons of the generated registry and the sample catalogue.
func Open(t testing.TB, driver string, persons int) *Data {
	t.Helper()
	dsn := filepath.Join(t.TempDir(), "rxd.db")
	if driver == sqlstore.Postgres {
		dsn = pgtest.Schema(t)
	}
	return OpenAt(t, driver, dsn, persons)
}

// OpenAt is Open on the database at dsn (a PostgreSQL schema reached
// through a pgtest.Proxy, say).
func OpenAt(t testing.TB, driver, dsn string, persons int) *Data {
	t.Helper()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	reg, err := rxstore.NewInsured(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	insuredtest.MustImport(t, reg, insured.Full, insuredtest.Rows(persons))
	cs, err := rxstore.NewCatalogue(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	return &Data{DB: db, Registry: reg, Catalogue: catalogtest.InForce(t, cs), Rules: rules.NewEngine(rules.Starter())}
}

// Checker is the eligibility checker over the registry, default policy.
func (d *Data) Checker() *insured.Checker {
	return &insured.Checker{Registry: d.Registry, Policy: insured.DefaultPolicy()}
}

// Adjudicator is the real decision function over the data, on now's clock.
func (d *Data) Adjudicator(now func() time.Time) *adjudicate.Adjudicator {
	return &adjudicate.Adjudicator{Eligibility: d.Checker(), Catalogue: d.Catalogue, Rules: d.Rules,
		History: d.Registry, Usage: d.Registry, Now: now}
}
