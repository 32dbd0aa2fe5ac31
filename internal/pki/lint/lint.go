// Package lint checks to-be-signed certificates with zlint before an issuing
// key signs them. A certificate cannot be linted before it is signed, so the
// template is first signed by a throwaway "lint key" of the same type as the
// real issuer key, under a copy of the real issuer certificate: the result
// has exactly the TBSCertificate the real signature will cover. Callers sign
// for real only when the lint is clean, and then check that the real TBS is
// byte-for-byte the linted one (the Boulder approach).
package lint

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	zl "github.com/zmap/zlint/v3/lint"
	"golang.org/x/crypto/ocsp"

	"github.com/nuskha/nuskha/internal/errs"
)

// Sources are the zlint sources that apply to a private PKI. The CA/Browser
// Forum and root-store sources are written for the web PKI (DNS names in
// every certificate, 398-day validity…) and would reject correct signing
// certificates.
var Sources = zl.SourceList{zl.RFC5280, zl.RFC5480, zl.Community}

// notApplicable are lints of those sources that test facts about the web
// PKI, not about the certificate. e_cert_issued_by_compromised_emudhra_ca
// checks the signature against one Indian web CA's leaked key; our
// certificates are signed by our own intermediate, and the check (a generic
// P-384 verification) was 80% of issuance time.
var notApplicable = []string{"e_cert_issued_by_compromised_emudhra_ca"}

// OCSPSources are the zlint sources whose OCSP-response lints apply:
// Sources and RFC 6960, the OCSP standard.
var OCSPSources = append(zl.SourceList{zl.RFC6960}, Sources...)

// ocspAlsoApplicable are OCSP lints of the CA/B Forum source that check
// what RFC 5758 §3.2 and RFC 4055 §5 also require of any signature: the
// AlgorithmIdentifier's exact encoding (ECDSA without parameters, RSA with
// NULL). The responder writes that field itself.
var ocspAlsoApplicable = []string{"e_ocsp_ecdsa_signature_encoding_correct", "e_ocsp_rsa_signature_encoding_correct"}

// Linter lints certificates, CRLs and OCSP responses with fixed lint
// registries.
type Linter struct {
	registry zl.Registry
	ocsp     zl.Registry
	ignored  map[string]bool

	mu   sync.Mutex
	keys map[string]crypto.Signer // lint keys by key type, made on first use
}

// New builds a Linter over Sources. ignore names lints to skip; each entry
// MUST exist (a typo would silently disable nothing) and SHOULD be justified
// where it is configured.
func New(ignore []string) (*Linter, error) {
	reg, err := zl.GlobalRegistry().Filter(zl.FilterOptions{IncludeSources: Sources, ExcludeNames: notApplicable})
	if err != nil {
		return nil, fmt.Errorf("lint: building registry: %w", err)
	}
	ocspReg, err := ocspRegistry()
	if err != nil {
		return nil, err
	}
	names := append(reg.Names(), ocspReg.Names()...)
	ignored := map[string]bool{}
	for _, n := range ignore {
		if !slices.Contains(names, n) {
			return nil, fmt.Errorf("lint: ignored lint %q does not exist in sources %v", n, OCSPSources)
		}
		ignored[n] = true
	}
	return &Linter{registry: reg, ocsp: ocspReg, ignored: ignored, keys: map[string]crypto.Signer{}}, nil
}

// ocspRegistry holds the OCSP-response lints of OCSPSources and
// ocspAlsoApplicable. Filter options intersect, so the names are picked
// here and the registry filtered by name.
func ocspRegistry() (zl.Registry, error) {
	var names []string
	for _, l := range zl.GlobalRegistry().OcspResponseLints().Lints() {
		if slices.Contains(OCSPSources, l.Source) || slices.Contains(ocspAlsoApplicable, l.Name) {
			names = append(names, l.Name)
		}
	}
	for _, n := range ocspAlsoApplicable {
		if !slices.Contains(names, n) {
			return nil, fmt.Errorf("lint: OCSP lint %q is not in zlint's registry", n)
		}
	}
	// An empty name list would mean "no filter": every lint.
	reg, err := zl.GlobalRegistry().Filter(zl.FilterOptions{IncludeNames: names})
	if err != nil {
		return nil, fmt.Errorf("lint: building the OCSP registry: %w", err)
	}
	return reg, nil
}

// Finding is one lint that did not pass.
type Finding struct {
	Lint    string
	Status  string
	Details string
}

