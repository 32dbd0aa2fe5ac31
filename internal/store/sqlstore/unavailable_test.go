package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"

	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
)

// TestUnavailable: what a PostgreSQL failover does to a pool — its
// server ends the connection, a new one is refused, the server it reaches
// is read-only — is told apart from what a retry cannot mend, on a real
// server.
func TestUnavailable(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Schema(t)
	db, err := sqlstore.Open(ctx, sqlstore.Postgres, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.SQL().ExecContext(ctx, `CREATE TABLE u (id INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	// One connection, ended by the server as a shutting-down leader ends it.
	conn, err := db.SQL().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := conn.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	var ended bool
	if err := db.SQL().QueryRowContext(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&ended); err != nil || !ended {
		t.Fatalf("pg_terminate_backend: %v %v", ended, err)
	}
	_, cut := conn.ExecContext(ctx, `INSERT INTO u VALUES (1)`)
	conn.Close()

	readOnly := func() error {
		return db.Tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `SET TRANSACTION READ ONLY`); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO u VALUES (2)`)
			return err
		})
	}()

	// A server that is not there: a port just closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, refused := sqlstore.Open(ctx, sqlstore.Postgres, fmt.Sprintf("postgres://nobody:x@%s/none?sslmode=disable&connect_timeout=2", addr))

	if _, err := db.SQL().ExecContext(ctx, `INSERT INTO u VALUES (3)`); err != nil {
		t.Fatal(err)
	}
	_, duplicate := db.Exec(ctx, db.SQL(), `INSERT INTO u VALUES ($1)`, 3)
	_, badSQL := db.SQL().ExecContext(ctx, `INSERT INTO nowhere VALUES (1)`)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, gone := db.SQL().ExecContext(cancelled, `SELECT 1`)

	sqlite, err := sqlstore.Open(ctx, sqlstore.SQLite, filepath.Join(t.TempDir(), "u.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer sqlite.Close()
	_, sqliteBad := sqlite.SQL().ExecContext(ctx, `INSERT INTO nowhere VALUES (1)`)

	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection ended by the server", cut, true},
		{"write on a read-only server", readOnly, true},
		{"connection refused", refused, true},
		{"wrapped as a store wraps it", fmt.Errorf("rxstore: storing: %w", cut), true},
		{"unique violation", duplicate, false},
		{"no such table", badSQL, false},
		{"cancelled by the caller", gone, false},
		{"SQLite: no such table", sqliteBad, false},
		{"no error", nil, false},
		{"some other error", errors.New("boom"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.want && c.err == nil {
				t.Fatal("no error to classify")
			}
			if got := sqlstore.Unavailable(c.err); got != c.want {
				t.Fatalf("Unavailable(%v) = %v, want %v", c.err, got, c.want)
			}
		})
	}
}
