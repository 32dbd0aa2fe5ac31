package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config configures a Client. BaseURL, Certificate and Roots are required.
type Config struct {
	// BaseURL is rxd's https:// address.
	BaseURL string
	// Certificate is the vendor's TLS client certificate (service-tls-client
	// from trustd) with its chain; PrivateKey may be any crypto.Signer.
	Certificate tls.Certificate
	// Roots are the only trust anchors for rxd's certificate.
	Roots *x509.CertPool
	// SessionToken resumes a session opened before (by another process);
	// OpenSession replaces it.
	SessionToken string
	// Timeout bounds each attempt; 0 means 30 seconds.
	Timeout time.Duration
	// Retries is how many times a call is repeated when no answer came or
	// rxd asked to come back later; 0 means 3, a negative value none.
	Retries int
	// MaxWait is the longest pause before a retry, Retry-After included: a
	// longer Retry-After ends the call with rxd's problem. 0 means 10 s.
	MaxWait time.Duration
}

// Client calls one rxd. It is safe for concurrent use; its session is
// shared by every call made through it.
type Client struct {
	base    string
	http    *http.Client
	leaf    *x509.Certificate
	retries int
	maxWait time.Duration

	mu    sync.Mutex
	token string
}

// maxConns bounds the connections a Client opens to rxd, and keeps.
const maxConns = 64

// New builds a Client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("client: %q is not an https:// URL", cfg.BaseURL)
	}
	if cfg.Roots == nil {
		return nil, errors.New("client: no trust anchor for rxd's certificate (Roots)")
	}
	if len(cfg.Certificate.Certificate) == 0 || cfg.Certificate.PrivateKey == nil {
		return nil, errors.New("client: no TLS client certificate and key: rxd knows its callers by their certificates")
	}
	leaf := cfg.Certificate.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cfg.Certificate.Certificate[0]); err != nil {
			return nil, fmt.Errorf("client: the TLS client certificate: %w", err)
		}
	}
	cert := cfg.Certificate
	cert.Leaf = leaf
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	switch {
	case cfg.Retries == 0:
		cfg.Retries = 3
	case cfg.Retries < 0:
		cfg.Retries = 0
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 10 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	// rxd speaks HTTP/1.1: one request at a time on a connection. A Client
	// used by many goroutines at once keeps a connection for each, up to
	// maxConns, rather than the transport's default two — every other one
	// would be closed after its answer and opened again, with a new TLS
	// handshake and client certificate check, for the next request. Past
	// maxConns, requests wait for a connection: rxd closes a client
	// address's connections beyond its cap (256 by default) as soon as it
	// accepts them.
	tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost = maxConns, maxConns
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.Roots, Certificates: []tls.Certificate{cert}}
	return &Client{base: strings.TrimRight(cfg.BaseURL, "/"), http: &http.Client{Transport: tr, Timeout: cfg.Timeout},
		leaf: leaf, retries: cfg.Retries, maxWait: cfg.MaxWait, token: cfg.SessionToken}, nil
}

// Token is the session token the Client holds ("" without a session), for
// a caller that keeps it across processes.
func (c *Client) Token() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

func (c *Client) setToken(t string) {
	c.mu.Lock()
	c.token = t
	c.mu.Unlock()
}

// request is one logical call: sent once, and again with the same
// Idempotency-Key on each retry.
type request struct {
	method, path string
	contentType  string
	body         []byte
	header       http.Header
	session      bool // send the session token
	idempotent   bool // send an Idempotency-Key
}

const (
	typeJOSE = "application/jose"
	typeJSON = "application/json"
)

