package exchange_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/tlogstore"
	"github.com/nuskha/nuskha/internal/testutil/rxdtest"
	"github.com/nuskha/nuskha/internal/tlog"
)

func fingerprint(c *x509.Certificate) string {
	h := sha256.Sum256(c.Raw)
	return hex.EncodeToString(h[:])
}

// portalSHA256 names the tests' insurer service (the patient portal) by a
// certificate fingerprint of its own.
var portalSHA256 = func() string { h := sha256.Sum256([]byte("portal")); return hex.EncodeToString(h[:]) }()

var portal = exchange.Caller{Role: pki.RoleService, SubjectID: "sub_portal", Thumbprint: "x", CertSHA256: portalSHA256}

// newEntries returns the audit entries appended since it was last called
// (all of them, pending or sequenced, in the order appended).
func (f *fixture) newEntries(t *testing.T) []*tlog.Entry {
	t.Helper()
	var out []*tlog.Entry
	rows, err := f.log.DB().SQL().QueryContext(ctx, "SELECT entry FROM tlog_pending ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		e, err := tlog.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	// Taken: moved into the tree, so the next call sees only new ones.
	if err := f.auditLog(t).Step(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := f.log.Pending(ctx); err != nil || n != 0 {
		t.Fatalf("%d entries still pending: %v", n, err)
	}
	return out
}

// auditLog is a tlog.Log over the fixture's store, to sequence and sign.
func (f *fixture) auditLog(t *testing.T) *tlog.Log {
	t.Helper()
	l, err := tlog.New(f.log, tlog.Config{Origin: "rxd.test/audit", Key: rxdtest.NoteKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// want is what an entry says.
type want struct {
	action  string
	actor   string // certificate fingerprint
	role    string
	org     string
	object  string
	outcome audit.Outcome
	code    errs.Code
	patient tlog.Pseudonym
}

// oneEntry checks that exactly one entry was appended since the last
// call, and what it says.
func (f *fixture) oneEntry(t *testing.T, w want) {
	t.Helper()
	es := f.newEntries(t)
	if len(es) != 1 {
		for _, e := range es {
			t.Logf("entry: %+v", e)
		}
		t.Fatalf("%d entries for %s, want 1", len(es), w.action)
	}
	e := es[0]
	got := want{e.Action, e.Actor.ID, e.Actor.Role, e.Actor.Org, e.Object, e.Outcome, errs.Code(e.Code), e.Patient}
	if e.Actor.Kind != tlog.ActorCert || got != w {
		t.Fatalf("entry\n got %+v\nwant %+v", got, w)
	}
	if !e.Time.Equal(f.now.UTC()) {
		t.Fatalf("entry time %s, want the clock's %s", e.Time, f.now)
	}
}

// settledEntries checks the entries of a dispense (or paper prescription)
// that was settled in the same request: the action's entry, w, and then
// the settlement's — the exchange's own, on the same prescription, about
// the same patient.
func (f *fixture) settledEntries(t *testing.T, w want) {
	t.Helper()
	es := f.newEntries(t)
	if len(es) != 2 {
		for _, e := range es {
			t.Logf("entry: %+v", e)
		}
		t.Fatalf("%d entries for %s and its settlement, want 2", len(es), w.action)
	}
	e := es[0]
	if got := (want{e.Action, e.Actor.ID, e.Actor.Role, e.Actor.Org, e.Object, e.Outcome, errs.Code(e.Code), e.Patient}); e.Actor.Kind != tlog.ActorCert || got != w {
		t.Fatalf("entry\n got %+v\nwant %+v", got, w)
	}
	s := es[1]
	if s.Action != exchange.ActSettle || s.Actor != (tlog.Actor{Kind: tlog.ActorSystem, ID: "rxd.exchange"}) || s.Object != w.object ||
		s.Outcome != audit.OK || s.Code != "" || s.Patient != w.patient || !s.Time.Equal(f.now.UTC()) {
		t.Fatalf("settlement's entry: %+v", s)
	}
}

// TestAuditEveryAction: each action of the exchange leaves exactly one
// entry — who (the card, or the calling software before a card is
// verified), what, on which prescription, how it ended, and the
// patient's pseudonym — and a refused one its refusal and nothing else.
func TestAuditEveryAction(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			f.newEntries(t)
			patient := rxdtest.Pseudonym(t, insuredtest.NationalID(0))
			doctor, pharmacy, vendor := fingerprint(f.doctor.chain[0]), fingerprint(f.pharmacy.chain[0]), f.vendor.CertSHA256
			council, licence := f.doctor.sub.CouncilNumber, f.pharmacy.sub.LicenceNumber

			p, jws, ans := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20), drug(catalogtest.Metformin, 60))
			rxID := "rx:" + p.ID
			f.oneEntry(t, want{"prescribe", doctor, "practitioner", council, rxID, audit.OK, "", patient})
			if _, replay, err := f.svc.Prescribe(ctx, f.vendor, jws); err != nil || !replay {
				t.Fatalf("replay: %v %v", replay, err)
			}
			f.oneEntry(t, want{"prescribe", doctor, "practitioner", council, rxID, audit.OK, "", patient})

			// Refused before the document is verified: the calling
			// software acted, on nothing known.
			_, _, err := f.svc.Prescribe(ctx, f.vendor, "x.y.z")
			if err == nil {
				t.Fatal("a non-document was accepted")
			}
			f.oneEntry(t, want{"prescribe", vendor, "vendor", "sub_v1", "", audit.Refused, errs.CodeOf(err), tlog.Pseudonym{}})
			// Refused once verified: the card, the prescription and its
			// patient, and nothing stored.
			other := f.prescription(f.doctor, drug(catalogtest.Amoxicillin, 20))
			other.Patient.NationalID = insuredtest.NationalID(99)
			_, _, err = f.svc.Prescribe(ctx, f.vendor, f.sign(t, f.doctor, other))
			wantCode(t, err, errs.NotEligible)
			f.oneEntry(t, want{"prescribe", doctor, "practitioner", council, "rx:" + other.ID, audit.Refused, errs.NotEligible, rxdtest.Pseudonym(t, insuredtest.NationalID(99))})
			if _, err := f.store.PrescriptionByID(ctx, other.ID, f.now); errs.CodeOf(err) != errs.NotFound {
				t.Fatalf("the refused prescription: %v", err)
			}

			token, ph := f.session(t, f.pharmacy, f.vendor)
			es := f.newEntries(t)
			if len(es) != 1 || es[0].Action != "session-open" || es[0].Actor.ID != pharmacy || es[0].Actor.Org != licence || es[0].Outcome != audit.OK || !es[0].Patient.IsZero() {
				t.Fatalf("session-open: %+v", es)
			}
			if _, err := f.svc.Lookup(ctx, ph, find(ans, p)); err != nil {
				t.Fatal(err)
			}
			f.oneEntry(t, want{"view", pharmacy, "pharmacy", licence, rxID, audit.OK, "", patient})
			// A code with another patient's id: not found, about nobody.
			miss := find(ans, p)
			miss.NationalID = insuredtest.NationalID(1)
			_, err = f.svc.Lookup(ctx, ph, miss)
			wantCode(t, err, errs.NotFound)
			f.oneEntry(t, want{"view", pharmacy, "pharmacy", licence, "", audit.Refused, errs.NotFound, tlog.Pseudonym{}})

			claim, err := f.svc.Claim(ctx, ph, find(ans, p))
			if err != nil {
				t.Fatal(err)
			}
			f.oneEntry(t, want{"claim", pharmacy, "pharmacy", licence, rxID, audit.OK, "", patient})
			_, rival := f.session(t, f.rival, f.vendor2)
			f.newEntries(t)
			_, err = f.svc.Claim(ctx, rival, find(ans, p))
			wantCode(t, err, errs.PrescriptionClaimed)
			f.oneEntry(t, want{"claim", fingerprint(f.rival.chain[0]), "pharmacy", f.rival.sub.LicenceNumber, rxID, audit.Refused, errs.PrescriptionClaimed, patient})

			d := f.sign(t, f.pharmacy, f.dispenseDoc(f.pharmacy, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 20}))
			if _, _, err := f.svc.Dispense(ctx, ph, claim.ClaimID, claim.Secret, d); err != nil {
				t.Fatal(err)
			}
			f.settledEntries(t, want{"dispense", pharmacy, "pharmacy", licence, rxID, audit.OK, "", patient})
			// A replay answers the settled dispense: no second settlement.
			if _, _, err := f.svc.Dispense(ctx, ph, claim.ClaimID, claim.Secret, d); err != nil {
				t.Fatal(err)
			}
			f.oneEntry(t, want{"dispense", pharmacy, "pharmacy", licence, rxID, audit.OK, "", patient})
			_, _, err = f.svc.Dispense(ctx, ph, claim.ClaimID, "wrong", d)
			wantCode(t, err, errs.ClaimSecretWrong)
			f.oneEntry(t, want{"dispense", pharmacy, "pharmacy", licence, "claim:" + claim.ClaimID, audit.Refused, errs.ClaimSecretWrong, tlog.Pseudonym{}})
			if _, err := f.svc.Close(ctx, ph, claim.ClaimID, claim.Secret); err != nil {
				t.Fatal(err)
			}
			f.oneEntry(t, want{"close", pharmacy, "pharmacy", licence, rxID, audit.OK, "", patient})

			// Another prescription: claimed and released, then cancelled.
			p2, jws2, ans2 := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20))
			c2, err := f.svc.Claim(ctx, ph, find(ans2, p2))
			if err != nil {
				t.Fatal(err)
			}
			f.newEntries(t)
			if err := f.svc.Release(ctx, ph, c2.ClaimID, c2.Secret); err != nil {
				t.Fatal(err)
			}
			f.oneEntry(t, want{"release", pharmacy, "pharmacy", licence, "rx:" + p2.ID, audit.OK, "", patient})
			cancel := f.sign(t, f.doctor, &rx.Cancellation{V: rx.Version, Type: rx.KindCancellation, ID: rx.NewID(), CancelledAt: f.now,
				Prescription: rx.Reference{ID: p2.ID, JWSSHA256: rx.SHA256(jws2)}, Prescriber: p2.Prescriber, Reason: "تغییر درمان"})
			if _, _, err := f.svc.Cancel(ctx, f.vendor, p2.ID, cancel); err != nil {
				t.Fatal(err)
			}
			f.oneEntry(t, want{"cancel", doctor, "practitioner", council, "rx:" + p2.ID, audit.OK, "", patient})

			paper := f.paper(f.pharmacy, []rx.Item{drug(catalogtest.Omeprazole, 28)}, rx.DispensedItem{Code: catalogtest.Omeprazole, Quantity: 28})
			if _, _, err := f.svc.Paper(ctx, f.vendor, f.sign(t, f.pharmacy, paper)); err != nil {
				t.Fatal(err)
			}
			f.settledEntries(t, want{"paper", pharmacy, "pharmacy", licence, "rx:" + paper.ID, audit.OK, "", patient})

			if _, err := f.svc.History(ctx, portal, exchange.HistoryQuery{NationalID: insuredtest.NationalID(0)}); err != nil {
				t.Fatal(err)
			}
			f.oneEntry(t, want{"history", portalSHA256, "service", "sub_portal", "", audit.OK, "", patient})
			_, err = f.svc.History(ctx, f.vendor, exchange.HistoryQuery{NationalID: insuredtest.NationalID(0)})
			wantCode(t, err, errs.RoleNotAllowed)
			f.oneEntry(t, want{"history", vendor, "vendor", "sub_v1", "", audit.Refused, errs.RoleNotAllowed, tlog.Pseudonym{}})

			if err := f.svc.EndSession(ctx, f.vendor, token); err != nil {
				t.Fatal(err)
			}
			es = f.newEntries(t)
			if len(es) != 1 || es[0].Action != "session-close" || es[0].Actor.ID != pharmacy || es[0].Outcome != audit.OK {
				t.Fatalf("session-close: %+v", es)
			}
		})
	}
}

