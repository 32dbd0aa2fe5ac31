package rx

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/revocation"
)

// StatusChecker is what the verifier needs from the revocation library.
type StatusChecker interface {
	Check(ctx context.Context, cert, issuer *x509.Certificate) (revocation.Result, error)
}

// Config configures a Verifier. Roots, Arc, Status and Now are required.
type Config struct {
	// Roots are the only trust anchors; x5c may carry intermediates, never roots.
	Roots []*x509.Certificate
	Arc   pki.Arc
	// Status answers revocation questions (revocation.Checker: a bundle
	// offline, OCSP online). Verification fails closed when it cannot.
	Status StatusChecker
	Now    func() time.Time
	// MaxSkew is how far in the future sigT may be (clocks differ) [5m].
	MaxSkew time.Duration
	// MaxAge is how old sigT may be when the document is verified [180 days:
	// a chronic prescription is dispensed over months].
	MaxAge time.Duration
}

// Verifier checks signed documents. It is safe for concurrent use.
type Verifier struct {
	cfg   Config
	roots *x509.CertPool

	mu     sync.RWMutex
	chains map[[32]byte][]*x509.Certificate // verified chains, by the hash of x5c's certificates
	x5cs   map[string]parsedX5c             // parsed x5c headers, by their exact JSON
}

type parsedX5c struct {
	certs []*x509.Certificate
	thumb [32]byte // SHA-256 of the leaf
}

// maxCached bounds each cache: a national verifier sees tens of thousands
// of signers; past that the cache is simply emptied.
const maxCached = 100000

// NewVerifier checks cfg and compiles the schemas.
func NewVerifier(cfg Config) (*Verifier, error) {
	if len(cfg.Roots) == 0 || cfg.Status == nil || cfg.Now == nil {
		return nil, errors.New("rx: verifier needs roots, a status checker and a clock")
	}
	if cfg.MaxSkew == 0 {
		cfg.MaxSkew = 5 * time.Minute
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 180 * 24 * time.Hour
	}
	if _, err := compiled(); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, r := range cfg.Roots {
		pool.AddCert(r)
	}
	return &Verifier{cfg: cfg, roots: pool, chains: map[[32]byte][]*x509.Certificate{}, x5cs: map[string]parsedX5c{}}, nil
}

// Verified is a document whose signature, signer and content checked out.
type Verified struct {
	Kind         Kind
	Prescription *Prescription // set for KindPrescription
	Dispense     *Dispense     // set for KindDispense
	Cancellation *Cancellation // set for KindCancellation
	Payload      []byte        // exactly the signed bytes
	SigningTime  time.Time
	Chain        []*x509.Certificate // leaf first, ending at a configured root
	Signer       pki.Identity
	Status       revocation.Result
	Token        string // the compact JWS as verified
}

// SHA256 is the digest later documents use to refer to this one (see SHA256).
func (v *Verified) SHA256() string { return SHA256(v.Token) }

