// Package ceremony creates the CA hierarchy: a self-signed root and the
// issuing intermediate it certifies. It runs once, at `trustd init`, with the
// root key present; day-to-day issuance needs only the intermediate key.
package ceremony

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"go.step.sm/crypto/x509util"

	"github.com/nuskha/nuskha/internal/pki/lint"
	"github.com/nuskha/nuskha/internal/pki/profile"
)

// Names are the distinguished names of the hierarchy.
type Names struct {
	Country        string
	Organization   string
	RootCN         string
	IntermediateCN string
}

// DefaultNames are used when init is given none.
var DefaultNames = Names{Country: "IR", Organization: "Nuskha", RootCN: "Nuskha Root CA", IntermediateCN: "Nuskha Issuing CA 1"}

func (n Names) subject(cn string) x509util.Subject {
	s := x509util.Subject{CommonName: cn}
	if n.Country != "" {
		s.Country = []string{n.Country}
	}
	if n.Organization != "" {
		s.Organization = []string{n.Organization}
	}
	return s
}

// Serial returns a random positive serial of at most 159 bits, as RFC 5280
// allows (20 octets) with the top bit clear.
func Serial() (*big.Int, error) {
	max := new(big.Int).Lsh(big.NewInt(1), 159)
	for {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			return nil, err
		}
		// At least 64 bits of entropy, as CA/B Forum asks and is good sense anywhere.
		if n.BitLen() > 64 {
			return n, nil
		}
	}
}

// CreateRoot self-signs the root certificate with rootKey.
func CreateRoot(rootKey crypto.Signer, tpl profile.CATemplate, names Names, now time.Time, l *lint.Linter) (*x509.Certificate, error) {
	data := x509util.CreateTemplateData(names.RootCN, nil)
	data.SetSubject(names.subject(names.RootCN))
	t, err := render(tpl.Template, data, rootKey.Public())
	if err != nil {
		return nil, fmt.Errorf("ceremony: root template: %w", err)
	}
	if err := setValidity(t, now, tpl.Validity); err != nil {
		return nil, err
	}
	// RFC 5280 lets a self-signed certificate omit the AKI; including it
	// (equal to the SKI) keeps chain builders that match on key ids happy
	// and lets the lint, whose throwaway key makes the root look merely
	// self-issued, see the identifier it requires.
	t.AuthorityKeyId = t.SubjectKeyId
	return signChecked(t, t, rootKey.Public(), rootKey, l)
}

// CreateIntermediate certifies the intermediate's public key with the root.
func CreateIntermediate(root *x509.Certificate, rootKey crypto.Signer, pub crypto.PublicKey, tpl profile.CATemplate, names Names, now time.Time, l *lint.Linter) (*x509.Certificate, error) {
	data := x509util.CreateTemplateData(names.IntermediateCN, nil)
	data.SetSubject(names.subject(names.IntermediateCN))
	t, err := render(tpl.Template, data, pub)
	if err != nil {
		return nil, fmt.Errorf("ceremony: intermediate template: %w", err)
	}
	if err := setValidity(t, now, tpl.Validity); err != nil {
		return nil, err
	}
	if t.NotAfter.After(root.NotAfter) {
		t.NotAfter = root.NotAfter
	}
	return signChecked(t, root, pub, rootKey, l)
}

func render(text string, data x509util.TemplateData, pub crypto.PublicKey) (*x509.Certificate, error) {
	c, err := x509util.NewCertificateFromX509(&x509.Certificate{PublicKey: pub}, x509util.WithTemplate(text, data))
	if err != nil {
		return nil, err
	}
	t := c.GetCertificate()
	ski, err := x509util.GenerateSubjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	t.SubjectKeyId = ski
	return t, nil
}

func setValidity(t *x509.Certificate, now time.Time, validity time.Duration) error {
	serial, err := Serial()
	if err != nil {
		return err
	}
	t.SerialNumber = serial
	t.NotBefore = now.Add(-time.Minute).UTC().Truncate(time.Second)
	t.NotAfter = now.Add(validity).UTC().Truncate(time.Second)
	return nil
}

// signChecked lints, signs and checks that the signature covers the linted TBS.
func signChecked(t, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer, l *lint.Linter) (*x509.Certificate, error) {
	tbs, err := l.Prepare(t, parent, pub, key.Public())
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, t, parent, pub, key)
	if err != nil {
		return nil, fmt.Errorf("ceremony: signing: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if err := lint.SameTBS(cert, tbs); err != nil {
		return nil, err
	}
	if err := cert.CheckSignatureFrom(parentOf(cert, parent)); err != nil {
		return nil, errors.New("ceremony: the new certificate does not verify under its issuer")
	}
	return cert, nil
}

func parentOf(cert, parent *x509.Certificate) *x509.Certificate {
	if parent.Raw == nil { // self-signed: parent is the template
		return cert
	}
	return parent
}
