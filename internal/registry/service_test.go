package registry_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/truststore"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

var ctx = context.Background()

func TestDiff(t *testing.T) {
	base := testpki.Subject(pki.RolePractitioner, "sub_1", now)
	for _, tc := range []struct {
		name                string
		mod                 func(s *registry.Subject)
		restricting, others []string
	}{
		{"nothing", func(s *registry.Subject) {}, nil, nil},
		{"suspended", func(s *registry.Subject) { s.LicenceStatus = registry.Suspended }, []string{"licence_status"}, nil},
		{"revoked", func(s *registry.Subject) { s.LicenceStatus = registry.Revoked }, []string{"licence_status"}, nil},
		{"licence ends sooner", func(s *registry.Subject) { s.LicenceValidUntil = s.LicenceValidUntil.AddDate(0, -1, 0) }, []string{"licence_valid_until"}, nil},
		{"licence starts later", func(s *registry.Subject) { s.LicenceValidFrom = s.LicenceValidFrom.AddDate(0, 1, 0) }, []string{"licence_valid_from"}, nil},
		{"licence extended", func(s *registry.Subject) { s.LicenceValidUntil = s.LicenceValidUntil.AddDate(1, 0, 0) }, nil, []string{"licence_valid_until"}},
		{"licence starts earlier", func(s *registry.Subject) { s.LicenceValidFrom = s.LicenceValidFrom.AddDate(-1, 0, 0) }, nil, []string{"licence_valid_from"}},
		{"renamed", func(s *registry.Subject) { s.Name = "Dr Famous Psychiatrist" }, nil, []string{"name"}},
		{"new specialty and council number", func(s *registry.Subject) { s.Specialty, s.CouncilNumber = "psychiatry", "MC-99999" },
			nil, []string{"council_number", "specialty"}},
		{"DNS names", func(s *registry.Subject) { s.DNSNames = []string{"bank.example"} }, nil, []string{"dns_names"}},
		{"national id", func(s *registry.Subject) { s.NationalID = "0010350829" }, nil, []string{"national_id"}},
		{"suspended and renamed", func(s *registry.Subject) { s.LicenceStatus, s.Name = registry.Suspended, "X" }, []string{"licence_status"}, []string{"name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := *base
			tc.mod(&next)
			r, o := registry.Diff(base, &next)
			if !slices.Equal(r, tc.restricting) || !slices.Equal(o, tc.others) {
				t.Fatalf("restricting %v, others %v; want %v, %v", r, o, tc.restricting, tc.others)
			}
		})
	}
	t.Run("back to active from suspended widens", func(t *testing.T) {
		sus, act := *base, *base
		sus.LicenceStatus = registry.Suspended
		if r, o := registry.Diff(&sus, &act); len(r) != 0 || !slices.Equal(o, []string{"licence_status"}) {
			t.Fatalf("restricting %v, others %v", r, o)
		}
	})
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

type harness struct {
	svc               *registry.Service
	db                *truststore.Store
	clock             *clock
	alice, bob, carol string
}

func stores(t *testing.T, f func(t *testing.T, h *harness)) {
	open := map[string]func(t *testing.T) string{
		sqlstore.SQLite:   func(t *testing.T) string { return filepath.Join(t.TempDir(), "trustd.db") },
		sqlstore.Postgres: func(t *testing.T) string { return pgtest.Schema(t) },
	}
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		t.Run(driver, func(t *testing.T) {
			db, err := truststore.Open(ctx, driver, open[driver](t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			c := &clock{t: time.Now().UTC().Truncate(time.Second)}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			svc, err := registry.NewService(registry.Config{Store: db, Quorum: quorumKept{}, Audit: audit.NewLog(db, log, c.Now), Log: log, Now: c.Now})
			if err != nil {
				t.Fatal(err)
			}
			h := &harness{svc: svc, db: db, clock: c}
			h.alice, h.bob, h.carol = h.officer(t), h.officer(t), h.officer(t)
			f(t, h)
		})
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// officer registers an officer holding an officer certificate (its record:
// nothing here parses the certificate itself).
func (h *harness) officer(t *testing.T) string {
	t.Helper()
	s := testpki.Subject(pki.RoleOfficer, "sub_"+randHex(6), h.clock.Now())
	if err := h.db.CreateSubject(ctx, s, enrol.Ceremony); err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 150))
	now := h.clock.Now()
	if err := h.db.StoreCertificate(ctx, &enrol.Certificate{Serial: serial.Add(serial, big.NewInt(1)), SubjectID: s.ID, Profile: registry.OfficerProfile,
		DER: []byte{0x30, 0x00}, Fingerprint: randHex(32), SPKIHash: randHex(32), NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		IssuedAt: now, IssuedBy: enrol.Ceremony}); err != nil {
		t.Fatal(err)
	}
	return s.ID
}

func (h *harness) dentist(t *testing.T) *registry.Subject {
	t.Helper()
	s := testpki.Subject(pki.RolePractitioner, "", h.clock.Now())
	s.Name, s.CouncilNumber, s.Profession, s.Specialty, s.NationalID = "Dr Honest Applicant", "MC-"+randHex(3), registry.Dentist, "general", testpki.NationalID()
	s, err := h.svc.Create(ctx, h.alice, s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func wantCode(t *testing.T, err error, code errs.Code) {
	t.Helper()
	if !errors.Is(err, errs.Of(code)) {
		t.Fatalf("got %v, want %s", err, code)
	}
}

func TestRegistryChangesUnderDualControl(t *testing.T) {
	stores(t, func(t *testing.T, h *harness) {
		t.Run("restrictions take effect at once", func(t *testing.T) {
			s := h.dentist(t)
			next := *s
			next.LicenceStatus, next.LicenceValidUntil = registry.Suspended, s.LicenceValidUntil.AddDate(0, -1, 0)
			got, c, err := h.svc.Update(ctx, h.alice, s.ID, &next, s.Version)
			if err != nil || c != nil || got.Version != 2 || got.LicenceStatus != registry.Suspended {
				t.Fatalf("suspension: %+v %+v %v", got, c, err)
			}
		})
		t.Run("an identity change waits for a second officer", func(t *testing.T) {
			s := h.dentist(t)
			next := *s
			next.Name, next.CouncilNumber, next.Profession, next.Specialty = "Dr Famous Psychiatrist", "MC-"+randHex(3), registry.Physician, "psychiatry"
			applied, c, err := h.svc.Update(ctx, h.alice, s.ID, &next, s.Version)
			if err != nil || applied != nil || c == nil || c.State != registry.ChangePending || c.BaseVersion != 1 ||
				!slices.Equal(c.Fields, []string{"name", "council_number", "profession", "specialty"}) {
				t.Fatalf("update: %+v %+v %v", applied, c, err)
			}
			if cur, _ := h.db.GetSubject(ctx, s.ID); cur.Name != "Dr Honest Applicant" || cur.Version != 1 {
				t.Fatalf("the registry changed before approval: %+v", cur)
			}
			again := next
			again.Name = "Dr Someone Else"
			_, _, err = h.svc.Update(ctx, h.bob, s.ID, &again, s.Version)
			wantCode(t, err, errs.ChangeAlreadyPending)
			_, _, err = h.svc.DecideChange(ctx, h.alice, c.ID, true, "")
			wantCode(t, err, errs.DualControl)
			decided, cur, err := h.svc.DecideChange(ctx, h.bob, c.ID, true, "documents checked")
			if err != nil || decided.State != registry.ChangeApproved || cur.Name != "Dr Famous Psychiatrist" || cur.Version != 2 {
				t.Fatalf("approval: %+v %+v %v", decided, cur, err)
			}
			if stored, _ := h.db.GetSubject(ctx, s.ID); stored.Name != "Dr Famous Psychiatrist" || stored.Version != 2 || stored.NationalID != s.NationalID {
				t.Fatalf("stored after approval: %+v", stored)
			}
			_, _, err = h.svc.DecideChange(ctx, h.carol, c.ID, true, "")
			wantCode(t, err, errs.SubjectChangeNotPending)
		})
		t.Run("widening the licence waits for a second officer", func(t *testing.T) {
			s := h.dentist(t)
			sus := *s
			sus.LicenceStatus = registry.Suspended
			if _, _, err := h.svc.Update(ctx, h.alice, s.ID, &sus, 1); err != nil {
				t.Fatal(err)
			}
			for name, mod := range map[string]func(n *registry.Subject){
				"back to active":   func(n *registry.Subject) { n.LicenceStatus = registry.Active },
				"licence extended": func(n *registry.Subject) { n.LicenceValidUntil = n.LicenceValidUntil.AddDate(5, 0, 0) },
			} {
				next := sus
				mod(&next)
				applied, c, err := h.svc.Update(ctx, h.alice, s.ID, &next, 2)
				if err != nil || applied != nil || c == nil {
					t.Fatalf("%s: %+v %+v %v", name, applied, c, err)
				}
				if _, _, err := h.svc.DecideChange(ctx, h.alice, c.ID, false, "withdrawn"); err != nil {
					t.Fatalf("the requester withdrawing: %v", err)
				}
			}
		})
		t.Run("a restriction mixed with an identity change is refused", func(t *testing.T) {
			s := h.dentist(t)
			next := *s
			next.LicenceStatus, next.Name = registry.Suspended, "Dr Other"
			_, _, err := h.svc.Update(ctx, h.alice, s.ID, &next, 1)
			wantCode(t, err, errs.Invalid)
		})
		t.Run("a change overtaken by a restriction cannot be approved", func(t *testing.T) {
			s := h.dentist(t)
			next := *s
			next.Name = "Dr Renamed"
			_, c, err := h.svc.Update(ctx, h.alice, s.ID, &next, 1)
			if err != nil {
				t.Fatal(err)
			}
			sus := *s
			sus.LicenceStatus = registry.Suspended
			if _, _, err := h.svc.Update(ctx, h.carol, s.ID, &sus, 1); err != nil {
				t.Fatal(err)
			}
			_, _, err = h.svc.DecideChange(ctx, h.bob, c.ID, true, "")
			wantCode(t, err, errs.SubjectChangeNotPending)
			if cur, _ := h.db.GetSubject(ctx, s.ID); cur.Name != s.Name || cur.LicenceStatus != registry.Suspended {
				t.Fatalf("after the refused approval: %+v", cur)
			}
		})
		t.Run("a change expires after 24 hours", func(t *testing.T) {
			s := h.dentist(t)
			next := *s
			next.Name = "Dr Late"
			_, c, err := h.svc.Update(ctx, h.alice, s.ID, &next, 1)
			if err != nil {
				t.Fatal(err)
			}
			start := h.clock.Now()
			defer h.clock.Set(start)
			h.clock.Set(c.RequestedAt.Add(registry.ChangeLifetime + time.Second))
			_, _, err = h.svc.DecideChange(ctx, h.bob, c.ID, true, "")
			wantCode(t, err, errs.SubjectChangeNotPending)
			pending, _ := h.svc.Changes(ctx, true, 0)
			for _, p := range pending {
				if p.ID == c.ID {
					t.Fatal("an expired change is still pending")
				}
			}
			if got, _ := h.svc.Change(ctx, c.ID); got.State != registry.ChangeExpired {
				t.Fatalf("expired change shows as %s", got.State)
			}
		})
		t.Run("a change requested by an officer who has left cannot be approved", func(t *testing.T) {
			mallory := h.officer(t)
			s := h.dentist(t)
			next := *s
			next.Name = "Dr Mallory's Friend"
			_, c, err := h.svc.Update(ctx, mallory, s.ID, &next, 1)
			if err != nil {
				t.Fatal(err)
			}
			certs, _ := h.db.ListCertificates(ctx, store.CertificateFilter{SubjectID: mallory})
			now := h.clock.Now()
			if _, err := h.db.RecordStatus(ctx, &revoke.Event{Serial: certs[0].Serial, Status: revoke.Revoked, Reason: revoke.AffiliationChanged,
				EffectiveAt: now, RecordedAt: now, RequestedBy: h.bob}, []revoke.Status{revoke.Good}); err != nil {
				t.Fatal(err)
			}
			_, _, err = h.svc.DecideChange(ctx, h.bob, c.ID, true, "")
			wantCode(t, err, errs.RequesterNotActive)
		})
		t.Run("concurrent approvals apply a change once", func(t *testing.T) {
			s := h.dentist(t)
			next := *s
			next.Name = "Dr Concurrent"
			_, c, err := h.svc.Update(ctx, h.alice, s.ID, &next, 1)
			if err != nil {
				t.Fatal(err)
			}
			officers := []string{h.bob, h.carol, h.officer(t), h.officer(t), h.officer(t), h.officer(t)}
			var ok, refused atomic.Int32
			var wg sync.WaitGroup
			for _, o := range officers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, _, err := h.svc.DecideChange(ctx, o, c.ID, true, "")
					switch {
					case err == nil:
						ok.Add(1)
					case errors.Is(err, errs.Of(errs.SubjectChangeNotPending)):
						refused.Add(1)
					default:
						t.Errorf("approval: %v", err)
					}
				}()
			}
			wg.Wait()
			cur, _ := h.db.GetSubject(ctx, s.ID)
			if ok.Load() != 1 || refused.Load() != int32(len(officers)-1) || cur.Version != 2 {
				t.Fatalf("%d approvals applied, %d refused, version %d", ok.Load(), refused.Load(), cur.Version)
			}
		})
	})
}

// quorumKept lets every officer be taken out of service: counting officers
// is package revoke's, tested there and through trustd's API.
type quorumKept struct{}

func (quorumKept) WithOfficerQuorum(_ context.Context, _ string, apply func() error) error {
	return apply()
}

// TestRefusals: the service, not its callers, holds a subject to the
// registry's rules. An entry that is not valid, a new one that claims a
// version, an update to another kind or to an invalid entry, and an update
// of a subject that does not exist are each refused with their code,
// change nothing and are audited as refused.
func TestRefusals(t *testing.T) {
	stores(t, func(t *testing.T, h *harness) {
		refusedAudits := func(action, object string) int {
			t.Helper()
			events, err := h.db.ListAudit(ctx, store.AuditFilter{Action: action, Object: object})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, e := range events {
				if e.Outcome == audit.Refused {
					n++
				}
			}
			return n
		}
		subjects := func() int {
			t.Helper()
			list, err := h.db.ListSubjects(ctx, store.SubjectFilter{Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			return len(list)
		}
		for _, c := range []struct {
			name  string
			mod   func(s *registry.Subject)
			field string
			code  errs.Code
		}{
			{"no name", func(s *registry.Subject) { s.Name = "  " }, "name", errs.Invalid},
			{"bad national id", func(s *registry.Subject) { s.NationalID = "0499370898" }, "national_id", errs.InvalidNID},
			{"unknown kind", func(s *registry.Subject) { s.Kind = "doctor" }, "kind", errs.Invalid},
			{"a version", func(s *registry.Subject) { s.Version = 3 }, "version", errs.Invalid},
		} {
			t.Run("create: "+c.name, func(t *testing.T) {
				s := testpki.Subject(pki.RolePractitioner, "", h.clock.Now())
				s.CouncilNumber, s.NationalID = "MC-"+randHex(3), testpki.NationalID()
				c.mod(s)
				before, audited := subjects(), refusedAudits("subject.create", "subject:new")
				_, err := h.svc.Create(ctx, h.alice, s)
				wantCode(t, err, c.code)
				var e *errs.Error
				if !errors.As(err, &e) || e.Field != c.field {
					t.Fatalf("refused %v, want the field %s named", err, c.field)
				}
				if n := subjects(); n != before {
					t.Fatalf("%d subjects after the refusal, %d before", n, before)
				}
				if n := refusedAudits("subject.create", "subject:new"); n != audited+1 {
					t.Fatalf("%d refusals audited, want %d", n, audited+1)
				}
			})
		}
		for _, c := range []struct {
			name  string
			mod   func(s *registry.Subject)
			field string
			code  errs.Code
		}{
			{"to another kind", func(s *registry.Subject) { s.Kind, s.NationalID = pki.RolePharmacy, "" }, "kind", errs.Invalid},
			{"no name", func(s *registry.Subject) { s.Name = "" }, "name", errs.Invalid},
			{"bad national id", func(s *registry.Subject) { s.NationalID = "0499370898" }, "national_id", errs.InvalidNID},
			{"licence ends before it starts", func(s *registry.Subject) { s.LicenceValidUntil = s.LicenceValidFrom.Add(-time.Hour) }, "licence_valid_until", errs.Invalid},
		} {
			t.Run("update: "+c.name, func(t *testing.T) {
				s := h.dentist(t)
				next := *s
				c.mod(&next)
				object := "subject:" + s.ID
				audited := refusedAudits("subject.update", object)
				_, change, err := h.svc.Update(ctx, h.alice, s.ID, &next, s.Version)
				wantCode(t, err, c.code)
				var e *errs.Error
				if !errors.As(err, &e) || e.Field != c.field || change != nil {
					t.Fatalf("refused %v (change %v), want the field %s named and no change", err, change, c.field)
				}
				if got, err := h.db.GetSubject(ctx, s.ID); err != nil || got.Version != s.Version || got.Name != s.Name || got.NationalID != s.NationalID {
					t.Fatalf("the subject changed: %+v %v", got, err)
				}
				if n := refusedAudits("subject.update", object); n != audited+1 {
					t.Fatalf("%d refusals audited, want %d", n, audited+1)
				}
			})
		}
		t.Run("update: no such subject", func(t *testing.T) {
			next := testpki.Subject(pki.RolePractitioner, "", h.clock.Now())
			_, _, err := h.svc.Update(ctx, h.alice, "sub_nobody", next, 1)
			wantCode(t, err, errs.NotFound)
			if n := refusedAudits("subject.update", "subject:sub_nobody"); n != 1 {
				t.Fatalf("%d refusals audited, want 1", n)
			}
		})
	})
}
