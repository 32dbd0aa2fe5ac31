// Package revocation answers the question every verifier asks: was this
// certificate good at time T, as far as evidence no older than A says? It
// answers from a local CRL (or an offline trust bundle) or, online, from the
// issuer's OCSP responder — and never says "good" on missing or stale
// evidence. Lookups in a CRL are a map access: the cost does not grow with
// the number of revoked certificates.
//
// Every certificate of a chain but its trust anchor is checked (CheckChain):
// an end-entity certificate against its CA's CRL or OCSP, a CA certificate
// against the root's authority revocation list (ARL). The root signs its
// ARL at ceremonies, with a key kept offline, for a year at a time: an ARL
// is judged by its nextUpdate alone, not by MaxAge, which is for the
// hourly evidence about end-entity certificates.
//
// Online, an OCSP answer is reused within bounds (Config.Recheck): "good"
// and "on hold" for at most Recheck and never past the evidence's own
// freshness; "revoked", which is final, for the life of the Checker; a
// failure never. Concurrent checks of one certificate share one request.
package revocation

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"
	"golang.org/x/sync/singleflight"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki/bundle"
)

// Status of a certificate per the evidence.
type Status string

// Statuses.
const (
	Good    Status = "good"
	Revoked Status = "revoked"
	OnHold  Status = "on-hold"
)

// reasonCertificateHold marks a suspension (RFC 5280).
const reasonCertificateHold = 6

// Result is what the evidence says now.
type Result struct {
	Status     Status
	RevokedAt  time.Time
	Reason     int
	Source     string    // e.g. "CRL 42" or "OCSP http://…"
	ThisUpdate time.Time // when the evidence was produced
}

// GoodAt says whether a signature claiming to be made at t with the
// certificate's key may be trusted. Only a good certificate's: the signing
// time in a signature is whatever the key holder wrote, so a revoked key
// (whatever the reason — a holder may even give a mild one after the key
// is stolen) or a suspended one can sign with any time it likes. Telling
// signatures made before a revocation from backdated ones needs a time
// from someone other than the signer (a timestamp, or the time rxd
// accepted the document), not sigT.
func (r Result) GoodAt(t time.Time) error {
	switch r.Status {
	case Good:
		return nil
	case OnHold:
		return errs.New(errs.CertificateRevoked, "the certificate is suspended (certificateHold since %s)", r.RevokedAt.UTC().Format(time.RFC3339))
	}
	return errs.New(errs.CertificateRevoked, "the certificate was revoked (%s) at %s; no signature by its key can be trusted on its own claim of time (signed %s)",
		reasonName(r.Reason), r.RevokedAt.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339))
}

func reasonName(r int) string {
	names := map[int]string{0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged", 4: "superseded",
		5: "cessationOfOperation", 6: "certificateHold", 9: "privilegeWithdrawn", 10: "aACompromise"}
	if n, ok := names[r]; ok {
		return n
	}
	return fmt.Sprintf("reason %d", r)
}

var (
	oidCRLNumber                = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidReasonCode               = asn1.ObjectIdentifier{2, 5, 29, 21}
	oidDeltaCRLIndicator        = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidIssuingDistributionPoint = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidAuthorityKeyID           = asn1.ObjectIdentifier{2, 5, 29, 35}
)

// Config configures a Checker.
type Config struct {
	// MaxAge is the oldest evidence accepted, measured from its thisUpdate.
	MaxAge time.Duration
	Now    func() time.Time
	// HTTP, if set, allows OCSP queries to the URL in each certificate.
	// Leave nil for an offline verifier.
	HTTP *http.Client
	// ARLRefresh is how long an ARL fetched from a CA certificate's
	// distribution point is used before it is fetched again (default an
	// hour): the ARL itself is valid for a year, but the revocation of an
	// intermediate must reach online verifiers within the hour.
	ARLRefresh time.Duration
	// Recheck is the longest an OCSP answer that a certificate is good
	// (or on hold) is reused before the responder is asked again: a
	// certificate revoked at the responder is refused within Recheck
	// (plus one request's time). Zero asks on every check; checks of a
	// certificate that arrive while a request about it is in flight share
	// its answer, whatever Recheck is. Evidence held as a CRL (AddCRL,
	// UseBundle) is the holder's to renew and is judged by MaxAge alone.
	Recheck time.Duration
}

