package rx

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/revocation"
)

// StatusChecker is what the verifier needs from the revocation library:
// the status of every certificate of a chain (leaf first, ending at a
// root), the leaf's returned; a revoked CA is an error.
type StatusChecker interface {
	CheckChain(ctx context.Context, chain []*x509.Certificate) (revocation.Result, error)
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
	chains map[[32]byte]builtChain // verified chains, by the hash of x5c's certificates
	x5cs   map[string]parsedX5c    // parsed x5c headers, by their exact JSON
}

// builtChain is a chain verified to a root, and what its leaf says.
type builtChain struct {
	certs    []*x509.Certificate
	identity pki.Identity
	idErr    error
}

type parsedX5c struct {
	certs []*x509.Certificate
	thumb string   // base64url SHA-256 of the leaf, as x5t#S256 carries it
	key   [32]byte // SHA-256 of every certificate, the chain cache's key
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
		// An intermediate as an anchor would never be checked against the
		// root's ARL: only roots are trusted.
		if !revocation.SelfSigned(r) {
			return nil, fmt.Errorf("rx: %q is not a self-signed root; give only roots as trust anchors", r.Subject.CommonName)
		}
		pool.AddCert(r)
	}
	return &Verifier{cfg: cfg, roots: pool, chains: map[[32]byte]builtChain{}, x5cs: map[string]parsedX5c{}}, nil
}

// Verified is a document whose signature, signer and content checked out.
type Verified struct {
	Kind         Kind
	Prescription *Prescription // set for KindPrescription
	Dispense     *Dispense     // set for KindDispense
	Cancellation *Cancellation // set for KindCancellation
	Session      *Session      // set for KindSession
	Paper        *Paper        // set for KindPaper
	Ack          *Ack          // set for KindAck
	Receipt      *Receipt      // set for KindReceipt
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
	typ, _ := jsonString(c.header[hTyp])
	if typ != want.Typ() {
		return nil, errs.New(errs.WrongDocumentType, "typ is %q, want %q", typ, want.Typ())
	}
	if _, ok := c.header[hCrit]; !ok {
		return nil, errs.New(errs.BadSignatureHeader, "crit must list %v (JAdES)", understoodCritical)
	}
	x5c, err := v.x5c(c)
	if err != nil {
		return nil, err
	}
	if err := c.verify(x5c.certs[0].PublicKey); err != nil {
		return nil, err
	}
	sigTs, ok := jsonString(c.header[hSigT])
	if !ok {
		return nil, errs.New(errs.BadSignatureHeader, "sigT must be a string")
	}
	sigT, err := parseUTC(sigTs)
	if err != nil {
		return nil, errs.New(errs.BadSignatureHeader, "sigT %q is not YYYY-MM-DDThh:mm:ssZ", sigTs)
	}
	out := &Verified{Kind: want, Payload: c.payload, SigningTime: sigT, Token: token}
	doc, err := decode(want, c.payload)
	if err != nil {
		return nil, err
	}
	if out.Chain, out.Signer, out.Status, err = v.checkSigner(ctx, x5c, doc, sigT); err != nil {
		return nil, err
	}
	switch d := doc.(type) {
	case *Prescription:
		out.Prescription = d
	case *Dispense:
		out.Dispense = d
	case *Cancellation:
		out.Cancellation = d
	case *Session:
		out.Session = d
	case *Paper:
		out.Paper = d
	case *Ack:
		out.Ack = d
	case *Receipt:
		out.Receipt = d
	}
	return out, nil
}

// checkSigner is everything the verifier checks of who signed doc, once
// the signature itself is known good: sigT within the accepted window, the
// chain to a configured root and valid at sigT, the signing profile for
// the kind, the document naming the certificate's subject, and revocation
// status at sigT from fresh evidence. Verify and Sign both call it, so
// that what is signed is what verifies.
func (v *Verifier) checkSigner(ctx context.Context, x5c parsedX5c, doc Document, sigT time.Time) ([]*x509.Certificate, pki.Identity, revocation.Result, error) {
	fail := func(err error) ([]*x509.Certificate, pki.Identity, revocation.Result, error) {
		return nil, pki.Identity{}, revocation.Result{}, err
	}
	now := v.cfg.Now()
	switch {
	case sigT.After(now.Add(v.cfg.MaxSkew)):
		return fail(errs.New(errs.SigningTimeInFuture, "signed at %s, later than now (%s) by more than %s", sigT.UTC().Format(sigTFormat), now.UTC().Format(sigTFormat), v.cfg.MaxSkew))
	case sigT.Before(now.Add(-v.cfg.MaxAge)):
		return fail(errs.New(errs.SigningTimeTooOld, "signed at %s, more than %s ago", sigT.UTC().Format(sigTFormat), v.cfg.MaxAge))
	}
	built, err := v.chain(x5c, sigT)
	if err != nil {
		return fail(err)
	}
	chain := built.certs
	id, err := v.signerProfile(built, doc.Kind())
	if err != nil {
		return fail(err)
	}
	if err := bindSigner(doc, id); err != nil {
		return fail(err)
	}
	status, err := v.cfg.Status.CheckChain(ctx, chain)
	if err != nil {
		return fail(err)
	}
	if err := status.GoodAt(sigT); err != nil {
		return fail(err)
	}
	return chain, id, status, nil
}

