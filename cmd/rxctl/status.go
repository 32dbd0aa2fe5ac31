package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/internal/client"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/bundle"
	"github.com/nuskha/nuskha/internal/pki/holder"
	"github.com/nuskha/nuskha/internal/pki/revocation"
	"github.com/nuskha/nuskha/internal/problem"
)

func serialFlag(s string) (string, error) {
	if _, ok := pki.ParseSerialHex(s); !ok {
		return "", usageError{errors.New("-serial must be the certificate serial in hex")}
	}
	return s, nil
}

// certRevoke: an officer revokes a certificate for good; or, with
// -request, enters the revocation for a second officer to approve — the
// way a security officer's certificate is revoked.
func certRevoke(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "cert revoke")
	sf := addServerFlags(fs)
	serial := fs.String("serial", "", "certificate serial (hex)")
	reason := fs.String("reason", "", "keyCompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn or unspecified")
	request := fs.Bool("request", false, "enter the revocation for a second officer to approve (rxctl change approve); required for an officer's certificate")
	comment := fs.String("comment", "", "with -request: why (recorded for ever)")
	quiet := addQuiet(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	s, err := serialFlag(*serial)
	if err != nil {
		return err
	}
	if *reason == "" {
		return usageError{errors.New("-reason is required")}
	}
	if !*request {
		if *comment != "" || *quiet {
			return usageError{errors.New("-comment and -q go with -request")}
		}
		return officerCall(ctx, e, sf, "POST", "/admin/v1/certificates/"+s+"/revoke", map[string]string{"reason": *reason})
	}
	return officerCreate(ctx, e, sf, *quiet, "POST", "/admin/v1/status-changes",
		map[string]string{"serial": s, "action": "revoke", "reason": *reason, "comment": *comment})
}

// certHold and certRelease enter a suspension or its release; a second
// officer approves with `rxctl change approve`.
func certHold(ctx context.Context, e *env, args []string) error {
	return statusChange(ctx, e, "hold", args)
}

func certRelease(ctx context.Context, e *env, args []string) error {
	return statusChange(ctx, e, "release", args)
}

func statusChange(ctx context.Context, e *env, action string, args []string) error {
	fs := newFlags(e, "cert "+action)
	sf := addServerFlags(fs)
	serial := fs.String("serial", "", "certificate serial (hex)")
	comment := fs.String("comment", "", "why (recorded for ever)")
	quiet := addQuiet(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	s, err := serialFlag(*serial)
	if err != nil {
		return err
	}
	return officerCreate(ctx, e, sf, *quiet, "POST", "/admin/v1/status-changes", map[string]string{"serial": s, "action": action, "comment": *comment})
}

func changeDecide(approve bool) command {
	verb := "approve"
	if !approve {
		verb = "reject"
	}
	return func(ctx context.Context, e *env, args []string) error {
		fs := newFlags(e, "change "+verb)
		sf := addServerFlags(fs)
		comment := fs.String("comment", "", "optional note")
		if err := e.parse(fs, args); err != nil {
			return err
		}
		id, err := oneArg(fs.Args(), "status change id")
		if err != nil {
			return err
		}
		return officerCall(ctx, e, sf, "POST", "/admin/v1/status-changes/"+url.PathEscape(id)+"/"+verb, map[string]string{"comment": *comment})
	}
}

func changeList(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "change list")
	sf := addServerFlags(fs)
	pending := fs.Bool("pending", true, "only those awaiting a decision")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	return officerCall(ctx, e, sf, "GET", fmt.Sprintf("/admin/v1/status-changes?pending=%t", *pending), nil)
}

// certStatus asks trustd's public API.
func certStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "cert status")
	sf := addPublicFlags(fs)
	serial := fs.String("serial", "", "certificate serial (hex)")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	s, err := serialFlag(*serial)
	if err != nil {
		return err
	}
	c, err := sf.anonymous()
	if err != nil {
		return err
	}
	var out json.RawMessage
	if err := c.Do(ctx, "GET", "/v1/certificates/"+s+"/status", nil, &out); err != nil {
		return err
	}
	return printJSON(e.stdout, out)
}

// tokenRevoke revokes the certificate of the key on the token, proving
// possession by signing the request with that key.
func tokenRevoke(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "token revoke")
	kf := addKeyFlags(fs)
	sf := addPublicFlags(fs)
	certFile := fs.String("cert", "", "the certificate to revoke (PEM); default: the one on the token")
	reason := fs.String("reason", "keyCompromise", "keyCompromise, affiliationChanged, superseded, cessationOfOperation or unspecified")
	k, uri, err := openKey(ctx, e, fs, kf, args)
	if err != nil {
		return err
	}
	var cert *x509.Certificate
	if *certFile != "" {
		certs, err := pemutil.ReadCertificateBundle(*certFile)
		if err != nil {
			return err
		}
		cert = certs[0]
	} else if cert, err = e.keys.LoadCertificate(ctx, uri); err != nil {
		return err
	}
	token, err := holder.Sign(k, holder.Request{V: 1, Type: holder.Type, Serial: pki.SerialHex(cert.SerialNumber), Reason: *reason, IssuedAt: time.Now().UTC()})
	if err != nil {
		return err
	}
	c, err := sf.anonymous()
	if err != nil {
		return err
	}
	var out json.RawMessage
	if err := c.DoRaw(ctx, "POST", "/v1/revocations", "application/jose", []byte(token), &out); err != nil {
		return err
	}
	return printJSON(e.stdout, out)
}

