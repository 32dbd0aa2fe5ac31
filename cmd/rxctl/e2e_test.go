package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/pki/lint"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
	"github.com/nuskha/nuskha/internal/testutil/softhsm"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
	"github.com/nuskha/nuskha/internal/testutil/trustdtest"
	"github.com/nuskha/nuskha/internal/trustd"
)

// deployment is a trustd initialised by the ceremony with its issuing key
// on a SoftHSM2 token, served over real TLS, and an rxctl to drive it.
type deployment struct {
	t       *testing.T
	dir     string
	keys    *hsm.Manager
	init    *trustd.InitResult
	svc     *trustd.Service
	admin   string
	public  string
	rp      string // relying-party HTTP base: CRL and OCSP, as in certificates
	officer map[string]trustd.OfficerCredential
}

func deploy(t *testing.T, store trustd.StoreConfig) *deployment {
	t.Helper()
	caToken := softhsm.NewToken(t, "nuskha-ca")
	td := trustdtest.StartWith(t, trustdtest.Options{Store: store,
		IntermediateKey: hsm.PKCS11URI(caToken.Module, caToken.Label, "issuing-ca", nil, caToken.PINFile)})
	d := &deployment{t: t, dir: td.Dir, keys: td.Keys, init: td.Init, svc: td.Service, admin: td.AdminURL, public: td.PublicURL,
		rp: td.RelyingPartyURL, officer: map[string]trustd.OfficerCredential{}}
	// rxctl finds trustd and its root the way an operator's shell would.
	t.Setenv("NUSKHA_CA_FILE", td.RootFile)
	t.Setenv("NUSKHA_ADMIN_URL", td.AdminURL)
	t.Setenv("NUSKHA_PUBLIC_URL", td.PublicURL)
	for _, o := range td.Officers {
		d.officer[o.Name] = o
	}
	return d
}

// rxctl runs a command; as names the officer whose credentials to use ("" for none).
func (d *deployment) rxctl(as string, args ...string) (stdout, stderr string, code int) {
	d.t.Helper()
	full := append([]string{}, args[:2]...)
	if as != "" {
		o := d.officer[as]
		full = append(full, "-cert", o.CertFile, "-key", o.KeyURI)
	}
	full = append(full, args[2:]...)
	var out, errb bytes.Buffer
	code = run(context.Background(), full, &out, &errb, d.keys)
	return out.String(), errb.String(), code
}

func (d *deployment) ok(as string, args ...string) string {
	d.t.Helper()
	out, errOut, code := d.rxctl(as, args...)
	if code != 0 {
		d.t.Fatalf("rxctl %s: exit %d\n%s", strings.Join(args, " "), code, errOut)
	}
	return out
}

func (d *deployment) refused(as, code string, args ...string) {
	d.t.Helper()
	_, errOut, exit := d.rxctl(as, args...)
	if exit != exitRefused || !strings.Contains(errOut, code) {
		d.t.Fatalf("rxctl %s: exit %d, stderr %q; want a refusal with %s", strings.Join(args, " "), exit, errOut, code)
	}
}

func field(t *testing.T, js, name string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, js)
	}
	v, ok := m[name].(string)
	if !ok {
		t.Fatalf("no %q in %s", name, js)
	}
	return v
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func practitionerJSON(nid, council, until string) string {
	return fmt.Sprintf(`{"kind": "practitioner", "name": "دكتر سارا احمدي", "national_id": %q, "council_number": %q,
		"profession": "physician", "specialty": "cardiology",
		"licence_valid_from": "1403-01-01", "licence_valid_until": %q}`, nid, council, until)
}

// TestEnrolmentEndToEnd is the trust core's acceptance test: a key on a
// SoftHSM2 token, a CSR from it, officer A requests, officer A's own
// approval is refused, officer B approves, the certificate is fetched and
// written back to the token; openssl verify -x509_strict and zlint accept
// it. An expired licence is refused.
func TestEnrolmentEndToEnd(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { enrolmentEndToEnd(t, trustd.StoreConfig{Driver: "sqlite", Path: "trustd.db"}) })
	t.Run("postgres", func(t *testing.T) {
		dsn := pgtest.Schema(t)
		dsnFile := writeFile(t, t.TempDir(), "dsn", dsn)
		enrolmentEndToEnd(t, trustd.StoreConfig{Driver: "postgres", DSNFile: dsnFile})
	})
}

