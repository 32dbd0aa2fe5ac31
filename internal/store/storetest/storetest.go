// Package storetest is the conformance suite for trustd's store (Trust, as
// store/truststore implements it): every backend (PostgreSQL and the
// embedded SQLite) runs exactly these tests.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store"
)

// Trust is the contract trustd's store implementations are held to.
type Trust interface {
	// CreateSubject inserts s (Version 1) and its first change record.
	CreateSubject(ctx context.Context, s *registry.Subject, by string, events ...audit.Event) error
	// UpdateSubject replaces the subject whose stored version is
	// s.Version-1 and records the change; otherwise ErrConflict.
	UpdateSubject(ctx context.Context, s *registry.Subject, by string, events ...audit.Event) error
	GetSubject(ctx context.Context, id string) (*registry.Subject, error)
	ListSubjects(ctx context.Context, f store.SubjectFilter) ([]*registry.Subject, error)
	// CreateSubjectChange records a registry change awaiting a second
	// officer; DecideSubjectChange records its one decision (a second
	// gives a DuplicateError for change_id) and, with apply, stores apply at
	// the change's base version + 1 in the same transaction (ErrConflict,
	// and nothing recorded, if the subject moved on).
	CreateSubjectChange(ctx context.Context, c *registry.Change, events ...audit.Event) error
	GetSubjectChange(ctx context.Context, id string) (*registry.Change, error)
	ListSubjectChanges(ctx context.Context, f store.SubjectChangeFilter) ([]*registry.Change, error)
	DecideSubjectChange(ctx context.Context, id string, approved bool, by string, at time.Time, comment string, apply *registry.Subject, events ...audit.Event) error
	// GoodCertificates counts a subject's certificates of a profile valid at
	// a time and neither revoked nor on hold.
	GoodCertificates(ctx context.Context, subjectID, profile string, at time.Time) (int, error)

	// CreateEnrolment inserts r and claims its public key; a key seen before
	// gives a DuplicateError for spki_sha256.
	CreateEnrolment(ctx context.Context, r *enrol.Request, events ...audit.Event) error
	GetEnrolment(ctx context.Context, id string) (*enrol.Request, error)
	ListEnrolments(ctx context.Context, f store.EnrolmentFilter) ([]*enrol.Request, error)
	// RecordDecision inserts the one decision of an enrolment; a second gives
	// a DuplicateError for enrolment_id.
	RecordDecision(ctx context.Context, d enrol.Decision, events ...audit.Event) error

	// StoreCertificate records an issued certificate. A certificate made
	// without enrolment (at init) also claims its public key.
	StoreCertificate(ctx context.Context, c *enrol.Certificate, events ...audit.Event) error

	// LatestIssuance returns an enrolment's latest issuance attempt, with
	// its outcome if it has one; ErrNotFound before the first.
	LatestIssuance(ctx context.Context, enrolmentID string) (*enrol.Issuance, error)
	// ReserveIssuance commits an attempt: an attempt number taken gives a
	// DuplicateError for attempt, an enrolment with a certificate (recorded
	// or signed and awaiting its record) ErrConflict.
	ReserveIssuance(ctx context.Context, a *enrol.Issuance) error
	// ConfirmIssuance is the fence before signing in an attempt.
	ConfirmIssuance(ctx context.Context, a *enrol.Issuance, now time.Time, lease time.Duration) error
	EndIssuance(ctx context.Context, o enrol.IssuanceOutcome) error
	// SignedUnrecorded builds the record of a certificate signed in an
	// attempt that ended IssuanceSigned and not recorded since.
	SignedUnrecorded(ctx context.Context, serial *big.Int) (*enrol.Certificate, error)
	CertificateBySerial(ctx context.Context, serial *big.Int) (*enrol.Certificate, error)
	CertificateByFingerprint(ctx context.Context, sha256Hex string) (*enrol.Certificate, error)
	ListCertificates(ctx context.Context, f store.CertificateFilter) ([]*enrol.Certificate, error)

	// RecordStatus appends a status event if the current status is one of
	// from; otherwise it returns the current status and store.ErrConflict.
	RecordStatus(ctx context.Context, ev *revoke.Event, from []revoke.Status, events ...audit.Event) (revoke.Status, error)
	CertificateStatus(ctx context.Context, serial *big.Int) (revoke.Record, error)
	ForEachStatus(ctx context.Context, notAfter time.Time, fn func(revoke.Record) error) error
	ForEachCertificate(ctx context.Context, notAfter time.Time, fn func(revoke.Record) error) error
	StatusEvents(ctx context.Context, serial *big.Int) ([]revoke.Event, error)
	CreateStatusChange(ctx context.Context, c *revoke.Change, events ...audit.Event) error
	GetStatusChange(ctx context.Context, id string) (*revoke.Change, error)
	ListStatusChanges(ctx context.Context, f store.StatusChangeFilter) ([]*revoke.Change, error)
	DecideStatusChange(ctx context.Context, id string, approved bool, by string, at time.Time, comment string, events ...audit.Event) error
	// ApproveStatusChange records a change's approval and the status event
	// it makes in one transaction: neither, if the status is not one of
	// from (ErrConflict) or the change was decided (DuplicateError).
	ApproveStatusChange(ctx context.Context, id, by string, at time.Time, comment string, ev *revoke.Event, from []revoke.Status, events ...audit.Event) (revoke.Status, error)
	StoreCRL(ctx context.Context, c revoke.CRL, generatedAt time.Time) error
	LatestCRL(ctx context.Context) (revoke.CRL, error)
	CRLState(ctx context.Context) (crlNumber, statusSeq int64, err error)
	ReserveCRLNumber(ctx context.Context, atLeast int64, at time.Time) (int64, error)
	AddServiceCredential(ctx context.Context, c enrol.ServiceCredential, at time.Time, events ...audit.Event) error
	LatestServiceCredential(ctx context.Context, purpose string) (enrol.ServiceCredential, error)

	AppendAudit(ctx context.Context, e audit.Event) (int64, error)
	ListAudit(ctx context.Context, f store.AuditFilter) ([]audit.Event, error)

	// Ping checks the database is reachable (for readiness).
	Ping(ctx context.Context) error
	Close() error
}

// Backend opens fresh, empty stores of one kind.
type Backend struct {
	// Open returns a new, migrated, empty store; it is closed by the suite.
	Open func(t *testing.T) Trust
	// Exec runs raw SQL ($n placeholders) on the store's database, to show
	// what the database itself refuses.
	Exec func(t *testing.T, s Trust, query string, args ...any) error
	// Reopen closes s and opens the same database again, to show that
	// acknowledged writes survive.
	Reopen func(t *testing.T, s Trust) Trust
}

