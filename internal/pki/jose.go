package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// JOSEAlgorithm is the JWS algorithm our formats use for a key: ES256 for
// P-256, ES384 for P-384, PS256 for RSA (smart cards often hold RSA keys;
// PKCS#1 v1.5 is not used for new signatures).
func JOSEAlgorithm(pub crypto.PublicKey) (jose.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		}
	case *rsa.PublicKey:
		return jose.PS256, nil
	}
	return "", fmt.Errorf("pki: no JWS algorithm for %T", pub)
}

// CanonicalCompact reports whether token is a compact JWS in the one
// spelling of its bytes: three parts, each exactly the unpadded base64url
// encoding of what it decodes to — nothing outside [A-Za-z0-9_-], no
// padding, no stray trailing bits. go-jose's parser is lenient (and
// encoding/base64 skips CR and LF even in Strict mode), so formats parsed
// with go-jose call this first: one signed value, one token.
func CanonicalCompact(token string) bool {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	enc := base64.RawURLEncoding.Strict()
	for _, p := range parts {
		raw, err := enc.DecodeString(p)
		if err != nil || enc.EncodedLen(len(raw)) != len(p) {
			return false
		}
	}
	return true
}
