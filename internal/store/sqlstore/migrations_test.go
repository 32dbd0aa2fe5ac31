package sqlstore

import (
	"io/fs"
	"path"
	"slices"
	"strings"
	"testing"
)

// TestMigrationFiles: within a schema, numbers are unique (Migrate would
// take the second of two files with one number as applied and never run
// it) and both databases have the same migrations, so that a branch that
// adds one for SQLite only, or two that pick the same number, fail here.
func TestMigrationFiles(t *testing.T) {
	schemas, err := fs.ReadDir(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	for _, schema := range schemas {
		names := map[string][]string{}
		for _, driver := range []string{SQLite, Postgres} {
			dir := path.Join("migrations", schema.Name(), driver)
			entries, err := fs.ReadDir(migrations, dir)
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
		if !slices.Equal(names[SQLite], names[Postgres]) {
			t.Errorf("%s: SQLite has %v, PostgreSQL %v", schema.Name(), names[SQLite], names[Postgres])
		}
	}
}