// Checker holds evidence and answers from it. It is safe for concurrent
// use.
type Checker struct {
	cfg Config

	mu   sync.RWMutex
	crls map[string]*index // by issuer key id
	// roots are the anchors found self-signed (by their DER): checking a
	// root's own signature costs a P-384 verification, more than the rest
	// of a chain's check, and the answer is a function of the bytes.
	roots map[string]bool

	ocspMu    sync.Mutex
	ocspCache map[string]cached // by ocspKey
	flight    singleflight.Group
	// arlFailed is when fetching each issuer's ARL last failed: it is not
	// tried again for arlRetry, so that a distribution point that is down
	// is not asked on every check while the ARL held serves.
	arlFailed map[string]time.Time
	// waiting counts checks waiting for an OCSP answer, for tests to see
	// that a burst shares one request.
	waiting waitCount

	fetchMu sync.Mutex
	fetches map[string]*Fetches // by kind: FetchOCSP, FetchARL
}

// Kinds of evidence a Checker fetches.
const (
	FetchOCSP = "ocsp"
	FetchARL  = "arl"
)

// Fetches is what a Checker fetched of one kind of evidence: for an
// operator's metrics, how old the newest is and how often fetching fails.
type Fetches struct {
	Kind        string
	OK, Failed  uint64
	LastOK      time.Time // when the last good evidence was fetched; zero before any
	LastFailure time.Time
}

// Fetched is a snapshot of what was fetched, by kind; a kind never
// fetched is absent.
func (c *Checker) Fetched() []Fetches {
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	out := make([]Fetches, 0, len(c.fetches))
	for _, k := range []string{FetchARL, FetchOCSP} {
		if f := c.fetches[k]; f != nil {
			out = append(out, *f)
		}
	}
	return out
}

// fetched records a fetch of kind ending now with err.
func (c *Checker) fetched(kind string, err error) {
	now := c.cfg.Now()
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	f := c.fetches[kind]
	if f == nil {
		f = &Fetches{Kind: kind}
		c.fetches[kind] = f
	}
	if err != nil {
		f.Failed++
		f.LastFailure = now
		return
	}
	f.OK++
	f.LastOK = now
}

// waitCount is a count whose changes can be waited for, so that a test
// learns when it reaches a value rather than polling for it.
type waitCount struct {
	mu      sync.Mutex
	n       int
	changed chan struct{} // closed at the next change; nil until asked for
}

func (w *waitCount) add(d int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n += d
	if w.changed != nil {
		close(w.changed)
		w.changed = nil
	}
}

// is reports whether the count is n and, when it is not, returns a
// channel closed at its next change.
func (w *waitCount) is(n int) (bool, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n == n {
		return true, nil
	}
	if w.changed == nil {
		w.changed = make(chan struct{})
	}
	return false, w.changed
}

type index struct {
	number     *big.Int
	thisUpdate time.Time
	nextUpdate time.Time
	// confirmed is when this list was last known to be the issuer's
	// latest: its thisUpdate, or later when it was fetched again or came
	// in a trust bundle issued later. An ARL is judged by it, since its
	// thisUpdate may be a year old by design.
	confirmed time.Time
	revoked   map[string]entry
}

type entry struct {
	at     time.Time
	reason int
}

// cached is an OCSP answer held: a revoked one for good, any other until
// expires.
type cached struct {
	res     Result
	expires time.Time
}

func (h cached) usable(now time.Time) bool {
	return h.res.Status == Revoked || now.Before(h.expires)
}