// Run runs the suite.
func Run(t *testing.T, b Backend) {
	t.Run("subjects", func(t *testing.T) { testSubjects(t, b) })
	t.Run("registry changes under dual control", func(t *testing.T) { testSubjectChanges(t, b) })
	t.Run("enrolment and decisions", func(t *testing.T) { testEnrolments(t, b) })
	t.Run("certificates", func(t *testing.T) { testCertificates(t, b) })
	t.Run("issuance attempts", func(t *testing.T) { testIssuance(t, b) })
	t.Run("one issuance attempt under concurrency", func(t *testing.T) { testConcurrentIssuance(t, b) })
	t.Run("audit", func(t *testing.T) { testAudit(t, b) })
	t.Run("append-only tables", func(t *testing.T) { testAppendOnly(t, b) })
	t.Run("one decision under concurrency", func(t *testing.T) { testConcurrentDecisions(t, b) })
	t.Run("acknowledged writes survive reopening", func(t *testing.T) { testDurable(t, b) })
	t.Run("certificate status", func(t *testing.T) { testStatus(t, b) })
	t.Run("one revocation under concurrency", func(t *testing.T) { testConcurrentRevocation(t, b) })
	t.Run("good certificates", func(t *testing.T) { testGoodCertificates(t, b) })
	t.Run("status changes under dual control", func(t *testing.T) { testStatusChanges(t, b) })
	t.Run("CRLs and service credentials", func(t *testing.T) { testCRLsAndCredentials(t, b) })
}

var ctx = context.Background()

func id(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

var now = time.Date(2026, 11, 22, 10, 30, 0, 123456000, time.UTC)

// Practitioner returns a valid practitioner with the given council number.
func Practitioner(council, nid string) *registry.Subject {
	return &registry.Subject{
		ID: id("sub_"), Kind: pki.RolePractitioner, Name: "دکتر سارا احمدی",
		NationalID: nid, CouncilNumber: council, Profession: registry.Physician, Specialty: "cardiology",
		LicenceValidFrom: now.AddDate(-1, 0, 0), LicenceValidUntil: now.AddDate(2, 0, 0), LicenceStatus: registry.Active,
		CreatedAt: now, UpdatedAt: now,
	}
}

func pharmacy(licence string) *registry.Subject {
	return &registry.Subject{
		ID: id("sub_"), Kind: pki.RolePharmacy, Name: "داروخانه شفا", LicenceNumber: licence, Province: "IR-23",
		ResponsibleName: "دکتر رضا کریمی", ResponsibleCouncilNumber: "P-5521",
		LicenceValidFrom: now.AddDate(-1, 0, 0), LicenceValidUntil: now.AddDate(1, 0, 0), LicenceStatus: registry.Active,
		CreatedAt: now, UpdatedAt: now,
	}
}

func mustDuplicate(t *testing.T, err error, field string) {
	t.Helper()
	got, ok := store.IsDuplicate(err)
	if !ok {
		t.Fatalf("got %v, want a duplicate %s", err, field)
	}
	if got != field {
		t.Fatalf("duplicate field = %q, want %q (%v)", got, field, err)
	}
}

func testSubjects(t *testing.T, b Backend) {
	s := b.Open(t)
	p := Practitioner("MC-1001", "0499370899")
	p.DNSNames = nil
	if err := s.CreateSubject(ctx, p, "officer-a"); err != nil {
		t.Fatalf("CreateSubject: %v", err)
	}
	got, err := s.GetSubject(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, p) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, p)
	}

	t.Run("duplicate council number", func(t *testing.T) {
		mustDuplicate(t, s.CreateSubject(ctx, Practitioner("MC-1001", "0010350829"), "officer-a"), "council_number")
	})
	t.Run("duplicate national id", func(t *testing.T) {
		mustDuplicate(t, s.CreateSubject(ctx, Practitioner("MC-1002", "0499370899"), "officer-a"), "national_id")
	})
	t.Run("same licence number for different kinds is fine, same kind is not", func(t *testing.T) {
		ph := pharmacy("L-77")
		if err := s.CreateSubject(ctx, ph, "officer-a"); err != nil {
			t.Fatal(err)
		}
		pc := pharmacy("L-77")
		pc.Kind, pc.CentreType = pki.RoleParaclinic, registry.Laboratory
		if err := s.CreateSubject(ctx, pc, "officer-a"); err != nil {
			t.Fatalf("paraclinic with a pharmacy's licence number: %v", err)
		}
		mustDuplicate(t, s.CreateSubject(ctx, pharmacy("L-77"), "officer-a"), "licence_number")
	})
	t.Run("update with the current version", func(t *testing.T) {
		u := *got
		u.LicenceStatus = registry.Suspended
		u.Version = got.Version + 1
		u.UpdatedAt = now.Add(time.Hour)
		if err := s.UpdateSubject(ctx, &u, "officer-b"); err != nil {
			t.Fatal(err)
		}
		again, _ := s.GetSubject(ctx, p.ID)
		if again.LicenceStatus != registry.Suspended || again.Version != 2 {
			t.Fatalf("after update: status %s version %d", again.LicenceStatus, again.Version)
		}
	})
	t.Run("update from a stale version", func(t *testing.T) {
		u := *got
		u.Version = got.Version + 1 // based on version 1, but the store is at 2
		if err := s.UpdateSubject(ctx, &u, "officer-c"); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("got %v, want ErrConflict", err)
		}
	})
	t.Run("update of a missing subject", func(t *testing.T) {
		u := Practitioner("MC-9", "0010350829")
		u.Version = 2
		if err := s.UpdateSubject(ctx, u, "officer-c"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
	})
	t.Run("get missing", func(t *testing.T) {
		if _, err := s.GetSubject(ctx, "sub_nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
	})
	t.Run("list and search", func(t *testing.T) {
		all, err := s.ListSubjects(ctx, store.SubjectFilter{})
		if err != nil || len(all) != 3 {
			t.Fatalf("list all: %d subjects, %v", len(all), err)
		}
		ph, err := s.ListSubjects(ctx, store.SubjectFilter{Kind: string(pki.RolePharmacy)})
		if err != nil || len(ph) != 1 || ph[0].Kind != pki.RolePharmacy {
			t.Fatalf("list pharmacies: %v, %v", ph, err)
		}
		byName, err := s.ListSubjects(ctx, store.SubjectFilter{Query: "احمدی"})
		if err != nil || len(byName) != 1 || byName[0].ID != p.ID {
			t.Fatalf("search by Persian name: %v, %v", byName, err)
		}
		byCouncil, err := s.ListSubjects(ctx, store.SubjectFilter{Query: "MC-10"})
		if err != nil || len(byCouncil) != 1 {
			t.Fatalf("search by council number: %v, %v", byCouncil, err)
		}
		wild, err := s.ListSubjects(ctx, store.SubjectFilter{Query: "%"})
		if err != nil || len(wild) != 0 {
			t.Fatalf("a %% in the query must match literally: %d results, %v", len(wild), err)
		}
		page1, _ := s.ListSubjects(ctx, store.SubjectFilter{Limit: 2})
		page2, _ := s.ListSubjects(ctx, store.SubjectFilter{Limit: 2, AfterID: page1[len(page1)-1].ID})
		if len(page1) != 2 || len(page2) != 1 || page2[0].ID <= page1[1].ID {
			t.Fatalf("paging: %d then %d", len(page1), len(page2))
		}
	})
}

func subjectChange(cur *registry.Subject, by string) *registry.Change {
	next := *cur
	next.Name, next.Version, next.UpdatedAt = "دکتر سارا احمدی نژاد", cur.Version+1, now.Add(time.Hour)
	return &registry.Change{ID: id("sch_"), SubjectID: cur.ID, BaseVersion: cur.Version, Fields: []string{"name"}, Proposed: &next,
		RequestedBy: by, RequestedAt: now}
}

func testSubjectChanges(t *testing.T, b Backend) {
	s := b.Open(t)
	p := Practitioner("MC-1501", "0499370899")
	if err := s.CreateSubject(ctx, p, "officer-a"); err != nil {
		t.Fatal(err)
	}
	c := subjectChange(p, "officer-a")
	if err := s.CreateSubjectChange(ctx, c); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSubjectChange(ctx, c.ID)
	if err != nil || got.Decided || got.BaseVersion != 1 || !slices.Equal(got.Fields, c.Fields) || !reflect.DeepEqual(got.Proposed, c.Proposed) {
		t.Fatalf("change read back as %+v (proposed %+v), %v", got, got.Proposed, err)
	}
	if _, err := s.GetSubjectChange(ctx, "sch_nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing change: %v", err)
	}
	old := subjectChange(p, "officer-c")
	old.RequestedAt = now.Add(-48 * time.Hour)
	if err := s.CreateSubjectChange(ctx, old); err != nil {
		t.Fatal(err)
	}
	open := store.SubjectChangeFilter{SubjectID: p.ID, Undecided: true, RequestedSince: now.Add(-24 * time.Hour)}
	if l, _ := s.ListSubjectChanges(ctx, open); len(l) != 1 || l[0].ID != c.ID {
		t.Fatalf("open changes: %v", l)
	}
	t.Run("approval applies the change only at its base version", func(t *testing.T) {
		moved := *p
		moved.LicenceStatus, moved.Version = registry.Suspended, 2
		if err := s.UpdateSubject(ctx, &moved, "officer-b"); err != nil {
			t.Fatal(err)
		}
		if err := s.DecideSubjectChange(ctx, c.ID, true, "officer-b", now, "", c.Proposed); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("approving a change overtaken: %v", err)
		}
		if got, _ := s.GetSubjectChange(ctx, c.ID); got.Decided {
			t.Fatal("a refused approval was recorded")
		}
	})
	t.Run("approval", func(t *testing.T) {
		cur, _ := s.GetSubject(ctx, p.ID)
		c2 := subjectChange(cur, "officer-a")
		if err := s.CreateSubjectChange(ctx, c2); err != nil {
			t.Fatal(err)
		}
		if err := s.DecideSubjectChange(ctx, c2.ID, true, "officer-b", now, "checked", c2.Proposed); err != nil {
			t.Fatal(err)
		}
		mustDuplicate(t, s.DecideSubjectChange(ctx, c2.ID, false, "officer-c", now, "", nil), "change_id")
		after, _ := s.GetSubject(ctx, p.ID)
		if after.Version != 3 || after.Name != c2.Proposed.Name {
			t.Fatalf("after approval: %+v", after)
		}
		got, _ := s.GetSubjectChange(ctx, c2.ID)
		if !got.Decided || !got.Approved || got.DecidedBy != "officer-b" || got.Comment != "checked" {
			t.Fatalf("decided change: %+v", got)
		}
	})
}

