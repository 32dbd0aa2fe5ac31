package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.step.sm/crypto/pemutil"

	exclient "github.com/nuskha/nuskha/exchange/client"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/rx/trackcode"
	"github.com/nuskha/nuskha/internal/tlsconf"
)

// The exchange's steps (docs/exchange.md), each a command: documents are
// signed on the card as by rx sign and sent to rxd through the vendor's
// client certificate (-rxd, -cert, -key); the other steps act in a session
// opened with `rxctl session open` and kept in a file (-session).

// addRxdFlagsSharing is addRxdFlags for a command that already has
// -ca-file (the pinned root, which also anchors rxd's TLS).
func addRxdFlagsSharing(fs *flag.FlagSet, caFile *string) rxdFlags {
	return rxdFlags{
		url:    fs.String("rxd", envOr("NUSKHA_RXD_URL", "https://localhost:8543"), "rxd API"),
		caFile: caFile,
		cert:   fs.String("cert", envOr("NUSKHA_CLIENT_CERT", ""), "client certificate chain (PEM) issued to the vendor's software"),
		key:    fs.String("key", envOr("NUSKHA_CLIENT_KEY", ""), "client key URI (softkey:… or pkcs11:…)"),
	}
}

// exchange is the vendors' client (exchange/client) on the vendor's
// certificate, holding the session token if one is given.
func (f rxdFlags) exchange(ctx context.Context, e *env, token string) (*exclient.Client, error) {
	if *f.caFile == "" || *f.cert == "" || *f.key == "" {
		return nil, usageError{errors.New("-ca-file, -cert and -key are required: rxd knows its callers by their certificates")}
	}
	roots, err := (serverFlags{caFile: f.caFile}).roots()
	if err != nil {
		return nil, err
	}
	cert, err := clientCertificate(ctx, e, *f.cert, *f.key)
	if err != nil {
		return nil, err
	}
	return exclient.New(exclient.Config{BaseURL: *f.url, Roots: roots, Certificate: cert, SessionToken: token})
}

