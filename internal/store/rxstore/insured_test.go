package rxstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
)

func openInsured(t testing.TB, driver, dsn string) *rxstore.Insured {
	db, err := sqlstore.Open(context.Background(), driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := rxstore.NewInsured(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestInsuredSQLite(t *testing.T) {
	insuredtest.Run(t, func(t *testing.T) insuredtest.Store {
		return openInsured(t, sqlstore.SQLite, filepath.Join(t.TempDir(), "rxd.db"))
	})
}

func TestInsuredPostgres(t *testing.T) {
	pgtest.Schema(t)
	insuredtest.Run(t, func(t *testing.T) insuredtest.Store {
		return openInsured(t, sqlstore.Postgres, pgtest.Schema(t))
	})
}