// NewEnrolment returns a pending enrolment of the subject, as stored.
func NewEnrolment(subjectID string) *enrol.Request {
	spki := make([]byte, 32)
	_, _ = rand.Read(spki)
	return &enrol.Request{
		ID: id("enr_"), SubjectID: subjectID, Profile: "practitioner-signing", CSR: []byte{0x30, 0x00},
		KeyType: "EC-P256", SPKIHash: hex.EncodeToString(spki), RequestedBy: "officer-a", RequestedAt: now,
		SubjectVersion: 1, Review: []byte(`{"v":1,"name":"دکتر سارا احمدی"}`), ReviewDigest: hex.EncodeToString(spki),
	}
}

func testEnrolments(t *testing.T, b Backend) {
	s := b.Open(t)
	p := Practitioner("MC-2001", "0499370899")
	if err := s.CreateSubject(ctx, p, "officer-a"); err != nil {
		t.Fatal(err)
	}
	e := NewEnrolment(p.ID)
	if err := s.CreateEnrolment(ctx, e); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetEnrolment(ctx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != enrol.Pending || got.Decision != nil || got.SPKIHash != e.SPKIHash || !got.RequestedAt.Equal(now) ||
		got.SubjectVersion != 1 || string(got.Review) != string(e.Review) || got.ReviewDigest != e.ReviewDigest {
		t.Fatalf("new enrolment read back as %+v", got)
	}

	t.Run("key reuse refused, even for another subject", func(t *testing.T) {
		other := Practitioner("MC-2002", "0010350829")
		if err := s.CreateSubject(ctx, other, "officer-a"); err != nil {
			t.Fatal(err)
		}
		again := NewEnrolment(other.ID)
		again.SPKIHash = e.SPKIHash
		mustDuplicate(t, s.CreateEnrolment(ctx, again), "spki_sha256")
		if _, err := s.GetEnrolment(ctx, again.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a refused enrolment was half-written: %v", err)
		}
	})
	t.Run("unknown subject refused", func(t *testing.T) {
		if err := s.CreateEnrolment(ctx, NewEnrolment("sub_missing")); err == nil {
			t.Fatal("enrolment for a missing subject accepted")
		}
	})
	t.Run("approval", func(t *testing.T) {
		d := enrol.Decision{EnrolmentID: e.ID, Approved: true, By: "officer-b", At: now.Add(time.Minute)}
		if err := s.RecordDecision(ctx, d); err != nil {
			t.Fatal(err)
		}
		got, _ := s.GetEnrolment(ctx, e.ID)
		if got.Status != enrol.Approved || got.Decision == nil || got.Decision.By != "officer-b" || !got.Decision.At.Equal(d.At) {
			t.Fatalf("after approval: %+v %+v", got, got.Decision)
		}
		mustDuplicate(t, s.RecordDecision(ctx, enrol.Decision{EnrolmentID: e.ID, Approved: false, By: "officer-c", At: now}), "enrolment_id")
	})
	t.Run("rejection and listing by status", func(t *testing.T) {
		r := NewEnrolment(p.ID)
		if err := s.CreateEnrolment(ctx, r); err != nil {
			t.Fatal(err)
		}
		pending, err := s.ListEnrolments(ctx, store.EnrolmentFilter{Status: string(enrol.Pending)})
		if err != nil || len(pending) != 1 || pending[0].ID != r.ID {
			t.Fatalf("pending: %v %v", pending, err)
		}
		if err := s.RecordDecision(ctx, enrol.Decision{EnrolmentID: r.ID, Approved: false, By: "officer-b", At: now, Reason: "identity not confirmed"}); err != nil {
			t.Fatal(err)
		}
		rejected, err := s.ListEnrolments(ctx, store.EnrolmentFilter{Status: string(enrol.Rejected)})
		if err != nil || len(rejected) != 1 || rejected[0].Decision.Reason != "identity not confirmed" {
			t.Fatalf("rejected: %v %v", rejected, err)
		}
		approved, _ := s.ListEnrolments(ctx, store.EnrolmentFilter{Status: string(enrol.Approved)})
		if len(approved) != 1 || approved[0].ID != e.ID {
			t.Fatalf("approved: %v", approved)
		}
		bySubject, _ := s.ListEnrolments(ctx, store.EnrolmentFilter{SubjectID: p.ID})
		if len(bySubject) != 2 {
			t.Fatalf("by subject: %d", len(bySubject))
		}
	})
	t.Run("stale once the subject changes, expired once too old", func(t *testing.T) {
		q := Practitioner("MC-2003", NationalIDFor(t))
		if err := s.CreateSubject(ctx, q, "officer-a"); err != nil {
			t.Fatal(err)
		}
		old, fresh, approved := NewEnrolment(q.ID), NewEnrolment(q.ID), NewEnrolment(q.ID)
		old.RequestedAt, approved.RequestedAt = now.Add(-48*time.Hour), now.Add(-time.Minute)
		for _, r := range []*enrol.Request{old, fresh, approved} {
			if err := s.CreateEnrolment(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.RecordDecision(ctx, enrol.Decision{EnrolmentID: approved.ID, Approved: true, By: "officer-b", At: now}); err != nil {
			t.Fatal(err)
		}
		list := func(status string, since time.Time) []string {
			got, err := s.ListEnrolments(ctx, store.EnrolmentFilter{Status: status, SubjectID: q.ID, OpenSince: since})
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, r := range got {
				ids = append(ids, r.ID)
			}
			return ids
		}
		since := now.Add(-24 * time.Hour)
		for _, tc := range []struct {
			status string
			since  time.Time
			want   []string
		}{
			{"pending", since, []string{fresh.ID}},
			{"pending", time.Time{}, []string{fresh.ID, old.ID}},
			{"expired", since, []string{old.ID}},
			{"expired", time.Time{}, nil},
			{"approved", since, []string{approved.ID}},
			{"stale", since, nil},
		} {
			if got := list(tc.status, tc.since); !slices.Equal(got, tc.want) {
				t.Errorf("%s since %s: %v, want %v", tc.status, tc.since, got, tc.want)
			}
		}
		u := *q
		u.Version, u.Name = 2, "دکتر سارا احمدی نژاد"
		if err := s.UpdateSubject(ctx, &u, "officer-c"); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			status string
			want   []string
		}{
			{"pending", nil}, {"expired", nil}, {"approved", nil}, {"stale", []string{fresh.ID, approved.ID, old.ID}},
		} {
			if got := list(tc.status, since); !slices.Equal(got, tc.want) {
				t.Errorf("after the subject changed, %s: %v, want %v", tc.status, got, tc.want)
			}
		}
		if got, _ := s.GetEnrolment(ctx, approved.ID); got.Status != enrol.Stale || got.Decision == nil {
			t.Fatalf("approved, not issued, subject changed: %+v", got)
		}
	})
	t.Run("a request entered before requests were bound is stale", func(t *testing.T) {
		legacy := id("enr_")
		if err := b.Exec(t, s, `INSERT INTO enrolments (id, subject_id, profile, csr, key_type, spki_sha256, requested_by, requested_at)
			VALUES ($1, $2, 'practitioner-signing', $3, 'EC-P256', $4, 'officer-a', $5)`, legacy, p.ID, []byte{0x30, 0x00}, id("spki"), now); err != nil {
			t.Fatal(err)
		}
		if got, err := s.GetEnrolment(ctx, legacy); err != nil || got.Status != enrol.Stale || got.SubjectVersion != 0 || got.Review != nil {
			t.Fatalf("legacy request: %+v %v", got, err)
		}
	})
}

func certificate(subjectID, enrolmentID string) *enrol.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 159))
	fp := make([]byte, 32)
	_, _ = rand.Read(fp)
	spki := make([]byte, 32)
	_, _ = rand.Read(spki)
	return &enrol.Certificate{
		Serial: serial.Add(serial, big.NewInt(1)), SubjectID: subjectID, Profile: "practitioner-signing", EnrolmentID: enrolmentID,
		DER: []byte{0x30, 0x03, 0x02, 0x01, 0x01}, Fingerprint: hex.EncodeToString(fp), SPKIHash: hex.EncodeToString(spki),
		NotBefore: now, NotAfter: now.AddDate(2, 0, 0), IssuedAt: now, IssuedBy: "officer-b",
	}
}