// do sends r, retrying as the package doc says, and decodes a 2xx answer
// into out (if not nil). It returns the status of the answer.
func (c *Client) do(ctx context.Context, r request, out any) (int, error) {
	header := r.header.Clone()
	if header == nil {
		header = http.Header{}
	}
	if r.idempotent {
		header.Set("Idempotency-Key", newKey())
	}
	if r.session {
		t := c.Token()
		if t == "" {
			return 0, ErrNoSession
		}
		header.Set("Authorization", "Bearer "+t)
	}
	for attempt := 0; ; attempt++ {
		status, data, wait, err := c.once(ctx, r, header)
		if err == nil {
			if out != nil && status != http.StatusNoContent {
				if err := json.Unmarshal(data, out); err != nil {
					return status, fmt.Errorf("client: %s %s: the answer is not the contract's JSON: %w", r.method, r.path, err)
				}
			}
			return status, nil
		}
		if wait < 0 || attempt >= c.retries {
			return status, err
		}
		if wait == 0 {
			wait = backoff(attempt)
		}
		if wait > c.maxWait {
			return status, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return status, errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}

// ErrNoSession is returned, without calling rxd, by an operation that
// needs a session when the Client holds none.
var ErrNoSession = errors.New("client: no session: call OpenSession first")

// once makes one attempt. wait is how long to wait before a retry: 0 for
// the default backoff, negative when a retry cannot help.
func (c *Client) once(ctx context.Context, r request, header http.Header) (status int, data []byte, wait time.Duration, err error) {
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, c.base+r.path, body)
	if err != nil {
		return 0, nil, -1, err
	}
	req.Header = header.Clone()
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil || !transient(err) {
			return 0, nil, -1, fmt.Errorf("client: %s %s: %w", r.method, r.path, err)
		}
		return 0, nil, 0, fmt.Errorf("client: %s %s: %w", r.method, r.path, err)
	}
	defer resp.Body.Close()
	data, err = io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		// The answer was cut: the request may have been done, and doing it
		// again is what the contract makes safe.
		return resp.StatusCode, nil, 0, fmt.Errorf("client: %s %s: reading the answer: %w", r.method, r.path, err)
	}
	if len(data) > maxAnswer {
		return resp.StatusCode, nil, -1, fmt.Errorf("client: %s %s: the answer is larger than %d bytes", r.method, r.path, maxAnswer)
	}
	if resp.StatusCode/100 == 2 {
		return resp.StatusCode, data, 0, nil
	}
	p := &Problem{Status: resp.StatusCode}
	if json.Unmarshal(data, p) != nil || p.Code == "" {
		p = &Problem{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode), Detail: strings.TrimSpace(string(data))}
	}
	p.Status = resp.StatusCode
	p.Raw = data
	wait = -1
	if resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests {
		wait = retryAfter(resp.Header.Get("Retry-After"))
	}
	return resp.StatusCode, nil, wait, p
}

// maxAnswer bounds an answer: a page of history is the largest.
const maxAnswer = 8 << 20

// transient reports whether a request that got no answer may get one if
// sent again: not when the TLS handshake judged a certificate, which is
// as bad the second time.
func transient(err error) bool {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	var alert tls.AlertError
	var rec tls.RecordHeaderError
	return !errors.As(err, &unknown) && !errors.As(err, &invalid) && !errors.As(err, &host) &&
		!errors.As(err, &verify) && !errors.As(err, &alert) && !errors.As(err, &rec) &&
		!strings.Contains(err.Error(), "remote error: tls:")
}

// retryAfter reads Retry-After (seconds or an HTTP date); 0 when absent.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return max(time.Duration(s)*time.Second, time.Millisecond)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), time.Millisecond)
	}
	return 0
}

// backoff is the pause before retry attempt+1 when rxd gave none: 100 ms,
// 200 ms, 400 ms…
func backoff(attempt int) time.Duration { return 100 * time.Millisecond << min(attempt, 6) }

// newKey draws an Idempotency-Key: 128 random bits, base64url.
func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Problem is a refusal from rxd (RFC 9457 application/problem+json).
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Instance, when given, names this occurrence.
	Instance string `json:"instance,omitempty"`
	// Code is stable and listed in docs/problems.md (e.g. "not-found",
	// "prescription-claimed", "over-dispense").
	Code string `json:"code"`
	// Field names the offending input, when there is one.
	Field string `json:"field,omitempty"`
	// RequestID is what rxd logged the request under: quote it in a report.
	RequestID string `json:"request_id,omitempty"`
	// Retry says whether the same request may succeed later.
	Retry bool `json:"retry,omitempty"`
	// Raw is the whole problem document, with any member beyond these
	// (a rule violation's decision, a claim's end).
	Raw json.RawMessage `json:"-"`
}

func (p *Problem) Error() string {
	s := fmt.Sprintf("rxd: %d %s", p.Status, p.Code)
	if p.Code == "" {
		s = fmt.Sprintf("rxd: %d %s", p.Status, p.Title)
	}
	if p.Field != "" {
		s += " (" + p.Field + ")"
	}
	if p.Detail != "" {
		s += ": " + p.Detail
	}
	if p.RequestID != "" {
		s += " [request " + p.RequestID + "]"
	}
	return s
}

// Is makes errors.Is(err, &Problem{Code: "not-found"}) match a problem of
// that code.
func (p *Problem) Is(target error) bool {
	t, ok := target.(*Problem)
	return ok && t.Code != "" && t.Code == p.Code
}

// IsCode reports whether err is, or wraps, a Problem with this code.
func IsCode(err error, code string) bool {
	var p *Problem
	return errors.As(err, &p) && p.Code == code
}
