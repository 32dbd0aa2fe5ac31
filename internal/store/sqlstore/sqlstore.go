// Package sqlstore is what the stores of both daemons build on: a
// database/sql pool of one of two dialects, PostgreSQL through pgx
// (production) and SQLite through modernc.org/sqlite (the embedded default,
// no server needed), with placeholders rebound and unique-constraint
// violations classified for the dialect, and the machinery that applies a
// schema's migrations. It knows no domain: trustd's tables are in
// store/truststore, rxd's in store/rxstore, each with its own migrations,
// and their conformance suites hold both dialects to one contract.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"modernc.org/sqlite"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/nuskha/nuskha/internal/store"
)

// Driver names accepted by Open.
const (
	Postgres = "postgres"
	SQLite   = "sqlite"
)

type dialect struct {
	name      string
	sqlDriver string
	// rebind turns $1-style placeholders into the dialect's.
	rebind func(string) string
	// duplicate recognises a unique-constraint violation, naming the
	// field through fields (constraint name to field) where it can.
	duplicate func(err error, fields map[string]string) (field string, ok bool)
}

var rePlaceholder = regexp.MustCompile(`\$(\d+)`)

var dialects = map[string]dialect{
	Postgres: {name: Postgres, sqlDriver: "pgx", rebind: func(q string) string { return q }, duplicate: pgDuplicate},
	// SQLite would number "$2 … $1" by first appearance; ?NNN is explicit.
	SQLite: {name: SQLite, sqlDriver: "sqlite", rebind: func(q string) string { return rePlaceholder.ReplaceAllString(q, "?$1") }, duplicate: sqliteDuplicate},
}

func pgDuplicate(err error, fields map[string]string) (string, bool) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		if f, ok := fields[pe.ConstraintName]; ok {
			return f, true
		}
		return pe.ConstraintName, true
	}
	return "", false
}

const (
	sqliteConstraintPrimaryKey = 1555
	sqliteConstraintUnique     = 2067
)

// sqliteDuplicate names the column, which SQLite's message gives.
func sqliteDuplicate(err error, _ map[string]string) (string, bool) {
	var se *sqlite.Error
	if !errors.As(err, &se) || (se.Code() != sqliteConstraintUnique && se.Code() != sqliteConstraintPrimaryKey) {
		return "", false
	}
	// "UNIQUE constraint failed: subjects.kind, subjects.national_id (2067)":
	// the last column is the one that tells the caller what clashed.
	m := reSQLiteUnique.FindStringSubmatch(se.Error())
	if m == nil {
		return "unknown", true
	}
	return m[1], true
}

var reSQLiteUnique = regexp.MustCompile(`constraint failed: (?:\w+\.\w+, )*\w+\.(\w+)`)

// DB is an open database of either dialect.
type DB struct {
	db *sql.DB
	d  dialect
	// fields names, for PostgreSQL's unique constraints, the field a
	// caller can act on (SQLite's errors name the column themselves).
	fields map[string]string
	// commits is told how long each Tx's commit took; shared by every
	// copy of the DB (WithConstraintFields).
	commits *atomic.Pointer[func(time.Duration)]
}

// ObserveCommits has f told how long each commit of Tx takes, and each
// Pipeline whole (a daemon's metrics: the commit is where a durable write
// waits for the disk or the standby). It applies to every store built on this pool,
// before or after the call.
func (s *DB) ObserveCommits(f func(time.Duration)) { s.commits.Store(&f) }

// WithConstraintFields returns the database (the same pool) reporting a
// violation of one of these PostgreSQL unique constraints as a
// store.DuplicateError for the field it maps to, rather than for the
// constraint's name: a store passes the names its migrations gave.
func (s *DB) WithConstraintFields(fields map[string]string) *DB {
	c := *s
	c.fields = fields
	return &c
}

