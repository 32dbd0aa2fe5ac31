// Package ceremony creates the CA hierarchy: a self-signed root, the
// issuing intermediate it certifies, and the root's authority revocation
// list (ARL). It runs with the root key present: once at `trustd init`, and
// again whenever the ARL must be re-signed (`trustd sign-arl`); day-to-day
// issuance needs only the intermediate key.
package ceremony

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"go.step.sm/crypto/x509util"

	"github.com/nuskha/nuskha/internal/pki/crl"
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
// arlURLs, where relying parties fetch the root's ARL, are the template's
// .URL.CRL (its CRL distribution point).
func CreateIntermediate(root *x509.Certificate, rootKey crypto.Signer, pub crypto.PublicKey, tpl profile.CATemplate, names Names, arlURLs []string, now time.Time, l *lint.Linter) (*x509.Certificate, error) {
	data := x509util.CreateTemplateData(names.IntermediateCN, nil)
	data.SetSubject(names.subject(names.IntermediateCN))
	data["URL"] = profile.URLs{CRL: arlURLs}
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

// ARLValidity is an ARL's lifetime (nextUpdate - thisUpdate). The root key
// is offline, so the root re-signs its ARL at a ceremony, and MUST do so
// before nextUpdate: from then on verifiers refuse every chain through
// the intermediate (they fail closed on a stale ARL). trustd warns from
// ARLWarnBefore ahead.
const (
	ARLValidity   = 365 * 24 * time.Hour
	ARLWarnBefore = 60 * 24 * time.Hour
)

// ARLReasons are the CRLReasons a CA certificate may be revoked for
// (RFC 5280 §5.3.1): a CA's key compromise is cACompromise, and a CA is
// never merely suspended.
var ARLReasons = []int{0, 2, 3, 4, 5}

// ARLRequest is one authority revocation list: the root's CRL. The root
// certifies only CAs, so its CRL lists exactly the revoked CAs.
type ARLRequest struct {
	Number     *big.Int
	ThisUpdate time.Time
	Validity   time.Duration // default ARLValidity
	Revoked    []crl.Entry   // revoked CA certificates, with ARLReasons
}

// SignARL lints and signs the root's ARL with the root key and returns its
// DER. nextUpdate is cut short by the root's own expiry. before sees the
// linted TBS just before the root key signs (to record intent).
func SignARL(req ARLRequest, root *x509.Certificate, rootKey crypto.Signer, l *lint.Linter, before crl.BeforeSign) ([]byte, error) {
	if !bytes.Equal(root.RawSubject, root.RawIssuer) || root.CheckSignatureFrom(root) != nil {
		return nil, errors.New("ceremony: the ARL is signed by the self-signed root")
	}
	if pub, ok := rootKey.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(root.PublicKey) {
		return nil, errors.New("ceremony: the key is not the root certificate's")
	}
	if req.Validity == 0 {
		req.Validity = ARLValidity
	}
	if req.Validity < 0 {
		return nil, errors.New("ceremony: the ARL's validity must be positive")
	}
	for _, e := range req.Revoked {
		if !slices.Contains(ARLReasons, e.Reason) {
			return nil, fmt.Errorf("ceremony: reason %d is not one a CA certificate is revoked for (unspecified, cACompromise, affiliationChanged, superseded, cessationOfOperation)", e.Reason)
		}
	}
	next := req.ThisUpdate.Add(req.Validity)
	if next.After(root.NotAfter) {
		next = root.NotAfter
	}
	return crl.Sign(crl.Request{Number: req.Number, ThisUpdate: req.ThisUpdate, NextUpdate: next, Entries: req.Revoked}, root, rootKey, l, before)
}