// clientCertificate is a TLS client certificate: the chain in certFile
// (PEM, leaf first) and the key at keyURI.
func clientCertificate(ctx context.Context, e *env, certFile, keyURI string) (tls.Certificate, error) {
	chain, err := pemutil.ReadCertificateBundle(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := e.keys.OpenKey(ctx, keyURI)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tlsconf.Certificate(key, chain), nil
}

func sessionFlag(fs *flag.FlagSet) *string {
	return fs.String("session", envOr("NUSKHA_SESSION_FILE", ""), "the session file written by `rxctl session open` (mode 0600: it holds the token)")
}

// sessionFile is what `session open` keeps: the token is a bearer secret
// (usable only through the vendor certificate it was opened through).
type sessionFile struct {
	Token     string            `json:"token"`
	ExpiresAt time.Time         `json:"expires_at"`
	Actor     exclient.Actor    `json:"actor"`
	RxdURL    string            `json:"rxd"`
	Opened    *exclient.Session `json:"-"`
}

func readSession(path string) (*sessionFile, error) {
	if path == "" {
		return nil, usageError{errors.New("-session (the file `rxctl session open` wrote) is required")}
	}
	var s sessionFile
	if err := readJSON(path, &s); err != nil {
		return nil, err
	}
	if s.Token == "" {
		return nil, fmt.Errorf("%s holds no session token", path)
	}
	return &s, nil
}

// hold says what a claim granted until expires holds at now. A claim
// given back after it lapsed, for its secret only (a pharmacy recovering
// it to close the visit), holds nothing: it is closed, not dispensed
// under.
func hold(expires, now time.Time) string {
	if expires.After(now) {
		return "held until " + expires.Format(time.RFC3339)
	}
	return "lapsed at " + expires.Format(time.RFC3339) + ": its secret is given back to close the visit (rxctl rx close), not to dispense under it"
}

// claimFile is what `rx claim` keeps: the claim's secret, and the
// prescription as found, for the dispense records signed under it.
type claimFile struct {
	ClaimID        string    `json:"claim_id"`
	Secret         string    `json:"secret"`
	ExpiresAt      time.Time `json:"expires_at"`
	PrescriptionID string    `json:"prescription_id"`
	TrackingCode   string    `json:"tracking_code"`
	JWS            string    `json:"jws"`
}

func readClaim(path string) (*claimFile, error) {
	if path == "" {
		return nil, usageError{errors.New("-claim (the file `rxctl rx claim -claim-out` wrote) is required")}
	}
	var c claimFile
	if err := readJSON(path, &c); err != nil {
		return nil, err
	}
	if c.ClaimID == "" || c.Secret == "" {
		return nil, fmt.Errorf("%s holds no claim id and secret", path)
	}
	return &c, nil
}

func readJSON(path string, v any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// writeSecret writes a file only its owner may read, whatever mode a file
// already at path had.
func writeSecret(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeDocument writes a signed document the exchange answered to path
// ("" writes nothing).
func writeDocument(path, jws string) error {
	if path == "" {
		return nil
	}
	return os.WriteFile(path, []byte(jws+"\n"), 0o644)
}

// findFlags name a prescription: tracking code and national id, both.
type findFlags struct{ code, nationalID *string }

func addFindFlags(fs *flag.FlagSet) findFlags {
	return findFlags{
		code:       fs.String("code", "", "the tracking code the patient brings (XXXXX-XXXXX-C; case, spaces and hyphens do not matter)"),
		nationalID: fs.String("national-id", "", "the patient's national id"),
	}
}

func (f findFlags) find() (exclient.Find, error) {
	if *f.code == "" || *f.nationalID == "" {
		return exclient.Find{}, usageError{errors.New("-code and -national-id are both required: a code alone finds nothing")}
	}
	code, err := trackcode.Parse(*f.code)
	if err != nil {
		return exclient.Find{}, usageError{fmt.Errorf("-code: %w", err)}
	}
	return exclient.Find{TrackingCode: trackcode.Format(code), NationalID: strings.TrimSpace(*f.nationalID)}, nil
}

func noArgs(fs *flag.FlagSet, usage string) error {
	if fs.NArg() != 0 {
		return usageError{fmt.Errorf("unexpected argument %q; usage: %s", fs.Arg(0), usage)}
	}
	return nil
}

// sessionOpen: the card holder signs a session document for the vendor's
// certificate and opens a session with it.
func sessionOpen(ctx context.Context, e *env, args []string) error {
	fs, kf, sf := addSigningFlags(e, "session open")
	rf := addRxdFlagsSharing(fs, sf.caFile)
	session := sessionFlag(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs, "rxctl session open -session FILE [flags]"); err != nil {
		return err
	}
	if *session == "" {
		return usageError{errors.New("-session (where to keep the token) is required")}
	}
	c, err := rf.exchange(ctx, e, "")
	if err != nil {
		return err
	}
	token, err := sf.sign(ctx, e, kf, func() (rx.Document, error) {
		d := c.NewSessionDocument(time.Now())
		issued, err := time.Parse(time.RFC3339, d.IssuedAt)
		if err != nil {
			return nil, err
		}
		return &rx.Session{V: rx.Version, Type: rx.KindSession, ID: d.ID, Aud: d.Aud, IssuedAt: issued, Vendor: d.Vendor}, nil
	})
	if err != nil {
		return err
	}
	s, err := c.OpenSession(ctx, token)
	if err != nil {
		return err
	}
	if err := writeSecret(*session, &sessionFile{Token: s.Token, ExpiresAt: s.ExpiresAt, Actor: s.Actor, RxdURL: *rf.url}); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "session open for %s %s until %s; token kept in %s\n", s.Actor.Role, s.Actor.RegistrationNumber,
		s.ExpiresAt.Format(time.RFC3339), *session)
	return nil
}

// sessionClose ends the session and removes its file.
func sessionClose(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "session close")
	rf := addRxdFlags(fs)
	session := sessionFlag(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs, "rxctl session close -session FILE [flags]"); err != nil {
		return err
	}
	s, err := readSession(*session)
	if err != nil {
		return err
	}
	c, err := rf.exchange(ctx, e, s.Token)
	if err != nil {
		return err
	}
	if err := c.EndSession(ctx); err != nil {
		return err
	}
	if err := os.Remove(*session); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "session ended")
	return nil
}