// trustPull fetches and verifies the trust bundle and writes it for
// offline use.
func trustPull(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "trust pull")
	sf := addPublicFlags(fs)
	out := fs.String("out", "trust-bundle.jws", "where to write the bundle")
	crls := fs.String("crls", "", "also write the bundle's CRLs (the issuing CA's and the root's ARL) here, PEM, for other tools (openssl verify -CRLfile)")
	arc := fs.String("oid-arc", pki.DefaultArc, "the deployment's OID arc")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	c, err := sf.anonymous()
	if err != nil {
		return err
	}
	var raw []byte
	if err := c.Do(ctx, "GET", "/v1/trust-bundle", nil, &raw); err != nil {
		return err
	}
	v, err := verifyBundle(raw, *sf.caFile, *arc)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, raw, 0o644); err != nil {
		return err
	}
	if *crls != "" {
		var b []byte
		for _, c := range v.CRLs {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: c.List.Raw})...)
		}
		if err := os.WriteFile(*crls, b, 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.stdout, "trust bundle written to %s: %d root(s), %d intermediate(s), %d CRL(s); CRL %s issued %s, next update %s\n",
		*out, len(v.Roots), len(v.Intermediates), len(v.CRLs), v.CRLs[0].List.Number, v.CRLs[0].List.ThisUpdate.UTC().Format(time.RFC3339),
		v.CRLs[0].List.NextUpdate.UTC().Format(time.RFC3339))
	for _, c := range v.CRLs {
		if bytes.Equal(c.Issuer.RawSubject, c.Issuer.RawIssuer) {
			fmt.Fprintf(e.stdout, "  the root's ARL %s: %d revoked CA(s), next update %s\n", c.List.Number, len(c.List.RevokedCertificateEntries),
				c.List.NextUpdate.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

func verifyBundle(raw []byte, caFile, arcS string) (*bundle.Verified, error) {
	if caFile == "" {
		return nil, usageError{errors.New("-ca-file (the pinned root) is required")}
	}
	roots, err := pemutil.ReadCertificateBundle(caFile)
	if err != nil {
		return nil, err
	}
	arc, err := pki.ParseArc(arcS)
	if err != nil {
		return nil, usageError{err}
	}
	v, err := bundle.Verify(raw, roots, arc, time.Now())
	if err != nil {
		return nil, err
	}
	if len(v.CRLs) == 0 {
		return nil, errors.New("the bundle has no CRL")
	}
	return v, nil
}

// certCheck answers, offline from a trust bundle (or online via OCSP),
// whether a certificate is good now and why.
func certCheck(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "cert check")
	certFile := fs.String("cert", "", "certificate chain to check (PEM: leaf, then its issuer)")
	bundleFile := fs.String("bundle", "", "trust bundle written by `rxctl trust pull` (offline check)")
	caFile := fs.String("ca-file", envOr("NUSKHA_CA_FILE", ""), "pinned root certificate(s)")
	maxAge := fs.Duration("max-age", 24*time.Hour, "refuse evidence older than this")
	online := fs.Bool("online", false, "ask the OCSP responder named in the certificate when the bundle cannot answer")
	arc := fs.String("oid-arc", pki.DefaultArc, "the deployment's OID arc")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if *certFile == "" {
		return usageError{errors.New("-cert is required")}
	}
	chain, err := pemutil.ReadCertificateBundle(*certFile)
	if err != nil {
		return err
	}
	checker, v, err := statusChecker(*maxAge, *online, *bundleFile, *caFile, *arc)
	if err != nil {
		return err
	}
	var issuer *x509.Certificate
	if len(chain) > 1 {
		issuer = chain[1]
	}
	if v != nil {
		for _, c := range v.Intermediates {
			if bytes.Equal(c.RawSubject, chain[0].RawIssuer) {
				issuer = c
			}
		}
	}
	if issuer == nil {
		return usageError{errors.New("the issuer is unknown: give the chain in -cert or a -bundle")}
	}
	if *caFile == "" {
		return usageError{errors.New("-ca-file (the pinned root) is required")}
	}
	roots, err := pemutil.ReadCertificateBundle(*caFile)
	if err != nil {
		return err
	}
	// Every certificate up to the pinned root is checked: the intermediate
	// against the root's ARL too.
	pool, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	inter.AddCert(issuer)
	chains, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return &client.Problem{Problem: problem.From(errs.Wrap(errs.UntrustedChain, err, "the certificate does not chain to the pinned root: %v", err))}
	}
	res, err := checker.CheckChain(ctx, chains[0])
	if err == nil {
		err = res.GoodAt(time.Now())
	}
	if err != nil {
		return &client.Problem{Problem: problem.From(err)}
	}
	fmt.Fprintf(e.stdout, "good: certificate %x is not revoked according to %s (issued %s)\n", chain[0].SerialNumber, res.Source, res.ThisUpdate.UTC().Format(time.RFC3339))
	return nil
}

// statusChecker is the revocation evidence a verifying command uses: the
// CRL of a trust bundle (offline) and, if asked, OCSP. The verified bundle
// is returned too (nil without one).
func statusChecker(maxAge time.Duration, online bool, bundleFile, caFile, arc string) (*revocation.Checker, *bundle.Verified, error) {
	cfg := revocation.Config{MaxAge: maxAge, Now: time.Now}
	if online {
		cfg.HTTP = &http.Client{Timeout: 10 * time.Second}
	}
	checker, err := revocation.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	if bundleFile == "" {
		return checker, nil, nil
	}
	raw, err := os.ReadFile(bundleFile)
	if err != nil {
		return nil, nil, err
	}
	v, err := verifyBundle(raw, caFile, arc)
	if err != nil {
		return nil, nil, err
	}
	if err := checker.UseBundle(v); err != nil {
		return nil, nil, err
	}
	return checker, v, nil
}
