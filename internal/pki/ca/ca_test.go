package ca_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/ca"
	"github.com/nuskha/nuskha/internal/pki/ceremony"
	"github.com/nuskha/nuskha/internal/pki/crl"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

var now = time.Now

func issue(t *testing.T, p *testpki.PKI, profileName string, sub *registry.Subject, key crypto.Signer) (*x509.Certificate, []byte, error) {
	t.Helper()
	prof, err := p.Profiles.Get(profileName)
	if err != nil {
		t.Fatal(err)
	}
	data, err := enrol.CertificateData(sub, p.Arc, p.URLs)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := ceremony.Serial()
	var linted []byte
	cert, err := p.CA.Issue(context.Background(), ca.Request{
		CSR: testpki.CSR(t, key), Template: prof.Template, Data: data.TemplateData(), Serial: serial,
		NotBefore: now().Add(-time.Minute), NotAfter: now().Add(prof.Validity),
	}, func(tbs []byte) error { linted = tbs; return nil })
	return cert, linted, err
}

func TestEveryProfileIssuesStrictlyValidLintCleanCertificates(t *testing.T) {
	p := testpki.New(t, nil, now)
	cases := []struct {
		profile string
		kind    registry.Kind
		eku     []x509.ExtKeyUsage
		purpose string // openssl -purpose, where openssl knows one
	}{
		{"practitioner-signing", pki.RolePractitioner, nil, ""},
		{"pharmacy-signing", pki.RolePharmacy, nil, ""},
		{"paraclinic-signing", pki.RoleParaclinic, nil, ""},
		{"service-tls-server", pki.RoleService, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, "sslserver"},
		{"service-tls-client", pki.RoleVendor, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, "sslclient"},
		{"ocsp-responder", pki.RoleService, []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}, "ocsphelper"},
		{"officer", pki.RoleOfficer, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, "sslclient"},
		{"trust-bundle-signing", pki.RoleService, nil, ""},
		{"exchange-receipt-signing", pki.RoleService, nil, ""},
	}
	for _, tc := range cases {
		for _, keyName := range []string{"EC-P256", "RSA-2048"} {
			t.Run(tc.profile+"/"+keyName, func(t *testing.T) {
				var key crypto.Signer
				if keyName == "EC-P256" {
					key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				} else {
					key, _ = rsa.GenerateKey(rand.Reader, 2048)
				}
				sub := testpki.Subject(tc.kind, "sub_"+strings.ReplaceAll(tc.profile, "-", "_"), now())
				cert, linted, err := issue(t, p, tc.profile, sub, key)
				if err != nil {
					t.Fatalf("Issue: %v", err)
				}
				if !bytes.Equal(cert.RawTBSCertificate, linted) {
					t.Fatal("issued TBS differs from the linted TBS")
				}
				findings, err := p.Linter.Certificate(cert.Raw)
				if err != nil || len(findings) != 0 {
					t.Fatalf("zlint findings on the issued certificate: %v %v", findings, err)
				}
				// A subtest, so that a missing openssl (without
				// NUSKHA_REQUIRE_OPENSSL) skips this check alone.
				t.Run("openssl verify -x509_strict", func(t *testing.T) {
					args := []string{}
					if tc.purpose != "" {
						args = append(args, "-purpose", tc.purpose)
					}
					if out, err := testpki.OpenSSLVerify(t, p.Root, p.Intermediate, cert, args...); err != nil {
						t.Fatalf("openssl verify -x509_strict: %v\n%s", err, out)
					}
				})
				// Go's verifier agrees, for the usages it knows.
				opts := x509.VerifyOptions{Roots: pool(p.Root), Intermediates: pool(p.Intermediate), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
				if tc.eku != nil {
					opts.KeyUsages = tc.eku
				}
				if _, err := cert.Verify(opts); err != nil {
					t.Fatalf("crypto/x509 Verify: %v", err)
				}
				id, err := p.Arc.IdentityOf(cert)
				if err != nil {
					t.Fatal(err)
				}
				if id != sub.Identity() {
					t.Fatalf("identity extension = %+v, want %+v", id, sub.Identity())
				}
				if cert.Subject.CommonName != sub.Name {
					t.Fatalf("CN = %q, want the registry name %q", cert.Subject.CommonName, sub.Name)
				}
			})
		}
	}
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func TestSigningProfilesCarryWhatVerifiersCheck(t *testing.T) {
	p := testpki.New(t, nil, now)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, _, err := issue(t, p, "practitioner-signing", testpki.Subject(pki.RolePractitioner, "sub_p", now()), key)
	if err != nil {
		t.Fatal(err)
	}
	if cert.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment {
		t.Fatalf("key usage = %v, want digitalSignature+nonRepudiation only", cert.KeyUsage)
	}
	if len(cert.UnknownExtKeyUsage) != 1 || !cert.UnknownExtKeyUsage[0].Equal(p.Arc.EKUPrescriptionSigning()) || len(cert.ExtKeyUsage) != 0 {
		t.Fatalf("EKU = %v %v, want only prescription signing", cert.ExtKeyUsage, cert.UnknownExtKeyUsage)
	}
	if len(cert.PolicyIdentifiers) != 1 || !cert.PolicyIdentifiers[0].Equal(p.Arc.PolicyPractitionerSigning()) {
		t.Fatalf("policies = %v", cert.PolicyIdentifiers)
	}
	if len(cert.CRLDistributionPoints) != 1 || len(cert.OCSPServer) != 1 || len(cert.IssuingCertificateURL) != 1 {
		t.Fatal("revocation and issuer URLs missing")
	}
	if cert.Subject.SerialNumber != "IRMC-MC-12345" {
		t.Fatalf("subject serialNumber = %q", cert.Subject.SerialNumber)
	}
	if strings.Contains(string(cert.Raw), "0499370899") {
		t.Fatal("the practitioner's national id is in the certificate")
	}
}

// The exchange's receipt key: non-repudiation, its own EKU and policy
// (so that no other service key, the trust bundle's included, can sign a
// receipt), and a service's identity.
func TestExchangeReceiptProfile(t *testing.T) {
	p := testpki.New(t, nil, now)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sub := testpki.Subject(pki.RoleService, "sub_rxd", now())
	cert, _, err := issue(t, p, "exchange-receipt-signing", sub, key)
	if err != nil {
		t.Fatal(err)
	}
	if cert.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment {
		t.Fatalf("key usage = %v, want digitalSignature+nonRepudiation only", cert.KeyUsage)
	}
	if len(cert.UnknownExtKeyUsage) != 1 || !cert.UnknownExtKeyUsage[0].Equal(p.Arc.EKUExchangeReceiptSigning()) || len(cert.ExtKeyUsage) != 0 {
		t.Fatalf("EKU = %v %v, want only exchange receipt signing", cert.ExtKeyUsage, cert.UnknownExtKeyUsage)
	}
	if len(cert.PolicyIdentifiers) != 1 || !cert.PolicyIdentifiers[0].Equal(p.Arc.PolicyExchangeReceiptSigning()) {
		t.Fatalf("policies = %v", cert.PolicyIdentifiers)
	}
	if id, err := p.Arc.IdentityOf(cert); err != nil || id.Role != pki.RoleService {
		t.Fatalf("identity %+v %v", id, err)
	}
	prof, _ := p.Profiles.Get("exchange-receipt-signing")
	if !prof.DualControl || prof.AllowsKind(pki.RoleVendor) {
		t.Fatalf("profile %+v: want dual control, services only", prof)
	}
}

func TestLintFailureMeansNoSignature(t *testing.T) {
	p := testpki.New(t, nil, now)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	// A template that RFC 5280 forbids: a CA:FALSE certificate asserting keyCertSign.
	bad := `{"subject": {"commonName": "x"}, "keyUsage": ["certSign", "digitalSignature"], "basicConstraints": {"isCA": false}}`
	serial, _ := ceremony.Serial()
	called := false
	_, err := p.CA.Issue(context.Background(), ca.Request{
		CSR: testpki.CSR(t, key), Template: bad, Data: map[string]any{}, Serial: serial,
		NotBefore: now(), NotAfter: now().Add(time.Hour),
	}, func([]byte) error { called = true; return nil })
	if !errors.Is(err, errs.Of(errs.LintFailed)) {
		t.Fatalf("got %v, want lint-failed", err)
	}
	if called {
		t.Fatal("the intent to sign was recorded for a certificate that failed lint")
	}
}

func TestBeforeSignErrorStopsIssuance(t *testing.T) {
	p := testpki.New(t, nil, now)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	prof, _ := p.Profiles.Get("practitioner-signing")
	data, _ := enrol.CertificateData(testpki.Subject(pki.RolePractitioner, "sub_x", now()), p.Arc, p.URLs)
	serial, _ := ceremony.Serial()
	auditDown := errors.New("audit store down")
	cert, err := p.CA.Issue(context.Background(), ca.Request{
		CSR: testpki.CSR(t, key), Template: prof.Template, Data: data.TemplateData(), Serial: serial,
		NotBefore: now(), NotAfter: now().Add(time.Hour),
	}, func([]byte) error { return auditDown })
	if !errors.Is(err, auditDown) || cert != nil {
		t.Fatalf("got %v, %v; want the audit error and no certificate", cert, err)
	}
}

func TestRequestChecks(t *testing.T) {
	p := testpki.New(t, nil, now)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	prof, _ := p.Profiles.Get("practitioner-signing")
	data, _ := enrol.CertificateData(testpki.Subject(pki.RolePractitioner, "sub_x", now()), p.Arc, p.URLs)
	good := ca.Request{CSR: testpki.CSR(t, key), Template: prof.Template, Data: data.TemplateData(), Serial: big.NewInt(1 << 62),
		NotBefore: now(), NotAfter: now().Add(time.Hour)}
	for name, mod := range map[string]func(r *ca.Request){
		"zero serial":             func(r *ca.Request) { r.Serial = big.NewInt(0) },
		"serial over 20 octets":   func(r *ca.Request) { r.Serial = new(big.Int).Lsh(big.NewInt(1), 160) },
		"inverted validity":       func(r *ca.Request) { r.NotAfter = r.NotBefore.Add(-time.Hour) },
		"beyond the intermediate": func(r *ca.Request) { r.NotAfter = p.Intermediate.NotAfter.Add(time.Hour) },
		"before the intermediate": func(r *ca.Request) { r.NotBefore = p.Intermediate.NotBefore.Add(-time.Hour) },
		"no CSR":                  func(r *ca.Request) { r.CSR = nil },
	} {
		t.Run(name, func(t *testing.T) {
			r := good
			mod(&r)
			if _, err := p.CA.Issue(context.Background(), r, nil); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestNewRefusesMismatchedKey(t *testing.T) {
	p := testpki.New(t, nil, now)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := ca.New(ca.Config{Roots: []*x509.Certificate{p.Root}, Intermediate: p.Intermediate, Signer: other, Linter: p.Linter, Now: now}); err == nil {
		t.Fatal("a CA with a key that does not match its certificate was built")
	}
}

// TestSignCRL: the CA signs CRLs with the issuing key by the same steps as
// certificates: the intent (hook) sees the linted TBS, the CRL verifies
// under the intermediate and covers exactly that TBS, and a failed hook
// means no signature.
func TestSignCRL(t *testing.T) {
	p := testpki.New(t, nil, now)
	req := crl.Request{Number: big.NewInt(7), ThisUpdate: now(), NextUpdate: now().Add(time.Hour),
		Entries: []crl.Entry{{Serial: big.NewInt(42), RevokedAt: now().Add(-time.Minute), Reason: 1}}}
	var linted []byte
	der, err := p.CA.SignCRL(req, func(tbs []byte) error { linted = tbs; return nil })
	if err != nil {
		t.Fatal(err)
	}
	list, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := list.CheckSignatureFrom(p.Intermediate); err != nil {
		t.Fatalf("the CRL does not verify under the intermediate: %v", err)
	}
	if !bytes.Equal(list.RawTBSRevocationList, linted) || list.Number.Int64() != 7 || len(list.RevokedCertificateEntries) != 1 {
		t.Fatalf("CRL %s with %d entries; TBS as linted: %v", list.Number, len(list.RevokedCertificateEntries), bytes.Equal(list.RawTBSRevocationList, linted))
	}
	auditDown := errors.New("audit store down")
	if der, err := p.CA.SignCRL(req, func([]byte) error { return auditDown }); !errors.Is(err, auditDown) || der != nil {
		t.Fatalf("got %d bytes, %v; want the audit error and no CRL", len(der), err)
	}
}
