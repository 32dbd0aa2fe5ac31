// Package ca holds the issuing key. Its CA type is the one holder of the
// intermediate's crypto.Signer: it signs certificates (step-ca, embedded as
// a library, renders a CSR and a profile template; this is the only place
// that touches step-ca) and CRLs. Everything around signing (who may have a
// certificate, validity, records) is the callers'; every signature goes
// through the same steps here: lint the to-be-signed bytes, let the caller
// record the intent, sign, and check that what was signed is what was
// linted.
package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/smallstep/certificates/authority"
	"github.com/smallstep/certificates/authority/config"
	"github.com/smallstep/certificates/authority/provisioner"
	"github.com/smallstep/certificates/db"
	"go.step.sm/crypto/x509util"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki/crl"
	"github.com/nuskha/nuskha/internal/pki/lint"
)

// CertificateSource is what step-ca's database seam needs from our store.
type CertificateSource interface {
	CertificateBySerial(ctx context.Context, serial *big.Int) (*x509.Certificate, error)
}

// Config is everything a CA needs; all fields but Certs are required.
type Config struct {
	Roots        []*x509.Certificate
	Intermediate *x509.Certificate
	// Signer is the intermediate's private key, normally on an HSM.
	Signer crypto.Signer
	Linter *lint.Linter
	Now    func() time.Time
	Certs  CertificateSource
}

// CA issues certificates and CRLs under one intermediate. It keeps the
// intermediate's key to itself: nothing else in the process MUST hold it.
type CA struct {
	auth         *authority.Authority
	intermediate *x509.Certificate
	signer       crypto.Signer
	linter       *lint.Linter
	now          func() time.Time
}

// New embeds a step-ca authority over the intermediate and its key.
func New(cfg Config) (*CA, error) {
	switch {
	case len(cfg.Roots) == 0:
		return nil, errors.New("ca: no root certificate")
	case cfg.Intermediate == nil || cfg.Signer == nil:
		return nil, errors.New("ca: no intermediate certificate or key")
	case cfg.Linter == nil:
		return nil, errors.New("ca: no linter")
	case cfg.Now == nil:
		return nil, errors.New("ca: no clock")
	}
	if !publicKeysEqual(cfg.Intermediate.PublicKey, cfg.Signer.Public()) {
		return nil, errors.New("ca: the intermediate key does not match the intermediate certificate")
	}
	if err := cfg.Intermediate.CheckSignatureFrom(findParent(cfg.Roots, cfg.Intermediate)); err != nil {
		return nil, fmt.Errorf("ca: intermediate is not signed by a configured root: %w", err)
	}
	auth, err := authority.NewEmbedded(
		authority.WithConfig(&config.Config{AuthorityConfig: &config.AuthConfig{}}),
		authority.WithX509RootCerts(cfg.Roots...),
		authority.WithX509SignerChain([]*x509.Certificate{cfg.Intermediate}, cfg.Signer),
		authority.WithDatabase(&authDB{certs: cfg.Certs}),
		authority.WithQuietInit(),
	)
	if err != nil {
		return nil, fmt.Errorf("ca: starting embedded authority: %w", err)
	}
	return &CA{auth: auth, intermediate: cfg.Intermediate, signer: cfg.Signer, linter: cfg.Linter, now: cfg.Now}, nil
}

func findParent(roots []*x509.Certificate, c *x509.Certificate) *x509.Certificate {
	for _, r := range roots {
		if string(r.RawSubject) == string(c.RawIssuer) {
			return r
		}
	}
	return roots[0]
}

// Intermediate returns the issuing certificate.
func (c *CA) Intermediate() *x509.Certificate { return c.intermediate }

// Request is one certificate to issue. The subject and extensions come from
// Template rendered with Data; the CSR contributes only its public key (its
// own subject and extensions are ignored by every profile).
type Request struct {
	CSR       *x509.CertificateRequest
	Template  string
	Data      map[string]any
	Serial    *big.Int
	NotBefore time.Time
	NotAfter  time.Time
}

// BeforeSign is called after the to-be-signed certificate passed the lint
// and immediately before the issuing key signs it, with the DER TBS. It is
// where the intent to sign is recorded; an error stops issuance.
type BeforeSign func(tbs []byte) error