func (f Finding) String() string {
	s := f.Lint + " (" + f.Status + ")"
	if f.Details != "" {
		s += ": " + f.Details
	}
	return s
}

// Prepare signs template with a lint key under a copy of parent, lints it and
// returns the DER TBSCertificate that the real signature must cover. pub is
// the subject public key; issuerKey is the real issuer's public key (the lint
// key has its type, so the signature algorithm in the TBS is the same). For a
// self-signed certificate pass parent == template.
//
// Any Warn, Error or Fatal result fails with errs.LintFailed listing them.
func (l *Linter) Prepare(template, parent *x509.Certificate, pub, issuerKey crypto.PublicKey) ([]byte, error) {
	lintKey, err := l.lintKey(issuerKey)
	if err != nil {
		return nil, err
	}
	lp := *parent
	if parent != template {
		lp.PublicKey = lintKey.Public()
	} else {
		lp.PublicKey = nil
	}
	der, err := x509.CreateCertificate(rand.Reader, template, &lp, pub, lintKey)
	if err != nil {
		return nil, errs.Wrap(errs.LintFailed, err, "the certificate template cannot be encoded")
	}
	findings, err := l.Certificate(der)
	if err != nil {
		return nil, err
	}
	if len(findings) > 0 {
		return nil, failure(findings)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, errs.Wrap(errs.LintFailed, err, "the linted certificate does not parse")
	}
	return c.RawTBSCertificate, nil
}

func failure(findings []Finding) error {
	parts := make([]string, len(findings))
	for i, f := range findings {
		parts[i] = f.String()
	}
	return errs.New(errs.LintFailed, "%s", strings.Join(parts, "; "))
}

// SameTBS checks that a certificate signed for real covers exactly the
// linted TBSCertificate.
func SameTBS(issued *x509.Certificate, linted []byte) error {
	if !bytes.Equal(issued.RawTBSCertificate, linted) {
		return errs.New(errs.LintFailed, "issued certificate differs from the linted one; it is withheld")
	}
	return nil
}

// Certificate lints a DER certificate and returns every non-passing result
// (Notice results are informational and not returned).
func (l *Linter) Certificate(der []byte) ([]Finding, error) {
	zc, err := zx509.ParseCertificate(der)
	if err != nil {
		return nil, errs.Wrap(errs.LintFailed, err, "zlint cannot parse the certificate")
	}
	return l.findings(zlint.LintCertificateEx(zc, l.registry)), nil
}

// RevocationList lints a DER CRL.
func (l *Linter) RevocationList(der []byte) ([]Finding, error) {
	crl, err := zx509.ParseRevocationList(der)
	if err != nil {
		return nil, errs.Wrap(errs.LintFailed, err, "zlint cannot parse the CRL")
	}
	return l.findings(zlint.LintRevocationListEx(crl, l.registry)), nil
}

