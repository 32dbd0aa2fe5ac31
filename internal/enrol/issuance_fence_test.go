package enrol_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/ca"
	"github.com/nuskha/nuskha/internal/store/truststore"
)

// slowThenFlaky: call 1 is a slow HSM (held after its intent is recorded,
// before the signature), call 2 fails before signing, later calls sign.
// Every certificate signed is kept.
// slowThenFlaky is an issuing key whose first signature stalls (past the
// fence, or before it with stallFirst) until hold is closed, and whose
// second refuses unless noFail.
type slowThenFlaky struct {
	enrol.Issuer
	n          atomic.Int32
	held, hold chan struct{}
	mu         sync.Mutex
	signed     []*x509.Certificate
	noFail     bool
	stallFirst bool
}

func (s *slowThenFlaky) Issue(ctx context.Context, req ca.Request, before ca.BeforeSign) (*x509.Certificate, error) {
	switch s.n.Add(1) {
	case 1:
		inner := before
		before = func(tbs []byte) error {
			if s.stallFirst {
				close(s.held)
				<-s.hold
				return inner(tbs)
			}
			err := inner(tbs)
			close(s.held)
			<-s.hold
			return err
		}
	case 2:
		if !s.noFail {
			return nil, errors.New("hsm: session limit reached")
		}
	}
	c, err := s.Issuer.Issue(ctx, req, before)
	if err == nil {
		s.mu.Lock()
		s.signed = append(s.signed, c)
		s.mu.Unlock()
	}
	return c, err
}

