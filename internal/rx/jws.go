package rx

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
)

// algorithms are the only JWS algorithms accepted: ECDSA on P-256 and
// P-384, and RSASSA-PSS for the RSA keys smart cards often hold. Never
// "none", never HMAC, never PKCS#1 v1.5. Unexported, so that no importer
// can widen what the verifier accepts.
var algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.PS256}

// Algorithms lists the JWS algorithms the verifier accepts, in a new slice
// on each call.
func Algorithms() []jose.SignatureAlgorithm { return slices.Clone(algorithms) }

// Header parameter names (RFC 7515 and ETSI TS 119 182-1).
const (
	hAlg     = "alg"
	hTyp     = "typ"
	hX5c     = "x5c"
	hX5tS256 = "x5t#S256"
	hSigT    = "sigT"
	hCrit    = "crit"
	hKid     = "kid"
)

// understoodCritical are the header parameters the verifier understands
// when listed in crit: the JAdES signing time. (go-jose refuses to verify
// any crit but b64, which is why the verifier has its own small path.)
var understoodCritical = []string{hSigT}

// allowedHeaders are every header parameter a document signature may carry.
var allowedHeaders = []string{hAlg, hTyp, hX5c, hX5tS256, hSigT, hCrit, hKid}

// sigTFormat is JAdES' signing-time format: UTC, seconds, a Z. Every time
// in a document is written so too (the schemas' utc pattern).
const sigTFormat = "2006-01-02T15:04:05Z"

// parseUTC reads a time written exactly as sigTFormat: the schemas' utc
// pattern, ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$.
// time.Parse alone is laxer: it takes a fractional second after the
// seconds "even if the layout does not signify its presence", and drops
// digits past the ninth, so "10:00:00.0000000009Z" would be 10:00:00 here,
// while a verifier built on the published schema refuses it and a reader
// that rounds reads another instant. It also takes a one-digit hour.
func parseUTC(s string) (time.Time, error) {
	if len(s) != len(sigTFormat) {
		return time.Time{}, errNotUTC
	}
	for i := 0; i < len(s); i++ {
		if l := sigTFormat[i]; '0' <= l && l <= '9' {
			if s[i] < '0' || s[i] > '9' {
				return time.Time{}, errNotUTC
			}
		} else if s[i] != l {
			return time.Time{}, errNotUTC
		}
	}
	// The shape is right; Parse checks the ranges (month 13, hour 24,
	// February 30) and, the layout having no zone, returns UTC.
	return time.Parse(sigTFormat, s)
}

var errNotUTC = errors.New("a time is written YYYY-MM-DDThh:mm:ssZ")

// Sign normalises doc, checks it, and signs it with key as a compact JWS:
// alg from the key, typ of the kind, x5c (leaf first, standard base64),
// x5t#S256, sigT and crit ["sigT"]. chain is the signer's certificate and
// its intermediates; the key MUST be the leaf's.
//
// Sign checks the document, not the signer: it signs with any certificate
// (the tests make refusable documents with it). Signing applications MUST
// use Verifier.Sign, which signs only what the verifier would accept.
func Sign(doc Document, key crypto.Signer, chain []*x509.Certificate, sigT time.Time) (string, error) {
	payload, err := prepare(doc, key, chain)
	if err != nil {
		return "", err
	}
	return signPayload(doc.Kind(), payload, key, chain, sigT)
}

// prepare normalises doc in place, checks it and the key, and returns the
// payload to sign.
func prepare(doc Document, key crypto.Signer, chain []*x509.Certificate) ([]byte, error) {
	doc.Normalize()
	payload, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	// The signer checks against the published JSON Schema itself as well
	// as the verifier's compiled rules: a slower, independent second look.
	if err := validateSchema(doc.Kind(), payload); err != nil {
		return nil, err
	}
	if err := checkDocument(doc); err != nil {
		return nil, err
	}
	if len(chain) == 0 {
		return nil, errors.New("rx: no signer certificate")
	}
	if !publicKeyEqual(chain[0].PublicKey, key.Public()) {
		return nil, errors.New("rx: the key is not the certificate's")
	}
	return payload, nil
}

