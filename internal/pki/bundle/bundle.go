// Package bundle is the offline trust bundle: one signed document with the
// CA certificates, the issuing CA's current CRL and the root's ARL (its CRL
// of the CAs it certified), so that a pharmacy whose network is down can
// still verify signatures and every certificate of their chains — and
// knows, from each CRL's own signed thisUpdate, how old its evidence is.
//
// The bundle is a compact JWS (RFC 7515) whose x5c chain ends at a root the
// verifier already pins and whose signer holds the trust-bundle-signing
// EKU. Its payload, versioned, is:
//
//	{"v": 1, "issued_at": RFC 3339, "roots": [b64 DER], "intermediates": [b64 DER], "crls": [b64 DER]}
//
// crls holds the intermediates' CRLs and the roots' ARLs. Version 2 adds
//
//	"logs": [{"origin": "…", "vkeys": ["name+hash+base64", …], "url": "…"}]
//
// the tamper-evident audit logs (trustd's own, rxd's) and the note keys
// their checkpoints are signed with (docs/audit-log.md): an auditor who
// holds the bundle knows which keys to trust. A bundle without logs is
// still written as version 1, which older verifiers read.
package bundle

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"golang.org/x/mod/sumdb/note"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
)

// ContentType of a bundle over HTTP, and its JWS typ.
const (
	ContentType = "application/nuskha-trust-bundle+jws"
	typ         = "nuskha-trust-bundle+jws"
)

// MaxSize bounds what Verify reads (a CRL with a million entries is ~40 MB).
const MaxSize = 256 << 20

// Payload is the signed content.
type Payload struct {
	V             int       `json:"v"`
	IssuedAt      time.Time `json:"issued_at"`
	Roots         [][]byte  `json:"roots"`
	Intermediates [][]byte  `json:"intermediates"`
	CRLs          [][]byte  `json:"crls"`
	Logs          []Log     `json:"logs,omitempty"`
}

// Log is an audit log relying parties may audit: its origin (C2SP
// tlog-checkpoint), the note verifier keys its checkpoints may be signed
// with (current and retired), and where it is served, if known.
type Log struct {
	Origin       string   `json:"origin"`
	VerifierKeys []string `json:"vkeys"`
	URL          string   `json:"url,omitempty"`
}

// check refuses a log without an origin of one line, or with a key that is
// not a note verifier key.
func (l Log) check() error {
	if l.Origin == "" || strings.ContainsAny(l.Origin, " \t\r\n") {
		return fmt.Errorf("log origin %q must be one line without spaces", l.Origin)
	}
	if len(l.VerifierKeys) == 0 {
		return fmt.Errorf("log %s has no verifier key", l.Origin)
	}
	for _, k := range l.VerifierKeys {
		if _, err := note.NewVerifier(k); err != nil {
			return fmt.Errorf("log %s: verifier key %q: %v", l.Origin, k, err)
		}
	}
	return nil
}

// algorithms are the JWS algorithms accepted on bundles. Unexported, so
// that no importer can widen what Verify accepts.
var algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.PS256}

// Algorithms lists the JWS algorithms accepted on bundles, in a new slice
// on each call.
func Algorithms() []jose.SignatureAlgorithm { return slices.Clone(algorithms) }

// Sign makes a bundle. chain is the signer's certificate and the
// intermediate that issued it.
func Sign(p Payload, key crypto.Signer, chain []*x509.Certificate) ([]byte, error) {
	p.V = 1
	if len(p.Logs) > 0 {
		p.V = 2
	}
	for _, l := range p.Logs {
		if err := l.check(); err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
	}
	body, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	alg, err := pki.JOSEAlgorithm(key.Public())
	if err != nil {
		return nil, err
	}
	x5c := make([]string, len(chain))
	for i, c := range chain {
		x5c[i] = base64.StdEncoding.EncodeToString(c.Raw) // x5c is standard base64 (RFC 7515 §4.1.6)
	}
	opts := (&jose.SignerOptions{}).WithType(typ).WithHeader("x5c", x5c)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: cryptosigner.Opaque(key)}, opts)
	if err != nil {
		return nil, err
	}
	jws, err := signer.Sign(body)
	if err != nil {
		return nil, fmt.Errorf("bundle: signing: %w", err)
	}
	s, err := jws.CompactSerialize()
	return []byte(s), err
}