// OCSPResponse lints a DER OCSP response whose signature verifies under
// issuer (directly or through the delegated responder certificate it
// carries). Error responses (tryLater, malformedRequest…) are unsigned and
// have nothing to lint: they return no findings. A response about several
// certificates is linted once per certificate (zlint lints one status at
// a time; two statuses for the same serial, under SHA-1 and SHA-256
// CertIDs, share their times and are linted once).
func (l *Linter) OCSPResponse(der []byte, issuer *x509.Certificate) ([]Finding, error) {
	resp, err := ocsp.ParseResponse(der, issuer)
	if re := (ocsp.ResponseError{}); errors.As(err, &re) {
		return nil, nil
	}
	serials, serr := responseSerials(der)
	if serr != nil || len(serials) <= 1 {
		if err == nil {
			err = serr
		}
		if err != nil {
			return nil, errs.Wrap(errs.LintFailed, err, "the OCSP response does not parse or verify")
		}
		return l.findings(zlint.LintOcspResponseEx(resp, l.ocsp)), nil
	}
	var out []Finding
	for i, serial := range serials {
		if slices.ContainsFunc(serials[:i], func(s *big.Int) bool { return s.Cmp(serial) == 0 }) {
			continue // x/crypto/ocsp finds only its first status
		}
		resp, err := ocsp.ParseResponseForCert(der, &x509.Certificate{SerialNumber: serial}, issuer)
		if err != nil {
			return nil, errs.Wrap(errs.LintFailed, err, "the OCSP response's status for serial %x does not parse or verify", serial)
		}
		for _, f := range l.findings(zlint.LintOcspResponseEx(resp, l.ocsp)) {
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	slices.SortFunc(out, func(a, b Finding) int { return strings.Compare(a.Lint, b.Lint) })
	return out, nil
}

// responseSerials lists the serials of a successful response's
// SingleResponses (x/crypto/ocsp reads one at a time, by serial).
func responseSerials(der []byte) ([]*big.Int, error) {
	var outer struct {
		Status   asn1.Enumerated
		Response struct {
			Type asn1.ObjectIdentifier
			Body []byte
		} `asn1:"explicit,tag:0"`
	}
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		return nil, err
	}
	var basic struct{ TBS asn1.RawValue }
	if _, err := asn1.Unmarshal(outer.Response.Body, &basic); err != nil {
		return nil, err
	}
	var data struct {
		Version    int `asn1:"optional,default:0,explicit,tag:0"`
		Responder  asn1.RawValue
		ProducedAt time.Time `asn1:"generalized"`
		Responses  []asn1.RawValue
	}
	if _, err := asn1.Unmarshal(basic.TBS.FullBytes, &data); err != nil {
		return nil, err
	}
	var out []*big.Int
	for _, r := range data.Responses {
		var certID struct {
			Hash              pkix.AlgorithmIdentifier
			NameHash, KeyHash []byte
			Serial            *big.Int
		}
		// A SingleResponse starts with its CertID; only that is read.
		if _, err := asn1.Unmarshal(r.Bytes, &certID); err != nil {
			return nil, err
		}
		out = append(out, certID.Serial)
	}
	return out, nil
}

func (l *Linter) findings(rs *zlint.ResultSet) []Finding {
	var out []Finding
	for name, r := range rs.Results {
		if l.ignored[name] || r == nil {
			continue
		}
		switch r.Status {
		case zl.Warn, zl.Error, zl.Fatal:
			out = append(out, Finding{Lint: name, Status: r.Status.String(), Details: r.Details})
		}
	}
	slices.SortFunc(out, func(a, b Finding) int { return strings.Compare(a.Lint, b.Lint) })
	return out
}

// lintKey returns a throwaway key of the same type and size as pub.
func (l *Linter) lintKey(pub crypto.PublicKey) (crypto.Signer, error) {
	var kind string
	var gen func() (crypto.Signer, error)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		kind = "ec-" + k.Curve.Params().Name
		gen = func() (crypto.Signer, error) { return ecdsa.GenerateKey(k.Curve, rand.Reader) }
	case *rsa.PublicKey:
		kind = fmt.Sprintf("rsa-%d", k.N.BitLen())
		gen = func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, k.N.BitLen()) }
	case ed25519.PublicKey:
		kind = "ed25519"
		gen = func() (crypto.Signer, error) {
			_, priv, err := ed25519.GenerateKey(rand.Reader)
			return priv, err
		}
	default:
		return nil, errors.New("lint: unsupported issuer key type")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s, ok := l.keys[kind]; ok {
		return s, nil
	}
	s, err := gen()
	if err != nil {
		return nil, fmt.Errorf("lint: generating lint key: %w", err)
	}
	l.keys[kind] = s
	return s, nil
}

// PrepareCRL signs template with a lint key under a copy of issuer, lints
// the CRL and returns the DER TBSCertList the real signature must cover.
func (l *Linter) PrepareCRL(template *x509.RevocationList, issuer *x509.Certificate, issuerKey crypto.PublicKey) ([]byte, error) {
	lintKey, err := l.lintKey(issuerKey)
	if err != nil {
		return nil, err
	}
	li := *issuer
	li.PublicKey = lintKey.Public()
	der, err := x509.CreateRevocationList(rand.Reader, template, &li, lintKey)
	if err != nil {
		return nil, errs.Wrap(errs.LintFailed, err, "the CRL template cannot be encoded")
	}
	findings, err := l.RevocationList(der)
	if err != nil {
		return nil, err
	}
	if len(findings) > 0 {
		return nil, failure(findings)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, errs.Wrap(errs.LintFailed, err, "the linted CRL does not parse")
	}
	return crl.RawTBSRevocationList, nil
}

// SameCRLTBS checks that a CRL signed for real covers exactly the linted
// TBSCertList.
func SameCRLTBS(crl *x509.RevocationList, linted []byte) error {
	if !bytes.Equal(crl.RawTBSRevocationList, linted) {
		return errs.New(errs.LintFailed, "signed CRL differs from the linted one; it is withheld")
	}
	return nil
}