func signPayload(kind Kind, payload []byte, key crypto.Signer, chain []*x509.Certificate, sigT time.Time) (string, error) {
	alg, err := pki.JOSEAlgorithm(key.Public())
	if err != nil {
		return "", err
	}
	x5c := make([]string, len(chain))
	for i, c := range chain {
		x5c[i] = base64.StdEncoding.EncodeToString(c.Raw)
	}
	thumb := sha256.Sum256(chain[0].Raw)
	opts := (&jose.SignerOptions{}).
		WithType(jose.ContentType(kind.Typ())).
		WithHeader(hX5c, x5c).
		WithHeader(hX5tS256, base64.RawURLEncoding.EncodeToString(thumb[:])).
		WithHeader(hSigT, sigT.UTC().Format(sigTFormat)).
		WithHeader(hCrit, understoodCritical)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: cryptosigner.Opaque(jwaSigner{key})}, opts)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("rx: signing: %w", err)
	}
	return jws.CompactSerialize()
}

// jwaSigner makes RSASSA-PSS signatures with a salt as long as the hash,
// as JWA requires for PS256 (RFC 7518 §3.5). go-jose's opaque signer asks
// for the longest salt instead, which other JOSE implementations (WebCrypto
// among them) refuse.
type jwaSigner struct{ crypto.Signer }

func (s jwaSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if pss, ok := opts.(*rsa.PSSOptions); ok {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: pss.HashFunc()}
	}
	return s.Signer.Sign(r, digest, opts)
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// compact is a parsed compact JWS, before any of it is trusted.
type compact struct {
	header       map[string]jsontext.Value
	alg          jose.SignatureAlgorithm
	payload      []byte
	signingInput string // a slice of the token, not a copy
	signature    []byte
}

// b64 is base64url without padding, refusing non-zero trailing bits.
// Strict as it is, it still skips CR and LF: decodeInto refuses those.
var b64 = base64.RawURLEncoding.Strict()

// MaxJWS bounds a signed document (a prescription with fifty items and a
// three-certificate RSA chain is well under this).
const MaxJWS = 256 << 10

