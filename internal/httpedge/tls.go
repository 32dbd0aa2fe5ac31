package httpedge

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/tlsconf"
)

// Keys opens keys by URI (hsm.Manager).
type Keys interface {
	OpenKey(ctx context.Context, uri string) (hsm.Key, error)
}

// KeyPair loads a server's certificate chain (PEM, leaf first) and its
// key: a key URI (softkey:…, pkcs11:…) opened through keys, or else an
// unencrypted PEM key file. A key that is not the leaf's is refused here,
// at start, with a message saying so, rather than failing every
// handshake later.
func KeyPair(ctx context.Context, keys Keys, chainFile, key string) (tls.Certificate, error) {
	chain, err := pemutil.ReadCertificateBundle(chainFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	var signer crypto.Signer
	if isKeyURI(key) {
		k, err := keys.OpenKey(ctx, key)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("server key: %w", err)
		}
		signer = k
	} else if signer, err = readKeyFile(key); err != nil {
		return tls.Certificate{}, fmt.Errorf("server key %s: %w", key, err)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(chain[0].PublicKey) {
		return tls.Certificate{}, fmt.Errorf("the server key %s is not the key of the certificate in %s (%q)", describeKey(key), chainFile, chain[0].Subject.CommonName)
	}
	// Public() alone proves nothing for a key on a token: it is read from
	// the token's public-key object, which may belong to another key than
	// the private one. A signature verified under the certificate's key
	// proves the private key is the certificate's.
	if err := proveKey(signer, chain[0].PublicKey); err != nil {
		return tls.Certificate{}, fmt.Errorf("the server key %s does not sign for the certificate in %s (%q): %w", describeKey(key), chainFile, chain[0].Subject.CommonName, err)
	}
	return tlsconf.Certificate(signer, chain), nil
}

// proveKey signs a random digest with signer, as a TLS handshake would,
// and verifies it under pub: RSA with PKCS #1 v1.5, or with PSS when the
// key signs only that (some tokens), ECDSA, Ed25519.
func proveKey(signer crypto.Signer, pub crypto.PublicKey) error {
	msg := make([]byte, 32)
	_, _ = rand.Read(msg) // crypto/rand.Read does not fail (Go 1.24)
	digest := sha256.Sum256(msg)
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			return err
		}
		if !ecdsa.VerifyASN1(pub, digest[:], sig) {
			return errors.New("its signature does not verify under the certificate's key")
		}
	case *rsa.PublicKey:
		sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err == nil {
			err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig)
		} else {
			pss := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
			if sig, err = signer.Sign(rand.Reader, digest[:], pss); err != nil {
				return err
			}
			err = rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, pss)
		}
		if err != nil {
			return errors.New("its signature does not verify under the certificate's key")
		}
	case ed25519.PublicKey:
		sig, err := signer.Sign(rand.Reader, msg, crypto.Hash(0))
		if err != nil {
			return err
		}
		if !ed25519.Verify(pub, msg, sig) {
			return errors.New("its signature does not verify under the certificate's key")
		}
	default:
		return fmt.Errorf("a %T certificate key is not supported", pub)
	}
	return nil
}

// ServerTLS is the shared TLS policy (tlsconf) serving cert, with clients
// authenticated as auth says against clientCAs. Requiring or verifying a
// client certificate without anchors to verify it to is a programming
// error, refused with a panic rather than served open.
func ServerTLS(cert tls.Certificate, auth tls.ClientAuthType, clientCAs *x509.CertPool) *tls.Config {
	if auth >= tls.VerifyClientCertIfGiven && clientCAs == nil {
		panic("httpedge: client certificates verified against no anchors")
	}
	c := tlsconf.New()
	c.Certificates = []tls.Certificate{cert}
	c.ClientAuth = auth
	c.ClientCAs = clientCAs
	return c
}

func isKeyURI(s string) bool {
	scheme, _, ok := strings.Cut(s, ":")
	return ok && (strings.EqualFold(scheme, hsm.SchemeSoftKey) || strings.EqualFold(scheme, hsm.SchemePKCS11))
}

// describeKey names a key for a message: a URI's path attributes only
// (its query names PIN files and modules), or the file.
func describeKey(key string) string {
	if isKeyURI(key) {
		path, _, _ := strings.Cut(key, "?")
		return path
	}
	return key
}

// readKeyFile reads the first private key of a PEM file, never prompting
// for a password: an encrypted key is refused (a daemon has no one to ask;
// use a softkey: URI with a pin-source).
func readKeyFile(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return nil, errors.New("no PEM private key in the file")
		}
		if !strings.HasSuffix(b.Type, "PRIVATE KEY") {
			continue
		}
		if b.Type == "ENCRYPTED PRIVATE KEY" || b.Headers["Proc-Type"] != "" {
			return nil, errors.New("the key is encrypted; give a softkey: URI with a pin-source instead")
		}
		var k any
		switch b.Type {
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		default:
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		}
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("a %T cannot sign", k)
		}
		return s, nil
	}
}

// Certificates hold a server's certificate so that it can be replaced
// while serving (trustd and rxd reload theirs on SIGHUP): connections
// opened after Set get the new one, those open keep theirs.
type Certificates struct {
	cur atomic.Pointer[tls.Certificate]
}

// NewCertificates holds c.
func NewCertificates(c tls.Certificate) *Certificates {
	s := &Certificates{}
	s.Set(c)
	return s
}

// Set replaces the certificate served.
func (s *Certificates) Set(c tls.Certificate) { s.cur.Store(&c) }

// Current is the certificate served.
func (s *Certificates) Current() *tls.Certificate { return s.cur.Load() }

// ServeFrom makes cfg serve whatever s holds at each handshake. It
// answers each handshake with a copy of cfg holding the current
// certificate (GetConfigForClient) rather than through GetCertificate,
// which crypto/tls consults only for clients that send a server name:
// one connecting by IP address would keep the first certificate.
// cfg.Certificates keeps the certificate it was made with, so that a
// server that fills in a missing certificate (httptest) leaves it be.
func (s *Certificates) ServeFrom(cfg *tls.Config) *tls.Config {
	cfg.Certificates = []tls.Certificate{*s.Current()}
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := cfg.Clone()
		c.GetConfigForClient = nil
		c.Certificates = []tls.Certificate{*s.Current()}
		return c, nil
	}
	return cfg
}
