package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/testutil/softhsm"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
	"github.com/nuskha/nuskha/internal/trustd"
)

// enrolled is a practitioner whose key is on a card and whose certificate
// chain is in chainFile.
type enrolled struct {
	card      *softhsm.Token
	flags     []string
	chainFile string
	leafFile  string
	serial    string
	leaf      *x509.Certificate
}

func (d *deployment) enrolPractitioner(t *testing.T, card *softhsm.Token, council string) enrolled {
	t.Helper()
	work := t.TempDir()
	e := enrolled{card: card, flags: []string{"-module", card.Module, "-token", card.Label, "-key-label", "rx-signing", "-pin-file", card.PINFile}}
	d.ok("", append([]string{"token", "keygen"}, e.flags...)...)
	csr := filepath.Join(work, "req.csr")
	d.ok("", append([]string{"token", "csr", "-out", csr}, e.flags...)...)
	subj := d.ok("alice", "subject", "add", "-file", writeFile(t, work, "p.json", practitionerJSON(testpki.NationalID(), council, "2030-03-20")))
	req := d.ok("alice", "enrol", "request", "-subject", field(t, subj, "id"), "-csr", csr)
	e.chainFile = filepath.Join(work, "chain.pem")
	approved := d.ok("bob", "enrol", "approve", "-out", e.chainFile, field(t, req, "id"))
	e.serial = field(t, approved, "serial")
	d.ok("", append([]string{"token", "import-cert", "-cert", e.chainFile}, e.flags...)...)
	chain, err := pemutil.ReadCertificateBundle(e.chainFile)
	if err != nil {
		t.Fatal(err)
	}
	e.leaf = chain[0]
	e.leafFile = writeFile(t, work, "leaf.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: chain[0].Raw})))
	return e
}

func (d *deployment) intermediateFile(t *testing.T) string {
	return filepath.Join(d.dir, "ca", "intermediate.crt")
}

// opensslOCSP asks trustd's responder with the openssl ocsp client.
func (d *deployment) opensslOCSP(t *testing.T, leafFile string, extra ...string) string {
	t.Helper()
	return d.opensslOCSPAll(t, []string{leafFile}, extra...)
}

// opensslOCSPAll asks about several certificates in one request.
func (d *deployment) opensslOCSPAll(t *testing.T, leafFiles []string, extra ...string) string {
	t.Helper()
	openssl := testpki.OpenSSL(t)
	// openssl wants the digest before -cert.
	args := append([]string{"ocsp", "-issuer", d.intermediateFile(t)}, extra...)
	for _, f := range leafFiles {
		args = append(args, "-cert", f)
	}
	args = append(args, "-url", d.rp+"/ocsp", "-CAfile", d.init.RootCert, "-verify_other", d.intermediateFile(t))
	out, err := exec.Command(openssl, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl ocsp: %v\n%s", err, out)
	}
	return string(out)
}

// currentCRL fetches the CRL from the URL in certificates.
func (d *deployment) currentCRL(t *testing.T) *x509.RevocationList {
	t.Helper()
	return d.fetchCRL(t, d.rp+"/crl/issuing-ca-1.crl")
}

// currentARL fetches the root's ARL from the URL in the intermediate.
func (d *deployment) currentARL(t *testing.T) *x509.RevocationList {
	t.Helper()
	inters, _ := pemutil.ReadCertificateBundle(d.intermediateFile(t))
	if len(inters[0].CRLDistributionPoints) != 1 || !strings.HasPrefix(inters[0].CRLDistributionPoints[0], d.rp+"/") {
		t.Fatalf("the intermediate's CRL distribution points: %v", inters[0].CRLDistributionPoints)
	}
	return d.fetchCRL(t, inters[0].CRLDistributionPoints[0])
}

func (d *deployment) fetchCRL(t *testing.T, url string) *x509.RevocationList {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	der, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("CRL served as %q", resp.Header.Get("Content-Type"))
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("CRL: %v", err)
	}
	return crl
}

