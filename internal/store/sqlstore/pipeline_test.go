package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/store"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
)

// TestPipeline: the statements of a pipeline commit together, or — one
// failing, however late — none of them does, and the failure is
// classified as any statement's (a unique violation is a
// store.DuplicateError). The connection is fit for use after either, and
// each pipeline is timed as a commit. SQLite has no pipeline: ErrNoPipeline.
func TestPipeline(t *testing.T) {
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, sqlstore.Postgres, pgtest.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SQL().SetMaxOpenConns(1) // every pipeline and read on one connection
	var commits int
	db.ObserveCommits(func(time.Duration) { commits++ })
	if _, err := db.SQL().ExecContext(ctx, "CREATE TABLE p (id TEXT PRIMARY KEY, n INTEGER NOT NULL CHECK (n > 0), at TIMESTAMP NOT NULL, b BYTEA NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 10, 7, 30, 0, 0, time.UTC)
	row := func(id string, n int) sqlstore.Statement {
		return sqlstore.Statement{Query: "INSERT INTO p (id, n, at, b) VALUES ($1, $2, $3, $4)", Args: []any{id, n, at, []byte(id)}}
	}
	count := func() int {
		t.Helper()
		var n int
		if err := db.SQL().QueryRowContext(ctx, "SELECT count(*) FROM p").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	if err := db.Pipeline(ctx, row("a", 1), row("b", 2), sqlstore.Statement{Query: "UPDATE p SET n = n + 1 WHERE id = $1", Args: []any{"a"}}); err != nil {
		t.Fatal(err)
	}
	var n int
	var got time.Time
	var b []byte
	if err := db.SQL().QueryRowContext(ctx, "SELECT n, at, b FROM p WHERE id = 'a'").Scan(&n, &got, &b); err != nil || n != 2 || !got.Equal(at) || string(b) != "a" {
		t.Fatalf("after the pipeline: n %d at %s b %q (%v), want 2, %s, \"a\"", n, got, b, err, at)
	}

	err = db.Pipeline(ctx, row("c", 3), row("d", 4), row("a", 5))
	if dup := (*store.DuplicateError)(nil); !errors.As(err, &dup) {
		t.Fatalf("a pipeline whose last statement repeats a key: %v, want a DuplicateError", err)
	}
	if err := db.Pipeline(ctx, row("e", 5), row("f", 0), row("g", 6)); err == nil {
		t.Fatal("a pipeline with a CHECK violated in its middle succeeded")
	}
	if c := count(); c != 2 {
		t.Fatalf("%d rows after two failed pipelines, want the first one's 2: a failed pipeline left some of its writes", c)
	}
	if commits != 1 {
		t.Errorf("%d commits observed, want the one pipeline that committed", commits)
	}

	lite, err := sqlstore.Open(ctx, sqlstore.SQLite, filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	if err := lite.Pipeline(ctx, row("a", 1)); !errors.Is(err, sqlstore.ErrNoPipeline) {
		t.Fatalf("SQLite: %v, want ErrNoPipeline", err)
	}
}

// TestRead: each query's rows go to its own function, in order, on
// PostgreSQL (one round trip) and SQLite (one after the other) alike; a
// query that fails, or a function that does, fails the read.
func TestRead(t *testing.T) {
	ctx := context.Background()
	for _, driver := range []string{sqlstore.Postgres, sqlstore.SQLite} {
		t.Run(driver, func(t *testing.T) {
			dsn := filepath.Join(t.TempDir(), "r.db")
			if driver == sqlstore.Postgres {
				dsn = pgtest.Schema(t)
			}
			db, err := sqlstore.Open(ctx, driver, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.SQL().ExecContext(ctx, "CREATE TABLE r (id TEXT PRIMARY KEY, n INTEGER NOT NULL)"); err != nil {
				t.Fatal(err)
			}
			if _, err := db.SQL().ExecContext(ctx, "INSERT INTO r (id, n) VALUES ('a', 1), ('b', 2), ('c', 3)"); err != nil {
				t.Fatal(err)
			}
			collect := func(into *[]string) func(sqlstore.Rows) error {
				return func(rows sqlstore.Rows) error {
					for rows.Next() {
						var id string
						var n int
						if err := rows.Scan(&id, &n); err != nil {
							return err
						}
						*into = append(*into, fmt.Sprint(id, n))
					}
					return nil
				}
			}
			var big, one []string
			err = db.Read(ctx,
				sqlstore.Query{Statement: sqlstore.Statement{Query: "SELECT id, n FROM r WHERE n >= $1 ORDER BY id", Args: []any{2}}, Rows: collect(&big)},
				sqlstore.Query{Statement: sqlstore.Statement{Query: "SELECT id, n FROM r WHERE id = $1", Args: []any{"a"}}, Rows: collect(&one)})
			if err != nil || strings.Join(big, ",") != "b2,c3" || strings.Join(one, ",") != "a1" {
				t.Fatalf("read %v and %v (%v), want [b2 c3] and [a1]", big, one, err)
			}
			var none []string
			if err := db.Read(ctx,
				sqlstore.Query{Statement: sqlstore.Statement{Query: "SELECT id, n FROM r"}, Rows: collect(&none)},
				sqlstore.Query{Statement: sqlstore.Statement{Query: "SELECT id, n FROM nowhere"}, Rows: collect(&none)}); err == nil {
				t.Fatal("a read of a table that does not exist succeeded")
			}
			refused := errors.New("refused")
			if err := db.Read(ctx, sqlstore.Query{Statement: sqlstore.Statement{Query: "SELECT id, n FROM r"}, Rows: func(sqlstore.Rows) error { return refused }}); !errors.Is(err, refused) {
				t.Fatalf("a Rows function's error: %v, want it returned", err)
			}
			// The connection is fit for use after.
			var n int
			if err := db.SQL().QueryRowContext(ctx, "SELECT count(*) FROM r").Scan(&n); err != nil || n != 3 {
				t.Fatalf("after the reads: %d rows, %v", n, err)
			}
		})
	}
}

// TestReadSnapshots: the queries of one Read run in one implicit
// transaction but, at READ COMMITTED (PostgreSQL's default, and the
// exchange's), each on a snapshot of its own: a write committed while
// the read runs is seen by the queries after it, not by those before.
// What must be read from one snapshot is read by one statement (as
// rxstore's person with their main insured).
func TestReadSnapshots(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := sqlstore.Open(ctx, sqlstore.Postgres, pgtest.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.SQL().ExecContext(ctx, "CREATE TABLE r (id TEXT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SQL().ExecContext(ctx, "INSERT INTO r (id) VALUES ('a')"); err != nil {
		t.Fatal(err)
	}
	// A writer holds an advisory lock with its row not yet committed;
	// the read counts, then waits for the lock, then counts again.
	const lock = 424242
	w, err := db.SQL().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Rollback()
	if _, err := w.ExecContext(ctx, "INSERT INTO r (id) VALUES ('b')"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", lock); err != nil {
		t.Fatal(err)
	}
	count := func(n *int) func(sqlstore.Rows) error {
		return func(rows sqlstore.Rows) error {
			for rows.Next() {
				if err := rows.Scan(n); err != nil {
					return err
				}
			}
			return nil
		}
	}
	var before, after int
	done := make(chan error, 1)
	go func() {
		done <- db.Read(ctx,
			sqlstore.Query{Statement: sqlstore.Statement{Query: "SELECT count(*) FROM r"}, Rows: count(&before)},
			sqlstore.Query{Statement: sqlstore.Statement{Query: "SELECT 0 FROM pg_advisory_xact_lock($1)", Args: []any{lock}}, Rows: count(new(int))},
			sqlstore.Query{Statement: sqlstore.Statement{Query: "SELECT count(*) FROM r"}, Rows: count(&after)})
	}()
	// The read's first count has run once it waits for the lock: the
	// writer commits only then.
	for {
		var waiting bool
		err := db.SQL().QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = 0 AND objid = $1 AND objsubid = 1)", lock).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		runtime.Gosched()
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if before != 1 || after != 2 {
		t.Fatalf("counted %d, then %d after a commit in between: want 1 and 2, each query its own snapshot", before, after)
	}
}