// Sign signs doc as the package's Sign does, but only once checkSigner,
// the verifier's own checks of the signer, pass for this key's chain at
// sigT: a card is never asked to sign what this verifier would refuse
// (another role's certificate, another practitioner's council number, a
// revoked certificate, or one whose status cannot be shown). Refusals are
// *errs.Error with the codes Verify gives.
func (v *Verifier) Sign(ctx context.Context, doc Document, key crypto.Signer, chain []*x509.Certificate, sigT time.Time) (string, error) {
	payload, err := prepare(doc, key, chain)
	if err != nil {
		return "", err
	}
	x5c, err := newParsedX5c(chain)
	if err != nil {
		return "", err
	}
	// The verifier sees sigT to the second.
	sigT = sigT.UTC().Truncate(time.Second)
	if _, _, _, err := v.checkSigner(ctx, x5c, doc, sigT); err != nil {
		return "", err
	}
	token, err := signPayload(doc.Kind(), payload, key, chain, sigT)
	if err != nil {
		return "", err
	}
	// A token's signature is checked as a verifier will check it: a card
	// or an HSM that returns a bad signature is caught here, not at the
	// pharmacy. A key that signs in this process's memory, with Go's own
	// crypto, has no such fault to catch; checking it was half the cost of
	// the exchange's acknowledgement (BenchmarkSignAck).
	if inProcess(key) {
		return token, nil
	}
	c, err := parseCompact(token)
	if err == nil {
		err = c.verify(chain[0].PublicKey)
	}
	if err != nil {
		return "", fmt.Errorf("rx: the token's signature does not verify: %w", err)
	}
	return token, nil
}

// inProcess reports whether key signs in this process's memory: one of
// crypto's own private keys, or a key that says so (internal/hsm's keys
// read from encrypted files). A token's key — a card, an HSM, anything
// else — is not.
func inProcess(key crypto.Signer) bool {
	switch k := key.(type) {
	case *ecdsa.PrivateKey, ed25519.PrivateKey, *rsa.PrivateKey:
		return true
	case interface{ InProcess() bool }:
		return k.InProcess()
	}
	return false
}

// Peek reads what a compact JWS says it is, verifying nothing: the kind its
// typ names and its payload. For tools that must choose how to verify a
// token, or name the document it holds; nothing returned is to be trusted.
func Peek(token string) (Kind, []byte, error) {
	c, err := parseCompact(token)
	if err != nil {
		return "", nil, err
	}
	typ, _ := jsonString(c.header[hTyp])
	for _, k := range Kinds() {
		if typ == k.Typ() {
			return k, c.payload, nil
		}
	}
	return "", nil, errs.New(errs.WrongDocumentType, "typ %q is not a Nuskha document's", typ)
}

// x5c decodes the certificate chain header and checks x5t#S256 against it.
// Parsed chains are cached by the header's exact bytes: every prescription
// of one practitioner carries the same x5c.
func (v *Verifier) x5c(c *compact) (parsedX5c, error) {
	v.mu.RLock()
	p, ok := v.x5cs[string(c.header[hX5c])] // no copy for a lookup
	v.mu.RUnlock()
	if !ok {
		var err error
		if p, err = parseX5c(c.header[hX5c]); err != nil {
			return parsedX5c{}, err
		}
		v.mu.Lock()
		if len(v.x5cs) >= maxCached {
			v.x5cs = map[string]parsedX5c{}
		}
		v.x5cs[string(c.header[hX5c])] = p
		v.mu.Unlock()
	}
	thumb, ok := jsonString(c.header[hX5tS256])
	if !ok {
		return parsedX5c{}, errs.New(errs.BadSignatureHeader, "x5t#S256 is missing (JAdES requires the signer's certificate digest)")
	}
	// Strict base64url has one encoding per value, so comparing the text
	// compares the digests.
	if thumb != p.thumb {
		return parsedX5c{}, errs.New(errs.BadSignatureHeader, "x5t#S256 is not the digest of the first x5c certificate")
	}
	return p, nil
}

