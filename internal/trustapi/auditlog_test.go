package trustapi_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
	"github.com/nuskha/nuskha/internal/tlog"
)

// auditLog sequences trustd's tamper-evident log, as serve does, and
// reads the entries sequenced since the last mark.
type auditLog struct {
	t    *testing.T
	e    *env
	log  *tlog.Log
	from uint64
}

func newAuditLog(t *testing.T, e *env) *auditLog {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pass")
	if err := os.WriteFile(pw, []byte("audit test pass"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := hsm.NewManager(nil)
	t.Cleanup(func() { m.Close() })
	uri := hsm.SoftKeyURI(filepath.Join(dir, "sealing.key"), pw)
	if err := m.CreateSecret(ctx, uri, hsm.AES256GCM); err != nil {
		t.Fatal(err)
	}
	aead, err := m.OpenAEAD(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	sealed, _, err := tlog.GenerateNoteKey(aead, "test/trustd-audit/k1")
	if err != nil {
		t.Fatal(err)
	}
	key, err := tlog.OpenNoteKey(aead, sealed)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tlog.New(e.db.AuditLog(), tlog.Config{Origin: "test/trustd-audit", Key: key})
	if err != nil {
		t.Fatal(err)
	}
	a := &auditLog{t: t, e: e, log: l}
	a.mark()
	return a
}

// mark forgets the entries made so far.
func (a *auditLog) mark() { a.from += uint64(len(a.since())) }

// since returns the entries made since the mark, each as "kind:id action
// object outcome".
func (a *auditLog) since() []string {
	a.t.Helper()
	if err := a.log.Step(context.Background()); err != nil {
		a.t.Fatal(err)
	}
	raw, err := a.e.db.AuditLog().ReadEntries(context.Background(), a.from, 1<<20)
	if err != nil {
		a.t.Fatal(err)
	}
	var out []string
	for _, b := range raw {
		en, err := tlog.Decode(b)
		if err != nil {
			a.t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s:%s %s %s %s", en.Actor.Kind, en.Actor.ID, en.Action, en.Object, en.Outcome))
	}
	return out
}

// TestEveryActionHasItsEntry: each thing officers, holders and trustd
// itself do through the API leaves its entry in the tamper-evident log,
// naming the actor (an officer by subject id, a holder by its
// certificate's fingerprint, trustd as system:trustd), the action, the
// object and the outcome.
func TestEveryActionHasItsEntry(t *testing.T) {
	e := newEnv(t)
	a := newAuditLog(t, e)
	alice := "officer:" + must(t, e.get(e.alice, "/whoami"), 200)["officer_id"].(string)
	bob := "officer:" + must(t, e.get(e.bob, "/whoami"), 200)["officer_id"].(string)
	newSubject := func(t *testing.T) (string, map[string]any) {
		body := map[string]any{}
		_ = json.Unmarshal(subjectBody(testpki.NationalID(), "DC-"+randID()), &body)
		return must(t, e.post(e.alice, "/subjects", body), 201)["id"].(string), body
	}
	newEnrolment := func(t *testing.T) string {
		id, _ := newSubject(t)
		return must(t, e.post(e.alice, "/enrolments", map[string]string{"subject_id": id, "profile": "practitioner-signing", "csr": csrOf(t)}), 201)["id"].(string)
	}
	newCertificate := func(t *testing.T) string {
		en := newEnrolment(t)
		return pki.SerialHex(leafOf(t, must(t, e.post(e.bob, "/enrolments/"+en+"/approve", map[string]string{}), 201)).SerialNumber)
	}
	request := func(t *testing.T, serial, action string) string {
		return must(t, e.post(e.alice, "/status-changes", map[string]string{"serial": serial, "action": action, "comment": "audit test"}), 201)["id"].(string)
	}
	for _, tc := range []struct {
		name string
		// act sets up, marks, acts and returns the entries it must have
		// made.
		act func(t *testing.T) []string
	}{
		{"subject added", func(t *testing.T) []string {
			id, _ := newSubject(t)
			return []string{alice + " subject.create subject:" + id + " ok"}
		}},
		{"licence restricted", func(t *testing.T) []string {
			id, body := newSubject(t)
			a.mark()
			body["licence_status"], body["version"] = "suspended", 1
			must(t, e.put(e.alice, "/subjects/"+id, body), 200)
			return []string{alice + " subject.update subject:" + id + " ok"}
		}},
		{"registry change requested", func(t *testing.T) []string {
			id, body := newSubject(t)
			a.mark()
			body["name"], body["version"] = "Dr Renamed", 1
			must(t, e.put(e.alice, "/subjects/"+id, body), 202)
			return []string{alice + " subject.change.request subject:" + id + " ok"}
		}},
		{"registry change approved", func(t *testing.T) []string {
			id, body := newSubject(t)
			body["name"], body["version"] = "Dr Renamed", 1
			ch := must(t, e.put(e.alice, "/subjects/"+id, body), 202)["id"].(string)
			a.mark()
			must(t, e.post(e.bob, "/subject-changes/"+ch+"/approve", map[string]string{}), 200)
			return []string{bob + " subject.change.approve subject:" + id + " ok"}
		}},
		{"registry change rejected", func(t *testing.T) []string {
			id, body := newSubject(t)
			body["name"], body["version"] = "Dr Renamed", 1
			ch := must(t, e.put(e.alice, "/subjects/"+id, body), 202)["id"].(string)
			a.mark()
			must(t, e.post(e.bob, "/subject-changes/"+ch+"/reject", map[string]string{"comment": "no"}), 200)
			return []string{bob + " subject.change.reject subject:" + id + " ok"}
		}},
		{"enrolment requested", func(t *testing.T) []string {
			id, _ := newSubject(t)
			a.mark()
			must(t, e.post(e.alice, "/enrolments", map[string]string{"subject_id": id, "profile": "practitioner-signing", "csr": csrOf(t)}), 201)
			return []string{alice + " enrolment.request subject:" + id + " ok"}
		}},
		{"enrolment request refused", func(t *testing.T) []string {
			id, _ := newSubject(t)
			a.mark()
			if r := e.post(e.alice, "/enrolments", map[string]string{"subject_id": id, "profile": "pharmacy-signing", "csr": csrOf(t)}); r.status != 422 {
				t.Fatalf("got %d %s", r.status, r.body)
			}
			return []string{alice + " enrolment.request subject:" + id + " refused"}
		}},
		{"enrolment rejected", func(t *testing.T) []string {
			en := newEnrolment(t)
			a.mark()
			must(t, e.post(e.bob, "/enrolments/"+en+"/reject", map[string]string{"reason": "not them"}), 200)
			return []string{bob + " enrolment.reject enrolment:" + en + " ok"}
		}},
		{"enrolment approved and certificate issued", func(t *testing.T) []string {
			en := newEnrolment(t)
			a.mark()
			serial := pki.SerialHex(leafOf(t, must(t, e.post(e.bob, "/enrolments/"+en+"/approve", map[string]string{}), 201)).SerialNumber)
			return []string{bob + " enrolment.approve enrolment:" + en + " ok", bob + " certificate.issue certificate:" + serial + " intent",
				bob + " certificate.issue certificate:" + serial + " ok"}
		}},
		{"certificate revoked", func(t *testing.T) []string {
			serial := newCertificate(t)
			a.mark()
			must(t, e.post(e.alice, "/certificates/"+serial+"/revoke", map[string]string{"reason": "keyCompromise"}), 200)
			return []string{alice + " certificate.revoke certificate:" + serial + " ok"}
		}},
		{"hold requested and approved", func(t *testing.T) []string {
			serial := newCertificate(t)
			a.mark()
			ch := request(t, serial, "hold")
			must(t, e.post(e.bob, "/status-changes/"+ch+"/approve", map[string]string{}), 200)
			return []string{alice + " certificate.hold.request certificate:" + serial + " ok", bob + " certificate.hold.approve certificate:" + serial + " ok"}
		}},
		{"release requested and approved", func(t *testing.T) []string {
			serial := newCertificate(t)
			must(t, e.post(e.bob, "/status-changes/"+request(t, serial, "hold")+"/approve", map[string]string{}), 200)
			a.mark()
			ch := request(t, serial, "release")
			must(t, e.post(e.bob, "/status-changes/"+ch+"/approve", map[string]string{}), 200)
			return []string{alice + " certificate.release.request certificate:" + serial + " ok", bob + " certificate.release.approve certificate:" + serial + " ok"}
		}},
		{"hold rejected", func(t *testing.T) []string {
			serial := newCertificate(t)
			ch := request(t, serial, "hold")
			a.mark()
			must(t, e.post(e.bob, "/status-changes/"+ch+"/reject", map[string]string{"comment": "no"}), 200)
			return []string{bob + " certificate.hold.reject certificate:" + serial + " ok"}
		}},
		{"revoked by its holder", func(t *testing.T) []string {
			card := e.credential(pki.RolePractitioner, "practitioner-signing", nil)
			a.mark()
			if r := e.do(e.client(card), "POST", e.public.URL+"/v1/revocations", "application/jose", holderToken(t, card, "keyCompromise")); r.status != 200 {
				t.Fatalf("holder revocation: %d %s", r.status, r.body)
			}
			fp := sha256.Sum256(card.Leaf.Raw)
			return []string{"cert:" + hex.EncodeToString(fp[:]) + " certificate.revoke certificate:" + pki.SerialHex(card.Leaf.SerialNumber) + " ok"}
		}},
		{"approval of an id no enrolment could have", func(t *testing.T) []string {
			// The id comes from the URL: a refusal is recorded, whatever
			// it holds, under its digest.
			if r := e.post(e.bob, "/enrolments/not%20an%20id/approve", map[string]string{}); r.status != 404 {
				t.Fatalf("got %d %s", r.status, r.body)
			}
			h := sha256.Sum256([]byte("enrolment:not an id"))
			return []string{bob + " enrolment.approve unreadable:" + hex.EncodeToString(h[:16]) + " refused"}
		}},
		{"CRL signed", func(t *testing.T) []string {
			a.mark()
			must(t, e.post(e.alice, "/crl", map[string]string{}), 201)
			crl, err := e.db.LatestCRL(ctx)
			if err != nil {
				t.Fatal(err)
			}
			object := fmt.Sprintf("crl:%d", crl.Number)
			return []string{"system:trustd crl.generate " + object + " intent", "system:trustd crl.generate " + object + " ok"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a.mark()
			want := tc.act(t)
			got := a.since()
			for _, w := range want {
				if !slices.Contains(got, w) {
					t.Errorf("no entry %q among %q", w, got)
				}
			}
		})
	}
}

// TestActionsAndTheirEntriesCommitTogether: with the log's table
// unwritable, so that the entry's append fails inside the action's
// transaction (as a crash between the two would leave it), each action is
// refused and changes nothing; with the table back, it goes through.
func TestActionsAndTheirEntriesCommitTogether(t *testing.T) {
	e := newEnv(t)
	body := map[string]any{}
	_ = json.Unmarshal(subjectBody(testpki.NationalID(), "DC-"+randID()), &body)
	sub := must(t, e.post(e.alice, "/subjects", body), 201)["id"].(string)
	en := must(t, e.post(e.alice, "/enrolments", map[string]string{"subject_id": sub, "profile": "practitioner-signing", "csr": csrOf(t)}), 201)["id"].(string)
	other := must(t, e.post(e.alice, "/enrolments", map[string]string{"subject_id": sub, "profile": "practitioner-signing", "csr": csrOf(t)}), 201)["id"].(string)
	body2 := map[string]any{}
	_ = json.Unmarshal(subjectBody(testpki.NationalID(), "DC-"+randID()), &body2)
	sub2 := must(t, e.post(e.alice, "/subjects", body2), 201)["id"].(string)
	card := e.credential(pki.RolePractitioner, "practitioner-signing", nil)
	serial := pki.SerialHex(card.Leaf.SerialNumber)
	unwritable := func(t *testing.T, away bool) {
		q := "ALTER TABLE tlog_pending RENAME TO tlog_pending_away"
		if !away {
			q = "ALTER TABLE tlog_pending_away RENAME TO tlog_pending"
		}
		if _, err := e.db.SQL().ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	state := func() string {
		s, _ := e.db.GetSubject(ctx, sub)
		a, _ := e.db.GetEnrolment(ctx, en)
		b, _ := e.db.GetEnrolment(ctx, other)
		ens2, _ := e.db.ListEnrolments(ctx, store.EnrolmentFilter{SubjectID: sub2})
		st, _ := e.db.CertificateStatus(ctx, card.Leaf.SerialNumber)
		changes, _ := e.db.ListStatusChanges(ctx, store.StatusChangeFilter{})
		evs, _ := e.db.ListAudit(ctx, store.AuditFilter{Limit: 1000})
		subs, ens, certs := e.counts()
		return fmt.Sprintf("subject v%d %s; enrolments %s %s +%d; certificate %s; %d changes; %d events; %d/%d/%d", s.Version, s.LicenceStatus,
			a.Status, b.Status, len(ens2), st.Status, len(changes), len(evs), subs, ens, certs)
	}
	for _, tc := range []struct {
		name   string
		status int // when the log can be written
		act    func() response
	}{
		{"add a subject", 201, func() response {
			b := map[string]any{}
			_ = json.Unmarshal(subjectBody(testpki.NationalID(), "DC-"+randID()), &b)
			return e.post(e.alice, "/subjects", b)
		}},
		{"reject an enrolment", 200, func() response {
			return e.post(e.bob, "/enrolments/"+other+"/reject", map[string]string{"reason": "no"})
		}},
		{"request an enrolment", 201, func() response {
			return e.post(e.alice, "/enrolments", map[string]string{"subject_id": sub2, "profile": "practitioner-signing", "csr": csrOf(t)})
		}},
		{"restrict a licence", 200, func() response {
			b := map[string]any{}
			for k, v := range body {
				b[k] = v
			}
			b["licence_status"], b["version"] = "suspended", 1
			return e.put(e.alice, "/subjects/"+sub, b)
		}},
		{"request a hold", 201, func() response {
			return e.post(e.alice, "/status-changes", map[string]string{"serial": serial, "action": "hold", "comment": "lost"})
		}},
		{"revoke a certificate", 200, func() response {
			return e.post(e.alice, "/certificates/"+serial+"/revoke", map[string]string{"reason": "keyCompromise"})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := state()
			unwritable(t, true)
			r := tc.act()
			unwritable(t, false)
			if r.status < 500 {
				t.Fatalf("with the audit log unwritable: %d %s", r.status, r.body)
			}
			if after := state(); after != before {
				t.Fatalf("the action outlived its failed entry:\nbefore %s\nafter  %s", before, after)
			}
			pending, _ := e.db.AuditLog().Pending(ctx)
			if r := tc.act(); r.status != tc.status {
				t.Fatalf("with the log back: %d %s", r.status, r.body)
			}
			if n, _ := e.db.AuditLog().Pending(ctx); n <= pending {
				t.Fatalf("%d entries pending after the action, %d before", n, pending)
			}
		})
	}
	if st, _ := e.db.CertificateStatus(ctx, card.Leaf.SerialNumber); st.Status != revoke.Revoked {
		t.Fatalf("certificate %s", st.Status)
	}
}
