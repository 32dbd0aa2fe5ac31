package enrol_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/ca"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/store"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/truststore"
	"github.com/nuskha/nuskha/internal/testutil/logbuf"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

type harness struct {
	svc   *enrol.Service
	db    *truststore.Store
	pki   *testpki.PKI
	logs  *logbuf.Buffer
	clock *clock
	// alice, bob and carol are registered officers, each with an officer
	// certificate: the requester of an enrolment must still be one when it
	// is approved.
	alice, bob, carol string
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

var ctx = context.Background()

func newHarness(t *testing.T) *harness {
	t.Helper()
	db, err := truststore.Open(ctx, sqlstore.SQLite, filepath.Join(t.TempDir(), "trustd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return newHarnessOn(t, db, nil)
}

// newHarnessOn runs enrolment over db, signing with issuingKey (nil: a
// fresh in-memory key).
func newHarnessOn(t *testing.T, db *truststore.Store, issuingKey crypto.Signer) *harness {
	t.Helper()
	c := &clock{t: time.Now().UTC().Truncate(time.Second)}
	p := testpki.New(t, issuingKey, c.Now)
	logs := &logbuf.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	svc, err := enrol.New(enrol.Config{Notify: enrol.NoNotify{},
		Store: db, Issuer: p.CA, Profiles: p.Profiles, Arc: p.Arc, URLs: p.URLs,
		Audit: audit.NewLog(db, log, c.Now), Log: log, Now: c.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{svc: svc, db: db, pki: p, logs: logs, clock: c}
	h.alice, h.bob, h.carol = h.officer(t, "Officer Alice"), h.officer(t, "Officer Bob"), h.officer(t, "Officer Carol")
	return h
}

// officer registers an officer and issues them an officer certificate, as
// trustd init does.
func (h *harness) officer(t *testing.T, name string) string {
	t.Helper()
	s := testpki.Subject(pki.RoleOfficer, "sub_"+randHex(), h.clock.Now())
	s.Name = name
	if err := h.db.CreateSubject(ctx, s, enrol.Ceremony); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Bootstrap(ctx, enrol.Ceremony, s, "officer", testpki.CSR(t, newKey())); err != nil {
		t.Fatal(err)
	}
	return s.ID
}

func (h *harness) subject(t *testing.T, kind registry.Kind, mod func(*registry.Subject)) *registry.Subject {
	t.Helper()
	s := testpki.Subject(kind, "sub_"+randHex(), h.clock.Now())
	if kind == pki.RolePractitioner {
		s.CouncilNumber = "MC-" + randHex()[:6]
		s.NationalID = testpki.NationalID()
	}
	if mod != nil {
		mod(s)
	}
	if err := h.db.CreateSubject(ctx, s, "officer-a"); err != nil {
		t.Fatal(err)
	}
	return s
}

func randHex() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	const hexd = "0123456789abcdef"
	out := make([]byte, 12)
	for i, c := range b {
		out[2*i], out[2*i+1] = hexd[c>>4], hexd[c&15]
	}
	return string(out)
}

func csrPEM(t *testing.T, key crypto.Signer) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: testpki.CSR(t, key).Raw})
}

func newKey() crypto.Signer {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return k
}

func wantCode(t *testing.T, err error, code errs.Code) {
	t.Helper()
	if !errors.Is(err, errs.Of(code)) {
		t.Fatalf("got %v, want %s", err, code)
	}
}

func TestDualControlIssuance(t *testing.T) {
	h := newHarness(t)
	sub := h.subject(t, pki.RolePractitioner, nil)
	setup, _ := h.db.ListAudit(ctx, store.AuditFilter{Limit: 1000})
	r, err := h.svc.Request(ctx, h.alice, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != enrol.Pending || r.KeyType != "EC-P256" {
		t.Fatalf("request: %+v", r)
	}

	t.Run("the requester cannot approve", func(t *testing.T) {
		_, err := h.svc.Approve(ctx, h.alice, r.ID, "")
		wantCode(t, err, errs.DualControl)
		got, _ := h.db.GetEnrolment(ctx, r.ID)
		if got.Status != enrol.Pending {
			t.Fatalf("refused approval changed the enrolment to %s", got.Status)
		}
	})

	cert, err := h.svc.Approve(ctx, h.bob, r.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := x509.ParseCertificate(cert.DER)
	if err != nil {
		t.Fatal(err)
	}
	// A subtest, so that a missing openssl (without NUSKHA_REQUIRE_OPENSSL)
	// skips this check alone and the assertions below still run.
	t.Run("openssl verify -x509_strict", func(t *testing.T) {
		if out, err := testpki.OpenSSLVerify(t, h.pki.Root, h.pki.Intermediate, parsed); err != nil {
			t.Fatalf("openssl: %v\n%s", err, out)
		}
	})
	if !parsed.NotAfter.Equal(h.clock.Now().Add(17520 * time.Hour)) {
		t.Fatalf("notAfter %s, want now + profile validity", parsed.NotAfter)
	}
	got, _ := h.db.GetEnrolment(ctx, r.ID)
	if got.Status != enrol.Issued || got.Decision.By != h.bob || got.CertificateSerial != cert.SerialHex() {
		t.Fatalf("after approval: %+v", got)
	}

	t.Run("approving again is refused", func(t *testing.T) {
		_, err := h.svc.Approve(ctx, h.carol, r.ID, "")
		wantCode(t, err, errs.NotPending)
	})

	t.Run("audit trail: intent before the signature, outcome after", func(t *testing.T) {
		evs, err := h.db.ListAudit(ctx, store.AuditFilter{AfterSeq: setup[len(setup)-1].Seq})
		if err != nil {
			t.Fatal(err)
		}
		var seq []string
		for _, e := range evs {
			seq = append(seq, e.Action+"/"+string(e.Outcome))
		}
		want := "enrolment.request/ok enrolment.approve/refused enrolment.approve/ok certificate.issue/intent certificate.issue/ok enrolment.approve/refused"
		if strings.Join(seq, " ") != want {
			t.Fatalf("audit trail\n got %s\nwant %s", strings.Join(seq, " "), want)
		}
		if evs[1].Code != errs.DualControl {
			t.Fatalf("dual-control refusal recorded with code %q", evs[1].Code)
		}
		if evs[3].Detail["tbs_sha256"] == "" || evs[3].Object != "certificate:"+cert.SerialHex() {
			t.Fatalf("intent record lacks the TBS hash or serial: %+v", evs[3])
		}
	})

	t.Run("no national id in logs or audit", func(t *testing.T) {
		evs, _ := h.db.ListAudit(ctx, store.AuditFilter{})
		for _, e := range evs {
			for _, v := range append([]string{e.Actor, e.Object}, values(e.Detail)...) {
				if strings.Contains(v, sub.NationalID) {
					t.Fatalf("national id in audit event %+v", e)
				}
			}
		}
		if strings.Contains(h.logs.String(), sub.NationalID) {
			t.Fatal("national id in the log")
		}
	})
}

func values(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func TestRefusals(t *testing.T) {
	h := newHarness(t)
	active := h.subject(t, pki.RolePractitioner, nil)
	pharmacy := h.subject(t, pki.RolePharmacy, nil)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	reused := newKey()
	if _, err := h.svc.Request(ctx, h.alice, enrol.RequestInput{SubjectID: active.ID, Profile: "practitioner-signing", CSR: csrPEM(t, reused)}); err != nil {
		t.Fatal(err)
	}
	bad := csrPEM(t, newKey())
	bad[len(bad)/2] ^= 1

	for _, tc := range []struct {
		name string
		in   enrol.RequestInput
		code errs.Code
	}{
		{"unknown profile", enrol.RequestInput{SubjectID: active.ID, Profile: "doctor-signing", CSR: csrPEM(t, newKey())}, errs.UnknownProfile},
		{"unknown subject", enrol.RequestInput{SubjectID: "sub_nope", Profile: "practitioner-signing", CSR: csrPEM(t, newKey())}, errs.NotFound},
		{"pharmacy asking for a prescribing certificate", enrol.RequestInput{SubjectID: pharmacy.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())}, errs.ProfileMismatch},
		{"practitioner asking for a TLS server certificate", enrol.RequestInput{SubjectID: active.ID, Profile: "service-tls-server", CSR: csrPEM(t, newKey())}, errs.ProfileMismatch},
		{"weak RSA key", enrol.RequestInput{SubjectID: active.ID, Profile: "practitioner-signing", CSR: csrPEM(t, rsa1024)}, errs.WeakKey},
		{"wrong curve", enrol.RequestInput{SubjectID: active.ID, Profile: "practitioner-signing", CSR: csrPEM(t, p521)}, errs.WrongKeyType},
		{"key already enrolled", enrol.RequestInput{SubjectID: active.ID, Profile: "practitioner-signing", CSR: csrPEM(t, reused)}, errs.KeyReused},
		{"CSR signature broken", enrol.RequestInput{SubjectID: active.ID, Profile: "practitioner-signing", CSR: bad}, errs.BadCSR},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := h.db.ListEnrolments(ctx, store.EnrolmentFilter{})
			_, err := h.svc.Request(ctx, h.alice, tc.in)
			wantCode(t, err, tc.code)
			after, _ := h.db.ListEnrolments(ctx, store.EnrolmentFilter{})
			if len(after) != len(before) {
				t.Fatal("a refused request was recorded")
			}
			evs, _ := h.db.ListAudit(ctx, store.AuditFilter{Limit: 1000})
			last := evs[len(evs)-1]
			if last.Outcome != audit.Refused || last.Code != tc.code {
				t.Fatalf("refusal audited as %+v", last)
			}
		})
	}
}

func TestLicenceChecks(t *testing.T) {
	h := newHarness(t)
	now := h.clock.Now()
	t.Run("expired licence refused at request", func(t *testing.T) {
		sub := h.subject(t, pki.RolePractitioner, func(s *registry.Subject) { s.LicenceValidUntil = now.Add(-24 * time.Hour) })
		_, err := h.svc.Request(ctx, h.alice, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
		wantCode(t, err, errs.LicenceExpired)
	})
	t.Run("licence suspended between request and approval", func(t *testing.T) {
		sub := h.subject(t, pki.RolePractitioner, nil)
		r, err := h.svc.Request(ctx, h.alice, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
		if err != nil {
			t.Fatal(err)
		}
		sus := *sub
		sus.LicenceStatus, sus.Version = registry.Suspended, sub.Version+1
		if err := h.db.UpdateSubject(ctx, &sus, h.carol); err != nil {
			t.Fatal(err)
		}
		// Any change to the subject ends the request: a suspension too.
		_, err = h.svc.Approve(ctx, h.bob, r.ID, "")
		wantCode(t, err, errs.EnrolmentStale)
		if got, _ := h.db.GetEnrolment(ctx, r.ID); got.Status != enrol.Stale || got.Decision != nil {
			t.Fatalf("enrolment is %s (%+v) after a refused approval", got.Status, got.Decision)
		}
	})
	t.Run("licence expires between request and approval", func(t *testing.T) {
		sub := h.subject(t, pki.RolePractitioner, func(s *registry.Subject) { s.LicenceValidUntil = now.Add(time.Hour) })
		r, err := h.svc.Request(ctx, h.alice, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
		if err != nil {
			t.Fatal(err)
		}
		h.clock.Set(now.Add(2 * time.Hour))
		defer h.clock.Set(now)
		_, err = h.svc.Approve(ctx, h.bob, r.ID, "")
		wantCode(t, err, errs.LicenceExpired)
	})
	t.Run("certificate never outlives the licence", func(t *testing.T) {
		until := now.Add(30 * 24 * time.Hour)
		sub := h.subject(t, pki.RolePractitioner, func(s *registry.Subject) { s.LicenceValidUntil = until })
		r, _ := h.svc.Request(ctx, h.alice, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
		c, err := h.svc.Approve(ctx, h.bob, r.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		if !c.NotAfter.Equal(until) {
			t.Fatalf("notAfter %s, want the licence end %s", c.NotAfter, until)
		}
	})
}

func TestReject(t *testing.T) {
	h := newHarness(t)
	sub := h.subject(t, pki.RolePractitioner, nil)
	r, _ := h.svc.Request(ctx, h.alice, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
	_, err := h.svc.Reject(ctx, h.bob, r.ID, "  ")
	wantCode(t, err, errs.Invalid)
	if _, err := h.svc.Reject(ctx, h.bob, r.ID, "identity documents did not match"); err != nil {
		t.Fatal(err)
	}
	_, err = h.svc.Approve(ctx, h.carol, r.ID, "")
	wantCode(t, err, errs.NotPending)
	_, err = h.svc.Reject(ctx, h.carol, r.ID, "again")
	wantCode(t, err, errs.NotPending)
}

// flakyIssuer fails its first n calls, as an HSM that is briefly away.
type flakyIssuer struct {
	enrol.Issuer
	fails int
}

func (f *flakyIssuer) Issue(ctx context.Context, req ca.Request, before ca.BeforeSign) (*x509.Certificate, error) {
	if f.fails > 0 {
		f.fails--
		return nil, errors.New("hsm: token unavailable")
	}
	return f.Issuer.Issue(ctx, req, before)
}

// failingAudit refuses to record one kind of event.
type failingAudit struct {
	audit.Recorder
	outcome audit.Outcome
}

func (f failingAudit) Record(ctx context.Context, e audit.Event) error {
	if e.Outcome == f.outcome {
		return errors.New("audit store unavailable")
	}
	return f.Recorder.Record(ctx, e)
}

func serviceWith(t *testing.T, h *harness, issuer enrol.Issuer, rec audit.Recorder) *enrol.Service {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := enrol.New(enrol.Config{Notify: enrol.NoNotify{}, Store: h.db, Issuer: issuer, Profiles: h.pki.Profiles, Arc: h.pki.Arc, URLs: h.pki.URLs,
		Audit: rec, Log: log, Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func TestIssuanceFailureCanBeRetried(t *testing.T) {
	h := newHarness(t)
	svc := serviceWith(t, h, &flakyIssuer{Issuer: h.pki.CA, fails: 1}, audit.NewLog(h.db, slog.New(slog.NewTextHandler(io.Discard, nil)), h.clock.Now))
	sub := h.subject(t, pki.RolePractitioner, nil)
	r, err := svc.Request(ctx, h.alice, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
	if err != nil {
		t.Fatal(err)
	}
	_, err = svc.Approve(ctx, h.bob, r.ID, "")
	wantCode(t, err, errs.Unavailable)
	got, _ := h.db.GetEnrolment(ctx, r.ID)
	if got.Status != enrol.Approved {
		t.Fatalf("after a failed signature the enrolment is %s, want approved (issuance pending)", got.Status)
	}
	_, err = svc.Approve(ctx, h.alice, r.ID, "")
	wantCode(t, err, errs.DualControl)
	c, err := svc.Approve(ctx, h.carol, r.ID, "")
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	got, _ = h.db.GetEnrolment(ctx, r.ID)
	if got.Status != enrol.Issued || got.CertificateSerial != c.SerialHex() || got.Decision.By != h.bob {
		t.Fatalf("after retry: %+v", got)
	}
}

func TestNoSignatureWithoutAnIntentRecord(t *testing.T) {
	h := newHarness(t)
	calls := &countingIssuer{Issuer: h.pki.CA}
	rec := failingAudit{Recorder: audit.NewLog(h.db, slog.New(slog.NewTextHandler(io.Discard, nil)), h.clock.Now), outcome: audit.Intent}
	svc := serviceWith(t, h, calls, rec)
	sub := h.subject(t, pki.RolePractitioner, nil)
	r, err := svc.Request(ctx, h.alice, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Approve(ctx, h.bob, r.ID, ""); err == nil {
		t.Fatal("issued although the intent could not be recorded")
	}
	certs, _ := h.db.ListCertificates(ctx, store.CertificateFilter{SubjectID: sub.ID})
	if len(certs) != 0 || calls.signed != 0 {
		t.Fatalf("%d certificates stored, %d signed; want none", len(certs), calls.signed)
	}
}

// countingIssuer counts certificates actually signed.
type countingIssuer struct {
	enrol.Issuer
	signed int
}

func (c *countingIssuer) Issue(ctx context.Context, req ca.Request, before ca.BeforeSign) (*x509.Certificate, error) {
	cert, err := c.Issuer.Issue(ctx, req, before)
	if err == nil {
		c.signed++
	}
	return cert, err
}