func parseX5c(raw jsontext.Value) (parsedX5c, error) {
	var b64s []string
	if err := json.Unmarshal(raw, &b64s); err != nil || len(b64s) < 2 || len(b64s) > 4 {
		return parsedX5c{}, errs.New(errs.BadSignatureHeader, "x5c must list the signer's certificate and its intermediate(s)")
	}
	certs := make([]*x509.Certificate, len(b64s))
	for i, s := range b64s {
		// Strict still skips CR and LF (from \r and \n escapes): a value
		// that is not the encoding of its bytes has some.
		der, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil || base64.StdEncoding.EncodedLen(len(der)) != len(s) {
			return parsedX5c{}, errs.New(errs.BadSignatureHeader, "x5c[%d] is not standard base64", i)
		}
		if certs[i], err = x509.ParseCertificate(der); err != nil {
			return parsedX5c{}, errs.New(errs.BadSignatureHeader, "x5c[%d] is not a certificate", i)
		}
	}
	return newParsedX5c(certs)
}

// newParsedX5c is the x5c of certs, a signer's certificate and then its
// intermediate(s).
func newParsedX5c(certs []*x509.Certificate) (parsedX5c, error) {
	if len(certs) < 2 || len(certs) > 4 {
		return parsedX5c{}, errs.New(errs.BadSignatureHeader, "x5c must list the signer's certificate and its intermediate(s)")
	}
	p := parsedX5c{certs: certs, thumb: Thumbprint(certs[0])}
	h := sha256.New()
	for _, c := range certs {
		h.Write(c.Raw)
	}
	h.Sum(p.key[:0])
	return p, nil
}

// chain verifies x5c to a configured root, and each certificate's validity
// at sigT. Chain building does not depend on time (signatures, names,
// constraints), so it is cached by the exact x5c; validity is checked on
// every call.
func (v *Verifier) chain(p parsedX5c, sigT time.Time) (builtChain, error) {
	x5c := p.certs
	v.mu.RLock()
	built, ok := v.chains[p.key]
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
			return builtChain{}, errs.Wrap(errs.UntrustedChain, err, "the signer's certificate does not chain to a trusted root")
		}
		if len(chains[0]) < 2 {
			return builtChain{}, errs.New(errs.UntrustedChain, "the signer's certificate is a root; signatures come from end-entity certificates")
		}
		built = builtChain{certs: chains[0]}
		built.identity, built.idErr = v.cfg.Arc.IdentityOf(leaf)
		v.mu.Lock()
		if len(v.chains) >= maxCached {
			v.chains = map[[32]byte]builtChain{}
		}
		v.chains[p.key] = built
		v.mu.Unlock()
	}
	for _, c := range built.certs {
		if sigT.Before(c.NotBefore) || sigT.After(c.NotAfter) {
			return builtChain{}, errs.New(errs.CertificateNotValidAt, "%q is valid from %s to %s, not at the signing time %s", c.Subject.CommonName,
				c.NotBefore.UTC().Format(sigTFormat), c.NotAfter.UTC().Format(sigTFormat), sigT.UTC().Format(sigTFormat))
		}
	}
	return built, nil
}

