package revoke_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/holder"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/truststore"
	"github.com/nuskha/nuskha/internal/testutil/logbuf"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

var ctx = context.Background()

type recorder struct {
	mu   sync.Mutex
	seen []revoke.Record
	fail error
}

func (r *recorder) StatusChanged(_ context.Context, rec revoke.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, rec)
	return r.fail
}

type env struct {
	svc   *revoke.Service
	tally *audit.Tally
	db    *truststore.Store
	pub   *recorder
	p     *testpki.PKI
	now   time.Time
	keys  map[string]crypto.Signer
}

func setup(t *testing.T) *env {
	db, err := truststore.Open(ctx, sqlstore.SQLite, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{db: db, pub: &recorder{}, p: testpki.New(t, nil, time.Now), now: time.Now().UTC().Truncate(time.Second), keys: map[string]crypto.Signer{}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rec := audit.NewLog(db, log, e.clock)
	e.tally = audit.NewTally(rec, log, e.clock, time.Minute)
	e.svc, err = revoke.New(revoke.Config{Store: db, Audit: rec, Refusals: e.tally, Publisher: e.pub, Log: log, Now: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) clock() time.Time { return e.now }

// issue records a certificate as trustd would, and keeps its key.
func (e *env) issue(t *testing.T) *enrol.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sub := testpki.Subject(pki.RolePractitioner, "sub_"+randHex(), e.now)
	sub.CouncilNumber, sub.NationalID = "MC-"+randHex(), testpki.NationalID()
	if err := e.db.CreateSubject(ctx, sub, "t"); err != nil {
		t.Fatal(err)
	}
	cert := e.p.Issue(t, "practitioner-signing", sub, key)
	rec := enrol.NewCertificateRecord(cert, sub.ID, "practitioner-signing", "", "t", e.now)
	if err := e.db.StoreCertificate(ctx, rec); err != nil {
		t.Fatal(err)
	}
	e.keys[rec.SerialHex()] = key
	return rec
}

func randHex() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func wantCode(t *testing.T, err error, code errs.Code) {
	t.Helper()
	if !errors.Is(err, errs.Of(code)) {
		t.Fatalf("got %v, want %s", err, code)
	}
}

func holderToken(t *testing.T, key crypto.Signer, req holder.Request) string {
	t.Helper()
	out, err := holder.Sign(key, req)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestOfficerRevocation(t *testing.T) {
	e := setup(t)
	c := e.issue(t)
	rec, err := e.svc.Revoke(ctx, "officer-a", c.Serial, revoke.KeyCompromise)
	if err != nil || rec.Status != revoke.Revoked || rec.Reason != revoke.KeyCompromise || !rec.EffectiveAt.Equal(e.now) {
		t.Fatalf("revoke: %+v %v", rec, err)
	}
	if len(e.pub.seen) != 1 || e.pub.seen[0].Status != revoke.Revoked {
		t.Fatalf("published: %+v", e.pub.seen)
	}
	_, err = e.svc.Revoke(ctx, "officer-b", c.Serial, revoke.Superseded)
	wantCode(t, err, errs.AlreadyRevoked)
	_, err = e.svc.Revoke(ctx, "officer-a", big.NewInt(1), revoke.KeyCompromise)
	wantCode(t, err, errs.NotFound)
	_, err = e.svc.Revoke(ctx, "officer-a", e.issue(t).Serial, revoke.CertificateHold)
	wantCode(t, err, errs.ReasonNotAllowed)
	evs, _ := e.db.StatusEvents(ctx, c.Serial)
	if len(evs) != 1 {
		t.Fatalf("%d status events, want exactly one revocation record", len(evs))
	}
}

func TestPublishingFailureKeepsTheRevocation(t *testing.T) {
	e := setup(t)
	c := e.issue(t)
	e.pub.fail = errors.New("hsm unavailable")
	if _, err := e.svc.Revoke(ctx, "officer-a", c.Serial, revoke.KeyCompromise); err != nil {
		t.Fatalf("a recorded revocation was reported as failed: %v", err)
	}
	st, _ := e.db.CertificateStatus(ctx, c.Serial)
	if st.Status != revoke.Revoked {
		t.Fatal("revocation lost when publishing failed")
	}
	trail, _ := e.db.ListAudit(ctx, store.AuditFilter{Object: "certificate:" + c.SerialHex()})
	if last := trail[len(trail)-1]; last.Action != "certificate.status.publish" || last.Outcome != audit.Failed {
		t.Fatalf("publishing failure not audited: %+v", last)
	}
}

// auditDownFor fails the audit writes of one action.
type auditDownFor struct {
	inner  audit.Recorder
	action string
}

func (a auditDownFor) Record(ctx context.Context, e audit.Event) error {
	if e.Action == a.action {
		return errors.New("audit disk full")
	}
	return a.inner.Record(ctx, e)
}

// TestPublishingFailureNotAuditedIsReported: when publishing fails and the
// audit write saying so fails too, the revocation stands, the caller is
// told the audit log is unavailable, and the log keeps what the audit log
// lacks.
func TestPublishingFailureNotAuditedIsReported(t *testing.T) {
	e := setup(t)
	c := e.issue(t)
	var logs logbuf.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	svc, err := revoke.New(revoke.Config{Store: e.db, Audit: auditDownFor{inner: audit.NewLog(e.db, log, e.clock), action: "certificate.status.publish"},
		Refusals: e.tally, Publisher: e.pub, Log: log, Now: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	e.pub.fail = errors.New("hsm unavailable")
	_, err = svc.Revoke(ctx, "officer-a", c.Serial, revoke.KeyCompromise)
	wantCode(t, err, errs.Unavailable)
	if st, _ := e.db.CertificateStatus(ctx, c.Serial); st.Status != revoke.Revoked {
		t.Fatal("revocation lost")
	}
	var found bool
	for line := range strings.Lines(logs.String()) {
		var r struct{ Level, Msg, Serial, Status, Err string }
		if json.Unmarshal([]byte(line), &r) == nil && r.Level == "ERROR" && strings.Contains(r.Msg, "audit log did not record") {
			found = r.Serial == c.SerialHex() && r.Status == string(revoke.Revoked) && strings.Contains(r.Err, "audit disk full")
		}
	}
	if !found {
		t.Fatalf("the lost audit event is not in the log:\n%s", logs.String())
	}
}

func TestHolderRevocation(t *testing.T) {
	e := setup(t)
	c := e.issue(t)
	other := e.issue(t)
	req := func(mod func(*holder.Request)) holder.Request {
		r := holder.Request{V: 1, Type: holder.Type, Serial: c.SerialHex(), Reason: "keyCompromise", IssuedAt: e.now}
		if mod != nil {
			mod(&r)
		}
		return r
	}
	key := e.keys[c.SerialHex()]
	for _, tc := range []struct {
		name  string
		token string
		code  errs.Code
	}{
		{"signed by another certificate's key", holderToken(t, e.keys[other.SerialHex()], req(nil)), errs.BadRevocationRequest},
		{"stale", holderToken(t, key, req(func(r *holder.Request) { r.IssuedAt = e.now.Add(-time.Hour) })), errs.BadRevocationRequest},
		{"wrong typ", holderToken(t, key, req(func(r *holder.Request) { r.Type = "login" })), errs.BadRevocationRequest},
		{"wrong version", holderToken(t, key, req(func(r *holder.Request) { r.V = 2 })), errs.BadRevocationRequest},
		{"hold is not for holders", holderToken(t, key, req(func(r *holder.Request) { r.Reason = "certificateHold" })), errs.ReasonNotAllowed},
		{"unknown serial", holderToken(t, key, req(func(r *holder.Request) { r.Serial = "0badc0de" })), errs.NotFound},
		{"not a JWS", "hello", errs.BadRevocationRequest},
		{"line break in the signature", func() string {
			tok := holderToken(t, key, req(nil))
			i := strings.LastIndexByte(tok, '.') + 10
			return tok[:i] + "\n" + tok[i:]
		}(), errs.BadRevocationRequest},
		{"alg none", "eyJhbGciOiJub25lIn0.eyJ2IjoxfQ.", errs.BadRevocationRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.RevokeByHolder(ctx, tc.token)
			wantCode(t, err, tc.code)
			if st, _ := e.db.CertificateStatus(ctx, c.Serial); st.Status != revoke.Good {
				t.Fatal("a refused request changed the status")
			}
		})
	}
	rec, err := e.svc.RevokeByHolder(ctx, holderToken(t, key, req(nil)))
	if err != nil || rec.Status != revoke.Revoked {
		t.Fatalf("holder revocation: %+v %v", rec, err)
	}
	evs, _ := e.db.StatusEvents(ctx, c.Serial)
	if evs[0].RequestedBy != revoke.Holder {
		t.Fatalf("recorded as requested by %q", evs[0].RequestedBy)
	}
}

// TestHolderRefusalsInTheAuditLog: a refused holder request whose
// signature did not verify under a certificate of ours proved nothing and
// is only counted (one summary per minute and code); one signed by the
// certificate's own key is recorded under the certificate, as before.
func TestHolderRefusalsInTheAuditLog(t *testing.T) {
	e := setup(t)
	c := e.issue(t)
	key := e.keys[c.SerialHex()]
	req := holder.Request{V: 1, Type: holder.Type, Serial: c.SerialHex(), Reason: "keyCompromise", IssuedAt: e.now}
	forged := holderToken(t, e.keys[e.issue(t).SerialHex()], req)
	unknown := req
	unknown.Serial = "0badc0de"
	for _, tok := range []string{"junk", forged, holderToken(t, key, unknown), "eyJhbGciOiJub25lIn0.eyJ2IjoxfQ."} {
		for i := 0; i < 50; i++ {
			if _, err := e.svc.RevokeByHolder(ctx, tok); err == nil {
				t.Fatal("accepted")
			}
		}
	}
	stale := req
	stale.IssuedAt = e.now.Add(-time.Hour)
	if _, err := e.svc.RevokeByHolder(ctx, holderToken(t, key, stale)); err == nil {
		t.Fatal("a stale request was accepted")
	}
	if _, err := e.svc.RevokeByHolder(ctx, holderToken(t, key, req)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RevokeByHolder(ctx, holderToken(t, key, req)); !errors.Is(err, errs.Of(errs.AlreadyRevoked)) {
		t.Fatalf("revoking twice: %v", err)
	}
	all, _ := e.db.ListAudit(ctx, store.AuditFilter{Limit: 1000})
	var mine []string
	for _, ev := range all {
		if ev.Object != "certificate:"+c.SerialHex() {
			t.Fatalf("an unproved refusal was recorded on its own: %+v", ev)
		}
		mine = append(mine, string(ev.Outcome)+" "+string(ev.Code))
	}
	if want := []string{"refused bad-revocation-request", "ok ", "refused already-revoked"}; !slices.Equal(mine, want) {
		t.Fatalf("the certificate's audit trail: %q, want %q", mine, want)
	}
	if err := e.tally.Flush(ctx, true); err != nil {
		t.Fatal(err)
	}
	summaries, _ := e.db.ListAudit(ctx, store.AuditFilter{Object: audit.TallyObject})
	counts := map[errs.Code]string{}
	for _, ev := range summaries {
		counts[ev.Code] = ev.Detail["count"]
	}
	if want := map[errs.Code]string{errs.BadRevocationRequest: "150", errs.NotFound: "50"}; !maps.Equal(counts, want) {
		t.Fatalf("summaries: %v, want %v", counts, want)
	}
}

func TestHoldAndReleaseUnderDualControl(t *testing.T) {
	e := setup(t)
	c := e.issue(t)
	_, err := e.svc.RequestChange(ctx, "officer-a", c.Serial, revoke.Release, "nothing to release")
	wantCode(t, err, errs.NotOnHold)
	_, err = e.svc.RequestChange(ctx, "officer-a", c.Serial, revoke.Hold, " ")
	wantCode(t, err, errs.Invalid)
	hold, err := e.svc.RequestChange(ctx, "officer-a", c.Serial, revoke.Hold, "card lost")
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := e.db.CertificateStatus(ctx, c.Serial); st.Status != revoke.Good {
		t.Fatal("a hold took effect before its approval")
	}
	_, err = e.svc.DecideChange(ctx, "officer-a", hold.ID, true, "")
	wantCode(t, err, errs.DualControl)
	if _, err := e.svc.DecideChange(ctx, "officer-b", hold.ID, true, "confirmed by phone"); err != nil {
		t.Fatal(err)
	}
	st, _ := e.db.CertificateStatus(ctx, c.Serial)
	if st.Status != revoke.OnHold || st.Reason != revoke.CertificateHold {
		t.Fatalf("after approved hold: %+v", st)
	}
	_, err = e.svc.DecideChange(ctx, "officer-c", hold.ID, true, "")
	wantCode(t, err, errs.ChangeNotPending)
	rel, err := e.svc.RequestChange(ctx, "officer-b", c.Serial, revoke.Release, "card found")
	if err != nil {
		t.Fatal(err)
	}
	// A rejected release leaves the hold.
	if _, err := e.svc.DecideChange(ctx, "officer-b", rel.ID, false, "withdrawn"); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.db.CertificateStatus(ctx, c.Serial); st.Status != revoke.OnHold {
		t.Fatal("a rejected release lifted the hold")
	}
	rel2, _ := e.svc.RequestChange(ctx, "officer-b", c.Serial, revoke.Release, "card found, really")
	if _, err := e.svc.DecideChange(ctx, "officer-c", rel2.ID, true, ""); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.db.CertificateStatus(ctx, c.Serial); st.Status != revoke.Good {
		t.Fatal("approved release did not restore the certificate")
	}
	// A held certificate may still be revoked for good; then nothing more.
	h2, _ := e.svc.RequestChange(ctx, "officer-a", c.Serial, revoke.Hold, "again")
	e.svc.DecideChange(ctx, "officer-b", h2.ID, true, "")
	if _, err := e.svc.Revoke(ctx, "officer-a", c.Serial, revoke.KeyCompromise); err != nil {
		t.Fatalf("revoking a held certificate: %v", err)
	}
	_, err = e.svc.RequestChange(ctx, "officer-a", c.Serial, revoke.Release, "too late")
	wantCode(t, err, errs.AlreadyRevoked)
}

// An old request cannot undo a newer change made by two officers.
func TestStaleStatusChangeCannotBeApproved(t *testing.T) {
	e := setup(t)
	c := e.issue(t)
	hold, _ := e.svc.RequestChange(ctx, "officer-a", c.Serial, revoke.Hold, "card lost")
	if _, err := e.svc.DecideChange(ctx, "officer-b", hold.ID, true, ""); err != nil {
		t.Fatal(err)
	}
	oldRelease, err := e.svc.RequestChange(ctx, "officer-a", c.Serial, revoke.Release, "found")
	if err != nil {
		t.Fatal(err)
	}
	// A second request is refused while the first is pending, but two
	// made at the same instant can both be recorded: here is the second.
	rel := &revoke.Change{ID: "chg_" + randHex(), Serial: oldRelease.Serial, Action: revoke.Release, Comment: "found, second request",
		RequestedBy: "officer-c", RequestedAt: e.now, BaseSeq: oldRelease.BaseSeq}
	if err := e.db.CreateStatusChange(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.DecideChange(ctx, "officer-b", rel.ID, true, ""); err != nil {
		t.Fatal(err)
	}
	// The old request was made against a status that no longer holds: it
	// does not stand in the way of a new one.
	hold2, err := e.svc.RequestChange(ctx, "officer-c", c.Serial, revoke.Hold, "suspected compromise")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.DecideChange(ctx, "officer-b", hold2.ID, true, ""); err != nil {
		t.Fatal(err)
	}
	// officer-b alone tries to lift the new hold with officer-a's old request.
	_, err = e.svc.DecideChange(ctx, "officer-b", oldRelease.ID, true, "")
	wantCode(t, err, errs.ChangeNotPending)
	if st, _ := e.db.CertificateStatus(ctx, c.Serial); st.Status != revoke.OnHold {
		t.Fatalf("the stale request lifted the hold: %s", st.Status)
	}
	// Requests expire.
	fresh, _ := e.svc.RequestChange(ctx, "officer-a", c.Serial, revoke.Release, "found")
	e.now = e.now.Add(revoke.ChangeLifetime + time.Minute)
	_, err = e.svc.DecideChange(ctx, "officer-b", fresh.ID, true, "")
	wantCode(t, err, errs.ChangeNotPending)
}

// Two officers who both hear of a lost card enter one hold, not two: the
// second is told which request to decide.
func TestOnePendingChangePerCertificate(t *testing.T) {
	e := setup(t)
	c := e.issue(t)
	hold, err := e.svc.RequestChange(ctx, "officer-a", c.Serial, revoke.Hold, "card lost")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.RequestChange(ctx, "officer-b", c.Serial, revoke.Hold, "card lost, says the clinic")
	wantCode(t, err, errs.ChangeAlreadyPending)
	if e := new(errs.Error); !errors.As(err, &e) || !strings.Contains(e.Detail, hold.ID) {
		t.Fatalf("the refusal does not name the pending request: %v", err)
	}
	all, _ := e.db.ListStatusChanges(ctx, store.StatusChangeFilter{Serial: hold.Serial})
	if len(all) != 1 {
		t.Fatalf("%d requests recorded, want 1", len(all))
	}
	// Once decided, or expired, a new request may be made.
	if _, err := e.svc.DecideChange(ctx, "officer-b", hold.ID, false, "the card was found"); err != nil {
		t.Fatal(err)
	}
	again, err := e.svc.RequestChange(ctx, "officer-b", c.Serial, revoke.Hold, "lost again")
	if err != nil {
		t.Fatalf("after a rejection: %v", err)
	}
	e.now = e.now.Add(revoke.ChangeLifetime + time.Second)
	if _, err := e.svc.RequestChange(ctx, "officer-a", c.Serial, revoke.Hold, "still lost"); err != nil {
		t.Fatalf("after %s expired: %v", again.ID, err)
	}
}

// Expired requests leave the pending list, and show as expired in the full
// one; an undecided request has no decided_at.
func TestChangeStates(t *testing.T) {
	e := setup(t)
	start := e.now
	c1, c2, c3 := e.issue(t), e.issue(t), e.issue(t)
	stale, _ := e.svc.RequestChange(ctx, "officer-a", c1.Serial, revoke.Hold, "lost yesterday")
	e.now = start.Add(revoke.ChangeLifetime - time.Hour)
	rejected, _ := e.svc.RequestChange(ctx, "officer-a", c2.Serial, revoke.Hold, "lost")
	if _, err := e.svc.DecideChange(ctx, "officer-b", rejected.ID, false, "found"); err != nil {
		t.Fatal(err)
	}
	fresh, _ := e.svc.RequestChange(ctx, "officer-a", c3.Serial, revoke.Hold, "lost today")
	e.now = start.Add(revoke.ChangeLifetime + time.Second)

	pending, err := e.svc.Changes(ctx, true, 0)
	if err != nil || len(pending) != 1 || pending[0].ID != fresh.ID || pending[0].State != revoke.ChangePending ||
		!pending[0].ExpiresAt.Equal(fresh.RequestedAt.Add(revoke.ChangeLifetime)) {
		t.Fatalf("pending: %+v %v", pending, err)
	}
	all, err := e.svc.Changes(ctx, false, 0)
	states := map[string]revoke.ChangeState{}
	for _, c := range all {
		states[c.ID] = c.State
	}
	want := map[string]revoke.ChangeState{stale.ID: revoke.ChangeExpired, rejected.ID: revoke.ChangeRejected, fresh.ID: revoke.ChangePending}
	if err != nil || !maps.Equal(states, want) {
		t.Fatalf("states %v %v, want %v", states, err, want)
	}
	one, err := e.svc.Change(ctx, stale.ID)
	if err != nil || one.State != revoke.ChangeExpired {
		t.Fatalf("one change: %+v %v", one, err)
	}
	b, _ := json.Marshal(one)
	if bytes.Contains(b, []byte("decided_at")) || bytes.Contains(b, []byte("0001-01-01")) || !bytes.Contains(b, []byte(`"state":"expired"`)) {
		t.Fatalf("undecided change as JSON: %s", b)
	}
	b, _ = json.Marshal(all[slices.IndexFunc(all, func(c *revoke.Change) bool { return c.ID == rejected.ID })])
	if !bytes.Contains(b, []byte(`"decided_at":"`)) || bytes.Contains(b, []byte("expires_at")) {
		t.Fatalf("decided change as JSON: %s", b)
	}
}

// TestRevocationAndItsEntryCommitTogether: a revocation and its entry in
// the audit log are one transaction. With the log's table unwritable (the
// append fails inside the transaction, as a crash between the two would
// leave it), the revocation is refused and nothing changed: the
// certificate is good, nothing was published, no audit event stands. With
// the table back, the same revocation goes through with its entry.
func TestRevocationAndItsEntryCommitTogether(t *testing.T) {
	e := setup(t)
	c := e.issue(t)
	before, err := e.db.ListAudit(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.SQL().ExecContext(ctx, "ALTER TABLE tlog_pending RENAME TO tlog_pending_away"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Revoke(ctx, "officer-a", c.Serial, revoke.KeyCompromise); err == nil {
		t.Fatal("revoked with the audit log unwritable")
	}
	st, err := e.db.CertificateStatus(ctx, c.Serial)
	if err != nil || st.Status != revoke.Good || len(e.pub.seen) != 0 {
		t.Fatalf("status %s (%v), published %d time(s): the revocation outlived its failed entry", st.Status, err, len(e.pub.seen))
	}
	if after, _ := e.db.ListAudit(ctx, store.AuditFilter{}); len(after) != len(before) {
		t.Fatalf("%d audit events, were %d", len(after), len(before))
	}
	if _, err := e.db.SQL().ExecContext(ctx, "ALTER TABLE tlog_pending_away RENAME TO tlog_pending"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Revoke(ctx, "officer-a", c.Serial, revoke.KeyCompromise); err != nil {
		t.Fatal(err)
	}
	if n, err := e.db.AuditLog().Pending(ctx); err != nil || n != 1 {
		t.Fatalf("%d entries pending (%v), want the revocation's", n, err)
	}
}

// damagedCopy records, behind the store's back, a copy of certificate c
// under a serial that is not hex: a damaged row.
func damagedCopy(t *testing.T, db *truststore.Store, c *enrol.Certificate, serial string) {
	t.Helper()
	if _, err := db.SQL().ExecContext(ctx, db.Rebind(`INSERT INTO certificates (serial, subject_id, profile, der, fingerprint_sha256, spki_sha256, not_before, not_after, issued_at, issued_by)
		SELECT $1, subject_id, profile, der, $2, spki_sha256, not_before, not_after, issued_at, issued_by FROM certificates WHERE serial = $3`),
		serial, "damaged-"+randHex(), c.SerialHex()); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedSerialIsAnError: deciding a status change whose stored
// serial is not a serial fails with an internal error, not a panic, and
// changes nothing.
func TestDamagedSerialIsAnError(t *testing.T) {
	e := setup(t)
	c := e.issue(t)
	damagedCopy(t, e.db, c, "not-a-serial")
	ch := &revoke.Change{ID: "chg_" + randHex(), Serial: "not-a-serial", Action: revoke.Hold, Comment: "damaged", RequestedBy: "officer-a", RequestedAt: e.now}
	if err := e.db.CreateStatusChange(ctx, ch); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.DecideChange(ctx, "officer-b", ch.ID, true, "")
	wantCode(t, err, errs.Internal)
	if got, _ := e.db.GetStatusChange(ctx, ch.ID); got.Decided {
		t.Fatal("a change naming a damaged serial was decided")
	}
}
