package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/internal/client"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/problem"
	"github.com/nuskha/nuskha/internal/rx"
)

// signingFlags are what every signing command needs besides the key.
type signingFlags struct {
	chain, bundle, caFile, arc, out *string
}

func addSigningFlags(e *env, name string) (*flag.FlagSet, keyFlags, signingFlags) {
	fs := newFlags(e, name)
	kf := addKeyFlags(fs)
	sf := signingFlags{
		chain:  fs.String("chain", "", "certificate chain (PEM, leaf first); default: the certificate on the token and the intermediate from -bundle"),
		bundle: fs.String("bundle", "", "trust bundle (from `rxctl trust pull`) to take the intermediate from"),
		caFile: fs.String("ca-file", envOr("NUSKHA_CA_FILE", ""), "pinned root certificate(s), to check the bundle"),
		arc:    fs.String("oid-arc", pki.DefaultArc, "the deployment's OID arc"),
		out:    fs.String("out", "", "where to write the signed document (compact JWS); default standard output"),
	}
	return fs, kf, sf
}

// signWith signs doc with the token key and its chain.
func signWith(ctx context.Context, e *env, fs *flag.FlagSet, kf keyFlags, sf signingFlags, args []string, prepare func() (rx.Document, error)) error {
	key, uri, err := openKey(ctx, e, fs, kf, args)
	if err != nil {
		return err
	}
	doc, err := prepare()
	if err != nil {
		return err
	}
	chain, err := signerChain(ctx, e, uri, sf)
	if err != nil {
		return err
	}
	token, err := rx.Sign(doc, key, chain, time.Now())
	if err != nil {
		return err
	}
	return writeOut(e.stdout, *sf.out, []byte(token+"\n"))
}

func signerChain(ctx context.Context, e *env, uri string, sf signingFlags) ([]*x509.Certificate, error) {
	if *sf.chain != "" {
		chain, err := pemutil.ReadCertificateBundle(*sf.chain)
		if err != nil {
			return nil, err
		}
		if len(chain) < 2 {
			return nil, usageError{errors.New("-chain must hold the signer's certificate and its intermediate")}
		}
		return chain, nil
	}
	leaf, err := e.keys.LoadCertificate(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("no -chain given and %w", err)
	}
	if *sf.bundle == "" {
		return nil, usageError{errors.New("give -chain, or -bundle for the intermediate")}
	}
	raw, err := os.ReadFile(*sf.bundle)
	if err != nil {
		return nil, err
	}
	v, err := verifyBundle(raw, *sf.caFile, *sf.arc)
	if err != nil {
		return nil, err
	}
	for _, c := range v.Intermediates {
		if bytes.Equal(c.RawSubject, leaf.RawIssuer) {
			return []*x509.Certificate{leaf, c}, nil
		}
	}
	return nil, errors.New("the bundle has no intermediate that issued the token's certificate")
}

