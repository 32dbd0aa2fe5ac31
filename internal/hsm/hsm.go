// Package hsm holds key custody: keys that sign live on a PKCS#11 token (a
// smart card or an HSM) or, for the embedded default, in password-encrypted
// PEM files. Callers see one small interface whatever the backend, so the
// code path that signs with a practitioner's smart card is the one the tests
// run against SoftHSM2.
package hsm

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
)

// URI schemes understood by the Manager.
const (
	SchemePKCS11  = "pkcs11"
	SchemeSoftKey = "softkey"
)

// Errors a caller can act on. Each names what is missing; wrapped errors add
// which token or file.
var (
	ErrBadURI           = errors.New("hsm: bad key URI")
	ErrTokenNotFound    = errors.New("hsm: token not found")
	ErrTokenUnavailable = errors.New("hsm: token unavailable")
	ErrKeyNotFound      = errors.New("hsm: key not found")
	ErrKeyExists        = errors.New("hsm: key already exists")
	ErrPINIncorrect     = errors.New("hsm: PIN or password incorrect")
	ErrPINLocked        = errors.New("hsm: PIN locked")
	ErrNoPIN            = errors.New("hsm: no PIN available")
	ErrModule           = errors.New("hsm: PKCS#11 module cannot be loaded")
	ErrCertNotFound     = errors.New("hsm: certificate not found")
	ErrUnsupportedAlg   = errors.New("hsm: unsupported key algorithm")
	// ErrKeyChanged: a key found again after a reconnect, under the label
	// (and id) it was opened by, is not the key that was opened — the
	// token was swapped for another, or the key replaced. Every use is
	// refused from then on: it is no fault that passes, and retrying
	// does not mend it.
	ErrKeyChanged = errors.New("hsm: key changed since it was opened")
)

// Algorithm names a key type to generate.
type Algorithm string

// Key algorithms that smart cards and HSMs commonly offer and that our
// signature profiles accept.
const (
	ECP256  Algorithm = "EC-P256"
	ECP384  Algorithm = "EC-P384"
	RSA2048 Algorithm = "RSA-2048"
	RSA3072 Algorithm = "RSA-3072"
	RSA4096 Algorithm = "RSA-4096"
)

// ParseAlgorithm accepts the names above and the pkcs11-tool spellings
// (EC:prime256v1, rsa:2048).
func ParseAlgorithm(s string) (Algorithm, error) {
	switch strings.ToUpper(strings.ReplaceAll(s, ":", "-")) {
	case "EC-P256", "EC-PRIME256V1", "EC-SECP256R1", "P256", "P-256":
		return ECP256, nil
	case "EC-P384", "EC-SECP384R1", "P384", "P-384":
		return ECP384, nil
	case "RSA-2048":
		return RSA2048, nil
	case "RSA-3072":
		return RSA3072, nil
	case "RSA-4096":
		return RSA4096, nil
	}
	return "", fmt.Errorf("%w: %q (want one of EC-P256, EC-P384, RSA-2048, RSA-3072, RSA-4096)", ErrUnsupportedAlg, s)
}

// Key is a private key that never leaves its custody: it signs and reveals its
// public half, nothing more. Implementations MUST be safe for concurrent use.
type Key interface {
	crypto.Signer
	// URI is the address the key was opened with (without secrets).
	URI() string
}

// Keys is key custody for one backend.
type Keys interface {
	// CreateKey generates a key pair at uri. It MUST fail with ErrKeyExists
	// rather than replace a key that is already there.
	CreateKey(ctx context.Context, uri *URI, alg Algorithm) (Key, error)
	// OpenKey finds an existing key.
	OpenKey(ctx context.Context, uri *URI) (Key, error)
	// StoreCertificate keeps cert next to the key at uri (on the token, or
	// beside the key file), replacing an older one.
	StoreCertificate(ctx context.Context, uri *URI, cert *x509.Certificate) error
	// LoadCertificate returns the certificate kept next to the key at uri.
	LoadCertificate(ctx context.Context, uri *URI) (*x509.Certificate, error)
	Close() error
}

// PINReader asks for the PIN or password of what is named (a token label or a
// key file) when its URI has no pin-source: an interactive prompt in rxctl.
type PINReader func(ctx context.Context, what string) ([]byte, error)

