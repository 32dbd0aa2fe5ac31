package truststore_test

import (
	"context"
	"math/big"
	"testing"

	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/truststore"
	"github.com/nuskha/nuskha/internal/testutil/bulk"
)

// BenchmarkCertificateStatus is the store's status lookup (what the OCSP
// sync and the officer check use) with a thousand and a million revoked
// certificates: an indexed lookup, so it must not grow with the count.
func BenchmarkCertificateStatus(b *testing.B) {
	ctx := context.Background()
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		for _, n := range []int{1000, 1000000} {
			parent := b
			var s *truststore.Store
			var sample *big.Int
			b.Run(driver+"/"+bulk.Label(n), func(b *testing.B) {
				// b.Run calls this several times; the database is filled
				// once, and only if this size is selected.
				if s == nil {
					s, sample = bulk.Store(parent, driver, n)
					b.ResetTimer()
				}
				for i := 0; i < b.N; i++ {
					if _, err := s.CertificateStatus(ctx, sample); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