// signerProfile checks that the leaf is a signing certificate for this
// kind of document and returns the identity it carries.
func (v *Verifier) signerProfile(built builtChain, k Kind) (pki.Identity, error) {
	leaf := built.certs[0]
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
	oids := func(o ...asn1.ObjectIdentifier) []asn1.ObjectIdentifier { return o }
	practitioner := rule{oids(a.EKUPrescriptionSigning()), oids(a.PolicyPractitionerSigning()), []pki.Role{pki.RolePractitioner}}
	exchange := rule{oids(a.EKUExchangeReceiptSigning()), oids(a.PolicyExchangeReceiptSigning()), []pki.Role{pki.RoleService}}
	rules := map[Kind]rule{
		KindPrescription: practitioner,
		KindCancellation: practitioner,
		KindDispense: {oids(a.EKUDispenseSigning(), a.EKUParaclinicSigning()),
			oids(a.PolicyPharmacySigning(), a.PolicyParaclinicSigning()), []pki.Role{pki.RolePharmacy, pki.RoleParaclinic}},
		// Whoever acts at the exchange opens a session with their card.
		KindSession: {oids(a.EKUPrescriptionSigning(), a.EKUDispenseSigning(), a.EKUParaclinicSigning()),
			oids(a.PolicyPractitionerSigning(), a.PolicyPharmacySigning(), a.PolicyParaclinicSigning()),
			[]pki.Role{pki.RolePractitioner, pki.RolePharmacy, pki.RoleParaclinic}},
		KindPaper:   {oids(a.EKUDispenseSigning()), oids(a.PolicyPharmacySigning()), []pki.Role{pki.RolePharmacy}},
		KindAck:     exchange,
		KindReceipt: exchange,
	}
	r, ok := rules[k]
	if !ok {
		return wrong("no certificate signs a %s", k)
	}
	id, err := built.identity, built.idErr
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
		return bindDispenser(d.Dispenser, id)
	case *Paper:
		// The paper's prescriber is whoever wrote it; the pharmacy signs.
		return bindDispenser(d.Dispenser, id)
	case *Session, *Ack, *Receipt:
		// A session names no one: its signer is who acts. An
		// acknowledgement or a receipt is the exchange's own; its
		// certificate's profile (signerProfile) is all there is to bind.
		return nil
	default:
		return errs.New(errs.WrongDocumentType, "no signer binding for a %s", doc.Kind())
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

// bindDispenser checks that a dispense record or paper prescription names
// the signing pharmacy or centre.
func bindDispenser(d Dispenser, id pki.Identity) error {
	if d.LicenceNumber != id.RegistrationNumber || d.Role != string(id.Role) {
		return errs.FieldError(errs.PrescriberMismatch, "dispenser", "the record names %s %s, the certificate %s %s", d.Role, d.LicenceNumber, id.Role, id.RegistrationNumber)
	}
	return nil
}

// decode parses a payload of kind k strictly and checks it: one JSON value
// in valid UTF-8, without duplicate member names (at any depth) or nulls
// (other parsers would read such a document differently), member names
// matched exactly (encoding/json v1 folds case, so "ITEMS" beside "items"
// would be read where other parsers ignore it), no unknown members, the
// schema's constraints, the format's own rules, and normal form.
func decode(k Kind, payload []byte) (Document, error) {
	var doc Document
	switch k {
	case KindPrescription:
		doc = &Prescription{}
	case KindDispense:
		doc = &Dispense{}
	case KindCancellation:
		doc = &Cancellation{}
	case KindSession:
		doc = &Session{}
	case KindPaper:
		doc = &Paper{}
	case KindAck:
		doc = &Ack{}
	case KindReceipt:
		doc = &Receipt{}
	default:
		return nil, errs.New(errs.WrongDocumentType, "unknown kind %q", k)
	}
	// The v2 decoder refuses duplicate names, invalid UTF-8 and trailing
	// data by default and matches names case-sensitively.
	if err := jsonv2.Unmarshal(payload, doc, jsonv2.RejectUnknownMembers(true), utcTimes); err != nil {
		return nil, errs.Wrap(errs.InvalidDocument, err, "payload does not decode: %s", jsonProblem(err))
	}
	// It reads null as "leave the zero value". The literal can only be
	// there if its bytes are, so most documents skip the scan.
	if bytes.Contains(payload, []byte("null")) && hasNull(payload) {
		return nil, errs.New(errs.InvalidDocument, "null is not used in documents; leave the member out")
	}
	if err := checkDocument(doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// utcTimes reads every time in a document as parseUTC does, in the one
// spelling the schemas allow, rather than as RFC 3339 allows (fractions of
// a second, offsets).
var utcTimes = jsonv2.WithUnmarshalers(jsonv2.UnmarshalFromFunc(func(dec *jsontext.Decoder, t *time.Time) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	if tok.Kind() != '"' {
		return errNotUTC
	}
	v, err := parseUTC(tok.String())
	if err != nil {
		return err
	}
	*t = v
	return nil
}))

// hasNull reports whether valid JSON b holds the literal null. Outside
// strings, the letter n starts nothing else (true, false and numbers have
// none).
func hasNull(b []byte) bool {
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			i = stringEnd(b, i) - 1
		case 'n':
			return true
		}
	}
	return false
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
	if !normal(doc) {
		return errs.New(errs.InvalidDocument, "the document is not in normal form (Persian letters, digits, spacing, UTC times)")
	}
	return nil
}
