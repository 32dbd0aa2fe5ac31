// Package testpki builds a real CA hierarchy for tests: the shipped profiles,
// a root and intermediate made by the ceremony code, and a step-ca backed
// issuer — the production code path with keys the test chooses.
package testpki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/certs"
	"github.com/nuskha/nuskha/internal/nationalid"
	"github.com/nuskha/nuskha/internal/persian"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/ca"
	"github.com/nuskha/nuskha/internal/pki/ceremony"
	"github.com/nuskha/nuskha/internal/pki/crl"
	"github.com/nuskha/nuskha/internal/pki/lint"
	"github.com/nuskha/nuskha/internal/pki/profile"
	"github.com/nuskha/nuskha/internal/registry"
)

// PKI is a test hierarchy.
type PKI struct {
	Profiles     *profile.Set
	Linter       *lint.Linter
	Arc          pki.Arc
	Root         *x509.Certificate
	RootKey      crypto.Signer
	Intermediate *x509.Certificate
	CA           *ca.CA
	URLs         profile.URLs
}

// ARLURL is the test intermediate's CRL distribution point: the root's ARL.
const ARLURL = "http://trustd.test/crl/root-ca.crl"

// New builds a hierarchy whose intermediate key is intermediateKey (nil: a
// fresh in-memory P-256 key).
func New(t testing.TB, intermediateKey crypto.Signer, now func() time.Time) *PKI {
	t.Helper()
	profiles, err := profile.Load(certs.Profiles())
	if err != nil {
		t.Fatal(err)
	}
	l, err := lint.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	rootKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if intermediateKey == nil {
		intermediateKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	root, err := ceremony.CreateRoot(rootKey, profiles.Root, ceremony.DefaultNames, now(), l)
	if err != nil {
		t.Fatalf("root: %v", err)
	}
	inter, err := ceremony.CreateIntermediate(root, rootKey, intermediateKey.Public(), profiles.Intermediate, ceremony.DefaultNames, []string{ARLURL}, now(), l)
	if err != nil {
		t.Fatalf("intermediate: %v", err)
	}
	c, err := ca.New(ca.Config{Roots: []*x509.Certificate{root}, Intermediate: inter, Signer: intermediateKey, Linter: l, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return &PKI{
		Profiles: profiles, Linter: l, Arc: pki.MustArc(pki.DefaultArc), Root: root, RootKey: rootKey,
		Intermediate: inter, CA: c,
		URLs: profile.URLs{
			CRL:    []string{"http://trustd.test/crl/1.crl"},
			OCSP:   []string{"http://trustd.test/ocsp"},
			Issuer: []string{"http://trustd.test/ca/intermediate.crt"},
		},
	}
}

// ARL signs the root's ARL, made at thisUpdate (valid for a year), listing
// the given CA certificates as revoked (cACompromise). It is linted, as
// every CRL is.
func (p *PKI) ARL(t testing.TB, thisUpdate time.Time, revoked ...*x509.Certificate) *x509.RevocationList {
	t.Helper()
	var entries []crl.Entry
	for _, c := range revoked {
		entries = append(entries, crl.Entry{Serial: c.SerialNumber, RevokedAt: thisUpdate.Add(-time.Minute), Reason: 2})
	}
	der, err := ceremony.SignARL(ceremony.ARLRequest{Number: big.NewInt(thisUpdate.Unix()), ThisUpdate: thisUpdate, Revoked: entries}, p.Root, p.RootKey, p.Linter, nil)
	if err != nil {
		t.Fatal(err)
	}
	list, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// CSR makes a CSR for key.
func CSR(t testing.TB, key crypto.Signer) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "from the token"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// Subject returns a valid registry subject of the kind, licensed around now.
func Subject(kind registry.Kind, id string, now time.Time) *registry.Subject {
	// Whole days in Iran, as the registry keeps licences entered through
	// its API, so that an update naming the same days changes nothing.
	from, until := registry.LicencePeriod(persian.Day(now.AddDate(-1, 0, 0)), persian.Day(now.AddDate(3, 0, 0)))
	s := &registry.Subject{
		ID: id, Kind: kind, LicenceStatus: registry.Active,
		LicenceValidFrom: from, LicenceValidUntil: until,
		CreatedAt: now, UpdatedAt: now,
	}
	switch kind {
	case pki.RolePractitioner:
		s.Name, s.NationalID, s.CouncilNumber, s.Profession, s.Specialty = "دکتر سارا احمدی", "0499370899", "MC-12345", registry.Physician, "cardiology"
	case pki.RolePharmacy:
		s.Name, s.LicenceNumber, s.Province, s.ResponsibleName, s.ResponsibleCouncilNumber = "داروخانه شفا", "PH-8812", "IR-23", "دکتر رضا کریمی", "P-5521"
	case pki.RoleParaclinic:
		s.Name, s.LicenceNumber, s.Province, s.CentreType, s.ResponsibleName, s.ResponsibleCouncilNumber = "آزمایشگاه پارس", "LB-3301", "IR-10", registry.Laboratory, "مریم رضایی", "T-7781"
	case pki.RoleVendor:
		s.Name, s.Organization, s.DNSNames = "HIS Connector", "Example Health Software", []string{"api.vendor.test"}
	case pki.RoleService:
		s.Name, s.Organization, s.DNSNames = "trustd", "Nuskha", []string{"localhost", "127.0.0.1"}
	case pki.RoleOfficer:
		s.Name, s.Organization = "Officer Alice", "Nuskha"
	}
	return s
}

// PEM encodes a certificate.
func PEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// OpenSSLEnv, when set to 1, turns a missing openssl into a test failure
// instead of a skip. deploy/test.sh sets it, so CI cannot pass by skipping.
const OpenSSLEnv = "NUSKHA_REQUIRE_OPENSSL"

// OpenSSL returns the path of the openssl command, skipping the test when
// it is not installed (failing it under OpenSSLEnv).
func OpenSSL(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv(OpenSSLEnv) == "1" {
			t.Fatalf("openssl not installed and %s=1", OpenSSLEnv)
		}
		t.Skip("openssl not installed")
	}
	return p
}

// OpenSSLVerify runs `openssl verify -x509_strict` on leaf against root with
// the intermediate as untrusted, and returns its output and error. purpose,
// if set, is passed as -purpose.
func OpenSSLVerify(t testing.TB, root, intermediate, leaf *x509.Certificate, extra ...string) (string, error) {
	t.Helper()
	openssl := OpenSSL(t)
	dir := t.TempDir()
	write := func(name string, c *x509.Certificate) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, PEM(c), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	args := append([]string{"verify", "-x509_strict", "-CAfile", write("root.pem", root), "-untrusted", write("int.pem", intermediate)}, extra...)
	args = append(args, write("leaf.pem", leaf))
	out, err := exec.Command(openssl, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// NationalID returns a random valid national id.
func NationalID() string {
	for {
		b := make([]byte, 9)
		_, _ = rand.Read(b)
		for i := range b {
			b[i] = '0' + b[i]%10
		}
		c, _ := nationalid.CheckDigit(string(b))
		id := string(b) + string(c)
		if nationalid.Valid(id) {
			return id
		}
	}
}

// OpenSSLVerifyCRL runs `openssl verify -x509_strict -crl_check` on leaf
// with the CRL (DER) of its issuer.
func OpenSSLVerifyCRL(t testing.TB, root, intermediate, leaf *x509.Certificate, crlDER []byte, extra ...string) (string, error) {
	t.Helper()
	OpenSSL(t)
	p := filepath.Join(t.TempDir(), "crl.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crlDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return OpenSSLVerify(t, root, intermediate, leaf, append([]string{"-crl_check", "-CRLfile", p}, extra...)...)
}

// OpenSSLVerifyChain runs `openssl verify -x509_strict -crl_check_all` on
// leaf: every certificate of the chain checked against a CRL, the
// intermediate against the root's ARL (arlDER) and the leaf against the
// intermediate's CRL (crlDER).
func OpenSSLVerifyChain(t testing.TB, root, intermediate, leaf *x509.Certificate, arlDER, crlDER []byte) (string, error) {
	t.Helper()
	OpenSSL(t)
	dir := t.TempDir()
	var args []string
	for name, der := range map[string][]byte{"arl.pem": arlDER, "crl.pem": crlDER} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-CRLfile", p)
	}
	return OpenSSLVerify(t, root, intermediate, leaf, append([]string{"-crl_check_all"}, args...)...)
}

// Issue issues a certificate of profileName to sub for key, as the CA
// would after approval.
func (p *PKI) Issue(t testing.TB, profileName string, sub *registry.Subject, key crypto.Signer) *x509.Certificate {
	t.Helper()
	prof, err := p.Profiles.Get(profileName)
	if err != nil {
		t.Fatal(err)
	}
	return p.IssueWithValidity(t, profileName, sub, key, time.Now().Add(-time.Minute), time.Now().Add(prof.Validity))
}

// certData is enrol.CertificateData (not imported here: enrol's tests use
// this package).
func certData(sub *registry.Subject, p *PKI) (profile.Data, error) {
	ext, err := sub.Identity().Marshal()
	if err != nil {
		return profile.Data{}, err
	}
	d := profile.Data{
		Identity: profile.IdentityData{Name: sub.Name, Title: sub.Title(), SerialNumber: sub.SerialNumberAttr(), Organization: sub.Organization,
			ProvinceName: registry.ProvinceName(sub.Province), URI: sub.URI(), DNSNames: []string{}, IPAddresses: []string{}, Extension: ext},
		OID: p.Arc.OIDs(), URL: p.URLs,
	}
	for _, n := range sub.DNSNames {
		if net.ParseIP(n) != nil {
			d.Identity.IPAddresses = append(d.Identity.IPAddresses, n)
		} else {
			d.Identity.DNSNames = append(d.Identity.DNSNames, n)
		}
	}
	return d, nil
}

// IssueWithValidity is Issue with an explicit validity period (for tests
// of certificates that expired or are not yet valid). The period must lie
// within the intermediate's.
func (p *PKI) IssueWithValidity(t testing.TB, profileName string, sub *registry.Subject, key crypto.Signer, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	cert, err := p.TryIssue(t, profileName, sub, key, notBefore, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TryIssue is IssueWithValidity returning the CA's refusal (a lint
// failure, say) instead of failing the test.
func (p *PKI) TryIssue(t testing.TB, profileName string, sub *registry.Subject, key crypto.Signer, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	t.Helper()
	prof, err := p.Profiles.Get(profileName)
	if err != nil {
		t.Fatal(err)
	}
	data, err := certData(sub, p)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := ceremony.Serial()
	return p.CA.Issue(context.Background(), ca.Request{CSR: CSR(t, key), Template: prof.Template, Data: data.TemplateData(),
		Serial: serial, NotBefore: notBefore, NotAfter: notAfter}, nil)
}

// SignInput signs exactly input, a compact JWS signing input however it
// is spelled, with key (ES256) and returns the compact JWS: what a signer
// who wants a spelling or a payload rx.Sign would never make does.
func SignInput(t testing.TB, input string, key *ecdsa.PrivateKey) string {
	t.Helper()
	h := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}
