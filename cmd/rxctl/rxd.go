package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/url"
	"os"

	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/internal/client"
)

// rxdFlags reach rxd as a vendor's or service's software: a client
// certificate from trustd (service-tls-client profile) and its key.
type rxdFlags struct {
	url, caFile, cert, key *string
}

func addRxdFlags(fs *flag.FlagSet) rxdFlags {
	return rxdFlags{
		url:    fs.String("rxd", envOr("NUSKHA_RXD_URL", "https://localhost:8543"), "rxd API"),
		caFile: fs.String("ca-file", envOr("NUSKHA_CA_FILE", ""), "root certificate(s) to trust for rxd's TLS (required)"),
		cert:   fs.String("cert", envOr("NUSKHA_CLIENT_CERT", ""), "client certificate chain (PEM) issued to the vendor or service"),
		key:    fs.String("key", envOr("NUSKHA_CLIENT_KEY", ""), "client key URI (softkey:… or pkcs11:…)"),
	}
}

func (f rxdFlags) client(ctx context.Context, e *env) (*client.Client, error) {
	if *f.caFile == "" || *f.cert == "" || *f.key == "" {
		return nil, usageError{errors.New("-ca-file, -cert and -key are required: rxd knows its callers by their certificates")}
	}
	roots, err := (serverFlags{caFile: f.caFile}).roots()
	if err != nil {
		return nil, err
	}
	chain, err := pemutil.ReadCertificateBundle(*f.cert)
	if err != nil {
		return nil, err
	}
	key, err := e.keys.OpenKey(ctx, *f.key)
	if err != nil {
		return nil, err
	}
	return client.New(client.Options{BaseURL: *f.url, Roots: roots, ClientChain: chain, ClientKey: key})
}

// fullFlag asks rxd for everything it knows of a person's cover, which it
// gives only to the insurer's own services.
func fullFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("full", false, "the full eligibility answer (insurance number, family, supplementary plan): for the insurer's own services; vendors get the minimum")
}

// eligibilityCheck: is this person covered on this date, and if not why.
func eligibilityCheck(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "eligibility check")
	rf := addRxdFlags(fs)
	date := fs.String("date", "", "the day (Gregorian or Solar Hijri, e.g. 1405-06-15); default today")
	full := fullFlag(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{errors.New("usage: rxctl eligibility check [flags] NATIONAL-ID")}
	}
	c, err := rf.client(ctx, e)
	if err != nil {
		return err
	}
	q := url.Values{}
	if *date != "" {
		q.Set("date", *date)
	}
	if *full {
		q.Set("detail", "full")
	}
	path := "/v1/eligibility/" + url.PathEscape(fs.Arg(0))
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out json.RawMessage
	if err := c.Do(ctx, "GET", path, nil, &out); err != nil {
		return err
	}
	return printJSON(e.stdout, out)
}

// rulesCheck asks the rules service about a draft: what vendors' software
// does before asking a practitioner to sign.
func rulesCheck(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "rules check")
	rf := addRxdFlags(fs)
	full := fullFlag(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{errors.New(`usage: rxctl rules check [flags] REQUEST.json   ({"scope": "prescribe", "prescription": {…}})`)}
	}
	body, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	c, err := rf.client(ctx, e)
	if err != nil {
		return err
	}
	path := "/v1/rules/check"
	if *full {
		path += "?detail=full"
	}
	var out json.RawMessage
	if err := c.DoRaw(ctx, "POST", path, "application/json", body, &out); err != nil {
		return err
	}
	if err := printJSON(e.stdout, out); err != nil {
		return err
	}
	// Scripts and vendors' build checks look at the exit code: 0 only when
	// rxd allows everything asked about.
	var verdict struct {
		Allowed *bool `json:"allowed"`
	}
	if err := json.Unmarshal(out, &verdict); err != nil || verdict.Allowed == nil {
		return errors.New("rxd's answer has no verdict (allowed)")
	}
	if !*verdict.Allowed {
		return errNotAllowed
	}
	return nil
}

func rulesShow(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "rules show")
	rf := addRxdFlags(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	c, err := rf.client(ctx, e)
	if err != nil {
		return err
	}
	var out json.RawMessage
	if err := c.Do(ctx, "GET", "/v1/rules", nil, &out); err != nil {
		return err
	}
	return printJSON(e.stdout, out)
}

func catalogueSearch(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "catalogue search")
	rf := addRxdFlags(fs)
	kind := fs.String("kind", "", "drug, lab, imaging or procedure")
	date := fs.String("date", "", "the catalogue in force on this day; default today")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{errors.New("usage: rxctl catalogue search [flags] CODE-OR-NAME")}
	}
	c, err := rf.client(ctx, e)
	if err != nil {
		return err
	}
	q := url.Values{"q": {fs.Arg(0)}}
	if *kind != "" {
		q.Set("kind", *kind)
	}
	if *date != "" {
		q.Set("date", *date)
	}
	var out json.RawMessage
	if err := c.Do(ctx, "GET", "/v1/catalogue/items?"+q.Encode(), nil, &out); err != nil {
		return err
	}
	return printJSON(e.stdout, out)
}
