// Package crl builds RFC 5280 v2 certificate revocation lists: linted with a
// throwaway key before the issuing key (on the HSM) signs, exactly as
// certificates are.
package crl

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/nuskha/nuskha/internal/pki/lint"
)

// Entry is one revoked (or suspended) certificate.
type Entry struct {
	Serial    *big.Int
	RevokedAt time.Time
	Reason    int // RFC 5280 CRLReason; 0 (unspecified) is omitted from the entry as RFC 5280 asks
}

// Request is one CRL to sign.
type Request struct {
	Number     *big.Int
	ThisUpdate time.Time
	NextUpdate time.Time
	Entries    []Entry
}

// BeforeSign is called with the linted TBS just before the issuing key signs.
type BeforeSign func(tbs []byte) error

// Sign lints and signs a CRL with the issuer's key and returns its DER.
// The issuer's SKI becomes the CRL's authority key identifier.
func Sign(req Request, issuer *x509.Certificate, key crypto.Signer, l *lint.Linter, before BeforeSign) ([]byte, error) {
	if req.Number == nil || req.Number.Sign() <= 0 || req.Number.BitLen() > 159 {
		return nil, errors.New("crl: number must be positive and at most 20 octets")
	}
	if !req.NextUpdate.After(req.ThisUpdate) {
		return nil, errors.New("crl: nextUpdate must be after thisUpdate")
	}
	if len(issuer.SubjectKeyId) == 0 {
		return nil, errors.New("crl: issuer has no subject key identifier")
	}
	tpl := &x509.RevocationList{
		Number:     req.Number,
		ThisUpdate: req.ThisUpdate.UTC().Truncate(time.Second),
		NextUpdate: req.NextUpdate.UTC().Truncate(time.Second),
	}
	tpl.RevokedCertificateEntries = make([]x509.RevocationListEntry, len(req.Entries))
	for i, e := range req.Entries {
		tpl.RevokedCertificateEntries[i] = x509.RevocationListEntry{
			SerialNumber:   e.Serial,
			RevocationTime: e.RevokedAt.UTC().Truncate(time.Second),
			ReasonCode:     e.Reason,
		}
	}
	tbs, err := l.PrepareCRL(tpl, issuer, key.Public())
	if err != nil {
		return nil, err
	}
	if before != nil {
		if err := before(tbs); err != nil {
			return nil, err
		}
	}
	der, err := x509.CreateRevocationList(rand.Reader, tpl, issuer, key)
	if err != nil {
		return nil, fmt.Errorf("crl: signing: %w", err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, err
	}
	if err := lint.SameCRLTBS(crl, tbs); err != nil {
		return nil, err
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("crl: signed CRL does not verify: %w", err)
	}
	return der, nil
}
