package trustd

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/store"
	"github.com/nuskha/nuskha/internal/store/truststore"
)

// Purposes of trustd's own credentials, and the profiles they are issued with.
const (
	PurposeOCSP   = "ocsp-responder"
	PurposeBundle = "trust-bundle-signing"
)

// credentials keeps trustd's own signing credentials current: the delegated
// OCSP responder and the trust-bundle signer. Each rotation makes a fresh
// key (in the configured custody) and certificate; an OCSP responder
// certificate carries id-pkix-ocsp-nocheck and cannot be revoked, so it is
// short-lived and replaced well before it expires.
type credentials struct {
	db      *truststore.Store
	keys    *hsm.Manager
	svc     *enrol.Service
	subject string
	now     func() time.Time
	log     *slog.Logger
}

// credential is a certificate chain (leaf, intermediate) and its key.
type credential struct {
	chain []*x509.Certificate
	key   hsm.Key
}

// current opens the latest credential of purpose, or store.ErrNotFound.
func (c *credentials) current(ctx context.Context, purpose string, inter *x509.Certificate) (*credential, error) {
	sc, err := c.db.LatestServiceCredential(ctx, purpose)
	if err != nil {
		return nil, err
	}
	rec, err := c.db.CertificateBySerial(ctx, sc.Serial)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		return nil, err
	}
	key, err := c.keys.OpenKey(ctx, sc.KeyURI)
	if err != nil {
		return nil, fmt.Errorf("opening the %s key: %w", purpose, err)
	}
	return &credential{chain: []*x509.Certificate{cert, inter}, key: key}, nil
}

// ensure returns a credential of purpose valid for at least renewBefore,
// making a new one (key at keyTemplate, certificate issued by trustd to
// itself) when needed. It reports whether it made one.
func (c *credentials) ensure(ctx context.Context, purpose, keyTemplate string, renewBefore time.Duration, inter *x509.Certificate) (*credential, bool, error) {
	cur, err := c.current(ctx, purpose, inter)
	switch {
	case err == nil && cur.chain[0].NotAfter.Sub(c.now()) > renewBefore:
		return cur, false, nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return nil, false, err
	}
	sub, err := c.db.GetSubject(ctx, c.subject)
	if err != nil {
		return nil, false, fmt.Errorf("trustd's service subject %s: %w", c.subject, err)
	}
	// A key made and a certificate issued for it are recorded and
	// audited as installed even if ctx ends meanwhile (trustd stopping).
	ctx, cancel := enrol.Finishing(ctx)
	defer cancel()
	suffix := c.now().UTC().Format("20060102T150405") + "-" + randomHex(3)
	uri := strings.ReplaceAll(keyTemplate, "{n}", suffix)
	key, err := c.keys.CreateKey(ctx, uri, hsm.ECP256)
	if err != nil {
		return nil, false, fmt.Errorf("making the %s key: %w", purpose, err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: purpose}}, key)
	if err != nil {
		return nil, false, err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, false, err
	}
	rec, err := c.svc.Bootstrap(ctx, enrol.System, sub, purpose, csr)
	if err != nil {
		return nil, false, fmt.Errorf("issuing the %s certificate: %w", purpose, err)
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		return nil, false, err
	}
	// The key and certificate were audited as made; this records, with
	// the credential, that they now sign for the service.
	e := audit.Event{Time: c.now().UTC(), Actor: enrol.System, Action: "credential.install", Object: "certificate:" + rec.SerialHex(), Outcome: audit.OK,
		Detail: map[string]string{"purpose": purpose, "not_after": rec.NotAfter.Format(time.RFC3339)}}
	if err := c.db.AddServiceCredential(ctx, enrol.ServiceCredential{Serial: rec.Serial, Purpose: purpose, KeyURI: key.URI(), NotAfter: rec.NotAfter}, c.now(), e); err != nil {
		return nil, false, err
	}
	audit.Mirror(ctx, c.log, e)
	c.log.InfoContext(ctx, "credential renewed", "purpose", purpose, "serial", rec.SerialHex(), "not_after", rec.NotAfter)
	return &credential{chain: []*x509.Certificate{cert, inter}, key: key}, true, nil
}

// keyTemplate is the configured template, or one beside the intermediate's
// key: the same token (object label "<name>-{n}") or the same directory.
func keyTemplate(configured, intermediateURI, name string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	u, err := hsm.ParseURI(intermediateURI)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case hsm.SchemePKCS11:
		delete(u.Path, "id")
		u.Path["object"] = name + "-N"
	case hsm.SchemeSoftKey:
		p := u.Path["path"]
		dir := p[:strings.LastIndex(p, "/")+1]
		u.Path["path"] = dir + name + "-N.key"
	}
	// {n} would be percent-encoded by String; put it in afterwards.
	return strings.Replace(u.String(), name+"-N", name+"-{n}", 1), nil
}
