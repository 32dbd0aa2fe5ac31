package trustapi_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/store"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

func (e *env) post(c *http.Client, path string, body any) response {
	e.t.Helper()
	b, _ := json.Marshal(body)
	return e.do(c, "POST", e.admin.URL+"/admin/v1"+path, "application/json", b)
}

func (e *env) put(c *http.Client, path string, body any) response {
	e.t.Helper()
	b, _ := json.Marshal(body)
	return e.do(c, "PUT", e.admin.URL+"/admin/v1"+path, "application/json", b)
}

func (e *env) get(c *http.Client, path string) response {
	e.t.Helper()
	return e.do(c, "GET", e.admin.URL+"/admin/v1"+path, "", nil)
}

func must(t *testing.T, r response, status int) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("got %d %s, want %d", r.status, r.body, status)
	}
	var m map[string]any
	_ = json.Unmarshal(r.body, &m)
	return m
}

func csrOf(t *testing.T) string {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: testpki.CSR(t, key).Raw}))
}

func leafOf(t *testing.T, m map[string]any) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(m["certificate_pem"].(string)))
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The red-team's reproduction, over the API: officer A registers a dentist
// and enters the request, officer B reviews it, A alone rewrites the
// subject as a psychiatrist, B approves what they reviewed.
func TestOneOfficerCannotChangeWhatIsCertified(t *testing.T) {
	e := newEnv(t)
	carol := e.client(e.credential(pki.RoleOfficer, "officer", nil))
	honest := map[string]any{"kind": "practitioner", "name": "Dr Honest Applicant", "national_id": testpki.NationalID(),
		"council_number": "MC-22222", "profession": "dentist", "specialty": "general",
		"licence_valid_from": "2025-01-01", "licence_valid_until": "2030-01-01"}
	sub := must(t, e.post(e.alice, "/subjects", honest), 201)
	id := sub["id"].(string)
	en := must(t, e.post(e.alice, "/enrolments", map[string]string{"subject_id": id, "profile": "practitioner-signing", "csr": csrOf(t)}), 201)
	enID := en["id"].(string)
	reviewed := must(t, e.get(e.bob, "/enrolments/"+enID), 200)
	digest, _ := reviewed["review_digest"].(string)

	famous := map[string]any{}
	for k, v := range honest {
		famous[k] = v
	}
	famous["name"], famous["council_number"], famous["profession"], famous["specialty"] = "Dr Famous Psychiatrist", "MC-99999", "physician", "psychiatry"
	famous["version"] = 1
	edit := e.put(e.alice, "/subjects/"+id, famous)
	cert := must(t, e.post(e.bob, "/enrolments/"+enID+"/approve", map[string]string{"reviewed": digest}), 201)
	if cn := leafOf(t, cert).Subject.CommonName; cn != "Dr Honest Applicant" {
		t.Fatalf("officer B reviewed Dr Honest Applicant and approved a certificate naming %q", cn)
	}
	if len(digest) != 64 {
		t.Fatalf("the enrolment shows no digest of what it certifies: %v", reviewed)
	}
	pending := must(t, edit, 202)
	changeID, _ := pending["id"].(string)
	if pending["state"] != "pending" || changeID == "" {
		t.Fatalf("an identity change by one officer was not held for a second: %v", pending)
	}
	if s := must(t, e.get(e.bob, "/subjects/"+id), 200); s["name"] != "Dr Honest Applicant" {
		t.Fatalf("the registry changed before a second officer approved: %v", s)
	}

	t.Run("the requester cannot approve their own change", func(t *testing.T) {
		r := e.post(e.alice, "/subject-changes/"+changeID+"/approve", map[string]string{})
		if r.status != 403 || r.problem.Code != "dual-control-violation" {
			t.Fatalf("got %d %s", r.status, r.body)
		}
	})
	t.Run("a second officer's approval applies it, and makes older requests stale", func(t *testing.T) {
		en2 := must(t, e.post(e.alice, "/enrolments", map[string]string{"subject_id": id, "profile": "practitioner-signing", "csr": csrOf(t)}), 201)
		applied := must(t, e.post(carol, "/subject-changes/"+changeID+"/approve", map[string]string{}), 200)
		if applied["name"] != "Dr Famous Psychiatrist" || applied["version"] != float64(2) {
			t.Fatalf("after approval: %v", applied)
		}
		r := e.post(e.bob, "/enrolments/"+en2["id"].(string)+"/approve", map[string]string{})
		if r.status != 409 || r.problem.Code != "enrolment-stale" {
			t.Fatalf("approving a request entered against the old subject: %d %s", r.status, r.body)
		}
		list := must(t, e.get(e.bob, "/enrolments?status=pending"), 200)
		for _, x := range list["enrolments"].([]any) {
			if x.(map[string]any)["id"] == en2["id"] {
				t.Fatal("a stale request is still in the pending queue")
			}
		}
		if got := must(t, e.get(e.bob, "/enrolments/"+en2["id"].(string)), 200); got["status"] != "stale" {
			t.Fatalf("stale enrolment shows as %v", got["status"])
		}
	})
}

