package rxstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
)

// TestImportGenerated is the million-person import in test size: the same
// generator, path and checks, 50 000 rows.
func TestImportGenerated(t *testing.T) {
	const n = 50_000
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		t.Run(driver, func(t *testing.T) {
			s := openInsured(t, driver, dsnFor(t, driver))
			sum, err := insured.Import(context.Background(), s, insuredtest.Reader(n), insured.Full, insuredtest.Now, insured.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Rows != n || sum.Main+sum.Dependants != n {
				t.Fatalf("summary %+v", sum)
			}
			if c, _ := s.Count(context.Background()); c != n {
				t.Fatalf("count %d", c)
			}
			c := insured.Checker{Registry: s, Policy: insured.DefaultPolicy()}
			for _, i := range []int{0, 1, n / 2, n - 1} {
				if r, err := c.Check(context.Background(), insuredtest.NationalID(i), insuredtest.Day); err != nil || !r.Eligible {
					t.Fatalf("person %d: %+v %v", i, r, err)
				}
			}
		})
	}
}

func dsnFor(t testing.TB, driver string) string {
	if driver == sqlstore.Postgres {
		return pgtest.Schema(t)
	}
	return filepath.Join(t.TempDir(), "rxd.db")
}

// benchSizes reads NUSKHA_BENCH_REGISTRY (e.g. "1000000,10000000").
func benchSizes(b *testing.B) []int {
	v := os.Getenv("NUSKHA_BENCH_REGISTRY")
	if v == "" {
		v = "1000000"
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			b.Fatalf("NUSKHA_BENCH_REGISTRY: %v", err)
		}
		out = append(out, n)
	}
	return out
}

// BenchmarkImport loads a generated registry of each size in
// NUSKHA_BENCH_REGISTRY through each database and reports rows/s.
func BenchmarkImport(b *testing.B) {
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		for _, n := range benchSizes(b) {
			b.Run(fmt.Sprintf("%s/%d", driver, n), func(b *testing.B) {
				for range b.N {
					s := openInsured(b, driver, dsnFor(b, driver))
					sum, err := insured.Import(context.Background(), s, insuredtest.Reader(n), insured.Full, insuredtest.Now, insured.Options{})
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(sum.RowsPerSecond(), "rows/s")
				}
			})
		}
	}
}

// BenchmarkEligibility is the eligibility check of random persons (a
// quarter of them dependants, so two lookups) against a registry of each
// size, from one client and from eight concurrent ones (on this 2-core
// machine the eight share the CPUs with the database, so their latency
// includes queueing), reporting latency percentiles.
func BenchmarkEligibility(b *testing.B) {
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		for _, n := range benchSizes(b) {
			s := openInsured(b, driver, dsnFor(b, driver))
			if _, err := insured.Import(context.Background(), s, insuredtest.Reader(n), insured.Full, insuredtest.Now, insured.Options{}); err != nil {
				b.Fatal(err)
			}
			c := &insured.Checker{Registry: s, Policy: insured.DefaultPolicy()}
			for _, clients := range []int{1, 8} {
				b.Run(fmt.Sprintf("%s/%d/clients=%d", driver, n, clients), func(b *testing.B) {
					var mu sync.Mutex
					var all []time.Duration
					var wg sync.WaitGroup
					per := b.N/clients + 1
					b.ResetTimer()
					for range clients {
						wg.Add(1)
						go func() {
							defer wg.Done()
							r := rand.New(rand.NewPCG(rand.Uint64(), 1))
							lat := make([]time.Duration, 0, per)
							for range per {
								id := insuredtest.NationalID(r.IntN(n))
								t0 := time.Now()
								res, err := c.Check(context.Background(), id, insuredtest.Day)
								lat = append(lat, time.Since(t0))
								if err != nil || !res.Eligible {
									b.Errorf("%+v %v", res, err)
									return
								}
							}
							mu.Lock()
							all = append(all, lat...)
							mu.Unlock()
						}()
					}
					wg.Wait()
					b.StopTimer()
					slices.Sort(all)
					pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) }
					b.ReportMetric(pct(0.5), "p50-µs")
					b.ReportMetric(pct(0.99), "p99-µs")
					b.ReportMetric(pct(0.999), "p99.9-µs")
					b.ReportMetric(float64(len(all))/b.Elapsed().Seconds(), "checks/s")
				})
			}
		}
	}
}