// Open connects. For SQLite, dsn is a file path; the connection is set up
// for durability (WAL with synchronous=FULL, so an acknowledged write
// survives power loss) and for writers queuing rather than failing. For
// PostgreSQL, dsn is a pgx connection string or URL.
func Open(ctx context.Context, driver, dsn string) (*DB, error) {
	d, ok := dialects[driver]
	if !ok {
		return nil, fmt.Errorf("sqlstore: unknown driver %q (want %s or %s)", driver, Postgres, SQLite)
	}
	if driver == SQLite {
		if err := createPrivate(dsn); err != nil {
			return nil, fmt.Errorf("sqlstore: %w", err)
		}
		v := url.Values{}
		for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)"} {
			v.Add("_pragma", p)
		}
		v.Set("_txlock", "immediate")
		v.Set("_time_format", "sqlite")
		dsn = "file:" + dsn + "?" + v.Encode()
	}
	db, err := sql.Open(d.sqlDriver, dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: %w", err)
	}
	// The pool keeps every connection it may open: database/sql keeps two
	// idle by default and closes the rest as they come back, so that
	// concurrent requests reopened a connection each time — on PostgreSQL
	// a new backend and a SCRAM exchange, costlier than the transaction.
	pool := 32
	if driver == SQLite {
		// One writer at a time is SQLite's model; a small pool keeps readers
		// from queueing behind it while WAL lets them proceed.
		pool = 4
	} else {
		db.SetConnMaxIdleTime(5 * time.Minute)
	}
	db.SetMaxOpenConns(pool)
	db.SetMaxIdleConns(pool)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlstore: connecting to %s: %w", driver, err)
	}
	return &DB{db: db, d: d, commits: &atomic.Pointer[func(time.Duration)]{}}, nil
}

// createPrivate makes an empty SQLite database file at path, readable and
// writable by its owner only, unless a file is already there. SQLite itself
// would create it 0644 (SQLITE_DEFAULT_FILE_PERMISSIONS, whatever the
// umask), and it gives the -wal and -shm files the database file's mode: so
// the database, which holds national ids, is private from its first byte,
// and so are they. An empty file is a valid empty database.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// Close closes the pool.
func (s *DB) Close() error { return s.db.Close() }

// Ping checks the database answers.
func (s *DB) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// Dialect names the database kind.
func (s *DB) Dialect() string { return s.d.name }

// SQL exposes the pool to tests that must prove what the database itself
// refuses (for example an UPDATE on an append-only table).
func (s *DB) SQL() *sql.DB { return s.db }

// Rebind converts $n placeholders for this dialect.
func (s *DB) Rebind(q string) string { return s.d.rebind(q) }

// Exec runs query on q (the pool or a transaction) with its placeholders
// rebound, classifying the error.
func (s *DB) Exec(ctx context.Context, q Execer, query string, args ...any) (sql.Result, error) {
	r, err := q.ExecContext(ctx, s.d.rebind(query), args...)
	return r, s.Classify(err)
}

// Classify wraps a unique-constraint violation as a store.DuplicateError
// (see WithConstraintFields); other errors are returned as they are.
func (s *DB) Classify(err error) error {
	if err == nil {
		return nil
	}
	if f, ok := s.Duplicate(err); ok {
		return fmt.Errorf("%w (%v)", &store.DuplicateError{Field: f}, err)
	}
	return err
}

// Duplicate reports whether err is a unique-constraint violation, and the
// field (or constraint) it names.
func (s *DB) Duplicate(err error) (field string, ok bool) { return s.d.duplicate(err, s.fields) }

// Execer is what the pool and a transaction share.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Tx runs f in a transaction, committing if it returns nil.
func (s *DB) Tx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlstore: begin: %w", err)
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	start := time.Now()
	err = tx.Commit()
	if f := s.commits.Load(); f != nil && err == nil {
		(*f)(time.Since(start))
	}
	if err != nil {
		return s.Classify(fmt.Errorf("sqlstore: commit: %w", err))
	}
	return nil
}

// Nullable is s, or NULL for an empty string.
func Nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Schema is one schema's migrations, embedded by the store that owns its
// tables.
type Schema struct {
	// Name is the schema's: its migrations are applied once per database
	// and recorded in schema_migrations_<Name>. It MUST NOT change once
	// databases exist, or they would be migrated again.
	Name string
	// Files holds migrations/<Name>/<dialect>/NNNN_name.sql for each
	// dialect (postgres, sqlite), with the same files for both.
	Files fs.FS
}

// Dir is where Files holds the schema's migrations for dialect.
func (sc Schema) Dir(dialect string) string { return "migrations/" + sc.Name + "/" + dialect }

