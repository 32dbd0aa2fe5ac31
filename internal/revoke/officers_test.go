package revoke_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"slices"
	"testing"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/holder"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

// officer registers an officer and records an officer certificate for
// them, as trustd would; it returns the certificate.
func (e *env) officer(t *testing.T) *enrol.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sub := testpki.Subject(pki.RoleOfficer, "sub_"+randHex(), e.now)
	if err := e.db.CreateSubject(ctx, sub, "t"); err != nil {
		t.Fatal(err)
	}
	cert := e.p.Issue(t, revoke.OfficerProfile, sub, key)
	rec := enrol.NewCertificateRecord(cert, sub.ID, revoke.OfficerProfile, "", "t", e.now)
	if err := e.db.StoreCertificate(ctx, rec); err != nil {
		t.Fatal(err)
	}
	e.keys[rec.SerialHex()] = key
	return rec
}

func (e *env) active(t *testing.T) int {
	t.Helper()
	ids, err := revoke.ActiveOfficers(ctx, e.db, e.now, nil)
	if err != nil {
		t.Fatal(err)
	}
	return len(ids)
}

func (e *env) status(t *testing.T, c *enrol.Certificate) revoke.Status {
	t.Helper()
	rec, err := e.svc.Status(ctx, c.Serial)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Status
}

// TestRevokingAnOfficerNeedsTwo: one officer cannot revoke another's
// certificate (and so, one by one, remove every other officer); it takes a
// request and a second officer's approval.
func TestRevokingAnOfficerNeedsTwo(t *testing.T) {
	e := setup(t)
	alice, bob, carol := e.officer(t), e.officer(t), e.officer(t)
	_, err := e.svc.Revoke(ctx, alice.SubjectID, carol.Serial, revoke.PrivilegeWithdrawn)
	wantCode(t, err, errs.DualControl)
	if e.status(t, carol) != revoke.Good {
		t.Fatal("a refused revocation changed the status")
	}

	_, err = e.svc.RequestChange(ctx, alice.SubjectID, carol.Serial, revoke.Revocation, "left the service")
	wantCode(t, err, errs.Invalid) // a revocation request needs its reason
	_, err = e.svc.RequestRevocation(ctx, alice.SubjectID, carol.Serial, revoke.CertificateHold, "left the service")
	wantCode(t, err, errs.ReasonNotAllowed)
	ch, err := e.svc.RequestRevocation(ctx, alice.SubjectID, carol.Serial, revoke.PrivilegeWithdrawn, "left the service")
	if err != nil || ch.Action != revoke.Revocation || ch.Reason != "privilegeWithdrawn" || ch.State != revoke.ChangePending {
		t.Fatalf("request: %+v %v", ch, err)
	}
	_, err = e.svc.RequestRevocation(ctx, bob.SubjectID, carol.Serial, revoke.PrivilegeWithdrawn, "again")
	wantCode(t, err, errs.ChangeAlreadyPending)
	_, err = e.svc.DecideChange(ctx, alice.SubjectID, ch.ID, true, "")
	wantCode(t, err, errs.DualControl)
	if e.status(t, carol) != revoke.Good {
		t.Fatal("the requester's own approval changed the status")
	}
	if _, err := e.svc.DecideChange(ctx, bob.SubjectID, ch.ID, true, "confirmed with HR"); err != nil {
		t.Fatal(err)
	}
	rec, _ := e.svc.Status(ctx, carol.Serial)
	if rec.Status != revoke.Revoked || rec.Reason != revoke.PrivilegeWithdrawn {
		t.Fatalf("after approval: %+v", rec)
	}
	evs, _ := e.db.StatusEvents(ctx, carol.Serial)
	if len(evs) != 1 || evs[0].RequestedBy != alice.SubjectID || evs[0].ApprovedBy != bob.SubjectID || evs[0].ChangeID != ch.ID {
		t.Fatalf("status events: %+v", evs)
	}
	if len(e.pub.seen) != 1 || e.pub.seen[0].Status != revoke.Revoked {
		t.Fatalf("published: %+v", e.pub.seen)
	}

	// Other certificates are still revoked by one officer, or by two if
	// the officers choose.
	c := e.issue(t)
	if _, err := e.svc.Revoke(ctx, alice.SubjectID, c.Serial, revoke.KeyCompromise); err != nil {
		t.Fatal(err)
	}
	d := e.issue(t)
	ch, err = e.svc.RequestRevocation(ctx, alice.SubjectID, d.Serial, revoke.Superseded, "replaced")
	if err == nil {
		_, err = e.svc.DecideChange(ctx, bob.SubjectID, ch.ID, true, "")
	}
	if err != nil || e.status(t, d) != revoke.Revoked {
		t.Fatalf("a practitioner's certificate revoked by two: %v", err)
	}
}