// rxPrescribe: the practitioner signs a prescription on the card (or
// brings one signed) and submits it.
func rxPrescribe(ctx context.Context, e *env, args []string) error {
	fs, kf, sf := addSigningFlags(e, "rx prescribe")
	rf := addRxdFlagsSharing(fs, sf.caFile)
	in := fs.String("in", "", "the prescription (JSON, version 1) to sign on the card; id, issued_at, v and type are filled in if absent")
	signed := fs.String("signed", "", "a prescription signed already (JWS file), sent as it is instead of -in")
	ackOut := fs.String("ack-out", "", "where to save the exchange's signed acknowledgement (JWS)")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs, "rxctl rx prescribe -in FILE|-signed FILE [flags]"); err != nil {
		return err
	}
	if (*in == "") == (*signed == "") {
		return usageError{errors.New("give one of -in (a prescription to sign) and -signed (one signed already)")}
	}
	c, err := rf.exchange(ctx, e, "")
	if err != nil {
		return err
	}
	token, err := readSignedOr(*signed, func() (string, error) {
		return sf.sign(ctx, e, kf, func() (rx.Document, error) { return prescriptionFrom(*in) })
	})
	if err != nil {
		return err
	}
	if *signed == "" {
		if err := writeDocument(*sf.out, token); err != nil {
			return err
		}
	}
	a, err := c.Prescribe(ctx, token)
	if err != nil {
		return err
	}
	if err := writeDocument(*ackOut, a.Ack); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "prescription %s %s (state %s)\ntracking code %s\n", a.ID, accepted(a.Replayed), a.State, a.TrackingCode)
	printLines(e.stdout, a.Lines)
	printDecision(e.stdout, a.Decision)
	return nil
}

func accepted(replayed bool) string {
	if replayed {
		return "accepted before: this is the first answer again"
	}
	return "accepted"
}

// readSignedOr is the signed document in path, or sign's when path is "".
func readSignedOr(path string, sign func() (string, error)) (string, error) {
	if path != "" {
		return readSigned(path)
	}
	return sign()
}

func prescriptionFrom(path string) (rx.Document, error) {
	var p rx.Prescription
	if err := readDocument(path, &p); err != nil {
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
}

func printLines(w io.Writer, lines []exclient.Line) {
	for _, l := range lines {
		fmt.Fprintf(w, "  fill %d item %d %s (%s): %d of %d dispensed, from %s until %s\n", l.Fill, l.Item, l.Code, l.Kind, l.Dispensed, l.Quantity,
			l.ValidFrom.Format("2006-01-02"), l.ValidUntil.Format("2006-01-02"))
	}
}

// printDecision prints the per-item outcome: covered or not, the shares,
// and every rule that applies.
func printDecision(w io.Writer, d *exclient.Decision) {
	if d == nil {
		return
	}
	for _, it := range d.Items {
		covered := "covered"
		if !it.Allowed {
			covered = "not covered"
		}
		fmt.Fprintf(w, "  item %d %s ×%d: %s; insurer %d, supplementary %d, patient %d rials\n", it.Index, it.Code, it.Quantity, covered,
			it.InsurerPays, it.SupplementaryPays, it.PatientPays)
		for _, v := range it.Violations {
			fmt.Fprintf(w, "    %s %s: %s\n", v.Severity, v.Rule, v.Message)
		}
	}
	for _, v := range d.Violations {
		fmt.Fprintf(w, "  %s %s: %s\n", v.Severity, v.Rule, v.Message)
	}
	fmt.Fprintf(w, "  total %d: insurer %d, supplementary %d, patient %d rials\n", d.Total, d.InsurerPays, d.SupplementaryPays, d.PatientPays)
}

func printAmounts(w io.Writer, a exclient.Amounts) {
	fmt.Fprintf(w, "amounts (rials): total %d, insurer %d, supplementary %d, patient %d\n", a.Total, a.Insurer, a.Supplementary, a.Patient)
}

// rxLookup: a pharmacy or centre finds a prescription in its session.
func rxLookup(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "rx lookup")
	rf := addRxdFlags(fs)
	session := sessionFlag(fs)
	ff := addFindFlags(fs)
	jwsOut := fs.String("out", "", "where to save the prescription as signed (JWS)")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs, "rxctl rx lookup -code CODE -national-id ID -session FILE [flags]"); err != nil {
		return err
	}
	find, err := ff.find()
	if err != nil {
		return err
	}
	c, err := sessionClient(ctx, e, rf, *session)
	if err != nil {
		return err
	}
	v, err := c.Lookup(ctx, find)
	if err != nil {
		return err
	}
	if err := writeDocument(*jwsOut, v.JWS); err != nil {
		return err
	}
	printView(e.stdout, v)
	return nil
}

