// Package client talks to trustd's APIs for rxctl and for vendors' Go code:
// TLS with our root as the only trust anchor, officer client certificates
// whose keys may be on a token, and problem documents turned back into
// typed errors.
package client

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/problem"
	"github.com/nuskha/nuskha/internal/tlsconf"
)

// Client calls one trustd base URL.
type Client struct {
	base string
	http *http.Client
}

// Options configure a Client.
type Options struct {
	// BaseURL is https://host:port of the admin or public API.
	BaseURL string
	// Roots are the only trust anchors for the server's certificate.
	Roots *x509.CertPool
	// ClientChain and ClientKey, when set, authenticate with mutual TLS
	// (officers). The key may be an HSM key: only crypto.Signer is needed.
	ClientChain []*x509.Certificate
	ClientKey   crypto.Signer
	Timeout     time.Duration
}

// New builds a client.
func New(o Options) (*Client, error) {
	u, err := url.Parse(o.BaseURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("client: %q is not an https:// URL", o.BaseURL)
	}
	if o.Roots == nil {
		return nil, fmt.Errorf("client: no trust anchor (give the root certificate with -ca-file)")
	}
	tcfg := tlsconf.New()
	tcfg.RootCAs = o.Roots
	if o.ClientKey != nil {
		tcfg.Certificates = []tls.Certificate{tlsconf.Certificate(o.ClientKey, o.ClientChain)}
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tcfg
	tr.Proxy = nil
	return &Client{base: strings.TrimRight(o.BaseURL, "/"), http: &http.Client{Transport: tr, Timeout: o.Timeout}}, nil
}

// Problem is a refusal from the server, carrying its stable code.
type Problem struct {
	problem.Problem
}

func (p *Problem) Error() string {
	s := string(p.Code)
	if p.Field != "" {
		s += " (" + p.Field + ")"
	}
	if p.Detail != "" {
		s += ": " + p.Detail
	}
	return s
}

// Unwrap lets errors.Is(err, errs.Of(code)) work on server refusals.
func (p *Problem) Unwrap() error { return &errs.Error{Code: p.Code, Field: p.Field, Detail: p.Detail} }

// Do sends a request with an optional JSON body and decodes a JSON answer
// into out (if non-nil; a *[]byte receives the raw body). Non-2xx answers
// become *Problem errors.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	if in == nil {
		return c.DoRaw(ctx, method, path, "", nil, out)
	}
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.DoRaw(ctx, method, path, "application/json", b, out)
}

// DoRaw is Do with a body of the given content type.
func (c *Client) DoRaw(ctx context.Context, method, path, contentType string, in []byte, out any) error {
	var body io.Reader
	if in != nil {
		body = bytes.NewReader(in)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("calling %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var p Problem
		if json.Unmarshal(data, &p.Problem) == nil && p.Code != "" {
			return &p
		}
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: bad JSON answer: %w", method, path, err)
	}
	return nil
}