// Issue renders, lints and signs. Nothing is signed unless the lint is clean
// and before returned nil; the certificate returned covers exactly the
// linted TBSCertificate.
func (c *CA) Issue(ctx context.Context, req Request, before BeforeSign) (*x509.Certificate, error) {
	if err := c.checkRequest(req); err != nil {
		return nil, err
	}
	tplOpts, err := provisioner.CustomTemplateOptions(nil, x509util.TemplateData(req.Data), req.Template)
	if err != nil {
		return nil, fmt.Errorf("ca: template: %w", err)
	}
	ski, err := x509util.GenerateSubjectKeyID(req.CSR.PublicKey)
	if err != nil {
		return nil, errs.Wrap(errs.BadCSR, err, "cannot compute the subject key identifier")
	}
	// Fixing serial, validity and SKI before step-ca's signer sees the
	// template makes the lint certificate's TBS identical to the real one.
	fix := provisioner.CertificateModifierFunc(func(cert *x509.Certificate, _ provisioner.SignOptions) error {
		cert.SerialNumber = new(big.Int).Set(req.Serial)
		cert.NotBefore = req.NotBefore.UTC().Truncate(time.Second)
		cert.NotAfter = req.NotAfter.UTC().Truncate(time.Second)
		cert.SubjectKeyId = ski
		return nil
	})
	var linted []byte
	var stopErr error
	gate := provisioner.CertificateEnforcerFunc(func(cert *x509.Certificate) error {
		tbs, err := c.linter.Prepare(cert, c.intermediate, cert.PublicKey, c.signer.Public())
		if err == nil && before != nil {
			err = before(tbs)
		}
		if err != nil {
			stopErr = err
			return err
		}
		linted = tbs
		return nil
	})
	chain, err := c.auth.SignWithContext(ctx, req.CSR, provisioner.SignOptions{}, tplOpts, fix, gate)
	if stopErr != nil {
		return nil, stopErr
	}
	if err != nil {
		return nil, fmt.Errorf("ca: signing: %w", err)
	}
	if err := lint.SameTBS(chain[0], linted); err != nil {
		return nil, err
	}
	return chain[0], nil
}

// SignCRL lints and signs a CRL with the issuing key, as crl.Sign does:
// before (if not nil) sees the linted TBS immediately before the key signs,
// and the DER returned covers exactly that TBS.
func (c *CA) SignCRL(req crl.Request, before crl.BeforeSign) ([]byte, error) {
	return crl.Sign(req, c.intermediate, c.signer, c.linter, before)
}

func (c *CA) checkRequest(req Request) error {
	switch {
	case req.CSR == nil:
		return errs.New(errs.BadCSR, "no CSR")
	case req.Serial == nil || req.Serial.Sign() <= 0 || req.Serial.BitLen() > 159:
		return errors.New("ca: serial must be positive and at most 20 octets")
	case !req.NotAfter.After(req.NotBefore):
		return errors.New("ca: notAfter must be after notBefore")
	case req.NotAfter.After(c.intermediate.NotAfter):
		return fmt.Errorf("ca: notAfter %s is beyond the intermediate's %s", req.NotAfter.UTC().Format(time.RFC3339), c.intermediate.NotAfter.UTC().Format(time.RFC3339))
	case req.NotBefore.Before(c.intermediate.NotBefore):
		return errors.New("ca: notBefore is before the intermediate's")
	}
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

// authDB is step-ca's database seam. It has no StoreCertificate: our own
// store records each certificate with its enrolment and approval, so step-ca
// has nothing to add; lookups go to our store. Revocation through step-ca is
// not used: asking it fails closed.
type authDB struct {
	certs CertificateSource
}

var errNotHere = errors.New("ca: not handled by step-ca in this service")

func (d *authDB) IsRevoked(string) (bool, error)             { return false, errNotHere }
func (d *authDB) IsSSHRevoked(string) (bool, error)          { return false, errNotHere }
func (d *authDB) Revoke(*db.RevokedCertificateInfo) error    { return errNotHere }
func (d *authDB) RevokeSSH(*db.RevokedCertificateInfo) error { return errNotHere }
func (d *authDB) UseToken(string, string) (bool, error)      { return false, errNotHere }
func (d *authDB) IsSSHHost(string) (bool, error)             { return false, errNotHere }
func (d *authDB) GetSSHHostPrincipals() ([]string, error)    { return nil, errNotHere }
func (d *authDB) Shutdown() error                            { return nil }
func (d *authDB) GetCertificate(serial string) (*x509.Certificate, error) {
	if d.certs == nil {
		return nil, errNotHere
	}
	n, ok := new(big.Int).SetString(serial, 10)
	if !ok {
		return nil, fmt.Errorf("ca: bad serial %q", serial)
	}
	return d.certs.CertificateBySerial(context.Background(), n)
}