func printView(w io.Writer, v *exclient.PrescriptionView) {
	fmt.Fprintf(w, "prescription %s (%s), tracking code %s, state %s\n", v.ID, v.Kind, v.TrackingCode, v.State)
	if v.ClaimedUntil != nil {
		fmt.Fprintf(w, "  claimed until %s\n", v.ClaimedUntil.Format(time.RFC3339))
	}
	printLines(w, v.Lines)
}

func sessionClient(ctx context.Context, e *env, rf rxdFlags, session string) (*exclient.Client, error) {
	s, err := readSession(session)
	if err != nil {
		return nil, err
	}
	return rf.exchange(ctx, e, s.Token)
}

// rxClaim: a pharmacy or centre takes a prescription for its organisation.
func rxClaim(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "rx claim")
	rf := addRxdFlags(fs)
	session := sessionFlag(fs)
	ff := addFindFlags(fs)
	claimOut := fs.String("claim-out", "", "where to keep the claim: its id, secret and the prescription (mode 0600; required)")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs, "rxctl rx claim -code CODE -national-id ID -session FILE -claim-out FILE [flags]"); err != nil {
		return err
	}
	find, err := ff.find()
	if err != nil {
		return err
	}
	if *claimOut == "" {
		return usageError{errors.New("-claim-out is required: the secret is shown once, and dispensing needs it")}
	}
	c, err := sessionClient(ctx, e, rf, *session)
	if err != nil {
		return err
	}
	g, err := c.Claim(ctx, find)
	if err != nil {
		return err
	}
	cf := &claimFile{ClaimID: g.ClaimID, Secret: g.Secret, ExpiresAt: g.ExpiresAt}
	if p := g.Prescription; p != nil {
		cf.PrescriptionID, cf.TrackingCode, cf.JWS = p.ID, p.TrackingCode, p.JWS
	}
	if err := writeSecret(*claimOut, cf); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "claim %s\nsecret %s\n%s; kept in %s\n", g.ClaimID, g.Secret, hold(g.ExpiresAt, time.Now()), *claimOut)
	if g.Prescription != nil {
		printView(e.stdout, g.Prescription)
	}
	return nil
}

// rxRelease gives a claim up.
func rxRelease(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "rx release")
	rf := addRxdFlags(fs)
	session := sessionFlag(fs)
	claim := fs.String("claim", "", "the claim file (from rx claim -claim-out)")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs, "rxctl rx release -claim FILE -session FILE [flags]"); err != nil {
		return err
	}
	cf, err := readClaim(*claim)
	if err != nil {
		return err
	}
	c, err := sessionClient(ctx, e, rf, *session)
	if err != nil {
		return err
	}
	if err := c.Release(ctx, cf.ClaimID, cf.Secret); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "claim %s released\n", cf.ClaimID)
	return nil
}

