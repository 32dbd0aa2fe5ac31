// Package responder is trustd's OCSP responder (RFC 6960, with the RFC 5019
// lightweight profile's caching). Responses are signed in advance by a
// delegated responder certificate whose key is on the HSM, kept in memory,
// re-signed the moment a certificate's status changes and before they
// expire; answering a request is a map lookup. Two kinds of request are
// signed on demand, under a rate limit so that a flood cannot exhaust the
// HSM: requests carrying a nonce (which must be inside the signed response)
// and serials this CA never issued ("unknown"). Beyond the limit a nonce is
// dropped (RFC 8954 allows it) and unknown serials get tryLater.
package responder

import (
	"bytes"
	"crypto"
	"crypto/sha1" //nolint:gosec // OCSP CertIDs use SHA-1 by default (RFC 5019); it is an identifier here, not a signature
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ocsp"
	"golang.org/x/time/rate"

	"github.com/nuskha/nuskha/internal/revoke"
)

// Credential is the delegated responder certificate and its key.
type Credential struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Config configures a Responder.
type Config struct {
	Issuer *x509.Certificate
	// Validity of each response (nextUpdate - thisUpdate). Relying parties
	// may cache a response this long. Default 4h.
	Validity time.Duration
	// OnDemandPerSecond bounds signatures made while answering (nonces,
	// unknown serials). Default 200.
	OnDemandPerSecond float64
	Now               func() time.Time
	Log               *slog.Logger
}

// Responder answers OCSP requests for one issuer.
type Responder struct {
	cfg      Config
	cred     atomic.Pointer[Credential]
	nameHash map[crypto.Hash][]byte
	keyHash  map[crypto.Hash][]byte
	limiter  *rate.Limiter

	mu      sync.RWMutex
	entries map[string]*entry // by serial bytes
	unknown map[string]*signed
}

type entry struct {
	rec  revoke.Record
	resp map[crypto.Hash]*signed
}

type signed struct {
	der        []byte
	thisUpdate time.Time
	nextUpdate time.Time
}

// Hashes are the CertID hash algorithms answered. SHA-1 responses are made
// in advance (RFC 5019 clients, OpenSSL's default); SHA-256 on first use.
var Hashes = []crypto.Hash{crypto.SHA1, crypto.SHA256}

// New builds a responder; it answers tryLater until SetCredential is called.
func New(cfg Config) (*Responder, error) {
	if cfg.Issuer == nil || cfg.Now == nil || cfg.Log == nil {
		return nil, errors.New("responder: incomplete configuration")
	}
	if cfg.Validity == 0 {
		cfg.Validity = 4 * time.Hour
	}
	if cfg.OnDemandPerSecond == 0 {
		cfg.OnDemandPerSecond = 200
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(cfg.Issuer.RawSubjectPublicKeyInfo, &spki); err != nil {
		return nil, err
	}
	r := &Responder{
		cfg: cfg, nameHash: map[crypto.Hash][]byte{}, keyHash: map[crypto.Hash][]byte{},
		limiter: rate.NewLimiter(rate.Limit(cfg.OnDemandPerSecond), int(cfg.OnDemandPerSecond)),
		entries: map[string]*entry{}, unknown: map[string]*signed{},
	}
	for _, h := range Hashes {
		r.nameHash[h] = sum(h, cfg.Issuer.RawSubject)
		r.keyHash[h] = sum(h, spki.PublicKey.RightAlign())
	}
	return r, nil
}

func sum(h crypto.Hash, b []byte) []byte {
	switch h {
	case crypto.SHA1:
		s := sha1.Sum(b) //nolint:gosec
		return s[:]
	case crypto.SHA256:
		s := sha256.Sum256(b)
		return s[:]
	}
	return nil
}

// SetCredential installs a (new) responder certificate and key. Every
// cached response is re-signed with it by the next Refresh.
func (r *Responder) SetCredential(c Credential) error {
	if !slicesContains(c.Cert.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning) {
		return errors.New("responder: certificate lacks the OCSPSigning extended key usage")
	}
	if err := c.Cert.CheckSignatureFrom(r.cfg.Issuer); err != nil {
		return fmt.Errorf("responder: certificate not issued by the CA it answers for: %w", err)
	}
	r.cred.Store(&c)
	r.mu.Lock()
	for _, e := range r.entries {
		e.resp = map[crypto.Hash]*signed{}
	}
	r.unknown = map[string]*signed{}
	r.mu.Unlock()
	return nil
}

// Credential returns the current responder certificate (nil before one is set).
func (r *Responder) Credential() *x509.Certificate {
	if c := r.cred.Load(); c != nil {
		return c.Cert
	}
	return nil
}

func slicesContains(s []x509.ExtKeyUsage, v x509.ExtKeyUsage) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func key(serial *big.Int) string { return string(serial.Bytes()) }

// supersedes says whether rec may replace what the responder holds: a
// status only moves to a later status event (records can arrive out of
// order: a periodic sync's snapshot after a revocation's own update), and
// a revocation is final.
func supersedes(old *entry, rec revoke.Record) bool {
	switch {
	case old == nil:
		return true
	case old.rec.Status == revoke.Revoked:
		return false
	case rec.Seq < old.rec.Seq:
		return false
	}
	return true
}

// Update records a certificate's status and signs its response now, so that
// a revocation is visible to the next request. The old response is dropped
// before signing: if signing fails, requests get tryLater, never the stale
// answer. A record older than the one held is ignored.
func (r *Responder) Update(rec revoke.Record) error {
	k := key(rec.Serial)
	r.mu.Lock()
	if old := r.entries[k]; !supersedes(old, rec) {
		r.mu.Unlock()
		return nil
	} else if old != nil && sameStatus(old.rec, rec) && old.resp[crypto.SHA1] != nil {
		old.rec.NotAfter = rec.NotAfter
		r.mu.Unlock()
		return nil
	}
	r.entries[k] = &entry{rec: rec, resp: map[crypto.Hash]*signed{}}
	delete(r.unknown, k)
	r.mu.Unlock()
	s, err := r.sign(rec, crypto.SHA1, nil)
	if err != nil {
		return err
	}
	r.store(k, rec, crypto.SHA1, s)
	return nil
}

// Track records a certificate's status without signing; Refresh signs what
// is missing. A changed status drops the old responses at once.
func (r *Responder) Track(rec revoke.Record) {
	k := key(rec.Serial)
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries[k]
	if !supersedes(e, rec) {
		return
	}
	if e != nil && sameStatus(e.rec, rec) {
		e.rec.NotAfter = rec.NotAfter
		return
	}
	r.entries[k] = &entry{rec: rec, resp: map[crypto.Hash]*signed{}}
	delete(r.unknown, k)
}

func sameStatus(a, b revoke.Record) bool {
	return a.Seq == b.Seq && a.Status == b.Status && a.Reason == b.Reason && a.EffectiveAt.Equal(b.EffectiveAt)
}

// current says whether the responder still holds rec as k's status.
func (r *Responder) current(k string, rec revoke.Record) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.entries[k]
	return ok && sameStatus(e.rec, rec)
}

