package rxstore_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/catalogue"
	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
)

// catalogueBackend opens a fresh database of one dialect with the
// catalogue migrated, returning the store and the database under it.
type catalogueBackend func(t *testing.T) (*rxstore.Catalogue, *sqlstore.DB)

func openCatalogue(driver string, dsn func(t *testing.T) string) catalogueBackend {
	return func(t *testing.T) (*rxstore.Catalogue, *sqlstore.DB) {
		t.Helper()
		ctx := context.Background()
		db, err := sqlstore.Open(ctx, driver, dsn(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		s, err := rxstore.NewCatalogue(ctx, db)
		if err != nil {
			t.Fatalf("NewCatalogue(%s): %v", driver, err)
		}
		return s, db
	}
}

func sqliteCatalogue() catalogueBackend {
	return openCatalogue(sqlstore.SQLite, func(t *testing.T) string { return filepath.Join(t.TempDir(), "rxd.db") })
}

func postgresCatalogue() catalogueBackend {
	return openCatalogue(sqlstore.Postgres, func(t *testing.T) string { return pgtest.Schema(t) })
}

func TestCatalogueSQLite(t *testing.T) { runCatalogue(t, sqliteCatalogue()) }

func TestCataloguePostgres(t *testing.T) {
	pgtest.Schema(t) // skip (or fail, when required) before running subtests
	runCatalogue(t, postgresCatalogue())
}

func runCatalogue(t *testing.T, open catalogueBackend) {
	storeOf := func(t *testing.T) catalogue.Store { s, _ := open(t); return s }
	t.Run("store", func(t *testing.T) { catalogtest.RunStore(t, storeOf) })
	t.Run("service", func(t *testing.T) { catalogtest.RunService(t, storeOf) })
	t.Run("versions are immutable", func(t *testing.T) { testCatalogueImmutable(t, open) })
}

func testCatalogueImmutable(t *testing.T, open catalogueBackend) {
	ctx := context.Background()
	s, db := open(t)
	c, err := catalogue.New(catalogue.Config{Store: s})
	if err != nil {
		t.Fatal(err)
	}
	d, sv := catalogtest.Sample()
	res, err := c.Import(ctx, catalogue.ImportSpec{Label: "v1", ValidFrom: catalogtest.Date(2026, 3, 21)}, strings.NewReader(d), strings.NewReader(sv))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE catalogue_items SET price = 1 WHERE code = '` + catalogtest.Morphine + `'`,
		`DELETE FROM catalogue_items WHERE code = '` + catalogtest.Morphine + `'`,
		`UPDATE catalogue_versions SET valid_to = valid_from`,
		`UPDATE catalogue_versions SET label = 'changed'`,
		`DELETE FROM catalogue_versions`,
	} {
		if _, err := db.SQL().ExecContext(ctx, q); err == nil || !strings.Contains(err.Error(), "immutable") {
			t.Errorf("%s: got %v, want refused as immutable", q, err)
		}
	}
	if db.Dialect() == sqlstore.Postgres {
		for _, table := range []string{"catalogue_items", "catalogue_versions"} {
			if _, err := db.SQL().ExecContext(ctx, "TRUNCATE "+table+" CASCADE"); err == nil {
				t.Errorf("TRUNCATE %s succeeded", table)
			}
		}
	}
	items, err := s.LoadItems(ctx, res.Version.ID)
	if err != nil || len(items) != 19 {
		t.Fatalf("after the refused changes: %d items, %v", len(items), err)
	}
}

// BenchmarkCatalogueCreateVersion measures committing a national-size
// catalogue version (30 000 items) in one transaction.
func BenchmarkCatalogueCreateVersion(b *testing.B) {
	d, sv := catalogtest.Generate(30_000)
	items, err := catalogue.Parse(strings.NewReader(d), strings.NewReader(sv))
	if err != nil {
		b.Fatal(err)
	}
	for name, dsn := range map[string]func(b *testing.B) (string, string){
		sqlstore.SQLite:   func(b *testing.B) (string, string) { return sqlstore.SQLite, filepath.Join(b.TempDir(), "rxd.db") },
		sqlstore.Postgres: func(b *testing.B) (string, string) { return sqlstore.Postgres, pgtest.Schema(b) },
	} {
		b.Run(name, func(b *testing.B) {
			driver, path := dsn(b)
			ctx := context.Background()
			db, err := sqlstore.Open(ctx, driver, path)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			s, err := rxstore.NewCatalogue(ctx, db)
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; b.Loop(); i++ {
				info := catalogue.VersionInfo{ID: "cat_bench_" + time.Duration(i).String(), Label: "bench",
					ValidFrom: catalogtest.Date(2026, 1, 1+i), ImportedAt: time.Now().UTC()}
				if err := s.CreateVersion(ctx, info, items); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(items))*float64(b.N)/b.Elapsed().Seconds(), "items/s")
		})
	}
}