func testCertificates(t *testing.T, b Backend) {
	s := b.Open(t)
	p := Practitioner("MC-3001", "0499370899")
	if err := s.CreateSubject(ctx, p, "officer-a"); err != nil {
		t.Fatal(err)
	}
	e := NewEnrolment(p.ID)
	if err := s.CreateEnrolment(ctx, e); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordDecision(ctx, enrol.Decision{EnrolmentID: e.ID, Approved: true, By: "officer-b", At: now}); err != nil {
		t.Fatal(err)
	}
	c := certificate(p.ID, e.ID)
	c.SPKIHash = e.SPKIHash
	if err := s.StoreCertificate(ctx, c); err != nil {
		t.Fatal(err)
	}
	got, err := s.CertificateBySerial(ctx, c.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, c)
	}
	byFP, err := s.CertificateByFingerprint(ctx, c.Fingerprint)
	if err != nil || byFP.Serial.Cmp(c.Serial) != 0 {
		t.Fatalf("by fingerprint: %v %v", byFP, err)
	}
	en, _ := s.GetEnrolment(ctx, e.ID)
	if en.Status != enrol.Issued || en.CertificateSerial != c.SerialHex() {
		t.Fatalf("enrolment after issuance: %s %s", en.Status, en.CertificateSerial)
	}
	t.Run("second certificate for one enrolment", func(t *testing.T) {
		mustDuplicate(t, s.StoreCertificate(ctx, certificate(p.ID, e.ID)), "enrolment_id")
	})
	t.Run("certificate made at init claims its key", func(t *testing.T) {
		boot := certificate(p.ID, "")
		if err := s.StoreCertificate(ctx, boot); err != nil {
			t.Fatal(err)
		}
		reuse := NewEnrolment(p.ID)
		reuse.SPKIHash = boot.SPKIHash
		mustDuplicate(t, s.CreateEnrolment(ctx, reuse), "spki_sha256")
	})
	t.Run("missing", func(t *testing.T) {
		if _, err := s.CertificateBySerial(ctx, big.NewInt(424242)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("list by subject", func(t *testing.T) {
		l, err := s.ListCertificates(ctx, store.CertificateFilter{SubjectID: p.ID})
		if err != nil || len(l) != 2 {
			t.Fatalf("%d certificates, %v", len(l), err)
		}
	})
}

func attempt(enrolmentID string, n int, serial *big.Int) *enrol.Issuance {
	return &enrol.Issuance{EnrolmentID: enrolmentID, Attempt: n, Serial: serial, NotBefore: now, NotAfter: now.AddDate(1, 0, 0),
		ClaimedBy: "officer-b", ClaimedAt: now.Add(time.Duration(n) * time.Minute)}
}

func testIssuance(t *testing.T, b Backend) {
	s := b.Open(t)
	p := Practitioner("MC-3101", "0499370899")
	if err := s.CreateSubject(ctx, p, "officer-a"); err != nil {
		t.Fatal(err)
	}
	e := NewEnrolment(p.ID)
	if err := s.CreateEnrolment(ctx, e); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LatestIssuance(ctx, e.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("before any attempt: %v", err)
	}
	c := certificate(p.ID, e.ID)
	c.SPKIHash = e.SPKIHash
	a1 := attempt(e.ID, 1, c.Serial)
	if err := s.ReserveIssuance(ctx, a1); err != nil {
		t.Fatal(err)
	}
	got, err := s.LatestIssuance(ctx, e.ID)
	if err != nil || got.Attempt != 1 || got.Serial.Cmp(c.Serial) != 0 || got.Outcome != nil || !got.ClaimedAt.Equal(a1.ClaimedAt) || !got.NotAfter.Equal(a1.NotAfter) {
		t.Fatalf("attempt 1 read back as %+v, %v", got, err)
	}
	// Two officers starting the first attempt at once draw their own serials.
	mustDuplicate(t, s.ReserveIssuance(ctx, attempt(e.ID, 1, certificate(p.ID, e.ID).Serial)), "attempt")
	// The fence before signing: the latest attempt, open, within its lease.
	const lease = 5 * time.Minute
	if err := s.ConfirmIssuance(ctx, a1, a1.ClaimedAt.Add(lease-time.Second), lease); err != nil {
		t.Fatalf("attempt 1 within its lease: %v", err)
	}
	if err := s.ConfirmIssuance(ctx, a1, a1.ClaimedAt.Add(lease), lease); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("attempt 1 past its lease: %v", err)
	}
	if err := s.ConfirmIssuance(ctx, attempt(e.ID, 2, c.Serial), now, lease); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("an attempt not reserved: %v", err)
	}
	t.Run("a serial belongs to one enrolment", func(t *testing.T) {
		other := NewEnrolment(p.ID)
		if err := s.CreateEnrolment(ctx, other); err != nil {
			t.Fatal(err)
		}
		mustDuplicate(t, s.ReserveIssuance(ctx, attempt(other.ID, 1, c.Serial)), "serial")
	})
	if err := s.EndIssuance(ctx, enrol.IssuanceOutcome{EnrolmentID: e.ID, Attempt: 1, End: enrol.IssuanceFailed, Code: "unavailable", At: now}); err != nil {
		t.Fatal(err)
	}
	mustDuplicate(t, s.EndIssuance(ctx, enrol.IssuanceOutcome{EnrolmentID: e.ID, Attempt: 1, End: enrol.IssuanceSigned, DER: c.DER, At: now}), "attempt")
	if got, _ := s.LatestIssuance(ctx, e.ID); got.Outcome == nil || got.Outcome.End != enrol.IssuanceFailed || got.Outcome.Code != "unavailable" {
		t.Fatalf("failed attempt read back as %+v", got)
	}
	if err := s.ConfirmIssuance(ctx, a1, a1.ClaimedAt, lease); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("an attempt that ended: %v", err)
	}
	a2 := attempt(e.ID, 2, c.Serial)
	if err := s.ReserveIssuance(ctx, a2); err != nil {
		t.Fatalf("attempt 2 after a failure: %v", err)
	}
	if err := s.ConfirmIssuance(ctx, a2, a2.ClaimedAt, lease); err != nil {
		t.Fatalf("attempt 2: %v", err)
	}
	if _, err := s.SignedUnrecorded(ctx, c.Serial); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("nothing signed yet: %v", err)
	}
	if err := s.StoreCertificate(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := s.ReserveIssuance(ctx, attempt(e.ID, 3, c.Serial)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("an attempt after the certificate was recorded: %v", err)
	}
}

