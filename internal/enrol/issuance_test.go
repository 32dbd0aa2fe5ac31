package enrol_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/ca"
	"github.com/nuskha/nuskha/internal/pki/ceremony"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/truststore"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
)

// lossyStore is the real store whose database fails to record the next
// enrolment certificate, as when it goes away just after the signature.
type lossyStore struct {
	*truststore.Store
	fail atomic.Int32
}

func (l *lossyStore) StoreCertificate(ctx context.Context, c *enrol.Certificate, events ...audit.Event) error {
	if c.EnrolmentID != "" && l.fail.Add(-1) >= 0 {
		return errors.New("database connection lost")
	}
	return l.Store.StoreCertificate(ctx, c, events...)
}

// countingSigner is the issuing key, counting every signature it makes.
type countingSigner struct {
	crypto.Signer
	n atomic.Int64
}

func (c *countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	c.n.Add(1)
	return c.Signer.Sign(r, digest, opts)
}

func newCountingSigner() *countingSigner {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return &countingSigner{Signer: k}
}

// stores runs f on the embedded store and on PostgreSQL.
func stores(t *testing.T, f func(t *testing.T, db *truststore.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		db, err := truststore.Open(ctx, sqlstore.SQLite, filepath.Join(t.TempDir(), "trustd.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		f(t, db)
	})
	t.Run("postgres", func(t *testing.T) {
		db, err := truststore.Open(ctx, sqlstore.Postgres, pgtest.Schema(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		f(t, db)
	})
}

// The red-team's finding: eight parallel approvals of one enrolment made
// the issuing key sign five certificates, of which one was recorded and
// four existed nowhere but in the signer's output.
func TestParallelApprovalsSignOnce(t *testing.T) {
	stores(t, func(t *testing.T, db *truststore.Store) {
		signer := newCountingSigner()
		h := newHarnessOn(t, db, signer)
		sub := h.subject(t, pki.RolePractitioner, nil)
		r, err := h.svc.Request(ctx, h.alice, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
		if err != nil {
			t.Fatal(err)
		}
		before := signer.n.Load()
		const n = 64
		var wg sync.WaitGroup
		var ok, notPending atomic.Int32
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := h.svc.Approve(ctx, h.bob, r.ID, "")
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, errs.Of(errs.NotPending)):
					notPending.Add(1)
				default:
					t.Errorf("approval: %v", err)
				}
			}()
		}
		close(start)
		wg.Wait()
		certs, _ := h.db.ListCertificates(ctx, store.CertificateFilter{SubjectID: sub.ID})
		signed := signer.n.Load() - before
		evs, _ := h.db.ListAudit(ctx, store.AuditFilter{Limit: 1000})
		intents := 0
		for _, e := range evs {
			if e.Action == "certificate.issue" && e.Outcome == "intent" && e.Detail["enrolment"] == r.ID {
				intents++
			}
		}
		if signed != 1 || intents != 1 || len(certs) != 1 || ok.Load() != 1 || notPending.Load() != n-1 {
			t.Fatalf("%d signatures, %d intents, %d certificates stored, %d approvals succeeded, %d refused as not pending; want 1, 1, 1, 1, %d",
				signed, intents, len(certs), ok.Load(), notPending.Load(), n-1)
		}
	})
}

type noPublish struct{}

func (noPublish) StatusChanged(context.Context, revoke.Record) error { return nil }

