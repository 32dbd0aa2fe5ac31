package exchange_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/testutil/rxdtest"
	"github.com/nuskha/nuskha/internal/testutil/softhsm"
	"github.com/nuskha/nuskha/internal/tlog"
)

// BenchmarkPrescribe is the exchange's in-process ceiling for accepting a
// prescription: Service.Prescribe of a two-item prescription signed in
// advance — verify (signature, chain, profile, identity, revocation from a
// CRL), eligibility on its day, the prescribe-time rules and coverage, the
// insert in one durable transaction and the signed acknowledgement — with
// no HTTP, TLS or session, from 16 goroutines (on PostgreSQL
// synchronous_commit and fsync as the server has them: docs/BENCHMARKS.md
// says which). Each prescription is for a person of its own (a registry
// of at least 2,000).
//
// audit=on is rxd as it runs: the patient's pseudonym (an HMAC under a
// key on a SoftHSM2 token), the entry appended in the insert's
// transaction, and the log sequencing and signing a checkpoint every
// second meanwhile. A prescriber's software checks the patient's
// eligibility before it submits, and that lookup's entry computed the
// pseudonym minutes before (tlog.Pseudonyms keeps it); audit=first-touch
// is the patient never seen before, the pseudonym computed on the token
// within the prescription. audit=off takes the audit log out (a test
// double that writes nothing): the difference is what the audit log
// costs an accepted prescription.
func BenchmarkPrescribe(b *testing.B) {
	for _, driver := range []string{sqlstore.Postgres, sqlstore.SQLite} {
		for _, audit := range []string{"off", "on", "first-touch"} {
			b.Run(fmt.Sprintf("%s/audit=%s", driver, audit), func(b *testing.B) {
				benchPrescribe(b, driver, audit)
			})
		}
	}
}

func benchPrescribe(b *testing.B, driver, audit string) {
	persons := max(2000, b.N)
	f := setupPersons(b, driver, persons)
	svc := f.svc
	var pseudonyms *tlog.Pseudonyms
	if audit != "off" {
		l, err := tlog.New(f.log, tlog.Config{Origin: "rxd.bench/audit", Key: rxdtest.NoteKey(b)})
		if err != nil {
			b.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		tick := time.NewTicker(time.Second)
		done := make(chan struct{})
		go func() { l.Run(runCtx, tick.C); close(done) }()
		b.Cleanup(func() { stop(); <-done; tick.Stop() })
		// The pseudonym key on a PKCS#11 token, as rxd holds it.
		cfg := f.cfg
		pseudonyms = tlog.NewPseudonyms(tokenMAC(b))
		cfg.Pseudonyms = pseudonyms
		if svc, err = exchange.New(cfg); err != nil {
			b.Fatal(err)
		}
	} else {
		store, err := rxstore.NewExchange(ctx, f.log.DB(), noAudit{})
		if err != nil {
			b.Fatal(err)
		}
		cfg := f.cfg
		cfg.Store, cfg.Pseudonyms, cfg.AuditLog = store, noAudit{}, noAudit{}
		if svc, err = exchange.New(cfg); err != nil {
			b.Fatal(err)
		}
	}
	items := []rx.Item{drug(catalogtest.Amoxicillin, 20), drug(catalogtest.Omeprazole, 28)}
	jws := make([]string, b.N)
	for i := range jws {
		p := f.prescription(f.doctor, items...)
		// Persons are main insureds and dependants alike; a
		// dependant's sex and birth date are the registry's, not
		// the document's, for the rules.
		p.Patient.NationalID = insuredtest.NationalID(i % persons)
		jws[i] = f.sign(b, f.doctor, p)
		if audit == "on" { // the eligibility lookup's pseudonym, before
			if _, err := pseudonyms.Of(p.Patient.NationalID); err != nil {
				b.Fatal(err)
			}
		}
	}
	var next, failed atomic.Int64
	var first atomic.Value
	b.SetParallelism(8) // 16 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			if _, _, err := svc.Prescribe(ctx, f.vendor, jws[i]); err != nil {
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
}

// tokenMAC is an HMAC-SHA256 key made on a SoftHSM2 token, reached
// through the same PKCS#11 path as a hardware token's.
func tokenMAC(b *testing.B) hsm.MAC {
	tok := softhsm.NewToken(b, "bench")
	m := hsm.NewManager(nil)
	b.Cleanup(func() { m.Close() })
	uri := hsm.PKCS11URI(tok.Module, tok.Label, "audit-pseudonym", nil, tok.PINFile)
	if err := m.CreateSecret(ctx, uri, hsm.HMACSHA256); err != nil {
		b.Fatal(err)
	}
	mac, err := m.OpenMAC(ctx, uri)
	if err != nil {
		b.Fatal(err)
	}
	return mac
}

// noAudit is the audit log taken out, for the benchmark's baseline only:
// rxd never runs without it.
type noAudit struct{}

func (noAudit) AppendTx(context.Context, *sql.Tx, ...*tlog.Entry) error { return nil }
func (noAudit) Append(context.Context, ...*tlog.Entry) error            { return nil }
func (noAudit) Of(string) (tlog.Pseudonym, error)                       { return tlog.Pseudonym{}, nil }
func (noAudit) PatientEntries(context.Context, tlog.Pseudonym, uint64, int) ([]tlog.Indexed, error) {
	return nil, nil
}