// failingLog is an audit log that cannot be written.
type failingLog struct{ *tlogstore.Store }

var errLogDown = errors.New("the audit log's database is down")

func (failingLog) Append(context.Context, ...*tlog.Entry) error { return errLogDown }
func (failingLog) AppendTx(context.Context, *sql.Tx, ...*tlog.Entry) error {
	return errLogDown
}

// AppendStatements too (the embedded store's would write through): on
// PostgreSQL every prescription's insert, a batch of one too, sends its
// entry's statements with its own.
func (failingLog) AppendStatements(...*tlog.Entry) ([]sqlstore.Statement, error) {
	return nil, errLogDown
}

// TestAuditFailsClosed: when the audit log cannot be written, a write is
// not made (its entry would commit with it) and a read is not answered;
// either way the caller is told the exchange is unavailable.
func TestAuditFailsClosed(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			p, _, ans := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20))
			_, ph := f.session(t, f.pharmacy, f.vendor)
			f.newEntries(t)

			down := failingLog{f.log}
			store, err := rxstore.NewExchange(ctx, f.log.DB(), down)
			if err != nil {
				t.Fatal(err)
			}
			cfg := f.cfg
			cfg.Store, cfg.AuditLog = store, down
			svc, err := exchange.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			q := f.prescription(f.doctor, drug(catalogtest.Amoxicillin, 20))
			_, _, err = svc.Prescribe(ctx, f.vendor, f.sign(t, f.doctor, q))
			wantCode(t, err, errs.Unavailable)
			if _, err := f.store.PrescriptionByID(ctx, q.ID, f.now); errs.CodeOf(err) != errs.NotFound {
				t.Fatalf("prescribed without its entry: %v", err)
			}
			_, err = svc.Lookup(ctx, ph, find(ans, p))
			wantCode(t, err, errs.Unavailable)
			_, err = svc.Claim(ctx, ph, find(ans, p))
			wantCode(t, err, errs.Unavailable)
			if got, err := f.store.PrescriptionByID(ctx, p.ID, f.now); err != nil || got.Claim != nil {
				t.Fatalf("claimed without its entry: %+v %v", got, err)
			}
			// A refusal that cannot be recorded is not answered as one.
			_, err = svc.History(ctx, f.vendor, exchange.HistoryQuery{NationalID: insuredtest.NationalID(0)})
			wantCode(t, err, errs.Unavailable)
			if es := f.newEntries(t); len(es) != 0 {
				t.Fatalf("%d entries written through a log that is down", len(es))
			}
		})
	}
}