func testConcurrentIssuance(t *testing.T, b Backend) {
	s := b.Open(t)
	p := Practitioner("MC-3201", "0499370899")
	if err := s.CreateSubject(ctx, p, "officer-a"); err != nil {
		t.Fatal(err)
	}
	e := NewEnrolment(p.ID)
	if err := s.CreateEnrolment(ctx, e); err != nil {
		t.Fatal(err)
	}
	var wins, refused atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.ReserveIssuance(ctx, attempt(e.ID, 1, certificate(p.ID, e.ID).Serial))
			if err == nil {
				wins.Add(1)
			} else if _, ok := store.IsDuplicate(err); ok {
				refused.Add(1)
			} else {
				t.Errorf("unexpected: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 || refused.Load() != 15 {
		t.Fatalf("%d reservations of one attempt, %d refused; want 1 and 15", wins.Load(), refused.Load())
	}
}

func testAudit(t *testing.T, b Backend) {
	s := b.Open(t)
	var last int64
	for i := 0; i < 5; i++ {
		seq, err := s.AppendAudit(ctx, audit.Event{Time: now, Actor: "officer-a", Action: "enrolment.request",
			Object: fmt.Sprintf("enrolment:%d", i%2), Outcome: audit.OK, Detail: map[string]string{"profile": "practitioner-signing"}})
		if err != nil {
			t.Fatal(err)
		}
		if seq <= last {
			t.Fatalf("sequence did not increase: %d after %d", seq, last)
		}
		last = seq
	}
	evs, err := s.ListAudit(ctx, store.AuditFilter{})
	if err != nil || len(evs) != 5 {
		t.Fatalf("%d events, %v", len(evs), err)
	}
	if evs[0].Detail["profile"] != "practitioner-signing" || !evs[0].Time.Equal(now) {
		t.Fatalf("event read back as %+v", evs[0])
	}
	after, _ := s.ListAudit(ctx, store.AuditFilter{AfterSeq: evs[2].Seq})
	if len(after) != 2 {
		t.Fatalf("after seq: %d", len(after))
	}
	obj, _ := s.ListAudit(ctx, store.AuditFilter{Object: "enrolment:1"})
	if len(obj) != 2 {
		t.Fatalf("by object: %d", len(obj))
	}
	if _, err := s.AppendAudit(ctx, audit.Event{Time: now, Actor: "ceremony", Action: "ceremony.arl", Object: "arl:1", Outcome: audit.OK}); err != nil {
		t.Fatal(err)
	}
	act, _ := s.ListAudit(ctx, store.AuditFilter{Action: "ceremony.arl"})
	if len(act) != 1 || act[0].Object != "arl:1" {
		t.Fatalf("by action: %+v", act)
	}
}

func testAppendOnly(t *testing.T, b Backend) {
	s := b.Open(t)
	p := Practitioner("MC-4001", "0499370899")
	if err := s.CreateSubject(ctx, p, "officer-a"); err != nil {
		t.Fatal(err)
	}
	e := NewEnrolment(p.ID)
	if err := s.CreateEnrolment(ctx, e); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordDecision(ctx, enrol.Decision{EnrolmentID: e.ID, Approved: true, By: "officer-b", At: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreCertificate(ctx, certificate(p.ID, e.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendAudit(ctx, audit.Event{Time: now, Actor: "a", Action: "x", Object: "y", Outcome: audit.OK}); err != nil {
		t.Fatal(err)
	}
	c := certificate(p.ID, "")
	if err := s.StoreCertificate(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordStatus(ctx, &revoke.Event{Serial: c.Serial, Status: revoke.Revoked, Reason: revoke.KeyCompromise, EffectiveAt: now, RecordedAt: now, RequestedBy: "officer-a"}, []revoke.Status{revoke.Good}); err != nil {
		t.Fatal(err)
	}
	ch := &revoke.Change{ID: id("chg_"), Serial: c.SerialHex(), Action: revoke.Hold, Comment: "x", RequestedBy: "a", RequestedAt: now}
	if err := s.CreateStatusChange(ctx, ch); err != nil {
		t.Fatal(err)
	}
	if err := s.DecideStatusChange(ctx, ch.ID, false, "b", now, "no"); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreCRL(ctx, revoke.CRL{Number: 1, ThisUpdate: now, NextUpdate: now, DER: []byte{1}}, now); err != nil {
		t.Fatal(err)
	}
	if err := s.AddServiceCredential(ctx, enrol.ServiceCredential{Serial: c.Serial, Purpose: "ocsp", KeyURI: "k", NotAfter: now}, now); err != nil {
		t.Fatal(err)
	}
	sc := subjectChange(p, "officer-a")
	if err := s.CreateSubjectChange(ctx, sc); err != nil {
		t.Fatal(err)
	}
	if err := s.DecideSubjectChange(ctx, sc.ID, false, "officer-b", now, "no", nil); err != nil {
		t.Fatal(err)
	}
	e2 := NewEnrolment(p.ID)
	if err := s.CreateEnrolment(ctx, e2); err != nil {
		t.Fatal(err)
	}
	if err := s.ReserveIssuance(ctx, attempt(e2.ID, 1, certificate(p.ID, "").Serial)); err != nil {
		t.Fatal(err)
	}
	if err := s.EndIssuance(ctx, enrol.IssuanceOutcome{EnrolmentID: e2.ID, Attempt: 1, End: enrol.IssuanceFailed, At: now}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, update, del string }{
		{"enrolments", "UPDATE enrolments SET requested_by = 'mallory'", "DELETE FROM enrolments"},
		{"decisions", "UPDATE decisions SET decided_by = 'mallory'", "DELETE FROM decisions"},
		{"certificates", "UPDATE certificates SET issued_by = 'mallory'", "DELETE FROM certificates"},
		{"public_keys", "UPDATE public_keys SET source = 'x'", "DELETE FROM public_keys"},
		{"audit_events", "UPDATE audit_events SET outcome = 'ok'", "DELETE FROM audit_events"},
		{"subject_changes", "UPDATE subject_changes SET changed_by = 'mallory'", "DELETE FROM subject_changes"},
		{"status_events", "UPDATE status_events SET requested_by = 'mallory'", "DELETE FROM status_events"},
		{"status_changes", "UPDATE status_changes SET requested_by = 'mallory'", "DELETE FROM status_changes"},
		{"status_change_decisions", "UPDATE status_change_decisions SET decided_by = 'mallory'", "DELETE FROM status_change_decisions"},
		{"crls", "UPDATE crls SET entries = 0", "DELETE FROM crls"},
		{"service_credentials", "UPDATE service_credentials SET key_uri = 'x'", "DELETE FROM service_credentials"},
		{"issuance_attempts", "UPDATE issuance_attempts SET claimed_by = 'mallory'", "DELETE FROM issuance_attempts"},
		{"issuance_outcomes", "UPDATE issuance_outcomes SET outcome = 'failed'", "DELETE FROM issuance_outcomes"},
		{"subject_change_requests", "UPDATE subject_change_requests SET requested_by = 'mallory'", "DELETE FROM subject_change_requests"},
		{"subject_change_decisions", "UPDATE subject_change_decisions SET decided_by = 'mallory'", "DELETE FROM subject_change_decisions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := b.Exec(t, s, tc.update); err == nil {
				t.Fatalf("UPDATE on %s was allowed", tc.name)
			}
			if err := b.Exec(t, s, tc.del); err == nil {
				t.Fatalf("DELETE on %s was allowed", tc.name)
			}
		})
	}
	got, err := s.GetEnrolment(ctx, e.ID)
	if err != nil || got.RequestedBy != "officer-a" || got.Status != enrol.Issued {
		t.Fatalf("records changed after refused writes: %+v %v", got, err)
	}
}

func testConcurrentDecisions(t *testing.T, b Backend) {
	s := b.Open(t)
	p := Practitioner("MC-5001", "0499370899")
	if err := s.CreateSubject(ctx, p, "officer-a"); err != nil {
		t.Fatal(err)
	}
	e := NewEnrolment(p.ID)
	if err := s.CreateEnrolment(ctx, e); err != nil {
		t.Fatal(err)
	}
	var wins, dups atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			err := s.RecordDecision(ctx, enrol.Decision{EnrolmentID: e.ID, Approved: i%2 == 0, By: fmt.Sprintf("officer-%d", i), At: now})
			if err == nil {
				wins.Add(1)
			} else if _, ok := store.IsDuplicate(err); ok {
				dups.Add(1)
			} else {
				t.Errorf("decision %d: unexpected error %v", i, err)
			}
		}(i)
	}
	wg.Wait()
	if wins.Load() != 1 || dups.Load() != 11 {
		t.Fatalf("%d decisions recorded, %d refused as duplicates; want 1 and 11", wins.Load(), dups.Load())
	}
}

func testDurable(t *testing.T, b Backend) {
	s := b.Open(t)
	p := Practitioner("MC-6001", "0499370899")
	if err := s.CreateSubject(ctx, p, "officer-a"); err != nil {
		t.Fatal(err)
	}
	e := NewEnrolment(p.ID)
	if err := s.CreateEnrolment(ctx, e); err != nil {
		t.Fatal(err)
	}
	s2 := b.Reopen(t, s)
	if _, err := s2.GetSubject(ctx, p.ID); err != nil {
		t.Fatalf("subject lost after reopening: %v", err)
	}
	if _, err := s2.GetEnrolment(ctx, e.ID); err != nil {
		t.Fatalf("enrolment lost after reopening: %v", err)
	}
}

func issued(t *testing.T, s Trust, notAfter time.Time) *enrol.Certificate {
	t.Helper()
	p := Practitioner("MC-"+id(""), NationalIDFor(t))
	if err := s.CreateSubject(ctx, p, "officer-a"); err != nil {
		t.Fatal(err)
	}
	c := certificate(p.ID, "")
	c.NotAfter = notAfter
	if err := s.StoreCertificate(ctx, c); err != nil {
		t.Fatal(err)
	}
	return c
}

// NationalIDFor returns a fresh valid national id.
func NationalIDFor(t *testing.T) string {
	for {
		b := make([]byte, 9)
		_, _ = rand.Read(b)
		digits := make([]byte, 10)
		sum := 0
		for i := range b {
			digits[i] = '0' + b[i]%10
			sum += int(digits[i]-'0') * (10 - i)
		}
		r := sum % 11
		if r < 2 {
			digits[9] = byte('0' + r)
		} else {
			digits[9] = byte('0' + 11 - r)
		}
		if string(digits) != strings.Repeat(string(digits[:1]), 10) {
			return string(digits)
		}
	}
}

func ev(serial *big.Int, st revoke.Status, reason revoke.Reason, at time.Time) *revoke.Event {
	return &revoke.Event{Serial: serial, Status: st, Reason: reason, EffectiveAt: at, RecordedAt: at, RequestedBy: "officer-a"}
}

func testStatus(t *testing.T, b Backend) {
	s := b.Open(t)
	c := issued(t, s, now.AddDate(1, 0, 0))
	rec, err := s.CertificateStatus(ctx, c.Serial)
	if err != nil || rec.Status != revoke.Good || !rec.NotAfter.Equal(c.NotAfter) {
		t.Fatalf("fresh certificate: %+v %v", rec, err)
	}
	if _, err := s.CertificateStatus(ctx, big.NewInt(77)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown serial: %v", err)
	}
	if _, err := s.RecordStatus(ctx, ev(big.NewInt(77), revoke.Revoked, revoke.KeyCompromise, now), []revoke.Status{revoke.Good}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoking an unknown serial: %v", err)
	}
	// hold, release, hold, revoke: each allowed only from the right state
	steps := []struct {
		to     revoke.Status
		reason revoke.Reason
		from   []revoke.Status
	}{
		{revoke.OnHold, revoke.CertificateHold, []revoke.Status{revoke.Good}},
		{revoke.Good, revoke.RemoveFromCRL, []revoke.Status{revoke.OnHold}},
		{revoke.OnHold, revoke.CertificateHold, []revoke.Status{revoke.Good}},
		{revoke.Revoked, revoke.KeyCompromise, []revoke.Status{revoke.Good, revoke.OnHold}},
	}
	for i, st := range steps {
		if _, err := s.RecordStatus(ctx, ev(c.Serial, st.to, st.reason, now.Add(time.Duration(i)*time.Minute)), st.from); err != nil {
			t.Fatalf("step %d to %s: %v", i, st.to, err)
		}
		rec, _ := s.CertificateStatus(ctx, c.Serial)
		if rec.Status != st.to {
			t.Fatalf("after step %d: %s, want %s", i, rec.Status, st.to)
		}
	}
	cur, err := s.RecordStatus(ctx, ev(c.Serial, revoke.Revoked, revoke.Superseded, now), []revoke.Status{revoke.Good, revoke.OnHold})
	if !errors.Is(err, store.ErrConflict) || cur != revoke.Revoked {
		t.Fatalf("second revocation: %s %v", cur, err)
	}
	evs, _ := s.StatusEvents(ctx, c.Serial)
	if len(evs) != 4 || evs[3].Reason != revoke.KeyCompromise || !evs[3].EffectiveAt.Equal(now.Add(3*time.Minute)) {
		t.Fatalf("history: %+v", evs)
	}
	// Listing: expired entries are left out; good certificates are not listed.
	expired := issued(t, s, now.Add(-time.Hour))
	if _, err := s.RecordStatus(ctx, ev(expired.Serial, revoke.Revoked, revoke.Superseded, now.Add(-2*time.Hour)), []revoke.Status{revoke.Good}); err != nil {
		t.Fatal(err)
	}
	good := issued(t, s, now.AddDate(1, 0, 0))
	var listed []string
	if err := s.ForEachStatus(ctx, now, func(r revoke.Record) error { listed = append(listed, pki.SerialHex(r.Serial)); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0] != c.SerialHex() {
		t.Fatalf("ForEachStatus listed %v, want only %s", listed, c.SerialHex())
	}
	all := map[string]revoke.Status{}
	if err := s.ForEachCertificate(ctx, now, func(r revoke.Record) error { all[pki.SerialHex(r.Serial)] = r.Status; return nil }); err != nil {
		t.Fatal(err)
	}
	if all[c.SerialHex()] != revoke.Revoked || all[good.SerialHex()] != revoke.Good || len(all) != 2 {
		t.Fatalf("ForEachCertificate: %v", all)
	}
}

func testGoodCertificates(t *testing.T, b Backend) {
	s := b.Open(t)
	p := Practitioner("MC-7101", "0499370899")
	if err := s.CreateSubject(ctx, p, "officer-a"); err != nil {
		t.Fatal(err)
	}
	add := func(profile string, notBefore, notAfter time.Time) *enrol.Certificate {
		c := certificate(p.ID, "")
		c.Profile, c.NotBefore, c.NotAfter = profile, notBefore, notAfter
		if err := s.StoreCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	count := func() int {
		n, err := s.GoodCertificates(ctx, p.ID, "officer", now)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	add("officer", now.AddDate(-2, 0, 0), now.Add(-time.Second)) // expired
	add("officer", now.Add(time.Hour), now.AddDate(1, 0, 0))     // not yet valid
	add("practitioner-signing", now.Add(-time.Hour), now.AddDate(1, 0, 0))
	if n := count(); n != 0 {
		t.Fatalf("%d good officer certificates, want 0", n)
	}
	good := add("officer", now.Add(-time.Hour), now.AddDate(1, 0, 0))
	if n := count(); n != 1 {
		t.Fatalf("%d good officer certificates, want 1", n)
	}
	if _, err := s.RecordStatus(ctx, ev(good.Serial, revoke.OnHold, revoke.CertificateHold, now), []revoke.Status{revoke.Good}); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 0 {
		t.Fatalf("on hold: %d good", n)
	}
	if _, err := s.RecordStatus(ctx, ev(good.Serial, revoke.Good, revoke.RemoveFromCRL, now), []revoke.Status{revoke.OnHold}); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("released: %d good", n)
	}
}

func testConcurrentRevocation(t *testing.T, b Backend) {
	s := b.Open(t)
	c := issued(t, s, now.AddDate(1, 0, 0))
	var wins, conflicts atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.RecordStatus(ctx, ev(c.Serial, revoke.Revoked, revoke.KeyCompromise, now), []revoke.Status{revoke.Good, revoke.OnHold})
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, store.ErrConflict):
				conflicts.Add(1)
			default:
				t.Errorf("unexpected: %v", err)
			}
		}()
	}
	wg.Wait()
	evs, _ := s.StatusEvents(ctx, c.Serial)
	if wins.Load() != 1 || conflicts.Load() != 9 || len(evs) != 1 {
		t.Fatalf("%d revocations recorded, %d refused, %d events; want 1, 9, 1", wins.Load(), conflicts.Load(), len(evs))
	}
}

