package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/internal/adjudicate"
	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/revocation"
	"github.com/nuskha/nuskha/internal/rxapi"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/testutil/rxdtest"
	"github.com/nuskha/nuskha/internal/trustd"
)

// enrolService has officers register a vendor or service and issue it a
// certificate of profile for a key in a password-protected file; it
// returns the chain file and the key URI.
func (d *deployment) enrolService(work, name, kind, profile string) (chainFile, keyURI string) {
	t := d.t
	pass := writeFile(t, work, name+".pass", "correct horse battery staple")
	keyURI = "softkey:path=" + filepath.Join(work, name+".key") + "?pin-source=" + pass
	key, err := d.keys.CreateKey(context.Background(), keyURI, hsm.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr := writeFile(t, work, name+".csr", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})))
	subj := d.ok("alice", "subject", "add", "-file", writeFile(t, work, name+".json",
		`{"kind": "`+kind+`", "name": "`+name+`", "organization": "Example Health Software", "dns_names": ["localhost"],
		"licence_valid_from": "2024-03-20", "licence_valid_until": "2030-03-20"}`))
	req := d.ok("alice", "enrol", "request", "-subject", field(t, subj, "id"), "-profile", profile, "-csr", csr)
	chainFile = filepath.Join(work, name+"-chain.pem")
	d.ok("bob", "enrol", "approve", "-out", chainFile, field(t, req, "id"))
	return chainFile, keyURI
}

// TestRxdEndToEnd: trustd issues a vendor's client certificate and rxd's
// server certificate; rxd checks the vendor's certificate by OCSP with
// trustd on every call; rxctl asks for eligibility, the rules service and
// the catalogue; once an officer revokes the vendor's certificate, rxd
// refuses it.
func TestRxdEndToEnd(t *testing.T) {
	d := deploy(t, trustd.StoreConfig{Driver: "sqlite", Path: "trustd.db"})
	work := t.TempDir()
	vendorChain, vendorKey := d.enrolService(work, "his-connector", "vendor", "service-tls-client")
	rxdChain, rxdKey := d.enrolService(work, "rxd", "service", "service-tls-server")

	// rxd: its own database, registry and catalogue, the starter rules.
	ctx := context.Background()
	data := rxdtest.Open(t, sqlstore.SQLite, 20)
	// Recheck 0: rxd asks trustd's responder on every call, so the
	// revocation below is refused at the next call (the bound a real rxd
	// keeps by default is TestRxdRefusesRevokedCallerWithinBound's).
	status, err := revocation.New(revocation.Config{MaxAge: time.Hour, Recheck: 0, Now: time.Now, HTTP: &http.Client{Timeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	api := &rxapi.API{
		Eligibility: data.Checker(), Catalogue: data.Catalogue, Rules: data.Rules, Arc: pki.MustArc(pki.DefaultArc), Status: status,
		Adjudicator: data.Adjudicator(time.Now), DB: data.DB,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now,
		Pseudonyms: rxdtest.Pseudonyms(), AuditLog: data.AuditLog(t), Budgets: data.Budgets(t),
	}
	serverKey, err := d.keys.OpenKey(ctx, rxdKey)
	if err != nil {
		t.Fatal(err)
	}
	chain, _ := pemutil.ReadCertificateBundle(rxdChain)
	roots := x509.NewCertPool()
	rootCerts, _ := pemutil.ReadCertificateBundle(d.init.RootCert)
	roots.AddCert(rootCerts[0])
	srv := httptest.NewUnstartedServer(api.Handler())
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{chain[0].Raw, chain[1].Raw}, PrivateKey: serverKey, Leaf: chain[0]}},
		ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: roots, MinVersion: tls.VersionTLS12,
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	t.Setenv("NUSKHA_RXD_URL", strings.Replace(srv.URL, "127.0.0.1", "localhost", 1))
	t.Setenv("NUSKHA_CLIENT_CERT", vendorChain)
	t.Setenv("NUSKHA_CLIENT_KEY", vendorKey)

	// A vendor gets the minimum, and may not ask for more.
	out := d.ok("", "eligibility", "check", "-date", "1405-06-15", insuredtest.NationalID(3))
	var res insured.Minimal
	if json.Unmarshal([]byte(out), &res) != nil || !res.Eligible || res.Coverage == nil || res.Coverage.Fund == "" || strings.Contains(out, "insurance_number") {
		t.Fatalf("eligibility: %s", out)
	}
	d.refused("", "forbidden", "eligibility", "check", "-full", insuredtest.NationalID(3))
	req := `{"scope": "prescribe", "date": "1405-06-15", "prescription": {"v": 1, "type": "prescription", "id": "` + "0b6f3f1e-8f0a-4c1e-9d2a-5b7c9e1f2a3b" + `",
		"issued_at": "2026-09-06T06:00:00Z", "patient": {"national_id": "` + insuredtest.NationalID(0) + `", "name": "مریم کریمی", "birth_date": "1951-03-21", "sex": "female"},
		"prescriber": {"council_number": "MC-1", "profession": "physician", "specialty": "general"}, "practice": {"name": "مطب"},
		"items": [{"kind": "drug", "code": "` + catalogtest.Amoxicillin + `", "quantity": 20}]}}`
	out = d.ok("", "rules", "check", writeFile(t, work, "check.json", req))
	var dec adjudicate.Decision
	if json.Unmarshal([]byte(out), &dec) != nil || !dec.Allowed || dec.InsurerPays != 448000 {
		t.Fatalf("rules check: %s", out)
	}
	// Judged and not allowed (a mistyped code): the answer is printed, and
	// the exit status says no, for scripts.
	typo := strings.Replace(req, `"quantity": 20}`, `"quantity": 20}, {"kind": "drug", "code": "1000299", "quantity": 5}`, 1)
	out, errOut, code := d.rxctl("", "rules", "check", writeFile(t, work, "typo.json", typo))
	dec = adjudicate.Decision{}
	if code != exitNotAllowed || !strings.Contains(errOut, "not allowed") || json.Unmarshal([]byte(out), &dec) != nil || dec.Allowed ||
		len(dec.Items) != 2 || !dec.Items[0].Allowed || len(dec.Items[1].Violations) == 0 || dec.Items[1].Violations[0].RuleID != "unknown-code" {
		t.Fatalf("rules check of an unknown code: exit %d, stderr %q\n%s", code, errOut, out)
	}
	// The rule set as its authors wrote it.
	if out = d.ok("", "rules", "show"); !strings.Contains(out, "h.atc == item.catalogue.atc && h.code != item.code") || strings.Contains(out, `\u0026`) {
		t.Fatalf("rules show: %s", out)
	}
	if out = d.ok("", "catalogue", "search", "-kind", "drug", "متفورمين"); !strings.Contains(out, catalogtest.Metformin) {
		t.Fatalf("catalogue search: %s", out)
	}
	d.refused("", "unknown-scope", "rules", "check", writeFile(t, work, "bad.json", strings.Replace(req, `"prescribe"`, `"sell"`, 1)))

	// The vendor's certificate is revoked: rxd, its checker as it was,
	// learns it from trustd's OCSP responder and refuses the next call.
	vc, _ := pemutil.ReadCertificateBundle(vendorChain)
	d.ok("alice", "cert", "revoke", "-serial", hex.EncodeToString(vc[0].SerialNumber.Bytes()), "-reason", "keyCompromise")
	d.refused("", "unauthenticated", "eligibility", "check", insuredtest.NationalID(3))
}