// maxOCSPCached bounds the answers held; past it, the expired ones are
// dropped. Revoked answers are kept: they are few, and final.
const maxOCSPCached = 100000

// ocspTimeout bounds one OCSP request. A request is shared by every check
// of the certificate that arrives while it is in flight, so it runs on its
// own clock, not on the context of the check that started it.
const ocspTimeout = 10 * time.Second

// New returns an empty Checker; without evidence it answers nothing.
func New(cfg Config) (*Checker, error) {
	if cfg.MaxAge <= 0 || cfg.Now == nil {
		return nil, errors.New("revocation: MaxAge and Now are required")
	}
	if cfg.ARLRefresh <= 0 {
		cfg.ARLRefresh = time.Hour
	}
	if cfg.Recheck < 0 {
		return nil, errors.New("revocation: Recheck must not be negative")
	}
	return &Checker{cfg: cfg, crls: map[string]*index{}, roots: map[string]bool{}, ocspCache: map[string]cached{}, arlFailed: map[string]time.Time{},
		fetches: map[string]*Fetches{}}, nil
}

func issuerKey(issuer *x509.Certificate) string {
	if len(issuer.SubjectKeyId) > 0 {
		return hex.EncodeToString(issuer.SubjectKeyId)
	}
	return "subject:" + hex.EncodeToString(issuer.RawSubject)
}

// AddCRL verifies list against issuer and makes it the evidence for that
// issuer, unless a CRL with a higher number is already held.
func (c *Checker) AddCRL(list *x509.RevocationList, issuer *x509.Certificate) error {
	return c.addCRL(list, issuer, list.ThisUpdate)
}

// addCRL is AddCRL for a list known to be the issuer's latest at
// confirmed. A list never replaces one with a higher number: a replayed
// older list cannot undo a revocation.
func (c *Checker) addCRL(list *x509.RevocationList, issuer *x509.Certificate, confirmed time.Time) error {
	if !bytes.Equal(list.RawIssuer, issuer.RawSubject) {
		return fmt.Errorf("revocation: CRL issued by another name than %q", issuer.Subject.CommonName)
	}
	if err := list.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("revocation: CRL not signed by %q: %w", issuer.Subject.CommonName, err)
	}
	if list.Number == nil {
		return errors.New("revocation: CRL without a number")
	}
	// Only complete CRLs are evidence of good status: a delta CRL or one
	// scoped by an issuing distribution point lists only some revocations.
	for _, ext := range list.Extensions {
		switch {
		case ext.Id.Equal(oidDeltaCRLIndicator), ext.Id.Equal(oidIssuingDistributionPoint):
			return errors.New("revocation: delta and partitioned CRLs are not accepted as complete evidence")
		case ext.Critical && !ext.Id.Equal(oidCRLNumber) && !ext.Id.Equal(oidAuthorityKeyID):
			return fmt.Errorf("revocation: CRL has an unknown critical extension %s", ext.Id)
		}
	}
	for _, e := range list.RevokedCertificateEntries {
		for _, ext := range e.Extensions {
			if ext.Critical && !ext.Id.Equal(oidReasonCode) {
				return fmt.Errorf("revocation: CRL entry has an unknown critical extension %s", ext.Id)
			}
		}
	}
	if confirmed.Before(list.ThisUpdate) {
		confirmed = list.ThisUpdate
	}
	idx := &index{number: list.Number, thisUpdate: list.ThisUpdate, nextUpdate: list.NextUpdate, confirmed: confirmed,
		revoked: make(map[string]entry, len(list.RevokedCertificateEntries))}
	for _, e := range list.RevokedCertificateEntries {
		idx.revoked[string(e.SerialNumber.Bytes())] = entry{at: e.RevocationTime, reason: e.ReasonCode}
	}
	k := issuerKey(issuer)
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.crls[k]; ok {
		switch list.Number.Cmp(old.number) {
		case -1:
			return nil
		case 0:
			if old.confirmed.After(idx.confirmed) {
				idx.confirmed = old.confirmed
			}
		}
	}
	c.crls[k] = idx
	return nil
}