// store caches s if the entry still has the status it was signed for.
func (r *Responder) store(k string, rec revoke.Record, h crypto.Hash, s *signed) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.entries[k]; ok && sameStatus(e.rec, rec) {
		e.resp[h] = s
	}
}

// Refresh signs every response that is missing or past half its validity,
// and drops certificates that expired. It returns how many it signed.
func (r *Responder) Refresh() (int, error) {
	now := r.cfg.Now()
	type job struct {
		k   string
		rec revoke.Record
		h   crypto.Hash
	}
	var jobs []job
	r.mu.Lock()
	for k, e := range r.entries {
		if !e.rec.NotAfter.IsZero() && e.rec.NotAfter.Before(now.Add(-24*time.Hour)) {
			delete(r.entries, k)
			continue
		}
		for _, h := range Hashes {
			s, ok := e.resp[h]
			if (!ok && h == crypto.SHA1) || (ok && now.After(s.thisUpdate.Add(r.cfg.Validity/2))) {
				jobs = append(jobs, job{k, e.rec, h})
			}
		}
	}
	for k, s := range r.unknown {
		if now.After(s.nextUpdate) {
			delete(r.unknown, k)
		}
	}
	r.mu.Unlock()
	var errs []error
	for _, j := range jobs {
		s, err := r.sign(j.rec, j.h, nil)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.store(j.k, j.rec, j.h, s)
	}
	return len(jobs) - len(errs), errors.Join(errs...)
}

// Len is the number of certificates the responder knows.
func (r *Responder) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.entries)
}

// sign makes one response with the current credential.
func (r *Responder) sign(rec revoke.Record, h crypto.Hash, nonce *pkix.Extension) (*signed, error) {
	cred := r.cred.Load()
	if cred == nil {
		return nil, errors.New("responder: no responder credential")
	}
	now := r.cfg.Now().UTC().Truncate(time.Second)
	tpl := ocsp.Response{
		SerialNumber: rec.Serial, IssuerHash: h, Certificate: cred.Cert,
		ThisUpdate: now, NextUpdate: now.Add(r.cfg.Validity),
	}
	switch rec.Status {
	case revoke.Good:
		tpl.Status = ocsp.Good
	case revoke.Revoked, revoke.OnHold:
		tpl.Status, tpl.RevokedAt, tpl.RevocationReason = ocsp.Revoked, rec.EffectiveAt, int(rec.Reason)
	default:
		tpl.Status = ocsp.Unknown
	}
	var exts []pkix.Extension
	if nonce != nil {
		exts = []pkix.Extension{*nonce}
	}
	// producedAt is thisUpdate: both are the injected clock's now, so
	// thisUpdate is never after producedAt (RFC 6960 §2.4).
	// ocsp.CreateResponse would take producedAt from the wall clock,
	// truncated to the minute, behind a thisUpdate truncated to the second.
	der, err := create(r.cfg.Issuer, cred.Cert, tpl, cred.Key, now, exts)
	if err != nil {
		return nil, fmt.Errorf("responder: signing: %w", err)
	}
	return &signed{der: der, thisUpdate: tpl.ThisUpdate, nextUpdate: tpl.NextUpdate}, nil
}