func enrolmentEndToEnd(t *testing.T, store trustd.StoreConfig) {
	// SoftHSM2 (unlike smart-card middleware) lists only the tokens that
	// existed when the module was initialised, so the card comes first.
	card := softhsm.NewToken(t, "dr-ahmadi-card")
	d := deploy(t, store)
	work := t.TempDir()
	tokenFlags := []string{"-module", card.Module, "-token", card.Label, "-key-label", "rx-signing", "-key-id", "01", "-pin-file", card.PINFile}

	// The practitioner's IT support makes the key on the card and a CSR.
	keyInfo := d.ok("", append([]string{"token", "keygen"}, tokenFlags...)...)
	if field(t, keyInfo, "key_type") != "EC-P256" {
		t.Fatalf("keygen: %s", keyInfo)
	}
	csrFile := filepath.Join(work, "req.csr")
	d.ok("", append([]string{"token", "csr", "-out", csrFile}, tokenFlags...)...)

	// Officer Alice registers the practitioner and enters the request.
	nid := testpki.NationalID()
	// Licence dates as the council's letter gives them: Solar Hijri, here
	// with Persian digits too; shown back in both calendars.
	subj := d.ok("alice", "subject", "add", "-file", writeFile(t, work, "p.json", practitionerJSON(nid, "MC-90210", "۱۴۰۸/۱۲/۳۰")))
	subjectID := field(t, subj, "id")
	for k, want := range map[string]string{"licence_valid_from": "2024-03-20", "licence_valid_from_hijri": "1403-01-01",
		"licence_valid_until": "2030-03-20", "licence_valid_until_hijri": "1408-12-30"} {
		if got := field(t, subj, k); got != want {
			t.Fatalf("%s = %q, want %q", k, got, want)
		}
	}
	if name := field(t, subj, "name"); name != "دکتر سارا احمدی" {
		t.Fatalf("name not normalised to Persian letters: %q", name)
	}
	req := d.ok("alice", "enrol", "request", "-subject", subjectID, "-profile", "practitioner-signing", "-csr", csrFile)
	enrolmentID := field(t, req, "id")
	if field(t, req, "status") != "pending" {
		t.Fatalf("request: %s", req)
	}

	// Alice cannot approve her own request.
	d.refused("alice", "dual-control-violation", "enrol", "approve", enrolmentID)
	// Nobody can fetch a certificate that does not exist yet.
	d.refused("", "certificate-not-issued", "cert", "fetch", "-enrolment", enrolmentID)

	// Alice alone cannot change whom the certificate names: her edit of
	// the registry waits for a second officer, and Bob's approval names
	// the review he was shown.
	famous := strings.Replace(practitionerJSON(nid, "MC-99999", "۱۴۰۸/۱۲/۳۰"), "دكتر سارا احمدي", "Dr Famous Psychiatrist", 1)
	famous = strings.Replace(famous, `"specialty": "cardiology",`, `"specialty": "psychiatry", "version": 1,`, 1)
	out, errOut, code := d.rxctl("alice", "subject", "update", subjectID, "-q", "-file", writeFile(t, work, "famous.json", famous))
	changeID := strings.TrimSpace(out)
	if code != exitOK || !strings.HasPrefix(changeID, "sch_") || !strings.Contains(errOut, "rxctl subject approve-change "+changeID) {
		t.Fatalf("subject update: exit %d, %q, %q", code, out, errOut)
	}
	d.refused("bob", "review-mismatch", "enrol", "approve", enrolmentID, "-reviewed", strings.Repeat("0", 64))

	// Bob approves: the intermediate key on the HSM signs.
	approved, shownReview, code := d.rxctl("bob", "enrol", "approve", enrolmentID)
	if code != exitOK || !strings.Contains(shownReview, "دکتر سارا احمدی") || !strings.Contains(shownReview, field(t, req, "review_digest")) {
		t.Fatalf("enrol approve: exit %d, review shown %q", code, shownReview)
	}
	serial := field(t, approved, "serial")
	d.refused("bob", "enrolment-not-pending", "enrol", "approve", enrolmentID)
	d.refused("alice", "dual-control-violation", "subject", "approve-change", changeID)
	if applied := d.ok("bob", "subject", "approve-change", changeID); field(t, applied, "name") != "Dr Famous Psychiatrist" {
		t.Fatalf("after the second officer's approval: %s", applied)
	}
	if changes := d.ok("bob", "subject", "changes", "-pending=false"); !strings.Contains(changes, `"state": "approved"`) {
		t.Fatalf("subject changes: %s", changes)
	}

	// IT support fetches the certificate and writes it back to the card.
	chainFile := filepath.Join(work, "chain.pem")
	d.ok("", "cert", "fetch", "-enrolment", enrolmentID, "-out", chainFile)
	d.ok("", append([]string{"token", "import-cert", "-cert", chainFile}, tokenFlags...)...)
	shown := d.ok("", append([]string{"token", "show"}, tokenFlags...)...)
	if !strings.Contains(shown, "certificate: serial "+strings.TrimLeft(serial, "0")) {
		t.Fatalf("token show does not list the certificate %s:\n%s", serial, shown)
	}
	objs := card.PKCS11Tool(t, "--list-objects", "--type", "cert")
	if !strings.Contains(string(objs), "ID:         01") {
		t.Fatalf("pkcs11-tool does not see the certificate paired with key 01:\n%s", objs)
	}

	// The certificate is strictly valid and lint-clean.
	chain, err := pemutil.ReadCertificateBundle(chainFile)
	if err != nil || len(chain) != 2 {
		t.Fatalf("chain: %d certificates, %v", len(chain), err)
	}
	roots, _ := pemutil.ReadCertificateBundle(d.init.RootCert)
	// A subtest, so that a missing openssl (without NUSKHA_REQUIRE_OPENSSL)
	// skips this check alone: the zlint, licence and audit assertions
	// below still run.
	t.Run("openssl verify -x509_strict", func(t *testing.T) {
		if out, err := testpki.OpenSSLVerify(t, roots[0], chain[1], chain[0]); err != nil {
			t.Fatalf("openssl verify -x509_strict: %v\n%s", err, out)
		}
	})
	l, _ := lint.New(nil)
	if f, err := l.Certificate(chain[0].Raw); err != nil || len(f) != 0 {
		t.Fatalf("zlint: %v %v", f, err)
	}
	k, _ := d.keys.OpenKey(context.Background(), hsm.PKCS11URI(card.Module, card.Label, "rx-signing", []byte{1}, card.PINFile))
	if !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(chain[0].PublicKey) {
		t.Fatal("the certificate is not for the key on the card")
	}
	if chain[0].KeyUsage&x509.KeyUsageContentCommitment == 0 {
		t.Fatal("no nonRepudiation")
	}
	if cn := chain[0].Subject.CommonName; cn != "دکتر سارا احمدی" {
		t.Fatalf("the certificate names %q, not the subject Bob reviewed", cn)
	}

	// An expired licence blocks enrolment.
	expired := d.ok("alice", "subject", "add", "-file", writeFile(t, work, "old.json", practitionerJSON(testpki.NationalID(), "MC-1", "2025-01-01")))
	csr2 := filepath.Join(work, "req2.csr")
	d.ok("", "token", "keygen", "-module", card.Module, "-token", card.Label, "-key-label", "second", "-pin-file", card.PINFile)
	d.ok("", "token", "csr", "-module", card.Module, "-token", card.Label, "-key-label", "second", "-pin-file", card.PINFile, "-out", csr2)
	d.refused("alice", "licence-expired", "enrol", "request", "-subject", field(t, expired, "id"), "-csr", csr2)

	// The same key cannot be enrolled twice.
	d.refused("alice", "key-reused", "enrol", "request", "-subject", subjectID, "-csr", csrFile)

	// A practitioner's certificate is not an officer's credential: it has
	// no clientAuth usage, so the TLS handshake itself fails.
	d.officer["mallory"] = trustd.OfficerCredential{CertFile: chainFile, KeyURI: hsm.PKCS11URI(card.Module, card.Label, "rx-signing", []byte{1}, card.PINFile)}
	if _, errOut, code := d.rxctl("mallory", "subject", "list"); code != exitFailed || !strings.Contains(errOut, "bad certificate") {
		t.Fatalf("practitioner certificate on the admin API: exit %d, %s", code, errOut)
	}

	// The audit trail shows the refusal and the issuance, and no national id.
	trail := d.ok("alice", "audit", "list", "-limit", "1000")
	for _, want := range []string{`"code": "dual-control-violation"`, `"outcome": "intent"`, `"action": "certificate.issue"`, `"code": "licence-expired"`} {
		if !strings.Contains(trail, want) {
			t.Fatalf("audit trail lacks %s", want)
		}
	}
	if strings.Contains(trail, nid) {
		t.Fatal("a national id is in the audit trail")
	}
}