// UseBundle loads a verified trust bundle's CRLs: each was the latest when
// the bundle was issued.
func (c *Checker) UseBundle(v *bundle.Verified) error {
	for _, crl := range v.CRLs {
		if err := c.addCRL(crl.List, crl.Issuer, v.IssuedAt); err != nil {
			return err
		}
	}
	return nil
}

// CheckChain checks every certificate of chain (leaf first, ending at its
// trust anchor, as x509.Certificate.Verify builds it) but the anchor
// against the next one, CAs first, and returns the leaf's result. A CA
// certificate on its issuer's ARL fails with errs.CertificateRevoked: no
// signature under it can be trusted, whenever made. Missing or stale
// evidence about any certificate fails with errs.RevocationUnknown, and so
// does a chain that does not end at a self-signed root: an intermediate
// configured as a trust anchor would otherwise never be checked against
// the root's ARL.
func (c *Checker) CheckChain(ctx context.Context, chain []*x509.Certificate) (Result, error) {
	if len(chain) < 2 {
		return Result{}, errs.New(errs.RevocationUnknown, "a chain needs a certificate and its issuer")
	}
	if anchor := chain[len(chain)-1]; !c.selfSigned(anchor) {
		return Result{}, errs.New(errs.RevocationUnknown, "the chain ends at %q, which is not a self-signed root: its revocation cannot be checked", anchor.Subject.CommonName)
	}
	for i := len(chain) - 2; i >= 1; i-- {
		res, err := c.Check(ctx, chain[i], chain[i+1])
		if err != nil {
			return Result{}, err
		}
		if res.Status != Good {
			return Result{}, errs.New(errs.CertificateRevoked, "the CA %q was revoked (%s) at %s; nothing it certified can be trusted",
				chain[i].Subject.CommonName, reasonName(res.Reason), res.RevokedAt.UTC().Format(time.RFC3339))
		}
	}
	return c.Check(ctx, chain[0], chain[1])
}

// maxRoots bounds the anchors remembered: a deployment trusts a root or
// two (one more during a rollover).
const maxRoots = 16

// selfSigned is SelfSigned, remembered for the anchors found to be.
func (c *Checker) selfSigned(anchor *x509.Certificate) bool {
	c.mu.RLock()
	known := c.roots[string(anchor.Raw)]
	c.mu.RUnlock()
	if known {
		return true
	}
	if !SelfSigned(anchor) {
		return false
	}
	c.mu.Lock()
	if len(c.roots) < maxRoots {
		c.roots[string(anchor.Raw)] = true
	}
	c.mu.Unlock()
	return true
}

// SelfSigned reports whether c is a root: issued by itself, under its own
// key. Only roots may be trust anchors (Verifier and rxd refuse others at
// start), since nothing above an anchor is checked.
func SelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// Check returns what the evidence says about cert now. It fails with
// errs.RevocationUnknown, saying why, when no fresh evidence exists.
func (c *Checker) Check(ctx context.Context, cert, issuer *x509.Certificate) (Result, error) {
	if cert.IsCA {
		return c.checkCA(ctx, cert, issuer)
	}
	now := c.cfg.Now()
	// A revocation learnt by OCSP stands even where a CRL held here is
	// older than it.
	if res, ok := c.heldRevoked(cert, issuer); ok {
		return res, nil
	}
	var why []string
	c.mu.RLock()
	idx := c.crls[issuerKey(issuer)]
	c.mu.RUnlock()
	switch {
	case idx == nil:
		why = append(why, fmt.Sprintf("no CRL from %q", issuer.Subject.CommonName))
	case now.Sub(idx.thisUpdate) > c.cfg.MaxAge:
		why = append(why, fmt.Sprintf("the CRL is %s old, more than the %s allowed", now.Sub(idx.thisUpdate).Round(time.Second), c.cfg.MaxAge))
	case !now.Before(idx.nextUpdate):
		why = append(why, fmt.Sprintf("the CRL expired at %s", idx.nextUpdate.UTC().Format(time.RFC3339)))
	default:
		return idx.lookup(cert, "CRL "), nil
	}
	if c.cfg.HTTP != nil && len(cert.OCSPServer) > 0 {
		res, err := c.ocsp(ctx, cert, issuer, now)
		if err == nil {
			return res, nil
		}
		why = append(why, err.Error())
	} else if c.cfg.HTTP == nil {
		why = append(why, "offline: no OCSP")
	}
	return Result{}, errs.New(errs.RevocationUnknown, "no fresh evidence of the certificate's status: %s", strings.Join(why, "; "))
}

