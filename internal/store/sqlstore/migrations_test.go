package sqlstore_test

import (
	"context"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/tlogstore"
	"github.com/nuskha/nuskha/internal/store/truststore"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
)

// schemas is every schema of every store. TestEverySchemaIsListed keeps it
// complete.
func schemas() []sqlstore.Schema {
	return slices.Concat(truststore.Schemas(), rxstore.Schemas(), tlogstore.Schemas())
}

// TestEverySchemaIsListed: a store package's migrations directory holds
// only schemas it declares, and every store package with migrations is
// among those this file checks, so that a schema added in a new place is
// not left out of the checks below.
func TestEverySchemaIsListed(t *testing.T) {
	declared := map[string]bool{}
	for _, sc := range schemas() {
		declared[sc.Name] = true
		dirs, err := fs.ReadDir(sc.Files, "migrations")
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dirs {
			if !slices.ContainsFunc(schemas(), func(o sqlstore.Schema) bool { return o.Name == d.Name() }) {
				t.Errorf("migrations/%s is embedded but declared by no store's Schemas", d.Name())
			}
		}
	}
	onDisk, err := filepath.Glob("../*/migrations/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range onDisk {
		if name := filepath.Base(dir); !declared[name] {
			t.Errorf("%s: a schema that this test does not check (add its store's Schemas to schemas())", dir)
		}
	}
	if len(onDisk) != len(declared) {
		t.Errorf("%d schema directories on disk, %d declared: %v", len(onDisk), len(declared), onDisk)
	}
}

// TestMigrationFiles: within a schema, numbers are unique (Migrate would
// take the second of two files with one number as applied and never run
// it) and both databases have the same migrations, so that a branch that
// adds one for SQLite only, or two that pick the same number, fail here.
func TestMigrationFiles(t *testing.T) {
	for _, schema := range schemas() {
		names := map[string][]string{}
		for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
			dir := schema.Dir(driver)
			entries, err := fs.ReadDir(schema.Files, dir)
			if err != nil {
				t.Fatalf("%s: %v", dir, err)
			}
			numbers := map[string]string{}
			for _, e := range entries {
				n, _, _ := strings.Cut(e.Name(), "_")
				if other, dup := numbers[n]; dup {
					t.Errorf("%s: %s and %s share a number", dir, other, e.Name())
				}
				numbers[n] = e.Name()
				names[driver] = append(names[driver], e.Name())
			}
		}
		if !slices.Equal(names[sqlstore.SQLite], names[sqlstore.Postgres]) {
			t.Errorf("%s: SQLite has %v, PostgreSQL %v", schema.Name, names[sqlstore.SQLite], names[sqlstore.Postgres])
		}
	}
}

// shipped is every migration released before the stores were split by
// daemon (schema_migrations_<schema>, version, file name): a database made
// then must find each recorded under the same table and version, or the
// new code would apply it again.
var shipped = map[string][]string{
	"trust": {"0001_init.sql", "0002_revocation.sql", "0003_status_change_base.sql", "0004_status_change_reason.sql",
		"0005_issuance_attempts.sql", "0006_enrolment_binding.sql", "0007_subject_change_requests.sql"},
	"insured":   {"0001_insured.sql", "0002_dispense_history.sql"},
	"catalogue": {"0001_catalogue.sql"},
}

// TestExistingDatabasesStayMigrated: the migrations each store applies are
// recorded as they were before the split, so that an existing database
// opened by the new code sees them as applied.
func TestExistingDatabasesStayMigrated(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "one.db")
	tr, err := truststore.Open(ctx, sqlstore.SQLite, path)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if _, err := rxstore.NewInsured(ctx, tr.DB); err != nil {
		t.Fatal(err)
	}
	if _, err := rxstore.NewCatalogue(ctx, tr.DB); err != nil {
		t.Fatal(err)
	}
	for schema, files := range shipped {
		rows, err := tr.SQL().QueryContext(ctx, "SELECT version, name FROM schema_migrations_"+schema+" ORDER BY version")
		if err != nil {
			t.Fatalf("%s: %v", schema, err)
		}
		recorded := map[int]string{}
		for rows.Next() {
			var v int
			var name string
			if err := rows.Scan(&v, &name); err != nil {
				t.Fatal(err)
			}
			recorded[v] = name
		}
		rows.Close()
		for i, f := range files {
			if recorded[i+1] != f {
				t.Errorf("schema_migrations_%s version %d is %q, shipped as %q", schema, i+1, recorded[i+1], f)
			}
		}
	}
}

// The stores of both daemons can share one database (tests and small
// installations do): their migrations must not collide, whichever runs
// first.
func TestCatalogueBesideTrustSchema(t *testing.T) {
	for name, dsn := range map[string]func(t *testing.T) (string, string){
		sqlstore.SQLite:   func(t *testing.T) (string, string) { return sqlstore.SQLite, filepath.Join(t.TempDir(), "one.db") },
		sqlstore.Postgres: func(t *testing.T) (string, string) { return sqlstore.Postgres, pgtest.Schema(t) },
	} {
		t.Run(name, func(t *testing.T) {
			driver, path := dsn(t)
			ctx := context.Background()
			db, err := sqlstore.Open(ctx, driver, path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for i := 0; i < 2; i++ { // and idempotently
				if _, err := rxstore.NewCatalogue(ctx, db); err != nil {
					t.Fatalf("NewCatalogue %d: %v", i, err)
				}
			}
			tr, err := truststore.Open(ctx, driver, path)
			if err != nil {
				t.Fatalf("trust migrations after the catalogue's: %v", err)
			}
			tr.Close()
		})
	}
}

// TestConcurrentMigrations: processes starting at once on one new
// PostgreSQL database (two rxd instances, as the fault tests start them)
// each migrate every schema, and all succeed. It failed before the
// creation of each schema's migrations table took the migrations' lock:
// CREATE TABLE IF NOT EXISTS races on pg_type's unique index.
func TestConcurrentMigrations(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Schema(t)
	const processes = 6
	var wg sync.WaitGroup
	errsOf := make([]error, processes)
	start := make(chan struct{})
	for i := range processes {
		wg.Go(func() {
			db, err := sqlstore.Open(ctx, sqlstore.Postgres, dsn)
			if err != nil {
				errsOf[i] = err
				return
			}
			defer db.Close()
			<-start
			for _, sc := range schemas() {
				if err := db.Migrate(ctx, sc); err != nil {
					errsOf[i] = err
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errsOf {
		if err != nil {
			t.Errorf("process %d: %v", i, err)
		}
	}
}