// A TLS server certificate for hosts nobody reviewed: the same attack on
// dns_names.
func TestOneOfficerCannotChangeDNSNames(t *testing.T) {
	e := newEnv(t)
	vendor := map[string]any{"kind": "vendor", "name": "HIS Connector", "organization": "Example Health Software",
		"dns_names": []string{"api.vendor.test"}, "licence_valid_from": "2025-01-01", "licence_valid_until": "2030-01-01"}
	sub := must(t, e.post(e.alice, "/subjects", vendor), 201)
	id := sub["id"].(string)
	en := must(t, e.post(e.alice, "/enrolments", map[string]string{"subject_id": id, "profile": "service-tls-server", "csr": csrOf(t)}), 201)
	reviewed := must(t, e.get(e.bob, "/enrolments/"+en["id"].(string)), 200)
	vendor["dns_names"], vendor["version"] = []string{"bank.example"}, 1
	edit := e.put(e.alice, "/subjects/"+id, vendor)
	cert := must(t, e.post(e.bob, "/enrolments/"+en["id"].(string)+"/approve", map[string]any{"reviewed": reviewed["review_digest"]}), 201)
	if names := leafOf(t, cert).DNSNames; !slices.Equal(names, []string{"api.vendor.test"}) {
		t.Fatalf("officer B reviewed api.vendor.test and approved a certificate for %v", names)
	}
	must(t, edit, 202)
}

func TestApprovalNamingAnotherDigestIsRefused(t *testing.T) {
	e := newEnv(t)
	sub := must(t, e.post(e.alice, "/subjects", json.RawMessage(subjectBody(testpki.NationalID(), "DC-77"))), 201)
	en := must(t, e.post(e.alice, "/enrolments", map[string]string{"subject_id": sub["id"].(string), "profile": "practitioner-signing", "csr": csrOf(t)}), 201)
	other := "0000000000000000000000000000000000000000000000000000000000000000"
	r := e.post(e.bob, "/enrolments/"+en["id"].(string)+"/approve", map[string]string{"reviewed": other})
	if r.status != 409 || r.problem.Code != "review-mismatch" {
		t.Fatalf("got %d %s", r.status, r.body)
	}
	_, _, certs := e.counts()
	if got := must(t, e.get(e.bob, "/enrolments/"+en["id"].(string)), 200); got["status"] != "pending" {
		t.Fatalf("after a refused approval the enrolment is %v (%d certificates)", got["status"], certs)
	}
}

// Restrictions need no second officer: they can only stop certification.
func TestRestrictingALicenceTakesEffectAtOnce(t *testing.T) {
	e := newEnv(t)
	body := map[string]any{}
	_ = json.Unmarshal(subjectBody(testpki.NationalID(), "DC-78"), &body)
	sub := must(t, e.post(e.alice, "/subjects", body), 201)
	body["licence_status"], body["version"] = "suspended", 1
	got := must(t, e.put(e.alice, "/subjects/"+sub["id"].(string), body), 200)
	if got["licence_status"] != string(registry.Suspended) || got["version"] != float64(2) {
		t.Fatalf("suspension: %v", got)
	}
	body["licence_status"], body["version"] = "active", 2
	must(t, e.put(e.alice, "/subjects/"+sub["id"].(string), body), 202)
}

// The red-team's finding, over the API: parallel approvals of one
// enrolment made the issuing key sign several certificates, all but one
// recorded nowhere.
func TestParallelApprovalsOverTheAPISignOnce(t *testing.T) {
	e := newEnv(t)
	const n = 16
	// Officers with their TLS connections open, so that the approvals
	// reach trustd together.
	officers := make([]*http.Client, n)
	for i := range officers {
		officers[i] = e.client(e.credential(pki.RoleOfficer, "officer", nil))
		must(t, e.get(officers[i], "/whoami"), 200)
	}
	sub := must(t, e.post(e.alice, "/subjects", json.RawMessage(subjectBody(testpki.NationalID(), "DC-79"))), 201)
	en := must(t, e.post(e.alice, "/enrolments", map[string]string{"subject_id": sub["id"].(string), "profile": "practitioner-signing", "csr": csrOf(t)}), 201)
	enID := en["id"].(string)
	statuses := make([]response, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			statuses[i] = e.do(officers[i], "POST", e.admin.URL+"/admin/v1/enrolments/"+enID+"/approve", "application/json", []byte(`{}`))
		}(i)
	}
	close(start)
	wg.Wait()
	created, refused := 0, 0
	for _, r := range statuses {
		switch {
		case r.status == 201:
			created++
		case r.status == 409 && r.problem.Code == "enrolment-not-pending":
			refused++
		default:
			t.Errorf("approval: %d %s", r.status, r.body)
		}
	}
	evs, _ := e.db.ListAudit(ctx, store.AuditFilter{Limit: 1000})
	intents := 0
	for _, ev := range evs {
		if ev.Action == "certificate.issue" && ev.Outcome == audit.Intent && ev.Detail["enrolment"] == enID {
			intents++
		}
	}
	certs, _ := e.db.ListCertificates(ctx, store.CertificateFilter{SubjectID: sub["id"].(string)})
	if created != 1 || refused != n-1 || intents != 1 || len(certs) != 1 {
		t.Fatalf("%d approvals issued, %d refused, %d signatures intended, %d certificates recorded; want 1, %d, 1, 1", created, refused, intents, len(certs), n-1)
	}
}