// TestStalledSignerAndRetrySignOneCertificate: a first signer that stalls
// in the issuing key (past the fence) beyond IssuanceLease, a takeover that
// fails before signing, and a third approval that signs: when the first
// signer finishes, both signatures are over the same to-be-signed
// certificate — every attempt keeps the first one's serial and validity —
// never two certificates under one serial.
func TestStalledSignerAndRetrySignOneCertificate(t *testing.T) {
	stores(t, func(t *testing.T, db *truststore.Store) {
		h := newHarnessOn(t, db, nil)
		iss := &slowThenFlaky{Issuer: h.pki.CA, held: make(chan struct{}), hold: make(chan struct{})}
		svc := serviceWith(t, h, iss, audit.NewLog(db, slog.New(slog.NewTextHandler(io.Discard, nil)), h.clock.Now))
		sub := h.subject(t, pki.RolePractitioner, nil)
		r, err := svc.Request(ctx, h.alice, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
		if err != nil {
			t.Fatal(err)
		}
		start := h.clock.Now()
		firstDone := make(chan error, 1)
		go func() { _, err := svc.Approve(ctx, h.bob, r.ID, ""); firstDone <- err }()
		<-iss.held
		h.clock.Set(start.Add(enrol.IssuanceLease + time.Second))
		_, err = svc.Approve(ctx, h.carol, r.ID, "")
		wantCode(t, err, errs.Unavailable)
		h.clock.Set(start.Add(enrol.IssuanceLease + time.Hour))
		c, err := svc.Approve(ctx, h.carol, r.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		close(iss.hold)
		t.Logf("first approval: %v", <-firstDone)
		if len(iss.signed) != 2 {
			t.Fatalf("%d signatures", len(iss.signed))
		}
		a, b := iss.signed[0], iss.signed[1]
		t.Logf("recorded %s %s..%s", c.SerialHex(), c.NotBefore, c.NotAfter)
		for _, x := range iss.signed {
			t.Logf("signed serial %x valid %s..%s", x.SerialNumber, x.NotBefore, x.NotAfter)
		}
		if a.SerialNumber.Cmp(b.SerialNumber) == 0 && !bytes.Equal(a.RawTBSCertificate, b.RawTBSCertificate) {
			t.Fatalf("two different certificates with serial %x", a.SerialNumber)
		}
	})
}

// TestStalledSignerAndTakeoverSignOneCertificate: a signer stalled in the
// issuing key past its lease and the approval that took over both sign;
// the two signatures are over the same certificate, and only one is
// recorded.
func TestStalledSignerAndTakeoverSignOneCertificate(t *testing.T) {
	stores(t, func(t *testing.T, db *truststore.Store) {
		h := newHarnessOn(t, db, nil)
		iss := &slowThenFlaky{Issuer: h.pki.CA, held: make(chan struct{}), hold: make(chan struct{}), noFail: true}
		svc := serviceWith(t, h, iss, audit.NewLog(db, slog.New(slog.NewTextHandler(io.Discard, nil)), h.clock.Now))
		sub := h.subject(t, pki.RolePractitioner, nil)
		r, err := svc.Request(ctx, h.alice, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
		if err != nil {
			t.Fatal(err)
		}
		start := h.clock.Now()
		firstDone := make(chan error, 1)
		go func() { _, err := svc.Approve(ctx, h.bob, r.ID, ""); firstDone <- err }()
		<-iss.held
		h.clock.Set(start.Add(enrol.IssuanceLease + time.Second))
		if _, err := svc.Approve(ctx, h.carol, r.ID, ""); err != nil {
			t.Fatal(err)
		}
		close(iss.hold)
		t.Logf("first approval: %v", <-firstDone)
		if len(iss.signed) != 2 || !bytes.Equal(iss.signed[0].RawTBSCertificate, iss.signed[1].RawTBSCertificate) {
			t.Fatalf("%d signatures for one enrolment, not of one certificate", len(iss.signed))
		}
	})
}

// TestTakenOverSignerIsFenced: a signer that stalls before the issuing key
// is asked (in lint, or the intent record) past its lease is taken over;
// when it wakes, the fence stops it, and the enrolment has exactly one
// signature.
func TestTakenOverSignerIsFenced(t *testing.T) {
	stores(t, func(t *testing.T, db *truststore.Store) {
		h := newHarnessOn(t, db, nil)
		iss := &slowThenFlaky{Issuer: h.pki.CA, held: make(chan struct{}), hold: make(chan struct{}), noFail: true, stallFirst: true}
		svc := serviceWith(t, h, iss, audit.NewLog(db, slog.New(slog.NewTextHandler(io.Discard, nil)), h.clock.Now))
		sub := h.subject(t, pki.RolePractitioner, nil)
		r, err := svc.Request(ctx, h.alice, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
		if err != nil {
			t.Fatal(err)
		}
		start := h.clock.Now()
		firstDone := make(chan error, 1)
		go func() { _, err := svc.Approve(ctx, h.bob, r.ID, ""); firstDone <- err }()
		<-iss.held
		h.clock.Set(start.Add(enrol.IssuanceLease + time.Second))
		if _, err := svc.Approve(ctx, h.carol, r.ID, ""); err != nil {
			t.Fatal(err)
		}
		close(iss.hold)
		wantCode(t, <-firstDone, errs.NotPending)
		if len(iss.signed) != 1 {
			t.Fatalf("%d signatures for one enrolment", len(iss.signed))
		}
	})
}

// changingIssuer restricts the subject's licence between the approval's
// checks and the signature, as another officer might at that moment.
type changingIssuer struct {
	enrol.Issuer
	change func()
	signed atomic.Int32
}

func (c *changingIssuer) Issue(ctx context.Context, req ca.Request, before ca.BeforeSign) (*x509.Certificate, error) {
	cert, err := c.Issuer.Issue(ctx, req, func(tbs []byte) error {
		c.change()
		return before(tbs)
	})
	if err == nil {
		c.signed.Add(1)
	}
	return cert, err
}

// TestSubjectChangedBeforeSigningIsFenced: a suspension recorded after the
// approval checked the registry, but before the issuing key signs, stops
// the signature: the fence checks the subject is still the version the
// enrolment is bound to.
func TestSubjectChangedBeforeSigningIsFenced(t *testing.T) {
	stores(t, func(t *testing.T, db *truststore.Store) {
		h := newHarnessOn(t, db, nil)
		sub := h.subject(t, pki.RolePractitioner, nil)
		iss := &changingIssuer{Issuer: h.pki.CA, change: func() {
			cur, err := db.GetSubject(ctx, sub.ID)
			if err != nil {
				t.Error(err)
				return
			}
			next := *cur
			next.LicenceStatus, next.Version = "suspended", cur.Version+1
			if err := db.UpdateSubject(ctx, &next, h.alice); err != nil {
				t.Error(err)
			}
		}}
		svc := serviceWith(t, h, iss, audit.NewLog(db, slog.New(slog.NewTextHandler(io.Discard, nil)), h.clock.Now))
		r, err := svc.Request(ctx, h.alice, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
		if err != nil {
			t.Fatal(err)
		}
		_, err = svc.Approve(ctx, h.bob, r.ID, "")
		wantCode(t, err, errs.NotPending)
		if n := iss.signed.Load(); n != 0 {
			t.Fatalf("%d signatures for a suspended practitioner", n)
		}
	})
}
