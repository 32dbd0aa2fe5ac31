// Package tlsconf is the TLS policy every Nuskha listener and client uses:
// TLS 1.2 or 1.3 and, in TLS 1.2, only ECDHE key exchange with an AEAD
// cipher (Mozilla's "intermediate" configuration, less the DHE suites Go
// does not implement). Go's TLS 1.2 defaults still offer the CBC-SHA1
// suites (ECDHE-ECDSA-AES128-SHA…), which are not constant-time in
// every client and authenticate with SHA-1. TLS 1.3 suites are all AEAD
// and not configurable.
package tlsconf

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"slices"
)

// CipherSuites are the TLS 1.2 suites offered and accepted.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// New returns a config with the policy; the caller adds certificates,
// trust anchors and client authentication.
func New() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: slices.Clone(CipherSuites)}
}

// Certificate is the TLS certificate of key and chain (leaf first): what
// a listener or a client presents. The key is not checked against the
// leaf here; httpedge.KeyPair proves it for a server's.
func Certificate(key crypto.Signer, chain []*x509.Certificate) tls.Certificate {
	c := tls.Certificate{PrivateKey: key}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	if len(chain) > 0 {
		c.Leaf = chain[0]
	}
	return c
}