func (idx *index) lookup(cert *x509.Certificate, source string) Result {
	res := Result{Status: Good, Source: source + idx.number.String(), ThisUpdate: idx.thisUpdate}
	if e, ok := idx.revoked[string(cert.SerialNumber.Bytes())]; ok {
		res.Status, res.RevokedAt, res.Reason = Revoked, e.at, e.reason
		if e.reason == reasonCertificateHold {
			res.Status = OnHold
		}
	}
	return res
}

// checkCA answers for a CA certificate from its issuer's ARL: held (from
// a trust bundle, or added) or, online, fetched from the certificate's
// CRL distribution point — again once the one held was fetched more than
// ARLRefresh ago. An ARL is evidence while it is in date and was known to
// be the latest no longer than MaxAge ago. CAs have no OCSP responder.
func (c *Checker) checkCA(ctx context.Context, cert, issuer *x509.Certificate) (Result, error) {
	k := issuerKey(issuer)
	now := c.cfg.Now()
	held := func() *index {
		c.mu.RLock()
		defer c.mu.RUnlock()
		return c.crls[k]
	}
	idx := held()
	if c.cfg.HTTP != nil && len(cert.CRLDistributionPoints) > 0 && (idx == nil || now.Sub(idx.confirmed) >= c.cfg.ARLRefresh) {
		c.mu.RLock()
		failed, tried := c.arlFailed[k]
		c.mu.RUnlock()
		if !tried || now.Sub(failed) >= arlRetry {
			// Checks that need the ARL at once share one fetch.
			url := cert.CRLDistributionPoints[0]
			_, err, _ := c.flight.Do("arl/"+k, func() (any, error) {
				c.mu.RLock()
				failed, tried := c.arlFailed[k]
				c.mu.RUnlock()
				if tried && now.Sub(failed) < arlRetry {
					// A fetch that ended just before this one began.
					return nil, fmt.Errorf("the ARL's distribution point %s failed at %s", url, failed.UTC().Format(time.RFC3339))
				}
				fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ocspTimeout)
				defer cancel()
				err := c.fetchARL(fctx, url, issuer, now)
				c.mu.Lock()
				if err != nil {
					c.arlFailed[k] = now
				} else {
					delete(c.arlFailed, k)
				}
				c.mu.Unlock()
				return nil, err
			})
			idx = held()
			if err != nil && idx == nil {
				return Result{}, errs.New(errs.RevocationUnknown, "no evidence of the status of the CA %q: %v", cert.Subject.CommonName, err)
			}
		}
		// A failed refresh leaves the ARL held, judged below by MaxAge.
	}
	var why string
	switch {
	case idx == nil && c.cfg.HTTP == nil:
		why = fmt.Sprintf("no ARL from %q (offline)", issuer.Subject.CommonName)
	case idx == nil:
		why = fmt.Sprintf("no ARL from %q, and the certificate names none to fetch", issuer.Subject.CommonName)
	case !now.Before(idx.nextUpdate):
		why = fmt.Sprintf("the ARL of %q expired at %s (the root must re-sign it)", issuer.Subject.CommonName, idx.nextUpdate.UTC().Format(time.RFC3339))
	case now.Sub(idx.confirmed) > c.cfg.MaxAge:
		why = fmt.Sprintf("the ARL of %q was last known current %s ago: that evidence is too old, more than the %s allowed", issuer.Subject.CommonName, roughly(now.Sub(idx.confirmed)), c.cfg.MaxAge)
	default:
		return idx.lookup(cert, "ARL "), nil
	}
	return Result{}, errs.New(errs.RevocationUnknown, "no fresh evidence of the status of the CA %q: %s", cert.Subject.CommonName, why)
}

