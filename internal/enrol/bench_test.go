package enrol_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/truststore"
	"github.com/nuskha/nuskha/internal/testutil/softhsm"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

// BenchmarkApprove is a whole second-officer approval with the intermediate
// key in SoftHSM2 and the embedded store: registry re-check, decision
// record, audit intent, lint, HSM signature, certificate record, audit
// outcome. Requests (and their CSRs) are made before the timer starts.
func BenchmarkApprove(b *testing.B) {
	tok := softhsm.NewToken(b, "bench-approve")
	m := hsm.NewManager(nil)
	b.Cleanup(func() { m.Close() })
	key, err := m.CreateKey(context.Background(), hsm.PKCS11URI(tok.Module, tok.Label, "issuing", nil, tok.PINFile), hsm.ECP256)
	if err != nil {
		b.Fatal(err)
	}
	db, err := truststore.Open(ctx, sqlstore.SQLite, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	p := testpki.New(b, key, time.Now)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := enrol.New(enrol.Config{Notify: enrol.NoNotify{}, Store: db, Issuer: p.CA, Profiles: p.Profiles, Arc: p.Arc, URLs: p.URLs,
		Audit: audit.NewLog(db, log, time.Now), Log: log, Now: time.Now})
	if err != nil {
		b.Fatal(err)
	}
	sub := testpki.Subject(pki.RolePractitioner, "sub_bench", time.Now())
	if err := db.CreateSubject(ctx, sub, "bench"); err != nil {
		b.Fatal(err)
	}
	// The requester must be an officer with a good officer certificate.
	officer := testpki.Subject(pki.RoleOfficer, "sub_bench_officer", time.Now())
	if err := db.CreateSubject(ctx, officer, "bench"); err != nil {
		b.Fatal(err)
	}
	if _, err := svc.Bootstrap(ctx, enrol.Ceremony, officer, "officer", testpki.CSR(b, newKey())); err != nil {
		b.Fatal(err)
	}
	ids := make([]string, b.N)
	for i := range ids {
		t := &testing.T{}
		r, err := svc.Request(ctx, officer.ID, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = r.ID
	}
	b.ResetTimer()
	for _, id := range ids {
		if _, err := svc.Approve(ctx, "officer-b", id, ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "issuances/s")
}
