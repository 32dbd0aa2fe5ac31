package rxstore_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/exchange/exchangetest"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
)

// benchJWS is a compact JWS of the size a signed prescription has with its
// two-certificate x5c (about 2.5 KB).
func benchJWS(id string) string {
	b := make([]byte, 1800)
	_, _ = rand.Read(b)
	return "eyJhbGciOiJFUzI1NiIsIng1YyI6W119." + base64.RawURLEncoding.EncodeToString(b) + id + ".c2lnbmF0dXJl"
}

func benchPrescription(b *testing.B, quantity int) *exchange.Prescription {
	p := exchangetest.Prescription(b,
		rx.Item{Kind: "drug", Code: "A", Quantity: quantity},
		rx.Item{Kind: "drug", Code: "B", Quantity: quantity},
		rx.Item{Kind: "drug", Code: "C", Quantity: quantity, Repeats: 2, RepeatIntervalDays: 30})
	p.TrackingCode = p.ID // unique without a draw
	p.JWS = benchJWS(p.ID)
	p.JWSSHA256 = rx.SHA256(p.JWS)
	p.Answer = make([]byte, 600) // the first answer: outcome per item, the acknowledgement
	return p
}

// clients runs b.N calls of op spread over n goroutines (op is told which
// goroutine and which call) and reports the rate and latency percentiles.
func clients(b *testing.B, n int, op func(worker, i int) error) {
	var next atomic.Int64
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					break
				}
				t0 := time.Now()
				if err := op(w, i); err != nil {
					b.Error(err)
					return
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	b.StopTimer()
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) }
	b.ReportMetric(pct(0.5), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(len(all))/b.Elapsed().Seconds(), "ops/s")
}

func requireDurable(b *testing.B, s *rxstore.Exchange) {
	if s.Dialect() != sqlstore.Postgres {
		return // SQLite: synchronous=FULL in WAL mode, set by sqlstore.Open
	}
	for _, setting := range []string{"synchronous_commit", "fsync"} {
		var v string
		if err := s.SQL().QueryRow("SHOW " + setting).Scan(&v); err != nil || v != "on" {
			b.Fatalf("%s is %q (%v): these benchmarks measure durable commits", setting, v, err)
		}
	}
}

// BenchmarkExchange measures the exchange store's writes on both
// databases with durable commits, from 1 and 16 clients:
//
//   - ceiling: a bare one-row INSERT of a document of the same size per
//     transaction — what this machine and database commit at most, in the
//     same run;
//   - insert: InsertPrescription of a three-item prescription (five lines:
//     one item has two repeats);
//   - dispense: Dispense of one unit of two items under a claim, each
//     client on its own prescription (lock, read, checks, two line
//     updates, the dispense and its lines);
//   - dispense-one-prescription: every client on the same prescription,
//     serialised by its row lock.
func BenchmarkExchange(b *testing.B) {
	ctx := context.Background()
	for _, driver := range []string{sqlstore.Postgres, sqlstore.SQLite} {
		for _, n := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/ceiling/clients=%d", driver, n), func(b *testing.B) {
				s := openExchange(b, driver)
				requireDurable(b, s)
				if _, err := s.SQL().ExecContext(ctx, "CREATE TABLE bench_ceiling (id TEXT PRIMARY KEY, doc TEXT NOT NULL)"); err != nil {
					b.Fatal(err)
				}
				q := s.Rebind("INSERT INTO bench_ceiling (id, doc) VALUES ($1, $2)")
				clients(b, n, func(int, int) error {
					id := rx.NewID()
					return s.Tx(ctx, func(tx *sql.Tx) error {
						_, err := tx.ExecContext(ctx, q, id, benchJWS(id))
						return err
					})
				})
			})
			b.Run(fmt.Sprintf("%s/insert/clients=%d", driver, n), func(b *testing.B) {
				s := openExchange(b, driver)
				requireDurable(b, s)
				ps := make([]*exchange.Prescription, b.N)
				for i := range ps {
					ps[i] = benchPrescription(b, 30)
				}
				clients(b, n, func(_, i int) error {
					_, err := s.InsertPrescription(ctx, exchangetest.Entry(), ps[i], nil)
					return err
				})
			})
			for _, shared := range []bool{false, true} {
				name := "dispense"
				if shared {
					name = "dispense-one-prescription"
				}
				b.Run(fmt.Sprintf("%s/%s/clients=%d", driver, name, n), func(b *testing.B) {
					s := openExchange(b, driver)
					requireDurable(b, s)
					type held struct {
						p      *exchange.Prescription
						claim  string
						secret []byte
					}
					holds := make([]held, n)
					for k := range holds {
						if shared && k > 0 {
							holds[k] = holds[0]
							continue
						}
						p, err := s.InsertPrescription(ctx, exchangetest.Entry(), benchPrescription(b, 1_000_000), nil)
						if err != nil {
							b.Fatal(err)
						}
						_, h := exchangetest.Secret()
						c, err := s.Claim(ctx, exchangetest.Entry(), &exchange.Claim{ID: rx.NewID(), PrescriptionID: p.ID, Organisation: exchange.ClaimHolder(pki.RolePharmacy, "PH-1"), CertSerial: "01", SecretSHA256: h,
							CreatedAt: exchangetest.Now, ExpiresAt: exchangetest.Now.Add(2 * time.Hour)})
						if err != nil {
							b.Fatal(err)
						}
						holds[k] = held{p, c.ID, h}
					}
					ds := make([]*exchange.Dispense, b.N)
					for i := range ds {
						ds[i] = exchangetest.Dispense(holds[0].p, exchangetest.Now, exchange.DispensedLine{Item: 0, Quantity: 1}, exchange.DispensedLine{Item: 2, Quantity: 1})
						ds[i].JWS = benchJWS(ds[i].ID)
						ds[i].JWSSHA256 = rx.SHA256(ds[i].JWS)
						ds[i].Answer = make([]byte, 400)
					}
					clients(b, n, func(w, i int) error {
						h := holds[w]
						d := *ds[i]
						d.PrescriptionID = h.p.ID
						_, _, err := s.Dispense(ctx, exchangetest.Entry(), h.claim, h.secret, &d, nil)
						return err
					})
				})
			}
		}
	}
}
