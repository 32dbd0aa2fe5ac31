package sqlstore_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/storetest"
	"github.com/nuskha/nuskha/internal/testutil/bulk"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
)

// BenchmarkCertificateStatus is the store's status lookup (what the OCSP
// sync and the officer check use) with a thousand and a million revoked
// certificates: an indexed lookup, so it must not grow with the count.
func BenchmarkCertificateStatus(b *testing.B) {
	ctx := context.Background()
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		for _, n := range []int{1000, 1000000} {
			// The database is filled once per size; b.Run may call its
			// function several times.
			dsn := filepath.Join(b.TempDir(), "bench.db")
			if driver == sqlstore.Postgres {
				dsn = pgtest.Schema(b)
			}
			s, err := sqlstore.OpenTrust(ctx, driver, dsn)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			p := storetest.Practitioner("MC-bench", "0499370899")
			if err := s.CreateSubject(ctx, p, "bench"); err != nil {
				b.Fatal(err)
			}
			sample, err := bulk.Revoked(ctx, s.SQL(), s.Rebind, p.ID, n, time.Now())
			if err != nil {
				b.Fatal(err)
			}
			b.Run(driver+"/"+itoa(n), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, err := s.CertificateStatus(ctx, sample); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func itoa(n int) string {
	if n >= 1000000 {
		return "1M"
	}
	return "1k"
}