// TestRevocationEndToEnd: issue → good in OCSP (openssl ocsp) and CRL
// (openssl verify -crl_check) → revoke for key compromise → revoked with
// its reason in OCSP and in the CRL as soon as the call returns; the offline
// bundle says the same, and refuses when stale.
func TestRevocationEndToEnd(t *testing.T) {
	testpki.OpenSSL(t) // asked first: most of what is checked here is checked by openssl
	cardA := softhsm.NewToken(t, "card-a")
	cardB := softhsm.NewToken(t, "card-b")
	cardC := softhsm.NewToken(t, "card-c")
	d := deploy(t, trustd.StoreConfig{Driver: "sqlite", Path: "trustd.db"})
	a := d.enrolPractitioner(t, cardA, "MC-1001")
	roots, _ := pemutil.ReadCertificateBundle(d.init.RootCert)
	inters, _ := pemutil.ReadCertificateBundle(d.intermediateFile(t))

	// Good, to OpenSSL as an OCSP client (SHA-1 and SHA-256 CertIDs, with nonces) and with the CRL.
	for _, hash := range []string{"-sha1", "-sha256"} {
		out := d.opensslOCSP(t, a.leafFile, hash)
		if !strings.Contains(out, "Response verify OK") || !strings.Contains(out, a.leafFile+": good") || strings.Contains(out, "no nonce") {
			t.Fatalf("openssl ocsp %s before revocation:\n%s", hash, out)
		}
	}
	crl := d.currentCRL(t)
	if out, err := testpki.OpenSSLVerifyCRL(t, roots[0], inters[0], a.leaf, crl.Raw); err != nil {
		t.Fatalf("openssl verify -crl_check before revocation: %v\n%s", err, out)
	}
	// Every certificate of the chain, the intermediate against the root's ARL.
	if out, err := testpki.OpenSSLVerifyChain(t, roots[0], inters[0], a.leaf, d.currentARL(t).Raw, crl.Raw); err != nil {
		t.Fatalf("openssl verify -crl_check_all: %v\n%s", err, out)
	}
	before := crl.Number

	// Officer Alice revokes for key compromise; the OCSP answer says so
	// before the revocation's API call returns (docs/trustd.md), so the
	// first question after it gets it.
	start := time.Now()
	d.ok("alice", "cert", "revoke", "-serial", a.serial, "-reason", "keyCompromise")
	out := d.opensslOCSP(t, a.leafFile)
	if !strings.Contains(out, a.leafFile+": revoked") || !strings.Contains(out, "Reason: keyCompromise") {
		t.Fatalf("OCSP right after the revocation:\n%s", out)
	}
	t.Logf("revocation visible in OCSP %s after the request", time.Since(start))

	// A CRL fetched after the change is a new one that carries it.
	if crl = d.currentCRL(t); crl.Number.Cmp(before) <= 0 {
		t.Fatalf("the CRL fetched after the revocation is number %s, not after %s", crl.Number, before)
	}
	if vout, err := testpki.OpenSSLVerifyCRL(t, roots[0], inters[0], a.leaf, crl.Raw); err == nil || !strings.Contains(vout, "certificate revoked") {
		t.Fatalf("openssl verify -crl_check after revocation: %v\n%s", err, vout)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].ReasonCode != 1 {
		t.Fatalf("CRL entries: %+v", crl.RevokedCertificateEntries)
	}

	// Revocation is final and recorded once.
	d.refused("bob", "already-revoked", "cert", "revoke", "-serial", a.serial, "-reason", "superseded")
	d.refused("alice", "not-found", "cert", "revoke", "-serial", "0badc0ffee", "-reason", "keyCompromise")
	d.refused("alice", "reason-not-allowed", "cert", "revoke", "-serial", a.serial, "-reason", "certificateHold")
	if status := d.ok("", "cert", "status", "-serial", a.serial); !strings.Contains(status, `"status": "revoked"`) || !strings.Contains(status, "keyCompromise") {
		t.Fatalf("cert status: %s", status)
	}

	// Offline: the signed trust bundle agrees, and refuses when stale.
	b := d.enrolPractitioner(t, cardB, "MC-1002")
	bundleFile := filepath.Join(t.TempDir(), "bundle.jws")
	d.ok("", "trust", "pull", "-out", bundleFile)
	d.refused("", "certificate-revoked", "cert", "check", "-cert", a.chainFile, "-bundle", bundleFile)
	if out := d.ok("", "cert", "check", "-cert", b.chainFile, "-bundle", bundleFile); !strings.Contains(out, "good:") {
		t.Fatalf("good certificate offline: %s", out)
	}
	// One OCSP request about both, with a nonce: openssl reads each
	// status from the one response, for SHA-1 and SHA-256 CertIDs.
	for _, hash := range []string{"-sha1", "-sha256"} {
		out := d.opensslOCSPAll(t, []string{a.leafFile, b.leafFile}, hash)
		if !strings.Contains(out, "Response verify OK") || !strings.Contains(out, a.leafFile+": revoked") ||
			!strings.Contains(out, b.leafFile+": good") || strings.Contains(out, "no nonce") {
			t.Fatalf("openssl ocsp %s about two certificates:\n%s", hash, out)
		}
	}
	_, errOut, code := d.rxctl("", "cert", "check", "-cert", b.chainFile, "-bundle", bundleFile, "-max-age", "1ms")
	if code != exitRefused || !strings.Contains(errOut, "revocation-status-unknown") || !strings.Contains(errOut, "more than the 1ms allowed") {
		t.Fatalf("stale bundle: exit %d, %s", code, errOut)
	}

	// The holder revokes with the card's own key; a request signed by
	// another key changes nothing.
	c := d.enrolPractitioner(t, cardC, "MC-1003")
	forged := append([]string{"token", "revoke", "-cert", c.chainFile, "-reason", "keyCompromise"}, b.flags...)
	d.refused("", "bad-revocation-request", forged...)
	if st := d.ok("", "cert", "status", "-serial", c.serial); !strings.Contains(st, `"status": "good"`) {
		t.Fatalf("a forged holder request changed the status: %s", st)
	}
	d.ok("", append([]string{"token", "revoke", "-reason", "keyCompromise"}, c.flags...)...)
	if out := d.opensslOCSP(t, c.leafFile); !strings.Contains(out, ": revoked") {
		t.Fatalf("holder revocation not in OCSP:\n%s", out)
	}

	// Suspension and release need two officers.
	hold := d.ok("alice", "cert", "hold", "-serial", b.serial, "-comment", "card reported lost at the clinic")
	holdID := field(t, hold, "id")
	// One hold awaiting its second officer is enough; it is listed as
	// pending, with no decision time yet.
	d.refused("bob", "change-already-pending", "cert", "hold", "-serial", b.serial, "-comment", "card lost, says the clinic")
	if out := d.ok("bob", "change", "list"); !strings.Contains(out, holdID) || !strings.Contains(out, `"state": "pending"`) || strings.Contains(out, "decided_at") {
		t.Fatalf("change list: %s", out)
	}
	d.refused("alice", "dual-control-violation", "change", "approve", holdID)
	d.ok("bob", "change", "approve", holdID)
	if out := d.opensslOCSP(t, b.leafFile); !strings.Contains(out, ": revoked") || !strings.Contains(out, "certificateHold") {
		t.Fatalf("held certificate in OCSP:\n%s", out)
	}
	d.refused("bob", "status-change-not-pending", "change", "approve", holdID)
	release := d.ok("bob", "cert", "release", "-serial", b.serial, "-comment", "card found")
	d.refused("bob", "dual-control-violation", "change", "approve", field(t, release, "id"))
	d.ok("alice", "change", "approve", field(t, release, "id"))
	if out := d.opensslOCSP(t, b.leafFile); !strings.Contains(out, b.leafFile+": good") {
		t.Fatalf("released certificate in OCSP:\n%s", out)
	}

	// The root, at a ceremony, revokes the intermediate: OpenSSL and the
	// offline check refuse the good practitioner's chain.
	cfg, err := trustd.LoadConfig(d.init.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trustd.SignARL(context.Background(), cfg, trustd.ARLOptions{RootKey: d.init.RootKeyURI, Revoke: inters[0], Reason: 2},
		trustd.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now, Keys: d.keys}); err != nil {
		t.Fatal(err)
	}
	if err := d.svc.ReloadARL(); err != nil {
		t.Fatal(err)
	}
	arl := d.currentARL(t)
	if len(arl.RevokedCertificateEntries) != 1 {
		t.Fatalf("the ARL served after sign-arl lists %d CAs", len(arl.RevokedCertificateEntries))
	}
	if out, err := testpki.OpenSSLVerifyChain(t, roots[0], inters[0], b.leaf, arl.Raw, d.currentCRL(t).Raw); err == nil || !strings.Contains(out, "certificate revoked") {
		t.Fatalf("openssl verify -crl_check_all with the intermediate revoked: %v\n%s", err, out)
	}
	d.ok("", "trust", "pull", "-out", bundleFile)
	d.refused("", "certificate-revoked", "cert", "check", "-cert", b.chainFile, "-bundle", bundleFile)
}

