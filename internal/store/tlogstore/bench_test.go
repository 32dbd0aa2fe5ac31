package tlogstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/tlogstore"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
	"github.com/nuskha/nuskha/internal/tlog"
)

// BenchmarkAppendAndSequence: b.N entries appended by concurrent
// appenders (each transaction appending perTx entries, as an action with
// that many audit records would) while one log sequences them in
// batches; the clock stops when the last is in the tree. entries/s is
// appended-and-sequenced.
func BenchmarkAppendAndSequence(b *testing.B) {
	for _, driver := range []string{sqlstore.Postgres, sqlstore.SQLite} {
		for _, c := range []struct{ appenders, perTx, batch int }{
			{16, 1, 1024}, {64, 1, 1024}, {64, 1, 4096}, {16, 10, 4096}, {64, 10, 4096}, {16, 100, 4096},
		} {
			b.Run(fmt.Sprintf("%s/appenders=%d/perTx=%d/batch=%d", driver, c.appenders, c.perTx, c.batch), func(b *testing.B) {
				s := openStore(b, driver)
				l := newLog(b, s, c.batch)
				benchAppendAndSequence(b, s, l, c.appenders, c.perTx)
			})
		}
	}
}

func benchAppendAndSequence(b *testing.B, s *tlogstore.Store, l *tlog.Log, appenders, perTx int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, appenders+1)
	b.ResetTimer()
	start := time.Now()
	for range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				first := next.Add(int64(perTx)) - int64(perTx)
				if first >= int64(b.N) {
					return
				}
				es := make([]*tlog.Entry, 0, perTx)
				for i := first; i < min(first+int64(perTx), int64(b.N)); i++ {
					es = append(es, entry(int(i)))
				}
				if err := s.Append(ctx, es...); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	sequenced := 0
	for sequenced < b.N {
		n, err := l.Sequence(ctx)
		if err != nil {
			b.Fatal(err)
		}
		sequenced += n
		select {
		case err := <-errc:
			b.Fatal(err)
		default:
		}
	}
	elapsed := time.Since(start)
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "entries/s")
}

// BenchmarkInclusionProof: one inclusion proof, read from the stored tiles
// of a log of NUSKHA_BENCH_TLOG_SIZE entries (default 1,000,000), built
// through the real append-and-sequence path in setup.
//
// Building 10 M entries takes ten minutes; NUSKHA_BENCH_TLOG_KEEP=<schema>
// keeps the PostgreSQL log in that schema after the run and, when it holds
// a checkpoint of the size asked for, proves from it without building
// again — so the log can be built on a busy machine and the proofs timed
// on a quiet one.
func BenchmarkInclusionProof(parent *testing.B) {
	b := parent
	size := 1_000_000
	if v := os.Getenv("NUSKHA_BENCH_TLOG_SIZE"); v != "" {
		size, _ = strconv.Atoi(v)
	}
	for _, driver := range []string{sqlstore.Postgres, sqlstore.SQLite} {
		// Built once, not again for each b.N the benchmark tries.
		var s *tlogstore.Store
		var cp *tlog.SignedCheckpoint
		b.Run(fmt.Sprintf("%s/size=%d", driver, size), func(b *testing.B) {
			ctx := context.Background()
			if s == nil && driver == sqlstore.Postgres && os.Getenv("NUSKHA_BENCH_TLOG_KEEP") != "" {
				s = keptStore(parent, os.Getenv("NUSKHA_BENCH_TLOG_KEEP"))
				latest, err := s.LatestCheckpoint(ctx)
				switch {
				case err == nil && latest != nil && latest.Size == uint64(size):
					cp = latest
				case err == nil && latest != nil:
					b.Fatalf("the kept log holds %d entries, not %d: drop the schema or ask for its size", latest.Size, size)
				}
			}
			if s == nil {
				s = openStore(parent, driver) // kept for every b.N tried
			}
			if cp == nil {
				l := newLog(b, s, 4096)
				setup := time.Now()
				for from := 0; from < size; from += 4096 {
					es := make([]*tlog.Entry, 0, 4096)
					for i := from; i < min(from+4096, size); i++ {
						es = append(es, entry(i))
					}
					if err := s.Append(ctx, es...); err != nil {
						b.Fatal(err)
					}
					if _, err := l.Sequence(ctx); err != nil {
						b.Fatal(err)
					}
				}
				var err error
				if cp, err = l.Publish(ctx); err != nil || cp.Size != uint64(size) {
					b.Fatalf("size %v, %v", cp, err)
				}
				b.Logf("setup: %d entries in %v", size, time.Since(setup).Round(time.Second))
			}
			// From the stored tiles, and through a cache of full tiles
			// (warmed by the proofs themselves): entries spread over the
			// log, so each proof's own level-0 tile is nearly always a
			// miss and only the upper tiles are shared.
			for _, r := range []struct {
				name string
				r    tlog.TileReader
			}{{"stored", s}, {"cached", tlog.NewTileCache(s, 4096)}} {
				b.Run(r.name, func(b *testing.B) {
					for i := 0; i < b.N; i++ {
						idx := uint64(i*7919) % cp.Size
						p, err := tlog.InclusionProof(ctx, r.r, idx, cp.Size)
						if err != nil {
							b.Fatal(err)
						}
						if len(p) == 0 {
							b.Fatal("empty proof")
						}
					}
				})
			}
		})
	}
}

// keptStore opens the log in schema of the test database, making the
// schema if it is not there, and leaves it when the benchmark ends.
func keptStore(b *testing.B, schema string) *tlogstore.Store {
	b.Helper()
	base := os.Getenv(pgtest.DSNEnv)
	if base == "" {
		b.Fatalf("NUSKHA_BENCH_TLOG_KEEP needs %s", pgtest.DSNEnv)
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
		b.Fatal(err)
	}
	u, err := url.Parse(base)
	if err != nil {
		b.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	db, err := sqlstore.Open(ctx, sqlstore.Postgres, u.String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	s, err := tlogstore.New(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkSequence: sequencing alone, the pending entries appended before
// the clock starts (b.N entries, in transactions of 1000).
func BenchmarkSequence(b *testing.B) {
	for _, driver := range []string{sqlstore.Postgres, sqlstore.SQLite} {
		for _, batch := range []int{1024, 4096} {
			b.Run(fmt.Sprintf("%s/batch=%d", driver, batch), func(b *testing.B) {
				s := openStore(b, driver)
				l := newLog(b, s, batch)
				for from := 0; from < b.N; from += 1000 {
					fill(b, s, from, min(from+1000, b.N))
				}
				b.ResetTimer()
				start := time.Now()
				for done := 0; done < b.N; {
					n, err := l.Sequence(context.Background())
					if err != nil {
						b.Fatal(err)
					}
					done += n
				}
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "entries/s")
			})
		}
	}
}