func readDocument(path string, doc any) error {
	if path == "" {
		return usageError{errors.New("-in is required")}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// rxSign: a practitioner signs a prescription with the smart card.
func rxSign(ctx context.Context, e *env, args []string) error {
	fs, kf, sf := addSigningFlags(e, "rx sign")
	in := fs.String("in", "", "the prescription (JSON, version 1; id, issued_at, v and type are filled in if absent)")
	return signWith(ctx, e, fs, kf, sf, args, func() (rx.Document, error) {
		var p rx.Prescription
		if err := readDocument(*in, &p); err != nil {
			return nil, err
		}
		if p.V == 0 {
			p.V, p.Type = rx.Version, rx.KindPrescription
		}
		if p.ID == "" {
			p.ID = rx.NewID()
		}
		if p.IssuedAt.IsZero() {
			p.IssuedAt = time.Now()
		}
		return &p, nil
	})
}

// readSigned reads a compact JWS file.
func readSigned(path string) (string, error) {
	if path == "" {
		return "", usageError{errors.New("the signed prescription is required")}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(raw)), nil
}

// referenceTo names the prescription in a signed file, read (not verified:
// the verifier of the new document checks the reference against it).
func referenceTo(token string) (rx.Reference, rx.Prescriber, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return rx.Reference{}, rx.Prescriber{}, errors.New("not a compact JWS")
	}
	raw, err := b64url(parts[1])
	if err != nil {
		return rx.Reference{}, rx.Prescriber{}, err
	}
	var p rx.Prescription
	if err := json.Unmarshal(raw, &p); err != nil {
		return rx.Reference{}, rx.Prescriber{}, err
	}
	return rx.Reference{ID: p.ID, JWSSHA256: rx.SHA256(token)}, p.Prescriber, nil
}

// rxDispense: a pharmacy or centre signs what it handed out or performed.
func rxDispense(ctx context.Context, e *env, args []string) error {
	fs, kf, sf := addSigningFlags(e, "rx dispense")
	in := fs.String("in", "", "the dispense record (JSON, version 1); the prescription reference, id and time are filled in")
	prescription := fs.String("prescription", "", "the signed prescription (JWS file) being dispensed")
	return signWith(ctx, e, fs, kf, sf, args, func() (rx.Document, error) {
		token, err := readSigned(*prescription)
		if err != nil {
			return nil, err
		}
		ref, _, err := referenceTo(token)
		if err != nil {
			return nil, err
		}
		var d rx.Dispense
		if err := readDocument(*in, &d); err != nil {
			return nil, err
		}
		d.V, d.Type, d.Prescription = rx.Version, rx.KindDispense, ref
		if d.ID == "" {
			d.ID = rx.NewID()
		}
		if d.DispensedAt.IsZero() {
			d.DispensedAt = time.Now()
		}
		return &d, nil
	})
}

// rxCancel: the prescriber withdraws a prescription.
func rxCancel(ctx context.Context, e *env, args []string) error {
	fs, kf, sf := addSigningFlags(e, "rx cancel")
	prescription := fs.String("prescription", "", "the signed prescription (JWS file) to cancel")
	reason := fs.String("reason", "", "why (recorded in the signed cancellation)")
	return signWith(ctx, e, fs, kf, sf, args, func() (rx.Document, error) {
		token, err := readSigned(*prescription)
		if err != nil {
			return nil, err
		}
		ref, prescriber, err := referenceTo(token)
		if err != nil {
			return nil, err
		}
		if strings.TrimSpace(*reason) == "" {
			return nil, usageError{errors.New("-reason is required")}
		}
		return &rx.Cancellation{V: rx.Version, Type: rx.KindCancellation, ID: rx.NewID(), CancelledAt: time.Now(),
			Prescription: ref, Prescriber: prescriber, Reason: *reason}, nil
	})
}

// rxVerify checks a signed document, offline with a trust bundle (or
// online), and says why it is or is not valid.
func rxVerify(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "rx verify")
	in := fs.String("in", "", "the signed document (JWS file)")
	kind := fs.String("kind", "prescription", "prescription, dispense or cancellation")
	bundleFile := fs.String("bundle", "", "trust bundle (from `rxctl trust pull`)")
	caFile := fs.String("ca-file", envOr("NUSKHA_CA_FILE", ""), "pinned root certificate(s)")
	maxAge := fs.Duration("max-age", 24*time.Hour, "refuse revocation evidence older than this")
	online := fs.Bool("online", false, "ask the OCSP responder when the bundle cannot answer")
	arcS := fs.String("oid-arc", pki.DefaultArc, "the deployment's OID arc")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	token, err := readSigned(*in)
	if err != nil {
		return err
	}
	if *caFile == "" {
		return usageError{errors.New("-ca-file (the pinned root) is required")}
	}
	roots, err := pemutil.ReadCertificateBundle(*caFile)
	if err != nil {
		return err
	}
	arc, err := pki.ParseArc(*arcS)
	if err != nil {
		return usageError{err}
	}
	checker, _, err := statusChecker(*maxAge, *online, *bundleFile, *caFile, *arcS)
	if err != nil {
		return err
	}
	verifier, err := rx.NewVerifier(rx.Config{Roots: roots, Arc: arc, Status: checker, Now: time.Now})
	if err != nil {
		return err
	}
	v, err := verifier.Verify(ctx, token, rx.Kind(*kind))
	if err != nil {
		return &client.Problem{Problem: problem.From(err)}
	}
	fmt.Fprintf(e.stdout, "valid %s %s\n  signed at %s by %s (%s %s)\n  certificate %x, status %s per %s\n  sha256 %s\n",
		v.Kind, documentID(v), v.SigningTime.Format(time.RFC3339), v.Chain[0].Subject.CommonName, v.Signer.Role, v.Signer.RegistrationNumber,
		v.Chain[0].SerialNumber, v.Status.Status, v.Status.Source, v.SHA256())
	return nil
}

func documentID(v *rx.Verified) string {
	switch {
	case v.Prescription != nil:
		return v.Prescription.ID
	case v.Dispense != nil:
		return v.Dispense.ID + " of prescription " + v.Dispense.Prescription.ID
	case v.Cancellation != nil:
		return v.Cancellation.ID + " of prescription " + v.Cancellation.Prescription.ID
	}
	return ""
}

func b64url(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