// TestHostileRelyingPartyInputs: garbage, truncated and huge OCSP requests
// and a certificate of another CA get OCSP error answers, never a crash or
// a signature.
// TestOfficerRevocationEndToEnd: a third officer, Carol, is enrolled like
// any subject; one officer alone cannot revoke her certificate, two can
// (rxctl cert revoke -request, then change approve), and then she is no
// longer an officer. The last two officers cannot be revoked away.
func TestOfficerRevocationEndToEnd(t *testing.T) {
	d := deploy(t, trustd.StoreConfig{Driver: "sqlite", Path: "trustd.db"})
	work := t.TempDir()
	keyURI := hsm.SoftKeyURI(filepath.Join(work, "carol.key"), writeFile(t, work, "carol.pass", "carol's passphrase\n"))
	key, err := d.keys.CreateKey(context.Background(), keyURI, hsm.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	csr := writeFile(t, work, "carol.csr", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: testpki.CSR(t, key).Raw})))
	subj := d.ok("alice", "subject", "add", "-q", "-file", writeFile(t, work, "carol.json",
		`{"kind": "officer", "name": "Carol", "organization": "Nuskha", "licence_valid_from": "2024-03-20", "licence_valid_until": "2030-03-20"}`))
	req := d.ok("alice", "enrol", "request", "-q", "-subject", strings.TrimSpace(subj), "-profile", "officer", "-csr", csr)
	chain := filepath.Join(work, "carol.pem")
	carol := field(t, d.ok("bob", "enrol", "approve", "-out", chain, strings.TrimSpace(req)), "serial")
	d.officer["carol"] = trustd.OfficerCredential{CertFile: chain, KeyURI: key.URI()}
	d.ok("carol", "subject", "list")

	d.refused("alice", "dual-control-violation", "cert", "revoke", "-serial", carol, "-reason", "affiliationChanged")
	d.ok("carol", "subject", "list")
	change := strings.TrimSpace(d.ok("alice", "cert", "revoke", "-request", "-q", "-serial", carol, "-reason", "affiliationChanged", "-comment", "moved to another ministry"))
	d.refused("alice", "dual-control-violation", "change", "approve", change)
	d.ok("bob", "change", "approve", change)
	if status := d.ok("", "cert", "status", "-serial", carol); !strings.Contains(status, `"status": "revoked"`) || !strings.Contains(status, "affiliationChanged") {
		t.Fatalf("carol's certificate: %s", status)
	}
	d.refused("carol", "not-an-officer", "subject", "list")

	bob, err := pemutil.ReadCertificateBundle(d.officer["bob"].CertFile)
	if err != nil {
		t.Fatal(err)
	}
	d.refused("alice", "officer-quorum", "cert", "revoke", "-request", "-serial", pki.SerialHex(bob[0].SerialNumber), "-reason", "superseded", "-comment", "x")
	d.ok("bob", "subject", "list")
}