func testStatusChanges(t *testing.T, b Backend) {
	s := b.Open(t)
	c := issued(t, s, now.AddDate(1, 0, 0))
	ch := &revoke.Change{ID: id("chg_"), Serial: c.SerialHex(), Action: revoke.Hold, Comment: "card reported lost", RequestedBy: "officer-a", RequestedAt: now}
	if err := s.CreateStatusChange(ctx, ch); err != nil {
		t.Fatal(err)
	}
	open := store.StatusChangeFilter{Undecided: true, RequestedSince: now.Add(-time.Hour)}
	pending, _ := s.ListStatusChanges(ctx, open)
	if len(pending) != 1 || pending[0].ID != ch.ID || pending[0].Decided {
		t.Fatalf("pending: %+v", pending)
	}
	// Another certificate's request, and one made too long ago.
	other := issued(t, s, now.AddDate(1, 0, 0))
	old := &revoke.Change{ID: id("chg_"), Serial: other.SerialHex(), Action: revoke.Hold, Comment: "old", RequestedBy: "officer-a", RequestedAt: now.Add(-2 * time.Hour)}
	if err := s.CreateStatusChange(ctx, old); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		f    store.StatusChangeFilter
		want []string
	}{
		{"open", open, []string{ch.ID}},
		{"undecided", store.StatusChangeFilter{Undecided: true}, []string{ch.ID, old.ID}},
		{"one certificate's", store.StatusChangeFilter{Serial: other.SerialHex()}, []string{old.ID}},
		{"one certificate's open", store.StatusChangeFilter{Serial: other.SerialHex(), Undecided: true, RequestedSince: now.Add(-time.Hour)}, nil},
		{"limited", store.StatusChangeFilter{Limit: 1}, []string{ch.ID}},
	} {
		got, err := s.ListStatusChanges(ctx, tc.f)
		var ids []string
		for _, c := range got {
			ids = append(ids, c.ID)
		}
		if err != nil || !slices.Equal(ids, tc.want) {
			t.Errorf("%s: %v %v, want %v", tc.name, ids, err, tc.want)
		}
	}
	if err := s.DecideStatusChange(ctx, ch.ID, true, "officer-b", now, ""); err != nil {
		t.Fatal(err)
	}
	mustDuplicate(t, s.DecideStatusChange(ctx, ch.ID, false, "officer-c", now, ""), "change_id")
	got, err := s.GetStatusChange(ctx, ch.ID)
	if err != nil || !got.Decided || !got.Approved || got.DecidedBy != "officer-b" {
		t.Fatalf("decided change: %+v %v", got, err)
	}
	if pending, _ := s.ListStatusChanges(ctx, open); len(pending) != 0 {
		t.Fatalf("still pending: %+v", pending)
	}
	if all, _ := s.ListStatusChanges(ctx, store.StatusChangeFilter{}); len(all) != 2 || !all[0].Decided || all[1].Decided {
		t.Fatalf("all: %+v", all)
	}
	if _, err := s.GetStatusChange(ctx, "chg_nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing change: %v", err)
	}
	// A revocation under dual control keeps its reason.
	rv := &revoke.Change{ID: id("chg_"), Serial: other.SerialHex(), Action: revoke.Revocation, Reason: "keyCompromise", Comment: "laptop stolen",
		RequestedBy: "officer-a", RequestedAt: now}
	if err := s.CreateStatusChange(ctx, rv); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetStatusChange(ctx, rv.ID); err != nil || got.Action != revoke.Revocation || got.Reason != "keyCompromise" {
		t.Fatalf("revocation request: %+v %v", got, err)
	}
	if got, _ := s.GetStatusChange(ctx, ch.ID); got.Reason != "" {
		t.Fatalf("a hold has reason %q", got.Reason)
	}
}