// Verify checks a compact JWS expected to be of kind want. Every refusal
// is an *errs.Error with a stable code.
func (v *Verifier) Verify(ctx context.Context, token string, want Kind) (*Verified, error) {
	c, err := parseCompact(token)
	if err != nil {
		return nil, err
	}
	for name := range c.header {
		if !slices.Contains(allowedHeaders, name) {
			return nil, errs.New(errs.BadSignatureHeader, "header parameter %q is not part of the format", name)
		}
	}
	var typ string
	if err := json.Unmarshal(c.header[hTyp], &typ); err != nil || typ != want.Typ() {
		return nil, errs.New(errs.WrongDocumentType, "typ is %q, want %q", typ, want.Typ())
	}
	if _, ok := c.header[hCrit]; !ok {
		return nil, errs.New(errs.BadSignatureHeader, "crit must list %v (JAdES)", understoodCritical)
	}
	x5c, err := v.x5c(c)
	if err != nil {
		return nil, err
	}
	if err := c.verify(x5c[0].PublicKey); err != nil {
		return nil, err
	}
	var sigTs string
	if err := json.Unmarshal(c.header[hSigT], &sigTs); err != nil {
		return nil, errs.New(errs.BadSignatureHeader, "sigT must be a string")
	}
	sigT, err := time.Parse(sigTFormat, sigTs)
	if err != nil {
		return nil, errs.New(errs.BadSignatureHeader, "sigT %q is not YYYY-MM-DDThh:mm:ssZ", sigTs)
	}
	out := &Verified{Kind: want, Payload: c.payload, SigningTime: sigT, Token: token}
	doc, err := decode(want, c.payload)
	if err != nil {
		return nil, err
	}
	now := v.cfg.Now()
	switch {
	case sigT.After(now.Add(v.cfg.MaxSkew)):
		return nil, errs.New(errs.SigningTimeInFuture, "signed at %s, later than now (%s) by more than %s", sigTs, now.UTC().Format(sigTFormat), v.cfg.MaxSkew)
	case sigT.Before(now.Add(-v.cfg.MaxAge)):
		return nil, errs.New(errs.SigningTimeTooOld, "signed at %s, more than %s ago", sigTs, v.cfg.MaxAge)
	}
	chain, err := v.chain(x5c, sigT)
	if err != nil {
		return nil, err
	}
	out.Chain = chain
	if out.Signer, err = v.signerProfile(chain[0], want); err != nil {
		return nil, err
	}
	if err := bindSigner(doc, out.Signer); err != nil {
		return nil, err
	}
	out.Status, err = v.cfg.Status.Check(ctx, chain[0], chain[1])
	if err != nil {
		return nil, err
	}
	if err := out.Status.GoodAt(sigT); err != nil {
		return nil, err
	}
	switch d := doc.(type) {
	case *Prescription:
		out.Prescription = d
	case *Dispense:
		out.Dispense = d
	case *Cancellation:
		out.Cancellation = d
	}
	return out, nil
}

// x5c decodes the certificate chain header and checks x5t#S256 against it.
// Parsed chains are cached by the header's exact bytes: every prescription
// of one practitioner carries the same x5c.
func (v *Verifier) x5c(c *compact) ([]*x509.Certificate, error) {
	raw := string(c.header[hX5c])
	v.mu.RLock()
	p, ok := v.x5cs[raw]
	v.mu.RUnlock()
	if !ok {
		var err error
		if p, err = parseX5c(c.header[hX5c]); err != nil {
			return nil, err
		}
		v.mu.Lock()
		if len(v.x5cs) >= maxCached {
			v.x5cs = map[string]parsedX5c{}
		}
		v.x5cs[raw] = p
		v.mu.Unlock()
	}
	var thumb string
	if err := json.Unmarshal(c.header[hX5tS256], &thumb); err != nil {
		return nil, errs.New(errs.BadSignatureHeader, "x5t#S256 is missing (JAdES requires the signer's certificate digest)")
	}
	if got, err := b64.DecodeString(thumb); err != nil || !bytes.Equal(got, p.thumb[:]) {
		return nil, errs.New(errs.BadSignatureHeader, "x5t#S256 is not the digest of the first x5c certificate")
	}
	return p.certs, nil
}

func parseX5c(raw json.RawMessage) (parsedX5c, error) {
	var b64s []string
	if err := json.Unmarshal(raw, &b64s); err != nil || len(b64s) < 2 || len(b64s) > 4 {
		return parsedX5c{}, errs.New(errs.BadSignatureHeader, "x5c must list the signer's certificate and its intermediate(s)")
	}
	certs := make([]*x509.Certificate, len(b64s))
	for i, s := range b64s {
		der, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil {
			return parsedX5c{}, errs.New(errs.BadSignatureHeader, "x5c[%d] is not standard base64", i)
		}
		if certs[i], err = x509.ParseCertificate(der); err != nil {
			return parsedX5c{}, errs.New(errs.BadSignatureHeader, "x5c[%d] is not a certificate", i)
		}
	}
	return parsedX5c{certs: certs, thumb: sha256.Sum256(certs[0].Raw)}, nil
}

