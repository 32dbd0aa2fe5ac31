package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/internal/client"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/bundle"
	"github.com/nuskha/nuskha/internal/problem"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/rx/trackcode"
)

// signingFlags are what every signing command needs besides the key.
type signingFlags struct {
	chain, bundle, caFile, arc, out *string
	maxAge                          *time.Duration
	online                          *bool
}

func addSigningFlags(e *env, name string) (*flag.FlagSet, keyFlags, signingFlags) {
	fs := newFlags(e, name)
	kf := addKeyFlags(fs)
	sf := signingFlags{
		chain:  fs.String("chain", "", "certificate chain (PEM, leaf first); default: the certificate on the token and the intermediate from -bundle"),
		bundle: fs.String("bundle", "", "trust bundle (from `rxctl trust pull`): the intermediate, and the CRL that shows the signing certificate is not revoked"),
		caFile: fs.String("ca-file", envOr("NUSKHA_CA_FILE", ""), "pinned root certificate(s), to check the bundle and the signer's chain"),
		arc:    fs.String("oid-arc", pki.DefaultArc, "the deployment's OID arc"),
		out:    fs.String("out", "", "where to write the signed document (compact JWS); default standard output"),
		maxAge: fs.Duration("max-age", 24*time.Hour, "refuse to sign on revocation evidence older than this"),
		online: fs.Bool("online", false, "ask the OCSP responder when the bundle cannot show the certificate's status"),
	}
	return fs, kf, sf
}

// signWith signs doc with the token key and its chain, once the verifier's
// own checks of the signer pass (rx.Verifier.Sign): the certificate's
// profile for this kind of document, the document naming its subject, the
// chain to the pinned root, and its revocation status from the bundle's
// CRL or OCSP. Without evidence that the certificate is good, nothing is
// signed: the card is never asked for a signature every verifier refuses.
func signWith(ctx context.Context, e *env, fs *flag.FlagSet, kf keyFlags, sf signingFlags, args []string, prepare func() (rx.Document, error)) error {
	if err := e.parse(fs, args); err != nil {
		return err
	}
	token, err := sf.sign(ctx, e, kf, prepare)
	if err != nil {
		return err
	}
	return writeOut(e.stdout, *sf.out, []byte(token+"\n"))
}

// sign is signWith once the flags are parsed: it returns the signed
// document.
func (sf signingFlags) sign(ctx context.Context, e *env, kf keyFlags, prepare func() (rx.Document, error)) (string, error) {
	uri, err := kf.URI()
	if err != nil {
		return "", err
	}
	verifier, trusted, err := newVerifier(*sf.caFile, *sf.arc, *sf.maxAge, *sf.online, *sf.bundle)
	if err != nil {
		return "", err
	}
	doc, err := prepare()
	if err != nil {
		return "", err
	}
	key, err := e.keys.OpenKey(ctx, uri)
	if err != nil {
		return "", err
	}
	chain, err := signerChain(ctx, e, uri, *sf.chain, trusted)
	if err != nil {
		return "", err
	}
	token, err := verifier.Sign(ctx, doc, key, chain, time.Now())
	if err != nil {
		if errs.CodeOf(err) != errs.Internal {
			return "", &client.Problem{Problem: problem.From(err)}
		}
		return "", err
	}
	return token, nil
}

// newVerifier is the document verifier of the signing and verifying
// commands: the pinned roots, and revocation evidence from a trust bundle
// (returned verified, nil without one) or OCSP.
func newVerifier(caFile, arcS string, maxAge time.Duration, online bool, bundleFile string) (*rx.Verifier, *bundle.Verified, error) {
	if caFile == "" {
		return nil, nil, usageError{errors.New("-ca-file (the pinned root) is required")}
	}
	roots, err := pemutil.ReadCertificateBundle(caFile)
	if err != nil {
		return nil, nil, err
	}
	arc, err := pki.ParseArc(arcS)
	if err != nil {
		return nil, nil, usageError{err}
	}
	checker, trusted, err := statusChecker(maxAge, online, bundleFile, caFile, arcS)
	if err != nil {
		return nil, nil, err
	}
	v, err := rx.NewVerifier(rx.Config{Roots: roots, Arc: arc, Status: checker, Now: time.Now})
	return v, trusted, err
}

