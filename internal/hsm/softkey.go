package hsm

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/pemutil"
)

// minPasswordLen keeps a software key's password out of a dictionary
// attacker's easy reach; `trustd init` generates far longer ones.
const minPasswordLen = 12

// SoftKeys keeps keys in password-encrypted PKCS#8 PEM files (PBES2 with
// AES-256, through go.step.sm/crypto/pemutil). It serves the embedded default,
// where no HSM is present. Unencrypted key files are refused.
type SoftKeys struct {
	readPIN PINReader
}

// NewSoftKeys returns the software backend.
func NewSoftKeys(readPIN PINReader) *SoftKeys {
	if readPIN == nil {
		readPIN = NoPrompt
	}
	return &SoftKeys{readPIN: readPIN}
}

func softPath(u *URI) (string, error) {
	p := u.Path["path"]
	if p == "" {
		return "", fmt.Errorf("%w: softkey URI needs path=<file>", ErrBadURI)
	}
	return p, nil
}

// certPath is where the certificate of a key file is kept: beside it.
func certPath(keyPath string) string {
	return strings.TrimSuffix(keyPath, filepath.Ext(keyPath)) + ".crt"
}

// CreateKey generates a key and writes it encrypted. The file is created
// exclusively, so an existing key is never overwritten.
func (s *SoftKeys) CreateKey(ctx context.Context, u *URI, alg Algorithm) (Key, error) {
	path, err := softPath(u)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("%w: %s", ErrKeyExists, path)
	}
	pass, err := readSecret(ctx, u, path, s.readPIN)
	if err != nil {
		return nil, err
	}
	if len(pass) < minPasswordLen {
		return nil, fmt.Errorf("%w: password for %s is shorter than %d characters", ErrPINIncorrect, path, minPasswordLen)
	}
	var priv crypto.PrivateKey
	switch alg {
	case ECP256:
		priv, err = keyutil.GenerateKey("EC", "P-256", 0)
	case ECP384:
		priv, err = keyutil.GenerateKey("EC", "P-384", 0)
	case RSA2048:
		priv, err = keyutil.GenerateKey("RSA", "", 2048)
	case RSA3072:
		priv, err = keyutil.GenerateKey("RSA", "", 3072)
	case RSA4096:
		priv, err = keyutil.GenerateKey("RSA", "", 4096)
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedAlg, alg)
	}
	if err != nil {
		return nil, fmt.Errorf("hsm: generating %s key: %w", alg, err)
	}
	block, err := pemutil.Serialize(priv, pemutil.WithPKCS8(true), pemutil.WithPassword(pass))
	if err != nil {
		return nil, fmt.Errorf("hsm: encrypting key: %w", err)
	}
	if err := writeExclusive(path, pem.EncodeToMemory(block)); err != nil {
		return nil, err
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %T", ErrUnsupportedAlg, priv)
	}
	return &softKey{Signer: signer, uri: u.String()}, nil
}

func writeExclusive(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("hsm: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s", ErrKeyExists, path)
		}
		return fmt.Errorf("hsm: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("hsm: writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("hsm: writing %s: %w", path, err)
	}
	return f.Close()
}

// OpenKey decrypts the key file.
func (s *SoftKeys) OpenKey(ctx context.Context, u *URI) (Key, error) {
	path, err := softPath(u)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: no key file %s", ErrKeyNotFound, path)
		}
		return nil, fmt.Errorf("hsm: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: %s is not PEM", ErrKeyNotFound, path)
	}
	if block.Type != "ENCRYPTED PRIVATE KEY" && block.Headers["Proc-Type"] != "4,ENCRYPTED" {
		return nil, fmt.Errorf("hsm: refusing unencrypted key file %s", path)
	}
	pass, err := readSecret(ctx, u, path, s.readPIN)
	if err != nil {
		return nil, err
	}
	der, err := pemutil.DecryptPEMBlock(block, pass)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot decrypt %s", ErrPINIncorrect, path)
	}
	priv, err := pemutil.ParseDER(der)
	if err != nil {
		// AES-CBC under a wrong password still ends in valid PKCS#7
		// padding about once in 256 tries, so "decrypted" bytes that are
		// not a key mean the password is wrong (or the file damaged),
		// not that the key is of some unknown kind.
		return nil, fmt.Errorf("%w: %s does not decrypt to a key", ErrPINIncorrect, path)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %s holds %T", ErrUnsupportedAlg, path, priv)
	}
	return &softKey{Signer: signer, uri: u.String()}, nil
}

// StoreCertificate writes the certificate beside the key file.
func (s *SoftKeys) StoreCertificate(_ context.Context, u *URI, cert *x509.Certificate) error {
	path, err := softPath(u)
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%w: no key file %s", ErrKeyNotFound, path)
	}
	tmp := certPath(path) + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		return fmt.Errorf("hsm: %w", err)
	}
	return os.Rename(tmp, certPath(path))
}

// LoadCertificate reads the certificate beside the key file.
func (s *SoftKeys) LoadCertificate(_ context.Context, u *URI) (*x509.Certificate, error) {
	path, err := softPath(u)
	if err != nil {
		return nil, err
	}
	cert, err := pemutil.ReadCertificate(certPath(path))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCertNotFound, certPath(path), err)
	}
	return cert, nil
}

// Close is a no-op: software keys hold no external resources.
func (s *SoftKeys) Close() error { return nil }

type softKey struct {
	crypto.Signer
	uri string
}

func (k *softKey) URI() string { return k.uri }

// InProcess reports that the key signs in this process's memory, with Go's
// own crypto, not on a token: what it signs needs no checking for a
// token's faults (rx.Verifier.Sign).
func (k *softKey) InProcess() bool { return true }

// Sign uses crypto/rand whatever the caller passes: a key in custody decides
// its own randomness, as a token would.
func (k *softKey) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.Signer.Sign(rand.Reader, digest, opts)
}