// parseCompact splits and decodes a compact JWS and checks what can be
// checked without a key: the algorithm allow-list and crit.
func parseCompact(token string) (*compact, error) {
	if len(token) > MaxJWS {
		return nil, errs.New(errs.MalformedSignature, "larger than %d bytes", MaxJWS)
	}
	h, rest, ok1 := strings.Cut(token, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(s, '.') >= 0 {
		return nil, errs.New(errs.MalformedSignature, "a compact JWS has three parts separated by dots")
	}
	// One buffer for the three decoded parts: they live exactly as long
	// as each other.
	buf := make([]byte, b64.DecodedLen(len(h))+b64.DecodedLen(len(p))+b64.DecodedLen(len(s)))
	rawHeader, buf, err := decodeInto(buf, h)
	if err != nil {
		return nil, errs.New(errs.MalformedSignature, "header is not base64url")
	}
	payload, buf, err := decodeInto(buf, p)
	if err != nil {
		return nil, errs.New(errs.MalformedSignature, "payload is not base64url")
	}
	sig, _, err := decodeInto(buf, s)
	if err != nil {
		return nil, errs.New(errs.MalformedSignature, "signature is not base64url")
	}
	header, err := jsonObject(rawHeader)
	if err != nil {
		return nil, err
	}
	c := &compact{header: header, payload: payload, signature: sig,
		signingInput: token[:len(h)+1+len(p)]}
	alg, ok := jsonString(header[hAlg])
	if !ok || alg == "" {
		return nil, errs.New(errs.BadSignatureHeader, "alg is missing or not a string")
	}
	c.alg = jose.SignatureAlgorithm(alg)
	if !slices.Contains(algorithms, c.alg) {
		return nil, errs.New(errs.UnsupportedAlgorithm, "alg %q is not accepted (%v)", alg, algorithms)
	}
	if err := c.checkCrit(); err != nil {
		return nil, err
	}
	return c, nil
}

// decodeInto decodes s into the front of buf (full-capacity slice, so
// later appends cannot run into the next part) and returns the rest.
//
// s MUST be exactly the encoding of what it decodes to, so that a signed
// document has one spelling. The decoder refuses every byte outside the
// alphabet but CR and LF, which it skips; any skipped byte leaves s longer
// than the encoding of its n decoded bytes. That comparison costs nothing,
// where a scan of the alphabet would read the token once more.
func decodeInto(buf []byte, s string) (out, rest []byte, err error) {
	n, err := b64.Decode(buf[:len(buf):len(buf)], []byte(s))
	if err != nil {
		return nil, nil, err
	}
	if b64.EncodedLen(n) != len(s) {
		return nil, nil, errNotAlphabet
	}
	return buf[:n:n], buf[n:], nil
}

var errNotAlphabet = errors.New("a byte outside the base64url alphabet")

// headerDecoders are reused: a decoder's state is most of what reading a
// header allocates.
var headerDecoders = sync.Pool{New: func() any { return new(jsontext.Decoder) }}

// jsonObject reads one JSON object into its members, refusing duplicate
// names (which encoding/json would silently resolve to the last one, and
// another implementation to the first), invalid UTF-8 and trailing data.
// Each value is checked to be valid JSON but left undecoded, as a slice of
// raw: the header's x5c is most of its bytes and is decoded once per
// signer, not once per signature.
func jsonObject(raw []byte) (map[string]jsontext.Value, error) {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return nil, errs.New(errs.MalformedSignature, "header is not a JSON object")
	}
	dec := headerDecoders.Get().(*jsontext.Decoder)
	// From a bytes.Buffer the decoder reads in place, without a copy.
	dec.Reset(bytes.NewBuffer(raw))
	defer headerDecoders.Put(dec)
	out := make(map[string]jsontext.Value, len(allowedHeaders))
	fail := func(err error) (map[string]jsontext.Value, error) {
		if errors.Is(err, jsontext.ErrDuplicateName) {
			return nil, errs.New(errs.BadSignatureHeader, "a header parameter appears twice: %s", jsonProblem(err))
		}
		return nil, errs.New(errs.MalformedSignature, "header is not a JSON object: %s", jsonProblem(err))
	}
	if _, err := dec.ReadToken(); err != nil {
		return fail(err)
	}
	for dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if err != nil {
			return fail(err)
		}
		name := tok.String() // a token is valid only until the next read
		start := dec.InputOffset()
		if err := dec.SkipValue(); err != nil {
			return fail(err)
		}
		// Between the name and its value lie only white space and the
		// colon, neither of which can begin a JSON value.
		out[name] = bytes.TrimLeft(raw[start:dec.InputOffset()], " \t\r\n:")
	}
	if _, err := dec.ReadToken(); err != nil { // the closing brace, or why not
		return fail(err)
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		if err == nil {
			err = errors.New("data after the object")
		}
		return fail(err)
	}
	return out, nil
}

// jsonString decodes a member that must be a JSON string; ok is false if
// it is absent or anything else. Header values are already known to be
// valid JSON in valid UTF-8, so one without escapes is its own content.
func jsonString(raw jsontext.Value) (s string, ok bool) {
	n := len(raw)
	if n < 2 || raw[0] != '"' || raw[n-1] != '"' {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : n-1]), true
	}
	return s, jsonv2.Unmarshal(raw, &s) == nil
}

