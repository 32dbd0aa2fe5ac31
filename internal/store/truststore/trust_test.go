package truststore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/storetest"
	"github.com/nuskha/nuskha/internal/store/truststore"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
)

var _ storetest.Trust = (*truststore.Store)(nil)

func backend(driver string, dsn func(t *testing.T) string) storetest.Backend {
	dsns := map[storetest.Trust]string{}
	open := func(t *testing.T, d string) storetest.Trust {
		s, err := truststore.Open(context.Background(), driver, d)
		if err != nil {
			t.Fatalf("OpenTrust(%s): %v", driver, err)
		}
		dsns[s] = d
		t.Cleanup(func() { s.Close() })
		return s
	}
	return storetest.Backend{
		Open: func(t *testing.T) storetest.Trust { return open(t, dsn(t)) },
		Exec: func(t *testing.T, s storetest.Trust, q string, args ...any) error {
			db := s.(*truststore.Store)
			_, err := db.SQL().ExecContext(context.Background(), db.Rebind(q), args...)
			return err
		},
		Reopen: func(t *testing.T, s storetest.Trust) storetest.Trust {
			d := dsns[s]
			s.Close()
			return open(t, d)
		},
	}
}

func TestTrustSQLite(t *testing.T) {
	storetest.Run(t, backend(sqlstore.SQLite, func(t *testing.T) string {
		return filepath.Join(t.TempDir(), "trustd.db")
	}))
}

func TestTrustPostgres(t *testing.T) {
	pgtest.Schema(t) // skip (or fail, when required) before running subtests
	storetest.Run(t, backend(sqlstore.Postgres, func(t *testing.T) string { return pgtest.Schema(t) }))
}

func TestMigrateIsIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trustd.db")
	for i := 0; i < 2; i++ {
		s, err := truststore.Open(context.Background(), sqlstore.SQLite, path)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		s.Close()
	}
}