// Migrate applies the schema's migrations not yet applied, each in its own
// transaction, in order. Concurrent starts are serialised (an advisory lock
// on PostgreSQL, the write lock on SQLite).
func (s *DB) Migrate(ctx context.Context, sc Schema) error {
	schema, dir := sc.Name, sc.Dir(s.d.name)
	entries, err := fs.ReadDir(sc.Files, dir)
	if err != nil {
		return fmt.Errorf("sqlstore: no migrations for %s/%s: %w", schema, s.d.name, err)
	}
	type mig struct {
		version int
		name    string
	}
	var migs []mig
	seen := map[int]string{}
	for _, e := range entries {
		n, err := strconv.Atoi(strings.SplitN(e.Name(), "_", 2)[0])
		if err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return fmt.Errorf("sqlstore: migration file %s is not NNNN_name.sql", e.Name())
		}
		// Two files with one number: the second would be taken as applied
		// and silently never run.
		if other, dup := seen[n]; dup {
			return fmt.Errorf("sqlstore: migrations %s and %s have the same number", other, e.Name())
		}
		seen[n] = e.Name()
		migs = append(migs, mig{n, e.Name()})
	}
	sort.Slice(migs, func(i, j int) bool { return migs[i].version < migs[j].version })

	table := "schema_migrations_" + schema
	// Under the migrations' lock, like each migration: two processes
	// starting on one new database at once (two rxd instances) would
	// otherwise race in CREATE TABLE IF NOT EXISTS, which PostgreSQL does
	// not make safe (the loser fails on pg_type's unique index).
	err = s.Tx(ctx, func(tx *sql.Tx) error {
		if s.d.name == Postgres {
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(7193)"); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+table+" (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMP NOT NULL)")
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlstore: creating %s: %w", table, err)
	}
	for _, m := range migs {
		body, err := fs.ReadFile(sc.Files, dir+"/"+m.name)
		if err != nil {
			return err
		}
		err = s.Tx(ctx, func(tx *sql.Tx) error {
			if s.d.name == Postgres {
				if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(7193)"); err != nil {
					return err
				}
			}
			var n int
			if err := tx.QueryRowContext(ctx, s.d.rebind("SELECT COUNT(*) FROM "+table+" WHERE version = $1"), m.version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return fmt.Errorf("applying %s: %w", m.name, err)
			}
			_, err := tx.ExecContext(ctx, s.d.rebind("INSERT INTO "+table+" (version, name, applied_at) VALUES ($1, $2, $3)"), m.version, m.name, time.Now().UTC())
			return err
		})
		if err != nil {
			return fmt.Errorf("sqlstore: migration %s: %w", m.name, err)
		}
	}
	return nil
}

// Backup copies a SQLite database to path, a new file, while it is in use:
// VACUUM INTO reads one consistent snapshot (WAL lets writers go on
// meanwhile) and writes a compacted copy, which is made private (0600:
// it holds national ids) before a byte is written, synced, and checked
// with PRAGMA integrity_check before Backup returns. A file already at
// path is refused; a copy that fails is removed. PostgreSQL is backed up
// with pgBackRest (docs/operations-ha.md), not here.
func (s *DB) Backup(ctx context.Context, path string) (err error) {
	d := s.d
	if d.name != SQLite {
		return errors.New("sqlstore: the online backup is SQLite's; back PostgreSQL up with pgBackRest (docs/operations-ha.md)")
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("sqlstore: backup: %w", err)
	}
	f.Close()
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()
	// An empty file is one VACUUM INTO may write (it refuses any other).
	if _, err := s.db.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		return fmt.Errorf("sqlstore: backup to %s: %w", path, err)
	}
	if f, err = os.OpenFile(path, os.O_RDWR, 0); err != nil {
		return fmt.Errorf("sqlstore: backup: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sqlstore: backup: syncing %s: %w", path, err)
	}
	// Read-only, as it is: the copy is not switched to WAL by the check.
	copyDB, err := sql.Open(d.sqlDriver, "file:"+path+"?mode=ro")
	if err != nil {
		return fmt.Errorf("sqlstore: backup: opening the copy: %w", err)
	}
	defer copyDB.Close()
	var check string
	if err := copyDB.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&check); err != nil {
		return fmt.Errorf("sqlstore: backup: checking the copy: %w", err)
	}
	if check != "ok" {
		return fmt.Errorf("sqlstore: backup: the copy at %s fails its integrity check: %s", path, check)
	}
	return nil
}

// Writable checks that the database answers and takes writes: on
// PostgreSQL that the server is a primary (not in recovery) and the
// session is not read-only; on SQLite that the write lock can be taken
// (BEGIN IMMEDIATE, rolled back), which fails on a read-only file or one
// locked beyond busy_timeout. It writes nothing: a readiness check runs
// it every few seconds.
func (s *DB) Writable(ctx context.Context) error {
	if s.d.name == Postgres {
		var recovery bool
		var readOnly string
		if err := s.db.QueryRowContext(ctx, "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')").Scan(&recovery, &readOnly); err != nil {
			return err
		}
		if recovery || readOnly == "on" {
			return errors.New("sqlstore: the PostgreSQL server is read-only (in recovery: a standby)")
		}
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil) // _txlock=immediate: takes the write lock
	if err != nil {
		return err
	}
	return tx.Rollback()
}