// TestOfficerQuorum: no change may leave fewer than two officers able to
// act, or nothing could ever be approved again — that change's undoing
// included. Checked when the change is requested and again when approved.
func TestOfficerQuorum(t *testing.T) {
	e := setup(t)
	alice, bob := e.officer(t), e.officer(t)
	if n := e.active(t); n != 2 {
		t.Fatalf("%d active officers", n)
	}
	_, err := e.svc.RequestRevocation(ctx, alice.SubjectID, bob.Serial, revoke.PrivilegeWithdrawn, "leaving")
	wantCode(t, err, errs.OfficerQuorum)
	_, err = e.svc.RequestChange(ctx, alice.SubjectID, bob.Serial, revoke.Hold, "on leave")
	wantCode(t, err, errs.OfficerQuorum)
	wantCode(t, e.svc.WithOfficerQuorum(ctx, bob.SubjectID, func() error { return nil }), errs.OfficerQuorum)

	// With a third officer each change alone keeps two; both approved
	// would leave one: the second approval is refused.
	carol := e.officer(t)
	if err := e.svc.WithOfficerQuorum(ctx, bob.SubjectID, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	revokeBob, err := e.svc.RequestRevocation(ctx, alice.SubjectID, bob.Serial, revoke.PrivilegeWithdrawn, "leaving")
	if err != nil {
		t.Fatal(err)
	}
	holdCarol, err := e.svc.RequestChange(ctx, alice.SubjectID, carol.Serial, revoke.Hold, "on leave")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.DecideChange(ctx, carol.SubjectID, revokeBob.ID, true, ""); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.DecideChange(ctx, bob.SubjectID, holdCarol.ID, true, "")
	wantCode(t, err, errs.OfficerQuorum)
	if e.status(t, carol) != revoke.Good || e.active(t) != 2 {
		t.Fatal("the quorum was broken")
	}

	// A second certificate of the same officer keeps them in service: it
	// is the officer who counts, not the certificate.
	if _, err := e.svc.DecideChange(ctx, alice.SubjectID, holdCarol.ID, false, "withdrawn"); err != nil {
		t.Fatal(err)
	}
	e.issueFor(t, carol)
	hold, err := e.svc.RequestChange(ctx, alice.SubjectID, carol.Serial, revoke.Hold, "key rotated")
	if err == nil {
		_, err = e.svc.DecideChange(ctx, carol.SubjectID, hold.ID, true, "")
	}
	if err != nil || e.status(t, carol) != revoke.OnHold || e.active(t) != 2 {
		t.Fatalf("holding one of two certificates of an officer: %v", err)
	}
}

// issueFor records another officer certificate for the same officer.
func (e *env) issueFor(t *testing.T, c *enrol.Certificate) *enrol.Certificate {
	t.Helper()
	sub, err := e.db.GetSubject(ctx, c.SubjectID)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert := e.p.Issue(t, revoke.OfficerProfile, sub, key)
	rec := enrol.NewCertificateRecord(cert, sub.ID, revoke.OfficerProfile, "", "t", e.now)
	if err := e.db.StoreCertificate(ctx, rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestOfficerRevokesOwnCompromisedKey: a compromised key must stop working
// at once, so its holder may revoke it alone even below the quorum; the
// audit record says how many officers are left.
func TestOfficerRevokesOwnCompromisedKey(t *testing.T) {
	e := setup(t)
	alice, bob := e.officer(t), e.officer(t)
	token := holderToken(t, e.keys[bob.SerialHex()], holder.Request{V: 1, Type: holder.Type, Serial: bob.SerialHex(), Reason: "keyCompromise", IssuedAt: e.now})
	if _, err := e.svc.RevokeByHolder(ctx, token); err != nil {
		t.Fatal(err)
	}
	if e.status(t, bob) != revoke.Revoked || e.active(t) != 1 {
		t.Fatal("bob's compromised key is still in force")
	}
	trail, _ := e.db.ListAudit(ctx, store.AuditFilter{Object: "certificate:" + bob.SerialHex()})
	if i := slices.IndexFunc(trail, func(ev audit.Event) bool { return ev.Action == "certificate.revoke" }); i < 0 || trail[i].Detail["active_officers"] != "1" {
		t.Fatalf("audit: %+v", trail)
	}
	// Alice alone can approve nothing now, and cannot remove herself.
	_, err := e.svc.RequestChange(ctx, alice.SubjectID, alice.Serial, revoke.Hold, "x")
	wantCode(t, err, errs.OfficerQuorum)
}

// The registry side: an officer whose registration is suspended counts for
// nothing, whatever their certificate.
func TestActiveOfficersFollowTheRegistry(t *testing.T) {
	e := setup(t)
	alice, _ := e.officer(t), e.officer(t)
	sub, _ := e.db.GetSubject(ctx, alice.SubjectID)
	sub.LicenceStatus, sub.Version = registry.Suspended, sub.Version+1
	if err := e.db.UpdateSubject(ctx, sub, "t"); err != nil {
		t.Fatal(err)
	}
	if n := e.active(t); n != 1 {
		t.Fatalf("%d active officers with one suspended", n)
	}
}