// chain verifies x5c to a configured root, and each certificate's validity
// at sigT. Chain building does not depend on time (signatures, names,
// constraints), so it is cached by the exact x5c; validity is checked on
// every call.
func (v *Verifier) chain(x5c []*x509.Certificate, sigT time.Time) ([]*x509.Certificate, error) {
	h := sha256.New()
	for _, c := range x5c {
		h.Write(c.Raw)
	}
	var key [32]byte
	h.Sum(key[:0])
	v.mu.RLock()
	chain, ok := v.chains[key]
	v.mu.RUnlock()
	if !ok {
		inter := x509.NewCertPool()
		for _, c := range x5c[1:] {
			inter.AddCert(c)
		}
		leaf := x5c[0]
		// Built at a time inside the leaf's validity, so that only
		// structure decides here; sigT is checked below.
		chains, err := leaf.Verify(x509.VerifyOptions{Roots: v.roots, Intermediates: inter, CurrentTime: leaf.NotBefore.Add(time.Second),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err != nil {
			return nil, errs.Wrap(errs.UntrustedChain, err, "the signer's certificate does not chain to a trusted root")
		}
		chain = chains[0]
		if len(chain) < 2 {
			return nil, errs.New(errs.UntrustedChain, "the signer's certificate is a root; signatures come from end-entity certificates")
		}
		v.mu.Lock()
		if len(v.chains) >= maxCached {
			v.chains = map[[32]byte][]*x509.Certificate{}
		}
		v.chains[key] = chain
		v.mu.Unlock()
	}
	for _, c := range chain {
		if sigT.Before(c.NotBefore) || sigT.After(c.NotAfter) {
			return nil, errs.New(errs.CertificateNotValidAt, "%q is valid from %s to %s, not at the signing time %s", c.Subject.CommonName,
				c.NotBefore.UTC().Format(sigTFormat), c.NotAfter.UTC().Format(sigTFormat), sigT.UTC().Format(sigTFormat))
		}
	}
	return chain, nil
}

// signerProfile checks that the leaf is a signing certificate for this
// kind of document and returns the identity it carries.
func (v *Verifier) signerProfile(leaf *x509.Certificate, k Kind) (pki.Identity, error) {
	wrong := func(format string, args ...any) (pki.Identity, error) {
		return pki.Identity{}, errs.New(errs.WrongCertProfile, format, args...)
	}
	const need = x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment
	if leaf.KeyUsage&need != need {
		return wrong("the certificate lacks digitalSignature and nonRepudiation")
	}
	type rule struct {
		ekus, policies []asn1.ObjectIdentifier
		roles          []pki.Role
	}
	a := v.cfg.Arc
	rules := map[Kind]rule{
		KindPrescription: {[]asn1.ObjectIdentifier{a.EKUPrescriptionSigning()}, []asn1.ObjectIdentifier{a.PolicyPractitionerSigning()}, []pki.Role{pki.RolePractitioner}},
		KindCancellation: {[]asn1.ObjectIdentifier{a.EKUPrescriptionSigning()}, []asn1.ObjectIdentifier{a.PolicyPractitionerSigning()}, []pki.Role{pki.RolePractitioner}},
		KindDispense: {[]asn1.ObjectIdentifier{a.EKUDispenseSigning(), a.EKUParaclinicSigning()},
			[]asn1.ObjectIdentifier{a.PolicyPharmacySigning(), a.PolicyParaclinicSigning()}, []pki.Role{pki.RolePharmacy, pki.RoleParaclinic}},
	}
	r := rules[k]
	id, err := a.IdentityOf(leaf)
	if err != nil {
		return wrong("the certificate carries no registry identity")
	}
	i := slices.Index(r.roles, id.Role)
	if i < 0 {
		return wrong("a %s certificate cannot sign a %s", id.Role, k)
	}
	if !slices.ContainsFunc(leaf.UnknownExtKeyUsage, r.ekus[i].Equal) {
		return wrong("the certificate is not for signing a %s (extended key usage)", k)
	}
	if !slices.ContainsFunc(leaf.PolicyIdentifiers, r.policies[i].Equal) {
		return wrong("the certificate lacks the %s signing policy", id.Role)
	}
	return id, nil
}

// bindSigner checks that the document names the certificate's subject.
func bindSigner(doc Document, id pki.Identity) error {
	mismatch := func(field, format string, args ...any) error {
		return errs.FieldError(errs.PrescriberMismatch, field, format, args...)
	}
	var p Prescriber
	switch d := doc.(type) {
	case *Prescription:
		p = d.Prescriber
	case *Cancellation:
		p = d.Prescriber
	case *Dispense:
		if d.Dispenser.LicenceNumber != id.RegistrationNumber || d.Dispenser.Role != string(id.Role) {
			return mismatch("dispenser", "the record names %s %s, the certificate %s %s", d.Dispenser.Role, d.Dispenser.LicenceNumber, id.Role, id.RegistrationNumber)
		}
		return nil
	}
	switch {
	case p.CouncilNumber != id.RegistrationNumber:
		return mismatch("prescriber.council_number", "the document names %s, the certificate %s", p.CouncilNumber, id.RegistrationNumber)
	case p.Profession != id.Profession:
		return mismatch("prescriber.profession", "the document says %s, the certificate %s", p.Profession, id.Profession)
	case p.Specialty != id.Specialty:
		return mismatch("prescriber.specialty", "the document says %s, the certificate %s", p.Specialty, id.Specialty)
	}
	return nil
}

// decode parses a payload of kind k strictly and checks it: JSON without
// duplicate member names or nulls (other parsers would read such a
// document differently), no unknown members, the schema's constraints, the
// format's own rules, and normal form.
func decode(k Kind, payload []byte) (Document, error) {
	var doc Document
	switch k {
	case KindPrescription:
		doc = &Prescription{}
	case KindDispense:
		doc = &Dispense{}
	case KindCancellation:
		doc = &Cancellation{}
	default:
		return nil, errs.New(errs.WrongDocumentType, "unknown kind %q", k)
	}
	if err := strictJSON(payload); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(doc); err != nil {
		return nil, errs.Wrap(errs.InvalidDocument, err, "payload does not decode: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return nil, errs.New(errs.InvalidDocument, "data after the document")
	}
	if err := checkDocument(doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// checkDocument applies the schema's constraints, the format's rules and
// normal form to a decoded document.
func checkDocument(doc Document) error {
	if err := doc.rules(); err != nil {
		return err
	}
	if err := doc.Check(); err != nil {
		return err
	}
	normal := doc.clone()
	normal.Normalize()
	if !reflect.DeepEqual(normal, doc) {
		return errs.New(errs.InvalidDocument, "the document is not in normal form (Persian letters, digits, spacing, UTC times)")
	}
	return nil
}

// strictJSON refuses, at any depth, a member name given twice and the
// literal null, and checks the whole is one valid JSON value.
func strictJSON(b []byte) error {
	if !json.Valid(b) {
		return errs.New(errs.InvalidDocument, "payload is not JSON")
	}
	i := skipSpace(b, 0)
	end, err := strictValue(b, i, 0)
	if err != nil {
		return err
	}
	if skipSpace(b, end) != len(b) {
		return errs.New(errs.InvalidDocument, "data after the document")
	}
	return nil
}

const maxDepth = 16

// strictValue checks the valid JSON value at i and returns its end.
func strictValue(b []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return 0, errs.New(errs.InvalidDocument, "nested more than %d deep", maxDepth)
	}
	switch b[i] {
	case '{':
		seen := map[string]bool{}
		i = skipSpace(b, i+1)
		for b[i] != '}' {
			end := stringEnd(b, i)
			var name string
			if err := json.Unmarshal(b[i:end], &name); err != nil {
				return 0, errs.New(errs.InvalidDocument, "payload is not JSON")
			}
			if seen[name] {
				return 0, errs.New(errs.InvalidDocument, "member %q appears twice", name)
			}
			// encoding/json matches names regardless of case (and folds
			// some non-ASCII letters onto ASCII ones), so "ITEMS" beside
			// "items" would be read where other parsers ignore it. Every
			// name in the format is lower-case ASCII; nothing else is let in.
			if !lowerASCII(name) {
				return 0, errs.New(errs.InvalidDocument, "member name %q is not lower-case ASCII", name)
			}
			seen[name] = true
			i = skipSpace(b, skipSpace(b, end)+1) // past the colon
			v, err := strictValue(b, i, depth+1)
			if err != nil {
				return 0, err
			}
			i = skipSpace(b, v)
			if b[i] == ',' {
				i = skipSpace(b, i+1)
			}
		}
		return i + 1, nil
	case '[':
		i = skipSpace(b, i+1)
		for b[i] != ']' {
			v, err := strictValue(b, i, depth+1)
			if err != nil {
				return 0, err
			}
			i = skipSpace(b, v)
			if b[i] == ',' {
				i = skipSpace(b, i+1)
			}
		}
		return i + 1, nil
	case '"':
		return stringEnd(b, i), nil
	case 'n':
		return 0, errs.New(errs.InvalidDocument, "null is not used in documents; leave the member out")
	}
	return valueEnd(b, i), nil
}

func lowerASCII(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
