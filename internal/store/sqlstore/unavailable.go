package sqlstore

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
)

// Unavailable reports whether err means the database could not be reached
// or could not do the work now, rather than that the work was wrong: a
// connection refused, cut or timed out (a PostgreSQL failover: the leader
// gone, a replica not yet promoted, a server shutting down or starting),
// a read-only server where a primary was expected, or no room (a full
// disk, no connection slot). The same request may succeed once the
// database is back, so the edge answers 503 with Retry-After rather than
// 500; the caller, not the daemon, retries — every write of the exchange
// is safe to send again.
//
// It MUST NOT say true for what a retry cannot mend (a constraint
// violated, bad SQL), nor for a request the caller cancelled.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"): // connection exception
			return true
		case strings.HasPrefix(pe.Code, "53"): // insufficient resources: disk full, out of memory, too many connections
			return true
		}
		switch pe.Code {
		case "57P01", "57P02", "57P03": // admin shutdown, crash shutdown, cannot connect now (starting, in recovery)
			return true
		case "25006": // read-only SQL transaction: connected to a standby, or to a demoted leader
			return true
		}
		return false
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff { // the primary result code
		case sqliteBusy, sqliteLocked, sqliteReadOnly, sqliteIOErr, sqliteFull, sqliteCantOpen:
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) || errors.Is(err, net.ErrClosed) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// SQLite's primary result codes that mean "not now" rather than "not this".
const (
	sqliteBusy     = 5
	sqliteLocked   = 6
	sqliteReadOnly = 8 // the file cannot be written (a read-only mount)
	sqliteIOErr    = 10
	sqliteFull     = 13
	sqliteCantOpen = 14
)