// rxDispense: a pharmacy or centre signs what it handed out or performed;
// with -claim it is recorded under the claim at rxd.
func rxDispense(ctx context.Context, e *env, args []string) error {
	fs, kf, sf := addSigningFlags(e, "rx dispense")
	rf := addRxdFlagsSharing(fs, sf.caFile)
	in := fs.String("in", "", "the dispense record (JSON, version 1); the prescription reference, id and time are filled in")
	prescription := fs.String("prescription", "", "the signed prescription (JWS file) being dispensed; default: the claim's")
	claim := fs.String("claim", "", "the claim file (from rx claim -claim-out): record the dispense at rxd under it (needs -session)")
	session := sessionFlag(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs, "rxctl rx dispense -in FILE (-prescription FILE | -claim FILE -session FILE) [flags]"); err != nil {
		return err
	}
	var cf *claimFile
	var c *exclient.Client
	if *claim != "" {
		var err error
		if cf, err = readClaim(*claim); err != nil {
			return err
		}
		if c, err = sessionClient(ctx, e, rf, *session); err != nil {
			return err
		}
	} else if *prescription == "" {
		return usageError{errors.New("give -prescription (to sign only) or -claim (to sign and record the dispense)")}
	}
	token, err := sf.sign(ctx, e, kf, func() (rx.Document, error) {
		signed := ""
		if *prescription != "" {
			t, err := readSigned(*prescription)
			if err != nil {
				return nil, err
			}
			signed = t
		} else {
			signed = cf.JWS
		}
		ref, _, err := referenceTo(signed)
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
	if err != nil {
		return err
	}
	if c == nil {
		return writeOut(e.stdout, *sf.out, []byte(token+"\n"))
	}
	if err := writeDocument(*sf.out, token); err != nil {
		return err
	}
	a, err := c.Dispense(ctx, cf.ClaimID, cf.Secret, token)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "dispense %s of prescription %s %s (state %s)\n", a.ID, a.PrescriptionID, recorded(a.Replayed), a.State)
	printAmounts(e.stdout, a.Amounts)
	printLines(e.stdout, a.Lines)
	return nil
}

func recorded(replayed bool) string {
	if replayed {
		return "recorded before: this is the first answer again"
	}
	return "recorded"
}

// rxClose ends the visit and keeps the exchange's receipt.
func rxClose(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "rx close")
	rf := addRxdFlags(fs)
	session := sessionFlag(fs)
	claim := fs.String("claim", "", "the claim file (from rx claim -claim-out)")
	receiptOut := fs.String("receipt-out", "", "where to save the receipt signed by the exchange (JWS; check it with rx verify -kind receipt)")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs, "rxctl rx close -claim FILE -session FILE -receipt-out FILE [flags]"); err != nil {
		return err
	}
	cf, err := readClaim(*claim)
	if err != nil {
		return err
	}
	if *receiptOut == "" {
		return usageError{errors.New("-receipt-out is required: the receipt is the pharmacy's proof for claims")}
	}
	c, err := sessionClient(ctx, e, rf, *session)
	if err != nil {
		return err
	}
	out, err := c.Close(ctx, cf.ClaimID, cf.Secret)
	if err != nil {
		return err
	}
	if err := writeDocument(*receiptOut, out.Receipt); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "claim %s closed; receipt %s saved in %s\n", cf.ClaimID, out.ReceiptID, *receiptOut)
	printAmounts(e.stdout, out.Amounts)
	return nil
}

// rxCancel: the prescriber withdraws a prescription; with -rxd the signed
// cancellation is submitted.
func rxCancel(ctx context.Context, e *env, args []string) error {
	fs, kf, sf := addSigningFlags(e, "rx cancel")
	rf := addRxdFlagsSharing(fs, sf.caFile)
	prescription := fs.String("prescription", "", "the signed prescription (JWS file) to cancel")
	reason := fs.String("reason", "", "why (recorded in the signed cancellation)")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs, "rxctl rx cancel -prescription FILE -reason TEXT [-rxd URL] [flags]"); err != nil {
		return err
	}
	submit := false
	fs.Visit(func(f *flag.Flag) { submit = submit || f.Name == "rxd" })
	var c *exclient.Client
	if submit {
		var err error
		if c, err = rf.exchange(ctx, e, ""); err != nil {
			return err
		}
	}
	var ref rx.Reference
	token, err := sf.sign(ctx, e, kf, func() (rx.Document, error) {
		signed, err := readSigned(*prescription)
		if err != nil {
			return nil, err
		}
		r, prescriber, err := referenceTo(signed)
		if err != nil {
			return nil, err
		}
		ref = r
		if strings.TrimSpace(*reason) == "" {
			return nil, usageError{errors.New("-reason is required")}
		}
		return &rx.Cancellation{V: rx.Version, Type: rx.KindCancellation, ID: rx.NewID(), CancelledAt: time.Now(),
			Prescription: ref, Prescriber: prescriber, Reason: *reason}, nil
	})
	if err != nil {
		return err
	}
	if c == nil {
		return writeOut(e.stdout, *sf.out, []byte(token+"\n"))
	}
	if err := writeDocument(*sf.out, token); err != nil {
		return err
	}
	a, err := c.Cancel(ctx, ref.ID, token)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "prescription %s %s (%s)\n", a.PrescriptionID, a.State, recorded(a.Replayed))
	return nil
}

