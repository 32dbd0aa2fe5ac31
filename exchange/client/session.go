package client

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
)

// SessionDocument is what a card signs to open a session (package doc).
type SessionDocument struct {
	V    int    `json:"v"`
	Type string `json:"type"`
	// ID is a fresh UUID: rxd opens one session per document.
	ID  string `json:"id"`
	Aud string `json:"aud"`
	// IssuedAt is UTC to the second, within 5 minutes of rxd's clock.
	IssuedAt string `json:"issued_at"`
	// Vendor is Thumbprint of the TLS client certificate the session will
	// be used through.
	Vendor string `json:"vendor"`
}

// NewSessionDocument is a session document for the Client's TLS
// certificate, issued now.
func (c *Client) NewSessionDocument(now time.Time) SessionDocument {
	return SessionDocument{V: 1, Type: "session", ID: newUUID(), Aud: "nuskha-exchange",
		IssuedAt: now.UTC().Format(time.RFC3339), Vendor: Thumbprint(c.leaf)}
}

// Thumbprint is a certificate's x5t#S256: the base64url (unpadded)
// SHA-256 of its DER.
func Thumbprint(cert *x509.Certificate) string {
	d := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(d[:])
}

// SignSession signs a session document with the card's key (any
// crypto.Signer: a PKCS#11 key included) as the compact JWS rxd takes.
// chain is the card's certificate and its intermediate, leaf first.
func SignSession(doc SessionDocument, key crypto.Signer, chain []*x509.Certificate, now time.Time) (string, error) {
	if len(chain) == 0 {
		return "", errors.New("client: no certificate for the session's signing key")
	}
	if k, ok := chain[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(key.Public()) {
		return "", errors.New("client: the key is not the certificate's")
	}
	alg, err := algorithm(key.Public())
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(doc)
	if err != nil {
		return "", err
	}
	x5c := make([]string, len(chain))
	for i, c := range chain {
		x5c[i] = base64.StdEncoding.EncodeToString(c.Raw)
	}
	// The exchange's documents carry their signing time (JAdES sigT),
	// marked critical, and the signer's certificate and its thumbprint.
	opts := (&jose.SignerOptions{}).
		WithType("nuskha-session+jws").
		WithHeader("x5c", x5c).
		WithHeader("x5t#S256", Thumbprint(chain[0])).
		WithHeader("sigT", now.UTC().Format("2006-01-02T15:04:05Z")).
		WithHeader("crit", []string{"sigT"})
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: cryptosigner.Opaque(jwaSigner{key})}, opts)
	if err != nil {
		return "", err
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("client: signing the session document: %w", err)
	}
	return obj.CompactSerialize()
}

func algorithm(pub crypto.PublicKey) (jose.SignatureAlgorithm, error) {
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
	return "", fmt.Errorf("client: a %T key cannot sign for the exchange (ES256, ES384 or PS256)", pub)
}

// jwaSigner makes RSASSA-PSS signatures with a salt as long as the hash,
// as JWA requires (RFC 7518 §3.5); go-jose's opaque signer would ask for
// the longest.
type jwaSigner struct{ crypto.Signer }

func (s jwaSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if pss, ok := opts.(*rsa.PSSOptions); ok {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: pss.HashFunc()}
	}
	return s.Signer.Sign(r, digest, opts)
}

// newUUID is a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
