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
	"strings"
	"time"
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