func TestHostileRelyingPartyInputs(t *testing.T) {
	d := deploy(t, trustd.StoreConfig{Driver: "sqlite", Path: "trustd.db"})
	post := func(body []byte) []byte {
		resp, err := http.Post(d.rp+"/ocsp", "application/ocsp-request", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b
	}
	malformed := []byte{0x30, 0x03, 0x0A, 0x01, 0x01}
	for name, body := range map[string][]byte{
		"garbage":   []byte("hello"),
		"truncated": {0x30, 0x82, 0x01},
		"huge":      bytes.Repeat([]byte{0x30}, 1<<20),
		"empty":     nil,
	} {
		if got := post(body); !bytes.Equal(got, malformed) {
			t.Errorf("%s: answered %x, want malformedRequest", name, got)
		}
	}
	resp, err := http.Get(d.rp + "/ocsp/" + strings.Repeat("A", 10))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(b, malformed) {
		t.Errorf("GET garbage answered %x", b)
	}
	// A holder revocation that is not a JWS, or too large, is refused.
	roots := x509.NewCertPool()
	pemRoot, _ := os.ReadFile(d.init.RootCert)
	roots.AppendCertsFromPEM(pemRoot)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	for name, tc := range map[string]struct {
		body string
		code string
	}{
		"not a JWS": {"hello", "bad-revocation-request"},
		"alg none":  {"eyJhbGciOiJub25lIn0.eyJzZXJpYWwiOiIwMSJ9.", "bad-revocation-request"},
		"too large": {strings.Repeat("a", 20000), "request-too-large"},
	} {
		resp, err := client.Post(d.public+"/v1/revocations", "application/jose", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), `"code":"`+tc.code+`"`) {
			t.Errorf("%s: %d %s", name, resp.StatusCode, b)
		}
	}
}
