package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"

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