// Errors answered without a signature (RFC 6960 §2.3).
var (
	malformed    = ocsp.MalformedRequestErrorResponse
	unauthorized = ocsp.UnauthorizedErrorResponse
	tryLater     = ocsp.TryLaterErrorResponse
	internalErr  = ocsp.InternalErrorErrorResponse
)

// Answer is a response and how long it may be cached.
type Answer struct {
	DER []byte
	// MaxAge is how long HTTP caches may keep it; 0 means do not cache.
	MaxAge     time.Duration
	ThisUpdate time.Time
}

// MaxRequestSize bounds an OCSP request; a one-certificate request with a
// nonce is under 200 bytes.
const MaxRequestSize = 4096

// Respond answers a DER OCSP request. It never fails: every problem is an
// OCSP error response.
func (r *Responder) Respond(reqDER []byte) Answer {
	if len(reqDER) > MaxRequestSize {
		return Answer{DER: malformed}
	}
	req, err := ocsp.ParseRequest(reqDER)
	if err != nil {
		return Answer{DER: malformed}
	}
	nonce, err := parseNonce(reqDER)
	if err != nil {
		return Answer{DER: malformed}
	}
	if req.SerialNumber == nil || req.SerialNumber.Sign() < 0 {
		return Answer{DER: malformed}
	}
	nh, ok := r.nameHash[req.HashAlgorithm]
	if !ok {
		// A hash we do not answer for (e.g. SHA-512): we are not the
		// authority for that CertID.
		return Answer{DER: unauthorized}
	}
	if !bytes.Equal(nh, req.IssuerNameHash) || !bytes.Equal(r.keyHash[req.HashAlgorithm], req.IssuerKeyHash) {
		return Answer{DER: unauthorized}
	}
	if r.cred.Load() == nil {
		return Answer{DER: tryLater}
	}
	k := key(req.SerialNumber)
	now := r.cfg.Now()
	r.mu.RLock()
	e, known := r.entries[k]
	var rec revoke.Record
	var cached *signed
	if known {
		rec, cached = e.rec, e.resp[req.HashAlgorithm]
	} else {
		cached = r.unknown[k]
	}
	r.mu.RUnlock()
	if !known {
		rec = revoke.Record{Serial: req.SerialNumber, Status: "unknown"}
	}
	if nonce != nil && r.limiter.Allow() {
		s, err := r.sign(rec, req.HashAlgorithm, nonce)
		if err != nil {
			r.cfg.Log.Error("ocsp: signing a nonce response", "err", err)
			return Answer{DER: internalErr}
		}
		if known && !r.current(k, rec) {
			return Answer{DER: tryLater} // the status changed while signing
		}
		return Answer{DER: s.der, ThisUpdate: s.thisUpdate}
	}
	if cached != nil && now.Before(cached.nextUpdate) {
		return Answer{DER: cached.der, MaxAge: maxAge(cached, now), ThisUpdate: cached.thisUpdate}
	}
	// No usable pre-signed response: a known certificate whose SHA-256
	// answer is not made yet, one whose signing failed, or an unknown serial.
	if !r.limiter.Allow() {
		return Answer{DER: tryLater}
	}
	s, err := r.sign(rec, req.HashAlgorithm, nil)
	if err != nil {
		r.cfg.Log.Error("ocsp: signing on demand", "err", err)
		return Answer{DER: tryLater}
	}
	if known {
		if !r.current(k, rec) {
			return Answer{DER: tryLater} // the status changed while signing
		}
		r.store(k, rec, req.HashAlgorithm, s)
	} else {
		r.mu.Lock()
		if len(r.unknown) < maxUnknown {
			r.unknown[k] = s
		}
		r.mu.Unlock()
	}
	return Answer{DER: s.der, MaxAge: maxAge(s, now), ThisUpdate: s.thisUpdate}
}

// maxUnknown bounds the cache of answers for serials we never issued.
const maxUnknown = 10000

func maxAge(s *signed, now time.Time) time.Duration {
	if d := s.nextUpdate.Sub(now); d > 0 {
		return d
	}
	return 0
}
