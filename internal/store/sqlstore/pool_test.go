package sqlstore_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync"
	"testing"

	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
)

// TestPoolKeepsItsConnections: connections that concurrent requests opened
// are kept for the next ones, up to the pool's size. database/sql keeps
// two idle connections unless told otherwise, so 16 concurrent
// transactions used to close 14 connections after each round and open
// them again — on PostgreSQL a new backend and a SCRAM exchange per
// transaction, which was most of the exchange's time under load.
func TestPoolKeepsItsConnections(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) (string, string, int){
		sqlstore.SQLite: func(t *testing.T) (string, string, int) {
			return sqlstore.SQLite, filepath.Join(t.TempDir(), "pool.db"), 4
		},
		sqlstore.Postgres: func(t *testing.T) (string, string, int) { return sqlstore.Postgres, pgtest.Schema(t), 16 },
	} {
		t.Run(name, func(t *testing.T) {
			driver, dsn, n := open(t)
			ctx := context.Background()
			db, err := sqlstore.Open(ctx, driver, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for range 3 {
				// n connections held at once, then all given back.
				conns := make([]*sql.Conn, n)
				var wg sync.WaitGroup
				for i := range conns {
					wg.Add(1)
					go func() {
						defer wg.Done()
						c, err := db.SQL().Conn(ctx)
						if err != nil {
							t.Error(err)
							return
						}
						conns[i] = c
					}()
				}
				wg.Wait()
				for _, c := range conns {
					if c != nil {
						c.Close()
					}
				}
			}
			if s := db.SQL().Stats(); s.MaxIdleClosed != 0 || s.Idle != n {
				t.Fatalf("%d connections closed for want of idle room, %d idle of %d opened; want none closed and %d kept", s.MaxIdleClosed, s.Idle, s.OpenConnections, n)
			}
		})
	}
}
