package exchange_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
)

// BenchmarkPrescribe is the exchange's in-process ceiling for accepting a
// prescription: Service.Prescribe of a two-item prescription signed in
// advance — verify (signature, chain, profile, identity, revocation from a
// CRL), eligibility on its day, the prescribe-time rules and coverage, the
// insert in one durable transaction and the signed acknowledgement — with
// no HTTP, TLS or session, from 16 goroutines (on PostgreSQL
// synchronous_commit and fsync as the server has them: docs/BENCHMARKS.md
// says which). Each prescription is for one of 2,000 persons, in turn.
func BenchmarkPrescribe(b *testing.B) {
	for _, driver := range []string{sqlstore.Postgres, sqlstore.SQLite} {
		b.Run(driver, func(b *testing.B) {
			const persons = 2000
			f := setupPersons(b, driver, persons)
			items := []rx.Item{drug(catalogtest.Amoxicillin, 20), drug(catalogtest.Omeprazole, 28)}
			jws := make([]string, b.N)
			for i := range jws {
				p := f.prescription(f.doctor, items...)
				// Persons are main insureds and dependants alike; a
				// dependant's sex and birth date are the registry's, not
				// the document's, for the rules.
				p.Patient.NationalID = insuredtest.NationalID(i % persons)
				jws[i] = f.sign(b, f.doctor, p)
			}
			var next, failed atomic.Int64
			var first atomic.Value
			b.SetParallelism(8) // 16 goroutines on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1) - 1
					if _, _, err := f.svc.Prescribe(ctx, f.vendor, jws[i]); err != nil {
						failed.Add(1)
						first.CompareAndSwap(nil, fmt.Sprint(err))
					}
				}
			})
			b.StopTimer()
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d of %d refused, the first: %v", n, b.N, first.Load())
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "accepted/s")
		})
	}
}
