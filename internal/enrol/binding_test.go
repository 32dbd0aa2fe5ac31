package enrol_test

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store"
	"github.com/nuskha/nuskha/internal/store/truststore"
)

// The red-team's finding: officer A registers a dentist and enters the
// request; officer B reviews it; A alone rewrites the subject as a
// psychiatrist; B approves the enrolment id they reviewed.
func TestApprovalCertifiesWhatWasReviewed(t *testing.T) {
	stores(t, func(t *testing.T, db *truststore.Store) {
		h := newHarnessOn(t, db, nil)
		sub := h.subject(t, pki.RolePractitioner, func(s *registry.Subject) {
			s.Name, s.CouncilNumber, s.Profession, s.Specialty = "Dr Honest Applicant", "MC-22222", registry.Dentist, "general"
		})
		r, err := h.svc.Request(ctx, h.alice, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
		if err != nil {
			t.Fatal(err)
		}
		evil := *sub
		evil.Name, evil.CouncilNumber, evil.Profession, evil.Specialty = "Dr Famous Psychiatrist", "MC-99999", registry.Physician, "psychiatry"
		evil.Version = sub.Version + 1
		if err := h.db.UpdateSubject(ctx, &evil, h.alice); err != nil {
			t.Fatal(err)
		}
		c, err := h.svc.Approve(ctx, h.bob, r.ID, "")
		if c != nil {
			parsed, _ := x509.ParseCertificate(c.DER)
			t.Fatalf("approved after the subject changed: the certificate names %q", parsed.Subject.CommonName)
		}
		wantCode(t, err, errs.EnrolmentStale)
		got, _ := h.svc.Enrolment(ctx, r.ID)
		if got.Status != enrol.Stale {
			t.Fatalf("after the subject changed the enrolment is %s", got.Status)
		}
		if pending, _ := h.svc.Enrolments(ctx, store.EnrolmentFilter{Status: string(enrol.Pending)}); len(pending) != 0 {
			t.Fatalf("a stale enrolment is still in the pending queue: %v", pending)
		}
		if stale, _ := h.svc.Enrolments(ctx, store.EnrolmentFilter{Status: string(enrol.Stale)}); len(stale) != 1 || stale[0].ID != r.ID {
			t.Fatalf("listing stale enrolments: %v", stale)
		}
	})
}

func TestRequesterNoLongerAnOfficer(t *testing.T) {
	stores(t, func(t *testing.T, db *truststore.Store) {
		h := newHarnessOn(t, db, nil)
		for _, tc := range []struct {
			name  string
			leave func(t *testing.T, officer string)
		}{
			{"officer certificate revoked", func(t *testing.T, officer string) {
				certs, _ := h.db.ListCertificates(ctx, store.CertificateFilter{SubjectID: officer})
				for _, c := range certs {
					now := h.clock.Now()
					if _, err := h.db.RecordStatus(ctx, &revoke.Event{Serial: c.Serial, Status: revoke.Revoked, Reason: revoke.AffiliationChanged,
						EffectiveAt: now, RecordedAt: now, RequestedBy: h.bob}, []revoke.Status{revoke.Good}); err != nil {
						t.Fatal(err)
					}
				}
			}},
			{"officer registration suspended", func(t *testing.T, officer string) {
				s, _ := h.db.GetSubject(ctx, officer)
				s.LicenceStatus, s.Version = registry.Suspended, s.Version+1
				if err := h.db.UpdateSubject(ctx, s, h.bob); err != nil {
					t.Fatal(err)
				}
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				mallory := h.officer(t, "Officer Mallory")
				sub := h.subject(t, pki.RolePractitioner, nil)
				r, err := h.svc.Request(ctx, mallory, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
				if err != nil {
					t.Fatal(err)
				}
				tc.leave(t, mallory)
				_, err = h.svc.Approve(ctx, h.bob, r.ID, "")
				wantCode(t, err, errs.RequesterNotActive)
				if certs, _ := h.db.ListCertificates(ctx, store.CertificateFilter{SubjectID: sub.ID}); len(certs) != 0 {
					t.Fatal("issued on a request entered by a former officer")
				}
			})
		}
	})
}

func TestPendingRequestsExpire(t *testing.T) {
	stores(t, func(t *testing.T, db *truststore.Store) {
		h := newHarnessOn(t, db, nil)
		sub := h.subject(t, pki.RolePractitioner, nil)
		r, err := h.svc.Request(ctx, h.alice, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := h.svc.Enrolment(ctx, r.ID); !got.ExpiresAt.Equal(r.RequestedAt.Add(enrol.DefaultRequestLifetime)) {
			t.Fatalf("expires at %s, want 7 days after %s", got.ExpiresAt, r.RequestedAt)
		}
		h.clock.Set(r.RequestedAt.Add(enrol.DefaultRequestLifetime))
		if pending, _ := h.svc.Enrolments(ctx, store.EnrolmentFilter{Status: string(enrol.Pending)}); len(pending) != 1 {
			t.Fatalf("a request exactly 7 days old is no longer pending: %v", pending)
		}
		h.clock.Set(r.RequestedAt.Add(enrol.DefaultRequestLifetime + time.Second))
		_, err = h.svc.Approve(ctx, h.bob, r.ID, "")
		wantCode(t, err, errs.EnrolmentExpired)
		if !strings.Contains(err.Error(), "enter a new request") {
			t.Fatalf("refusal does not say what to do: %v", err)
		}
		_, err = h.svc.Reject(ctx, h.bob, r.ID, "too late")
		wantCode(t, err, errs.NotPending)
		if pending, _ := h.svc.Enrolments(ctx, store.EnrolmentFilter{Status: string(enrol.Pending)}); len(pending) != 0 {
			t.Fatalf("an expired request is still in the pending queue: %v", pending)
		}
		for _, f := range []store.EnrolmentFilter{{}, {Status: string(enrol.Expired)}} {
			all, _ := h.svc.Enrolments(ctx, f)
			if len(all) != 1 || all[0].ID != r.ID || all[0].Status != enrol.Expired {
				t.Fatalf("listing %q: %v", f.Status, all)
			}
		}
		if certs, _ := h.db.ListCertificates(ctx, store.CertificateFilter{SubjectID: sub.ID}); len(certs) != 0 {
			t.Fatal("issued on an expired request")
		}
	})
}

func TestTheReviewIsWhatIsCertified(t *testing.T) {
	h := newHarness(t)
	sub := h.subject(t, pki.RolePractitioner, func(s *registry.Subject) { s.Name = "Dr Honest Applicant" })
	r, err := h.svc.Request(ctx, h.alice, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
	if err != nil {
		t.Fatal(err)
	}
	var rv enrol.Review
	if err := json.Unmarshal(r.Review, &rv); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(r.Review)
	if rv.Name != "Dr Honest Applicant" || rv.CouncilNumber != sub.CouncilNumber || rv.SubjectVersion != sub.Version || r.SubjectVersion != sub.Version ||
		rv.SPKIHash != r.SPKIHash || rv.Profile != "practitioner-signing" || r.ReviewDigest != hex.EncodeToString(sum[:]) {
		t.Fatalf("review %s (digest %s) of %+v", r.Review, r.ReviewDigest, r)
	}
	stored, _ := h.svc.Enrolment(ctx, r.ID)
	if string(stored.Review) != string(r.Review) || stored.ReviewDigest != r.ReviewDigest {
		t.Fatalf("stored review %s, %s", stored.Review, stored.ReviewDigest)
	}
	_, err = h.svc.Approve(ctx, h.bob, r.ID, strings.Repeat("0", 64))
	wantCode(t, err, errs.ReviewMismatch)
	c, err := h.svc.Approve(ctx, h.bob, r.ID, r.ReviewDigest)
	if err != nil {
		t.Fatal(err)
	}
	parsed, _ := x509.ParseCertificate(c.DER)
	if parsed.Subject.CommonName != rv.Name || enrol.SPKIHash(parsed.RawSubjectPublicKeyInfo) != rv.SPKIHash {
		t.Fatalf("certified %q with key %s; the review says %q, %s", parsed.Subject.CommonName, enrol.SPKIHash(parsed.RawSubjectPublicKeyInfo), rv.Name, rv.SPKIHash)
	}
}

func TestConfiguredRequestLifetime(t *testing.T) {
	h := newHarness(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := enrol.New(enrol.Config{Notify: enrol.NoNotify{}, Store: h.db, Issuer: h.pki.CA, Profiles: h.pki.Profiles, Arc: h.pki.Arc, URLs: h.pki.URLs,
		Audit: audit.NewLog(h.db, log, h.clock.Now), Log: log, Now: h.clock.Now, RequestLifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	sub := h.subject(t, pki.RolePractitioner, nil)
	r, err := svc.Request(ctx, h.alice, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
	if err != nil {
		t.Fatal(err)
	}
	h.clock.Set(r.RequestedAt.Add(time.Hour + time.Second))
	_, err = svc.Approve(ctx, h.bob, r.ID, "")
	wantCode(t, err, errs.EnrolmentExpired)
	if _, err := enrol.New(enrol.Config{Notify: enrol.NoNotify{}, Store: h.db, Issuer: h.pki.CA, Profiles: h.pki.Profiles, Audit: audit.NewLog(h.db, log, h.clock.Now),
		Log: log, Now: h.clock.Now, RequestLifetime: -time.Hour}); err == nil {
		t.Fatal("a negative lifetime was accepted")
	}
}