// signerChain is -chain, or the token's certificate and its issuer from
// the verified bundle.
func signerChain(ctx context.Context, e *env, uri, chainFile string, trusted *bundle.Verified) ([]*x509.Certificate, error) {
	if chainFile != "" {
		chain, err := pemutil.ReadCertificateBundle(chainFile)
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
	if trusted == nil {
		return nil, usageError{errors.New("give -chain, or -bundle for the intermediate")}
	}
	for _, c := range trusted.Intermediates {
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
	kind, raw, err := rx.Peek(token)
	if err != nil {
		return rx.Reference{}, rx.Prescriber{}, &client.Problem{Problem: problem.From(err)}
	}
	if kind != rx.KindPrescription {
		return rx.Reference{}, rx.Prescriber{}, usageError{fmt.Errorf("-prescription holds a %s, not a prescription", kind)}
	}
	var p rx.Prescription
	if err := json.Unmarshal(raw, &p); err != nil {
		return rx.Reference{}, rx.Prescriber{}, err
	}
	return rx.Reference{ID: p.ID, JWSSHA256: rx.SHA256(token)}, p.Prescriber, nil
}

// rxVerify checks a signed document, offline with a trust bundle (or
// online), and says why it is or is not valid. The kind is the one the
// token's typ names; -kind, if given, must agree.
func rxVerify(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "rx verify")
	in := fs.String("in", "", "the signed document (JWS file)")
	kindFlag := fs.String("kind", "", kindNames()+": refuse a document of another kind (default: the kind its typ names)")
	bundleFile := fs.String("bundle", "", "trust bundle (from `rxctl trust pull`)")
	caFile := fs.String("ca-file", envOr("NUSKHA_CA_FILE", ""), "pinned root certificate(s)")
	maxAge := fs.Duration("max-age", 24*time.Hour, "refuse revocation evidence older than this")
	online := fs.Bool("online", false, "ask the OCSP responder when the bundle cannot answer")
	arcS := fs.String("oid-arc", pki.DefaultArc, "the deployment's OID arc")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	want := rx.Kind(*kindFlag)
	if want != "" && !slices.Contains(rx.Kinds(), want) {
		return usageError{fmt.Errorf("-kind %q: want %s", *kindFlag, kindNames())}
	}
	token, err := readSigned(*in)
	if err != nil {
		return err
	}
	verifier, _, err := newVerifier(*caFile, *arcS, *maxAge, *online, *bundleFile)
	if err != nil {
		return err
	}
	kind, _, err := rx.Peek(token)
	if err == nil && want != "" && kind != want {
		err = errs.New(errs.WrongDocumentType, "the document is a %s (typ %q), not a %s", kind, kind.Typ(), want)
	}
	var v *rx.Verified
	if err == nil {
		v, err = verifier.Verify(ctx, token, kind)
	}
	if err != nil {
		return &client.Problem{Problem: problem.From(err)}
	}
	fmt.Fprintf(e.stdout, "valid %s %s\n%s  signed at %s by %s (%s)\n  certificate %x, status %s per %s\n  sha256 %s\n",
		v.Kind, documentID(v), documentDetails(v), v.SigningTime.Format(time.RFC3339), v.Chain[0].Subject.CommonName,
		strings.TrimSpace(string(v.Signer.Role)+" "+v.Signer.RegistrationNumber),
		v.Chain[0].SerialNumber, v.Status.Status, v.Status.Source, v.SHA256())
	return nil
}

// kindNames lists the kinds -kind takes.
func kindNames() string {
	var names []string
	for _, k := range rx.Kinds() {
		names = append(names, string(k))
	}
	return strings.Join(names, ", ")
}

func documentID(v *rx.Verified) string {
	switch {
	case v.Prescription != nil:
		return v.Prescription.ID
	case v.Dispense != nil:
		return v.Dispense.ID + " of prescription " + v.Dispense.Prescription.ID
	case v.Cancellation != nil:
		return v.Cancellation.ID + " of prescription " + v.Cancellation.Prescription.ID
	case v.Session != nil:
		return v.Session.ID
	case v.Paper != nil:
		return v.Paper.ID
	case v.Ack != nil:
		return v.Ack.ID + " of prescription " + v.Ack.Prescription.ID
	case v.Receipt != nil:
		return v.Receipt.ID + " of prescription " + v.Receipt.Prescription.ID
	}
	return ""
}

// documentDetails are the lines (each indented, ending in a newline) that
// say what the exchange's documents attest; none for the others.
func documentDetails(v *rx.Verified) string {
	switch {
	case v.Session != nil:
		return fmt.Sprintf("  for the vendor certificate with x5t#S256 %s, issued at %s\n", v.Session.Vendor, v.Session.IssuedAt.Format(time.RFC3339))
	case v.Paper != nil:
		return fmt.Sprintf("  written by %s %s, entered at %s; %d item(s) written, %d dispensed\n", v.Paper.Prescriber.Profession,
			v.Paper.Prescriber.CouncilNumber, v.Paper.EnteredAt.Format(time.RFC3339), len(v.Paper.Items), len(v.Paper.Dispensed))
	case v.Ack != nil:
		return fmt.Sprintf("  tracking code %s, accepted at %s\n", trackcode.Format(v.Ack.TrackingCode), v.Ack.AcceptedAt.Format(time.RFC3339))
	case v.Receipt != nil:
		r := v.Receipt
		return fmt.Sprintf("  tracking code %s, closed at %s by %s %s, %d dispense record(s)\n  amounts (rials): total %d, insurer %d, supplementary %d, patient %d\n",
			trackcode.Format(r.TrackingCode), r.ClosedAt.Format(time.RFC3339), r.Dispenser.Role, r.Dispenser.LicenceNumber, len(r.Dispenses),
			r.Amounts.Total, r.Amounts.Insurer, r.Amounts.Supplementary, r.Amounts.Patient)
	}
	return ""
}