func TestSignedButNotRecorded(t *testing.T) {
	stores(t, func(t *testing.T, db *truststore.Store) {
		signer := newCountingSigner()
		h := newHarnessOn(t, db, signer)
		lossy := &lossyStore{Store: db}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		svc, err := enrol.New(enrol.Config{Notify: enrol.NoNotify{}, Store: lossy, Issuer: h.pki.CA, Profiles: h.pki.Profiles, Arc: h.pki.Arc,
			URLs: h.pki.URLs, Audit: audit.NewLog(db, log, h.clock.Now), Log: log, Now: h.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		signedOnce := func(t *testing.T) (*enrol.Request, *enrol.Issuance) {
			t.Helper()
			sub := h.subject(t, pki.RolePractitioner, nil)
			r, err := svc.Request(ctx, h.alice, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
			if err != nil {
				t.Fatal(err)
			}
			before := signer.n.Load()
			lossy.fail.Store(1)
			_, err = svc.Approve(ctx, h.bob, r.ID, "")
			wantCode(t, err, errs.Unavailable)
			a, err := db.LatestIssuance(ctx, r.ID)
			if err != nil || a.Outcome == nil || a.Outcome.End != enrol.IssuanceSigned || len(a.Outcome.DER) == 0 || signer.n.Load() != before+1 {
				t.Fatalf("after a lost record: attempt %+v, %v, %d signatures", a, err, signer.n.Load()-before)
			}
			return r, a
		}
		t.Run("approving again records it without signing again", func(t *testing.T) {
			r, a := signedOnce(t)
			before := signer.n.Load()
			c, err := svc.Approve(ctx, h.carol, r.ID, "")
			if err != nil {
				t.Fatal(err)
			}
			if c.Serial.Cmp(a.Serial) != 0 || string(c.DER) != string(a.Outcome.DER) || signer.n.Load() != before {
				t.Fatalf("recorded serial %s (signed %s), %d more signatures", c.SerialHex(), pki.SerialHex(a.Serial), signer.n.Load()-before)
			}
			_, err = svc.Approve(ctx, h.carol, r.ID, "")
			wantCode(t, err, errs.NotPending)
		})
		t.Run("revoking it by serial records and revokes it", func(t *testing.T) {
			r, a := signedOnce(t)
			rev, err := revoke.New(revoke.Config{Store: db, Audit: audit.NewLog(db, log, h.clock.Now), Refusals: audit.NewTally(audit.NewLog(db, log, h.clock.Now), log, h.clock.Now, time.Minute), Publisher: noPublish{}, Log: log, Now: h.clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			rec, err := rev.Revoke(ctx, h.carol, a.Serial, revoke.KeyCompromise)
			if err != nil || rec.Status != revoke.Revoked {
				t.Fatalf("revoking the unrecorded certificate: %+v %v", rec, err)
			}
			got, _ := db.GetEnrolment(ctx, r.ID)
			if got.Status != enrol.Issued || got.CertificateSerial != pki.SerialHex(a.Serial) {
				t.Fatalf("enrolment after the revocation: %+v", got)
			}
			before := signer.n.Load()
			_, err = svc.Approve(ctx, h.carol, r.ID, "")
			wantCode(t, err, errs.NotPending)
			if signer.n.Load() != before {
				t.Fatal("signed again after the certificate was recorded")
			}
		})
	})
}

func TestAbandonedIssuanceIsTakenOverAfterTheLease(t *testing.T) {
	stores(t, func(t *testing.T, db *truststore.Store) {
		signer := newCountingSigner()
		h := newHarnessOn(t, db, signer)
		sub := h.subject(t, pki.RolePractitioner, nil)
		r, err := h.svc.Request(ctx, h.alice, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
		if err != nil {
			t.Fatal(err)
		}
		// trustd stopped after reserving the attempt: whether the key
		// signed is unknown.
		now := h.clock.Now()
		if err := db.RecordDecision(ctx, enrol.Decision{EnrolmentID: r.ID, Approved: true, By: h.bob, At: now}); err != nil {
			t.Fatal(err)
		}
		abandoned := &enrol.Issuance{EnrolmentID: r.ID, Attempt: 1, Serial: randomSerial(), NotBefore: now.Add(-time.Minute),
			NotAfter: now.Add(24 * time.Hour), ClaimedBy: h.bob, ClaimedAt: now}
		if err := db.ReserveIssuance(ctx, abandoned); err != nil {
			t.Fatal(err)
		}
		before := signer.n.Load()
		_, err = h.svc.Approve(ctx, h.carol, r.ID, "")
		wantCode(t, err, errs.NotPending)
		if signer.n.Load() != before {
			t.Fatal("signed while another attempt held the lease")
		}
		h.clock.Set(now.Add(enrol.IssuanceLease + time.Second))
		c, err := h.svc.Approve(ctx, h.carol, r.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		if c.Serial.Cmp(abandoned.Serial) != 0 || !c.NotBefore.Equal(abandoned.NotBefore) || !c.NotAfter.Equal(abandoned.NotAfter) {
			t.Fatalf("the takeover signed serial %s valid %s to %s; want the abandoned attempt's %s, %s to %s",
				c.SerialHex(), c.NotBefore, c.NotAfter, pki.SerialHex(abandoned.Serial), abandoned.NotBefore, abandoned.NotAfter)
		}
	})
}

func TestFailedIssuanceKeepsTheSerial(t *testing.T) {
	stores(t, func(t *testing.T, db *truststore.Store) {
		h := newHarnessOn(t, db, nil)
		svc := serviceWith(t, h, &flakyIssuer{Issuer: h.pki.CA, fails: 1}, audit.NewLog(db, slog.New(slog.NewTextHandler(io.Discard, nil)), h.clock.Now))
		sub := h.subject(t, pki.RolePractitioner, nil)
		r, err := svc.Request(ctx, h.alice, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
		if err != nil {
			t.Fatal(err)
		}
		_, err = svc.Approve(ctx, h.bob, r.ID, "")
		wantCode(t, err, errs.Unavailable)
		failed, err := db.LatestIssuance(ctx, r.ID)
		if err != nil || failed.Outcome == nil || failed.Outcome.End != enrol.IssuanceFailed || failed.Outcome.Code != errs.Unavailable {
			t.Fatalf("after the HSM failed: %+v %v", failed, err)
		}
		c, err := svc.Approve(ctx, h.bob, r.ID, "")
		if err != nil {
			t.Fatalf("retry at once: %v", err)
		}
		if c.Serial.Cmp(failed.Serial) != 0 {
			t.Fatalf("retry signed serial %s, the enrolment's is %s", c.SerialHex(), pki.SerialHex(failed.Serial))
		}
		if certs, _ := db.ListCertificates(ctx, store.CertificateFilter{SubjectID: sub.ID}); len(certs) != 1 {
			t.Fatalf("%d certificates", len(certs))
		}
	})
}

func randomSerial() *big.Int {
	n, err := ceremony.Serial()
	if err != nil {
		panic(err)
	}
	return n
}

// lostStore loses the record of the next enrolment certificate and of how
// its attempt ended: trustd's database went away just after the signature.
type lostStore struct {
	lossyStore
	endFails atomic.Int32
}

func (l *lostStore) EndIssuance(ctx context.Context, o enrol.IssuanceOutcome) error {
	if l.endFails.Add(-1) >= 0 {
		return errors.New("database connection lost")
	}
	return l.Store.EndIssuance(ctx, o)
}

// keepingIssuer keeps every certificate the issuing key signed.
type keepingIssuer struct {
	enrol.Issuer
	mu     sync.Mutex
	signed []*x509.Certificate
}

func (k *keepingIssuer) Issue(ctx context.Context, req ca.Request, before ca.BeforeSign) (*x509.Certificate, error) {
	c, err := k.Issuer.Issue(ctx, req, before)
	if err == nil {
		k.mu.Lock()
		k.signed = append(k.signed, c)
		k.mu.Unlock()
	}
	return c, err
}

// When an attempt signed and nothing of it but its reservation survived,
// the approval that takes it over signs the same to-be-signed certificate:
// the two differ only in their signatures, and one serial revokes both.
func TestATakeoverSignsTheSameCertificate(t *testing.T) {
	stores(t, func(t *testing.T, db *truststore.Store) {
		h := newHarnessOn(t, db, nil)
		lost := &lostStore{lossyStore: lossyStore{Store: db}}
		lost.fail.Store(1)
		lost.endFails.Store(1)
		issuer := &keepingIssuer{Issuer: h.pki.CA}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		svc, err := enrol.New(enrol.Config{Notify: enrol.NoNotify{}, Store: lost, Issuer: issuer, Profiles: h.pki.Profiles, Arc: h.pki.Arc,
			URLs: h.pki.URLs, Audit: audit.NewLog(db, log, h.clock.Now), Log: log, Now: h.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		sub := h.subject(t, pki.RolePractitioner, nil)
		r, err := svc.Request(ctx, h.alice, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
		if err != nil {
			t.Fatal(err)
		}
		_, err = svc.Approve(ctx, h.bob, r.ID, "")
		wantCode(t, err, errs.Unavailable)
		_, err = svc.Approve(ctx, h.carol, r.ID, "")
		wantCode(t, err, errs.NotPending)
		h.clock.Set(h.clock.Now().Add(enrol.IssuanceLease + time.Minute))
		c, err := svc.Approve(ctx, h.carol, r.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(issuer.signed) != 2 {
			t.Fatalf("%d signatures, want the lost one and the takeover's", len(issuer.signed))
		}
		first, second := issuer.signed[0], issuer.signed[1]
		if !bytes.Equal(first.RawTBSCertificate, second.RawTBSCertificate) || c.Serial.Cmp(first.SerialNumber) != 0 {
			t.Fatalf("the takeover signed another certificate: serial %s, then %s", first.SerialNumber, second.SerialNumber)
		}
	})
}