// roughly rounds an age for people: to the second, or the millisecond
// below one.
func roughly(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}

// arlRetry is how long after a failed fetch an issuer's ARL is not asked
// for again.
const arlRetry = time.Minute

// maxARL bounds a fetched ARL: it lists a handful of CAs.
const maxARL = 1 << 20

func (c *Checker) fetchARL(ctx context.Context, url string, issuer *x509.Certificate, now time.Time) error {
	err := c.fetchARLOnce(ctx, url, issuer, now)
	c.fetched(FetchARL, err)
	return err
}

func (c *Checker) fetchARLOnce(ctx context.Context, url string, issuer *x509.Certificate, now time.Time) error {
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return fmt.Errorf("the ARL URL %q is not http(s)", url)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("ARL %s unreachable: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxARL))
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ARL %s answered HTTP %d", url, resp.StatusCode)
	}
	list, err := x509.ParseRevocationList(body)
	if err != nil {
		return fmt.Errorf("ARL from %s does not parse: %v", url, err)
	}
	return c.addCRL(list, issuer, now)
}

func ocspKey(cert, issuer *x509.Certificate) string {
	return issuerKey(issuer) + "/" + hex.EncodeToString(cert.SerialNumber.Bytes())
}

func (c *Checker) heldRevoked(cert, issuer *x509.Certificate) (Result, bool) {
	c.ocspMu.Lock()
	defer c.ocspMu.Unlock()
	hit, ok := c.ocspCache[ocspKey(cert, issuer)]
	return hit.res, ok && hit.res.Status == Revoked
}

func (c *Checker) held(k string, now time.Time) (Result, bool) {
	c.ocspMu.Lock()
	defer c.ocspMu.Unlock()
	hit, ok := c.ocspCache[k]
	return hit.res, ok && hit.usable(now)
}

// ocsp answers from a held answer while it may be reused, else asks the
// responder; checks of the same certificate that arrive while a request is
// in flight wait for its answer instead of sending their own.
func (c *Checker) ocsp(ctx context.Context, cert, issuer *x509.Certificate, now time.Time) (Result, error) {
	k := ocspKey(cert, issuer)
	if res, ok := c.held(k, now); ok {
		return res, nil
	}
	answer := c.flight.DoChan(k, func() (any, error) {
		// A check that missed the held answer just before another
		// request's answer was stored finds it here.
		if res, ok := c.held(k, c.cfg.Now()); ok {
			return res, nil
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ocspTimeout)
		defer cancel()
		return c.fetchOCSP(fctx, k, cert, issuer)
	})
	c.waiting.add(1)
	defer c.waiting.add(-1)
	select {
	case r := <-answer:
		if r.Err != nil {
			return Result{}, r.Err
		}
		return r.Val.(Result), nil
	case <-ctx.Done():
		return Result{}, fmt.Errorf("no OCSP answer yet: %w", ctx.Err())
	}
}

// fetchOCSP asks the certificate's responder, checks the answer and holds
// it. Failures are returned, never held.
func (c *Checker) fetchOCSP(ctx context.Context, k string, cert, issuer *x509.Certificate) (Result, error) {
	res, err := c.fetchOCSPOnce(ctx, k, cert, issuer)
	c.fetched(FetchOCSP, err)
	return res, err
}