func testCRLsAndCredentials(t *testing.T, b Backend) {
	s := b.Open(t)
	if _, err := s.LatestCRL(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("before any CRL: %v", err)
	}
	for n := int64(1); n <= 3; n++ {
		if err := s.StoreCRL(ctx, revoke.CRL{Number: n, ThisUpdate: now, NextUpdate: now.Add(time.Hour), Entries: int(n), DER: []byte{byte(n)}}, now); err != nil {
			t.Fatal(err)
		}
	}
	mustDuplicate(t, s.StoreCRL(ctx, revoke.CRL{Number: 2, ThisUpdate: now, NextUpdate: now, DER: []byte{9}}, now), "number")
	if n, seq, err := s.CRLState(ctx); err != nil || n != 3 || seq != 0 {
		t.Fatalf("CRL state: CRL %d, status event %d, %v; want CRL 3 and no status event", n, seq, err)
	}
	latest, err := s.LatestCRL(ctx)
	if err != nil || latest.Number != 3 || latest.DER[0] != 3 || !latest.NextUpdate.Equal(now.Add(time.Hour)) {
		t.Fatalf("latest CRL: %+v %v", latest, err)
	}
	// A reserved number is above every number stored or reserved before,
	// and at least the one asked for.
	for _, step := range []struct{ atLeast, want int64 }{{0, 4}, {2, 5}, {100, 100}, {100, 101}, {50, 102}} {
		if n, err := s.ReserveCRLNumber(ctx, step.atLeast, now); err != nil || n != step.want {
			t.Fatalf("reserving at least %d: %d %v; want %d", step.atLeast, n, err, step.want)
		}
	}
	if err := s.StoreCRL(ctx, revoke.CRL{Number: 200, ThisUpdate: now, NextUpdate: now.Add(time.Hour), DER: []byte{200}}, now); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ReserveCRLNumber(ctx, 1, now); err != nil || n != 201 {
		t.Fatalf("reserving after CRL 200 was stored: %d %v; want 201", n, err)
	}
	// Concurrent reservations never share a number.
	var wg sync.WaitGroup
	got := make([]int64, 8)
	errc := make([]error, len(got))
	for i := range got {
		wg.Go(func() { got[i], errc[i] = s.ReserveCRLNumber(ctx, 1000, now) })
	}
	wg.Wait()
	seen := map[int64]bool{}
	for i, n := range got {
		if errc[i] != nil || seen[n] {
			t.Fatalf("concurrent reservations: %v, errors %v", got, errc)
		}
		seen[n] = true
	}
	c1 := issued(t, s, now.AddDate(0, 3, 0))
	c2 := issued(t, s, now.AddDate(0, 6, 0))
	for _, c := range []*enrol.Certificate{c1, c2} {
		if err := s.AddServiceCredential(ctx, enrol.ServiceCredential{Serial: c.Serial, Purpose: "ocsp-responder", KeyURI: "softkey:path=/k" + c.SerialHex(), NotAfter: c.NotAfter}, now); err != nil {
			t.Fatal(err)
		}
	}
	cred, err := s.LatestServiceCredential(ctx, "ocsp-responder")
	if err != nil || cred.Serial.Cmp(c2.Serial) != 0 {
		t.Fatalf("latest credential: %+v %v", cred, err)
	}
	if _, err := s.LatestServiceCredential(ctx, "bundle-signing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing purpose: %v", err)
	}
}
