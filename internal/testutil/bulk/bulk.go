// Package bulk fills a trustd database with many certificates and
// revocations, fast, for benchmarks at national scale.
package bulk

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/storetest"
	"github.com/nuskha/nuskha/internal/store/truststore"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
)

// Revoked inserts n certificates of subject subjectID, all revoked
// (superseded), in batches, and returns one of their serials. rebind turns
// $n placeholders into the database's.
func Revoked(ctx context.Context, db *sql.DB, rebind func(string) string, subjectID string, n int, now time.Time) (*big.Int, error) {
	const batch = 500
	var sample *big.Int
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	for done := 0; done < n; done += batch {
		m := min(batch, n-done)
		var certs, stats []string
		var cargs, sargs []any
		for i := 0; i < m; i++ {
			b := make([]byte, 19)
			_, _ = rand.Read(b)
			b[0] |= 0x10
			serial := hex.EncodeToString(b)
			if sample == nil {
				sample = new(big.Int).SetBytes(b)
			}
			k := len(cargs)
			certs = append(certs, fmt.Sprintf("($%d,$%d,'practitioner-signing',$%d,$%d,$%d,$%d,$%d,$%d,'bulk')", k+1, k+2, k+3, k+4, k+5, k+6, k+7, k+8))
			cargs = append(cargs, serial, subjectID, []byte{0x30, 0x00}, serial+"fp", serial+"spki", now.Add(-time.Hour), now.AddDate(1, 0, 0), now)
			j := len(sargs)
			stats = append(stats, fmt.Sprintf("($%d,'revoked',4,$%d,$%d,$%d)", j+1, j+2, j+3, j+4))
			sargs = append(sargs, serial, now.Add(-time.Minute), now.AddDate(1, 0, 0), int64(done+i+1))
		}
		if _, err := tx.ExecContext(ctx, rebind(`INSERT INTO certificates (serial, subject_id, profile, der, fingerprint_sha256, spki_sha256, not_before, not_after, issued_at, issued_by) VALUES `+strings.Join(certs, ",")), cargs...); err != nil {
			return nil, err
		}
		if _, err := tx.ExecContext(ctx, rebind(`INSERT INTO certificate_status (serial, status, reason, effective_at, not_after, seq) VALUES `+strings.Join(stats, ",")), sargs...); err != nil {
			return nil, err
		}
	}
	return sample, tx.Commit()
}

// Store opens a fresh trustd store of driver (a temporary SQLite file, or
// a PostgreSQL schema from pgtest) holding n revoked certificates, and
// returns it with one of their serials.
func Store(tb testing.TB, driver string, n int) (*truststore.Store, *big.Int) {
	tb.Helper()
	ctx := context.Background()
	dsn := filepath.Join(tb.TempDir(), "bench.db")
	if driver == sqlstore.Postgres {
		dsn = pgtest.Schema(tb)
	}
	s, err := truststore.Open(ctx, driver, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	p := storetest.Practitioner("MC-bulk", "0499370899")
	if err := s.CreateSubject(ctx, p, "bulk"); err != nil {
		tb.Fatal(err)
	}
	sample, err := Revoked(ctx, s.SQL(), s.Rebind, p.ID, n, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	return s, sample
}

// Label names a size for benchmark names.
func Label(n int) string {
	if n >= 1000000 && n%1000000 == 0 {
		return fmt.Sprintf("%dM", n/1000000)
	}
	if n >= 1000 && n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