// TestAccessLog: a patient's access log lists who acted on the patient's
// prescriptions — a pharmacy's view, claim and dispense among them — and
// nothing of another patient's; the insurer's services alone may read it.
func TestAccessLog(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			p, jws, ans := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20))
			other := f.prescription(f.doctor, drug(catalogtest.Amoxicillin, 20))
			other.Patient = rx.Patient{NationalID: insuredtest.NationalID(2), Name: "بیمار دیگر", BirthDate: "1980-01-01", Sex: "male"}
			oans, _, err := f.svc.Prescribe(ctx, f.vendor, f.sign(t, f.doctor, other))
			if err != nil {
				t.Fatal(err)
			}
			_, ph := f.session(t, f.pharmacy, f.vendor)
			for _, x := range []struct {
				p   *rx.Prescription
				ans *exchange.PrescriptionAccepted
			}{{p, ans}, {other, oans}} {
				if _, err := f.svc.Lookup(ctx, ph, find(x.ans, x.p)); err != nil {
					t.Fatal(err)
				}
			}
			c, err := f.svc.Claim(ctx, ph, find(ans, p))
			if err != nil {
				t.Fatal(err)
			}
			f.advance(t, time.Minute)
			d := f.sign(t, f.pharmacy, f.dispenseDoc(f.pharmacy, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 20}))
			if _, _, err := f.svc.Dispense(ctx, ph, c.ClaimID, c.Secret, d); err != nil {
				t.Fatal(err)
			}
			f.newEntries(t) // sequenced: the access log reads the tree

			_, err = f.svc.AccessLog(ctx, f.vendor, exchange.AccessLogQuery{NationalID: insuredtest.NationalID(0)})
			wantCode(t, err, errs.RoleNotAllowed)
			var got []exchange.Access
			q := exchange.AccessLogQuery{NationalID: insuredtest.NationalID(0), Limit: 2}
			for {
				page, err := f.svc.AccessLog(ctx, portal, q)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, page.Accesses...)
				if page.NextCursor == "" {
					break
				}
				q.Cursor = page.NextCursor
			}
			// Newest first: the dispense's settlement (by the exchange
			// itself), dispense, claim, view, prescribe.
			wantActs := []struct{ action, role, org string }{
				{"settle", "", ""},
				{"dispense", "pharmacy", f.pharmacy.sub.LicenceNumber},
				{"claim", "pharmacy", f.pharmacy.sub.LicenceNumber},
				{"view", "pharmacy", f.pharmacy.sub.LicenceNumber},
				{"prescribe", "practitioner", f.doctor.sub.CouncilNumber},
			}
			if len(got) != len(wantActs) {
				t.Fatalf("access log %+v, want %d accesses", got, len(wantActs))
			}
			for i, w := range wantActs {
				a := got[i]
				if a.Action != w.action || a.Role != w.role || a.Organisation != w.org || a.Outcome != "ok" || a.Prescription != p.ID {
					t.Fatalf("access %d: %+v, want %+v", i, a, w)
				}
			}
			// The other patient's: the prescription and the view only.
			page, err := f.svc.AccessLog(ctx, portal, exchange.AccessLogQuery{NationalID: insuredtest.NationalID(2)})
			if err != nil || len(page.Accesses) != 2 || page.Accesses[0].Prescription != other.ID || page.Accesses[1].Prescription != other.ID {
				t.Fatalf("the other patient's access log: %+v %v", page, err)
			}
			_, err = f.svc.AccessLog(ctx, portal, exchange.AccessLogQuery{NationalID: insuredtest.NationalID(0), Cursor: "!"})
			wantCode(t, err, errs.Invalid)
		})
	}
}
