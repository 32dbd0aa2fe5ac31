package rxd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/nuskha/nuskha/internal/store/sqlstore"
)

// Store names rxd's database: an embedded SQLite file or a PostgreSQL
// server.
type Store struct {
	Driver string // sqlstore.SQLite or sqlstore.Postgres
	// Path is the SQLite file (relative to the working directory).
	Path string
	// DSNFile is the file holding the PostgreSQL URL, kept out of the
	// process list.
	DSNFile string
	// Create makes a new SQLite file if there is none at Path; without it
	// a missing file is refused.
	Create bool
}

// Validate refuses a combination that cannot be opened, before anything
// is touched.
func (s Store) Validate() error {
	switch s.Driver {
	case sqlstore.SQLite:
		return nil
	case sqlstore.Postgres:
		if s.Create {
			return errors.New("-create is for SQLite: a PostgreSQL database is made by its administrator (rxd creates its tables)")
		}
		if s.DSNFile == "" {
			return errors.New("-db-driver postgres needs -dsn-file")
		}
		return nil
	}
	return fmt.Errorf("-db-driver must be sqlite or postgres, not %q", s.Driver)
}

// OpenStore opens the database and says which one it is, for the command
// to tell the operator. A missing SQLite file is refused unless Create is
// set: a mistyped path (or a run from another directory, the path being
// relative) would otherwise import into, or serve from, a new empty
// database without a word.
func OpenStore(ctx context.Context, s Store) (d *sqlstore.DB, where string, err error) {
	if err := s.Validate(); err != nil {
		return nil, "", err
	}
	if s.Driver == sqlstore.Postgres {
		b, err := os.ReadFile(s.DSNFile)
		if err != nil {
			return nil, "", err
		}
		dsn := strings.TrimSpace(string(b))
		d, err := sqlstore.Open(ctx, sqlstore.Postgres, dsn)
		return d, "PostgreSQL database " + describePostgres(dsn, s.DSNFile), err
	}
	path, err := filepath.Abs(s.Path)
	if err != nil {
		return nil, "", err
	}
	where = "SQLite database " + path
	switch _, err := os.Stat(path); {
	case errors.Is(err, fs.ErrNotExist) && !s.Create:
		return nil, "", fmt.Errorf("there is no database at %s: give -db the right file, or -create to make a new one there", path)
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, "", err
		}
		where = "new " + where
	case err != nil:
		return nil, "", err
	}
	d, err = sqlstore.Open(ctx, sqlstore.SQLite, path)
	return d, where, err
}

// describePostgres names the server and database of a PostgreSQL URL
// without its password or parameters; a keyword/value DSN is named by the
// file it came from.
func describePostgres(dsn, file string) string {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "named in " + file
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}