// Verified is a bundle whose signature and contents checked out.
type Verified struct {
	IssuedAt      time.Time
	Roots         []*x509.Certificate // the pinned roots the bundle relies on
	Intermediates []*x509.Certificate // each chains to a pinned root
	CRLs          []CRL               // each signed by one of Intermediates or (an ARL) of Roots
	Signer        *x509.Certificate
	// Logs are the audit logs the bundle names (version 2).
	Logs []Log
}

// Log returns the log of origin the bundle names, if it names it.
func (v *Verified) Log(origin string) (Log, bool) {
	for _, l := range v.Logs {
		if l.Origin == origin {
			return l, true
		}
	}
	return Log{}, false
}

// CRL is a verified CRL and the certificate that signed it.
type CRL struct {
	List   *x509.RevocationList
	Issuer *x509.Certificate
}

// Verify checks a bundle against the verifier's pinned roots at now. Only
// pinned roots are trusted, whatever the bundle lists. It does not judge
// freshness: the revocation checker does, from each CRL's thisUpdate.
func Verify(data []byte, pinned []*x509.Certificate, arc pki.Arc, now time.Time) (*Verified, error) {
	bad := func(format string, args ...any) error { return errs.New(errs.BadTrustBundle, format, args...) }
	if len(data) > MaxSize {
		return nil, bad("bundle larger than %d bytes", MaxSize)
	}
	token := string(bytes.TrimSpace(data))
	if !pki.CanonicalCompact(token) {
		return nil, bad("not a compact JWS of three base64url parts")
	}
	jws, err := jose.ParseSignedCompact(token, algorithms)
	if err != nil {
		return nil, bad("not a compact JWS with an accepted algorithm: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, bad("exactly one signature expected")
	}
	h := jws.Signatures[0].Protected
	if t, _ := h.ExtraHeaders[jose.HeaderType].(string); t != typ {
		return nil, bad("typ is %q, want %q", t, typ)
	}
	roots := x509.NewCertPool()
	for _, r := range pinned {
		roots.AddCert(r)
	}
	chains, err := h.Certificates(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return nil, bad("the signer's certificate does not chain to a pinned root: %v", err)
	}
	signer := chains[0][0]
	if !slices.ContainsFunc(signer.UnknownExtKeyUsage, func(o asn1.ObjectIdentifier) bool { return o.Equal(arc.EKUTrustBundleSigning()) }) {
		return nil, bad("the signer's certificate is not for signing trust bundles")
	}
	body, err := jws.Verify(signer.PublicKey)
	if err != nil {
		return nil, bad("signature does not verify")
	}
	var p Payload
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, bad("payload: %v", err)
	}
	switch {
	case p.V == 1 && len(p.Logs) > 0:
		return nil, bad("version 1 has no logs")
	case p.V != 1 && p.V != 2:
		return nil, bad("version %d not supported", p.V)
	}
	for _, l := range p.Logs {
		if err := l.check(); err != nil {
			return nil, bad("%v", err)
		}
	}
	if p.IssuedAt.After(now.Add(5 * time.Minute)) {
		return nil, bad("issued in the future (%s)", p.IssuedAt.Format(time.RFC3339))
	}
	v := &Verified{IssuedAt: p.IssuedAt, Signer: signer, Logs: p.Logs}
	for _, der := range p.Roots {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, bad("root: %v", err)
		}
		for _, pr := range pinned {
			if c.Equal(pr) {
				v.Roots = append(v.Roots, pr)
			}
		}
	}
	if len(v.Roots) == 0 {
		return nil, bad("the bundle names none of the pinned roots")
	}
	for _, der := range p.Intermediates {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, bad("intermediate: %v", err)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return nil, bad("intermediate %q does not chain to a pinned root: %v", c.Subject.CommonName, err)
		}
		v.Intermediates = append(v.Intermediates, c)
	}
	for _, der := range p.CRLs {
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, bad("CRL: %v", err)
		}
		var issuer *x509.Certificate
		for _, c := range slices.Concat(v.Intermediates, v.Roots) {
			if bytes.Equal(c.RawSubject, crl.RawIssuer) && crl.CheckSignatureFrom(c) == nil {
				issuer = c
			}
		}
		if issuer == nil {
			return nil, bad("a CRL is not signed by any of the bundle's intermediates or pinned roots")
		}
		v.CRLs = append(v.CRLs, CRL{List: crl, Issuer: issuer})
	}
	return v, nil
}