// rxPaper: a pharmacy enters a paper prescription and what it dispensed of
// it, signed on its card, and keeps the receipt.
func rxPaper(ctx context.Context, e *env, args []string) error {
	fs, kf, sf := addSigningFlags(e, "rx paper")
	rf := addRxdFlagsSharing(fs, sf.caFile)
	in := fs.String("in", "", "the paper prescription as written and what was dispensed (JSON, version 1); id, entered_at, v and type are filled in if absent")
	receiptOut := fs.String("receipt-out", "", "where to save the receipt signed by the exchange (JWS)")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs, "rxctl rx paper -in FILE -receipt-out FILE [flags]"); err != nil {
		return err
	}
	if *receiptOut == "" {
		return usageError{errors.New("-receipt-out is required: the receipt is the pharmacy's proof for claims")}
	}
	c, err := rf.exchange(ctx, e, "")
	if err != nil {
		return err
	}
	token, err := sf.sign(ctx, e, kf, func() (rx.Document, error) {
		var p rx.Paper
		if err := readDocument(*in, &p); err != nil {
			return nil, err
		}
		p.V, p.Type = rx.Version, rx.KindPaper
		if p.ID == "" {
			p.ID = rx.NewID()
		}
		if p.EnteredAt.IsZero() {
			p.EnteredAt = time.Now()
		}
		return &p, nil
	})
	if err != nil {
		return err
	}
	if err := writeDocument(*sf.out, token); err != nil {
		return err
	}
	a, err := c.Paper(ctx, token)
	if err != nil {
		return err
	}
	if err := writeDocument(*receiptOut, a.Receipt); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "paper prescription %s %s, tracking code %s; receipt saved in %s\n", a.ID, accepted(a.Replayed), a.TrackingCode, *receiptOut)
	printDecision(e.stdout, a.Decision)
	printAmounts(e.stdout, a.Amounts)
	return nil
}

// rxHistory: a patient's prescriptions and dispenses (service callers).
func rxHistory(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "rx history")
	rf := addRxdFlags(fs)
	nid := fs.String("national-id", "", "the patient's national id")
	cursor := fs.String("cursor", "", "the next_cursor of the page before")
	limit := fs.Int("limit", 0, "prescriptions a page, at most 100 (default: rxd's)")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs, "rxctl rx history -national-id ID [flags]"); err != nil {
		return err
	}
	if *nid == "" {
		return usageError{errors.New("-national-id is required")}
	}
	if *limit < 0 || *limit > 100 {
		return usageError{errors.New("-limit: 1 to 100")}
	}
	c, err := rf.exchange(ctx, e, "")
	if err != nil {
		return err
	}
	page, err := c.History(ctx, exclient.HistoryQuery{NationalID: strings.TrimSpace(*nid), Cursor: *cursor, Limit: *limit})
	if err != nil {
		return err
	}
	return printJSON(e.stdout, page)
}

// rxAccessLog: who acted on a patient's prescriptions, from rxd's audit
// log (service callers).
func rxAccessLog(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "rx access-log")
	rf := addRxdFlags(fs)
	nid := fs.String("national-id", "", "the patient's national id")
	cursor := fs.String("cursor", "", "the next_cursor of the page before")
	limit := fs.Int("limit", 0, "accesses a page, at most 200 (default: rxd's)")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs, "rxctl rx access-log -national-id ID [flags]"); err != nil {
		return err
	}
	if *nid == "" {
		return usageError{errors.New("-national-id is required")}
	}
	if *limit < 0 || *limit > 200 {
		return usageError{errors.New("-limit: 1 to 200")}
	}
	c, err := rf.exchange(ctx, e, "")
	if err != nil {
		return err
	}
	page, err := c.AccessLog(ctx, exclient.AccessLogQuery{NationalID: strings.TrimSpace(*nid), Cursor: *cursor, Limit: *limit})
	if err != nil {
		return err
	}
	return printJSON(e.stdout, page)
}
