// Package holder is the revocation request a certificate's holder signs
// with the certified key, as a compact JWS: proof of possession, so that a
// practitioner whose card is stolen, or a vendor retiring a system, can
// revoke the certificate without an officer. rxctl signs it (token revoke)
// and trustd's revoke verifies it; this package is the one definition of
// the format both use, and links nothing of the CA.
//
// Whether a verified request is honoured (its age, the reasons a holder may
// give) is the verifier's policy, not the format's.
package holder

import (
	"bytes"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/problem"
)

// Type is the typ of a Request.
const Type = "nuskha.revocation-request"

// MaxSize bounds the size of a request's JWS.
const MaxSize = 16 << 10

// Algorithms are accepted for requests.
var Algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.PS256, jose.RS256}

// Request is the payload a holder signs.
type Request struct {
	V        int       `json:"v"`
	Type     string    `json:"typ"`
	Serial   string    `json:"serial"` // pki.SerialHex of the certificate to revoke
	Reason   string    `json:"reason"`
	IssuedAt time.Time `json:"iat"`
}

// CheckVersion refuses a request of another version or type. It MUST be
// called only after Verify: before, the payload is anyone's claim.
func (r *Request) CheckVersion() error {
	if r.V != 1 || r.Type != Type {
		return bad("v must be 1 and typ %q", Type)
	}
	return nil
}

// Sign makes the compact JWS of req with key: signed on the holder's
// token, the key never leaving it.
func Sign(key crypto.Signer, req Request) (string, error) {
	alg, err := pki.JOSEAlgorithm(key.Public())
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: cryptosigner.Opaque(key)}, nil)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(body)
	if err != nil {
		return "", fmt.Errorf("signing on the token: %w", err)
	}
	return jws.CompactSerialize()
}

// Signed is a request parsed but not yet verified.
type Signed struct {
	// Request is the payload as sent: anyone's claim until Verify returns
	// nil, good only for finding the certificate whose key must verify it.
	Request Request
	jws     *jose.JSONWebSignature
}

func bad(format string, args ...any) error {
	return errs.New(errs.BadRevocationRequest, format, args...)
}

// Parse checks that token is a request in form (a canonical compact JWS
// of at most MaxSize bytes, with an accepted algorithm and a payload that
// decodes strictly) without verifying its signature. Its errors are
// errs.BadRevocationRequest.
func Parse(token string) (*Signed, error) {
	token = strings.TrimSpace(token)
	if len(token) == 0 || len(token) > MaxSize {
		return nil, bad("the request must be a compact JWS of at most %d bytes", MaxSize)
	}
	if !pki.CanonicalCompact(token) {
		return nil, bad("not a compact JWS of three base64url parts")
	}
	jws, err := jose.ParseSignedCompact(token, Algorithms)
	if err != nil {
		return nil, bad("not a compact JWS with an accepted algorithm (%v)", Algorithms)
	}
	s := &Signed{jws: jws}
	// As strictly as trustd's other JSON input: no unknown or duplicate
	// members, names as spelled, nothing after the value; an error names
	// its line and column.
	if err := problem.Unmarshal(jws.UnsafePayloadWithoutVerification(), &s.Request); err != nil {
		detail := err.Error()
		if e := new(errs.Error); errors.As(err, &e) {
			detail = e.Detail
		}
		return nil, bad("payload is not a revocation request: %s", detail)
	}
	return s, nil
}

// Verify checks the signature with pub, the key of the certificate the
// request names (Request.Serial). Its errors are errs.BadRevocationRequest.
func (s *Signed) Verify(pub crypto.PublicKey) error {
	payload, err := s.jws.Verify(pub)
	if err != nil {
		return bad("the signature does not verify with certificate %s's key", s.Request.Serial)
	}
	if !bytes.Equal(payload, s.jws.UnsafePayloadWithoutVerification()) {
		return bad("payload changed during verification")
	}
	return nil
}
