package adjudicate_test

import (
	"testing"

	"github.com/nuskha/nuskha/internal/adjudicate"
	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/rules"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
)

// BenchmarkCheck is the whole rules-service decision for a three-item
// prescription of a patient with supplementary insurance: eligibility
// (one registry read), the catalogue in force, the dispense history, the
// starter rules and the cap usage reads, on SQLite.
func BenchmarkCheck(b *testing.B) {
	f := setup(b, sqlstore.SQLite)
	req := adjudicate.Request{Scope: rules.ScopePrescribe, Prescription: prescription(0, "general",
		drug(catalogtest.Amoxicillin, 20), drug(catalogtest.Metformin, 60), drug(catalogtest.Atorvastatin, 30))}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := f.a.Check(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checks/s")
}