// NoPrompt is the PINReader for daemons: they never prompt.
func NoPrompt(_ context.Context, what string) ([]byte, error) {
	return nil, fmt.Errorf("%w for %s: give pin-source=<file> in the key URI", ErrNoPIN, what)
}

// Manager routes key URIs to their backend. It opens each PKCS#11 module once
// per process (crypto11 keeps per-module library state, and a second
// initialisation of the same module fails), so a process MUST hold a single
// Manager.
type Manager struct {
	readPIN PINReader
	soft    *SoftKeys

	mu      sync.Mutex
	modules map[string]*PKCS11Keys
	closed  bool
}

// NewManager returns a Manager that asks readPIN for secrets that no URI
// names a file for.
func NewManager(readPIN PINReader) *Manager {
	if readPIN == nil {
		readPIN = NoPrompt
	}
	return &Manager{readPIN: readPIN, soft: NewSoftKeys(readPIN), modules: map[string]*PKCS11Keys{}}
}

func (m *Manager) backend(u *URI) (Keys, error) {
	switch u.Scheme {
	case SchemeSoftKey:
		return m.soft, nil
	case SchemePKCS11:
		path := u.Query["module-path"]
		if path == "" {
			return nil, fmt.Errorf("%w: pkcs11 URI needs module-path", ErrBadURI)
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.closed {
			return nil, errors.New("hsm: manager closed")
		}
		k, ok := m.modules[path]
		if !ok {
			if _, err := os.Stat(path); err != nil {
				return nil, fmt.Errorf("%w: %s: %w", ErrModule, path, err)
			}
			k = NewPKCS11Keys(path, m.readPIN)
			m.modules[path] = k
		}
		return k, nil
	}
	return nil, fmt.Errorf("%w: unsupported scheme %q", ErrBadURI, u.Scheme)
}

func (m *Manager) route(raw string) (Keys, *URI, error) {
	u, err := ParseURI(raw)
	if err != nil {
		return nil, nil, err
	}
	b, err := m.backend(u)
	return b, u, err
}

// CreateKey generates a key at the URI.
func (m *Manager) CreateKey(ctx context.Context, uri string, alg Algorithm) (Key, error) {
	b, u, err := m.route(uri)
	if err != nil {
		return nil, err
	}
	return b.CreateKey(ctx, u, alg)
}

// OpenKey opens the key at the URI.
func (m *Manager) OpenKey(ctx context.Context, uri string) (Key, error) {
	b, u, err := m.route(uri)
	if err != nil {
		return nil, err
	}
	return b.OpenKey(ctx, u)
}

// StoreCertificate keeps cert next to the key at the URI.
func (m *Manager) StoreCertificate(ctx context.Context, uri string, cert *x509.Certificate) error {
	b, u, err := m.route(uri)
	if err != nil {
		return err
	}
	return b.StoreCertificate(ctx, u, cert)
}

// LoadCertificate reads the certificate kept next to the key at the URI.
func (m *Manager) LoadCertificate(ctx context.Context, uri string) (*x509.Certificate, error) {
	b, u, err := m.route(uri)
	if err != nil {
		return nil, err
	}
	return b.LoadCertificate(ctx, u)
}

// Close releases every module and session.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	var errs []error
	for _, k := range m.modules {
		errs = append(errs, k.Close())
	}
	m.modules = nil
	return errors.Join(errs...)
}

// readSecret returns the secret named by the URI's pin-source (a file path or
// file: URI), or asks readPIN. Trailing newlines are dropped because editors
// and `echo` add them.
func readSecret(ctx context.Context, u *URI, what string, readPIN PINReader) ([]byte, error) {
	src := u.Query["pin-source"]
	if src == "" {
		return readPIN(ctx, what)
	}
	src = strings.TrimPrefix(src, "file://")
	src = strings.TrimPrefix(src, "file:")
	b, err := os.ReadFile(src)
	if err != nil {
		return nil, fmt.Errorf("%w for %s: reading pin-source: %w", ErrNoPIN, what, err)
	}
	b = []byte(strings.TrimRight(string(b), "\r\n"))
	if len(b) == 0 {
		return nil, fmt.Errorf("%w for %s: pin-source %s is empty", ErrNoPIN, what, src)
	}
	return b, nil
}