func (c *Checker) fetchOCSPOnce(ctx context.Context, k string, cert, issuer *x509.Certificate) (Result, error) {
	reqDER, err := ocsp.CreateRequest(cert, issuer, nil)
	if err != nil {
		return Result{}, err
	}
	url := cert.OCSPServer[0]
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(reqDER))
	if err != nil {
		return Result{}, err
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		return Result{}, fmt.Errorf("OCSP responder %s unreachable: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil || resp.StatusCode != http.StatusOK {
		return Result{}, fmt.Errorf("OCSP responder %s answered HTTP %d", url, resp.StatusCode)
	}
	// Judged when it arrives: the request may have taken a while.
	now := c.cfg.Now()
	r, err := ocsp.ParseResponseForCert(body, cert, issuer)
	if err != nil {
		return Result{}, fmt.Errorf("OCSP answer from %s does not verify: %v", url, err)
	}
	if r.Certificate != nil {
		// x/crypto/ocsp checks the delegated responder was issued by the
		// CA, not that it may sign OCSP or is in date (RFC 6960 §4.2.2.2).
		if !hasEKU(r.Certificate, x509.ExtKeyUsageOCSPSigning) {
			return Result{}, fmt.Errorf("OCSP answer signed by a certificate without OCSPSigning")
		}
		if now.Before(r.Certificate.NotBefore) || now.After(r.Certificate.NotAfter) {
			return Result{}, fmt.Errorf("OCSP responder certificate out of date")
		}
	}
	switch {
	case now.Sub(r.ThisUpdate) > c.cfg.MaxAge:
		return Result{}, fmt.Errorf("the OCSP answer is %s old, more than the %s allowed", now.Sub(r.ThisUpdate).Round(time.Second), c.cfg.MaxAge)
	case !r.NextUpdate.IsZero() && !now.Before(r.NextUpdate):
		return Result{}, fmt.Errorf("the OCSP answer expired at %s", r.NextUpdate.UTC().Format(time.RFC3339))
	case r.ThisUpdate.After(now.Add(5 * time.Minute)):
		return Result{}, fmt.Errorf("the OCSP answer is dated in the future")
	}
	res := Result{Source: "OCSP " + url, ThisUpdate: r.ThisUpdate}
	switch r.Status {
	case ocsp.Good:
		res.Status = Good
	case ocsp.Revoked:
		res.Status, res.RevokedAt, res.Reason = Revoked, r.RevokedAt, r.RevocationReason
		if r.RevocationReason == reasonCertificateHold {
			res.Status = OnHold
		}
	default:
		return Result{}, fmt.Errorf("the OCSP responder does not know the certificate")
	}
	// Good, or on hold (a hold may be lifted), is reused for Recheck at
	// most, and never past the evidence's own freshness: thisUpdate plus
	// MaxAge, and nextUpdate.
	expires := now.Add(c.cfg.Recheck)
	if e := r.ThisUpdate.Add(c.cfg.MaxAge); e.Before(expires) {
		expires = e
	}
	if !r.NextUpdate.IsZero() && r.NextUpdate.Before(expires) {
		expires = r.NextUpdate
	}
	if h := (cached{res: res, expires: expires}); h.usable(now) {
		c.hold(k, h, now)
	}
	return res, nil
}

func (c *Checker) hold(k string, h cached, now time.Time) {
	c.ocspMu.Lock()
	defer c.ocspMu.Unlock()
	if len(c.ocspCache) >= maxOCSPCached {
		for key, old := range c.ocspCache {
			if !old.usable(now) {
				delete(c.ocspCache, key)
			}
		}
	}
	c.ocspCache[k] = h
}

func hasEKU(c *x509.Certificate, u x509.ExtKeyUsage) bool {
	for _, x := range c.ExtKeyUsage {
		if x == u {
			return true
		}
	}
	return false
}