// jsonProblem is a decoding error's message without the package prefix.
func jsonProblem(err error) string {
	m := err.Error()
	for _, p := range []string{"jsontext: ", "json: "} {
		m = strings.TrimPrefix(m, p)
	}
	return m
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index after the JSON string starting at i, or -1.
func stringEnd(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// checkCrit applies RFC 7515 §4.1.11: crit, when present, is a non-empty
// list of distinct names, each understood here and present in the header.
func (c *compact) checkCrit() error {
	raw, ok := c.header[hCrit]
	if !ok {
		return nil
	}
	var names []string
	if err := json.Unmarshal(raw, &names); err != nil || len(names) == 0 {
		return errs.New(errs.UnknownCritical, "crit must be a non-empty array of names")
	}
	seen := map[string]bool{}
	for _, n := range names {
		switch {
		case seen[n]:
			return errs.New(errs.UnknownCritical, "crit lists %q twice", n)
		case !slices.Contains(understoodCritical, n):
			return errs.New(errs.UnknownCritical, "crit names %q, which this verifier does not understand", n)
		}
		if _, present := c.header[n]; !present {
			return errs.New(errs.UnknownCritical, "crit names %q, which the header lacks", n)
		}
		seen[n] = true
	}
	return nil
}

// verify checks the signature over the exact signing input with pub.
func (c *compact) verify(pub crypto.PublicKey) error {
	if !verifySignature(c.alg, pub, c.signingInput, c.signature) {
		return errs.New(errs.SignatureInvalid, "the signature does not verify with the signer's key")
	}
	return nil
}

// verifySignature is the whole cryptographic check, by the standard
// library, per JWA (RFC 7518 §3.4, §3.5). The key type and size must be
// the algorithm's; ECDSA signatures must be the fixed-length r‖s form.
func verifySignature(alg jose.SignatureAlgorithm, pub crypto.PublicKey, input string, sig []byte) bool {
	switch alg {
	case jose.ES256:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || k.Curve != elliptic.P256() {
			return false
		}
		h := digest(sha256.New(), input)
		return verifyP1363(k, h, sig, 32)
	case jose.ES384:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || k.Curve != elliptic.P384() {
			return false
		}
		return verifyP1363(k, digest(crypto.SHA384.New(), input), sig, 48)
	case jose.PS256:
		k, ok := pub.(*rsa.PublicKey)
		if !ok || k.N.BitLen() < 2048 {
			return false
		}
		return rsa.VerifyPSS(k, crypto.SHA256, digest(sha256.New(), input), sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}) == nil
	}
	return false
}

// digest hashes s through a small stack buffer, so that the signing input
// (a slice of the token) is never copied whole.
func digest(h hash.Hash, s string) []byte {
	var chunk [512]byte
	for len(s) > 0 {
		n := copy(chunk[:], s)
		h.Write(chunk[:n])
		s = s[n:]
	}
	return h.Sum(nil)
}

// verifyP1363 checks an IEEE P1363 (r‖s) ECDSA signature of exactly 2*size
// bytes; ecdsa.Verify rejects r or s outside [1, n-1].
func verifyP1363(pub *ecdsa.PublicKey, digest, sig []byte, size int) bool {
	if len(sig) != 2*size {
		return false
	}
	r := new(big.Int).SetBytes(sig[:size])
	s := new(big.Int).SetBytes(sig[size:])
	return ecdsa.Verify(pub, digest, r, s)
}

// SHA256 is how later documents refer to a signed one: the hex SHA-256 of
// its JWS signing input — the compact form up to, not including, the last
// dot. Not of the whole token: anyone can turn an ECDSA signature (r, s)
// into the equally valid (r, n−s), which would give the same signed
// prescription a second digest.
func SHA256(token string) string {
	if i := strings.LastIndexByte(token, '.'); i >= 0 {
		token = token[:i]
	}
	h := sha256.Sum256([]byte(token))
	return fmt.Sprintf("%x", h)
}
