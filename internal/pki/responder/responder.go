// Package responder is trustd's OCSP responder (RFC 6960, with the RFC 5019
// lightweight profile's caching). Responses are signed in advance by a
// delegated responder certificate whose key is on the HSM, for SHA-1 and
// SHA-256 CertIDs alike, kept in memory, re-signed the moment a
// certificate's status changes and before they expire; answering a
// request for one certificate without a nonce is a map lookup. Other
// requests are signed on demand, under two rate limits so that a flood
// cannot exhaust the HSM, nor one kind of request starve the other:
// serials this CA never issued ("unknown") have one budget; certificates
// it issued (a nonce, which must be inside the signed response; several
// CertIDs in one request; an answer whose signing in advance failed) have
// another. Beyond its budget a nonce is dropped (RFC 8954 allows it) and
// what has no answer signed in advance gets tryLater.
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
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ocsp"
	"golang.org/x/time/rate"
)

// Record is a certificate's status in OCSP's terms (RFC 6960): good, or
// revoked at RevokedAt for an RFC 5280 reason. A suspension is a
// revocation for certificateHold, the one revocation that may be undone.
// The responder declares it, rather than take the revocation service's
// records, so that it depends only on what it answers.
type Record struct {
	Serial *big.Int
	// Status is ocsp.Good or ocsp.Revoked (ocsp.Unknown is the
	// responder's own answer for a serial it does not hold).
	Status int
	// Reason (ocsp.KeyCompromise, …, ocsp.CertificateHold) and RevokedAt
	// are a revocation's.
	Reason    int
	RevokedAt time.Time
	// NotAfter is the certificate's: an expired certificate's entry is
	// dropped a day after it.
	NotAfter time.Time
	// Seq orders the status changes of one certificate (0: never changed):
	// a record with a lower Seq than the one held is stale and ignored.
	Seq int64
}

// final says whether the status can never change again: a revocation for
// any reason but certificateHold.
func (r Record) final() bool { return r.Status == ocsp.Revoked && r.Reason != ocsp.CertificateHold }

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
	// UnknownPerSecond bounds signatures made while answering about
	// serials this CA never issued. Default 100.
	UnknownPerSecond float64
	// KnownPerSecond bounds signatures made while answering about
	// certificates it issued: requests with a nonce or several CertIDs,
	// and answers whose signing in advance failed. Default 200.
	KnownPerSecond float64
	Now            func() time.Time
	Log            *slog.Logger
	// Answered, if set, is told the Status of every answer (an operator's
	// count of OCSP answers by status).
	Answered func(status string)
}

// Statuses of an Answer: the certificate status of a signed response
// (of its first CertID, when a request asks several), or AnswerError for
// an error response (malformed, unauthorized, tryLater).
const (
	AnswerGood    = "good"
	AnswerRevoked = "revoked"
	AnswerUnknown = "unknown"
	AnswerError   = "error"
)

func answerStatus(rec Record) string {
	switch rec.Status {
	case ocsp.Good:
		return AnswerGood
	case ocsp.Revoked:
		return AnswerRevoked
	}
	return AnswerUnknown
}

// Responder answers OCSP requests for one issuer.
type Responder struct {
	cfg      Config
	cred     atomic.Pointer[Credential]
	nameHash map[crypto.Hash][]byte
	keyHash  map[crypto.Hash][]byte
	// Separate budgets: a flood of unknown serials cannot starve answers
	// about real certificates, nor the reverse.
	unknownBudget *rate.Limiter
	knownBudget   *rate.Limiter

	mu      sync.RWMutex
	entries map[string]*entry // by serial bytes
	unknown map[string]*signed
}

type entry struct {
	rec  Record
	resp map[crypto.Hash]*signed
}

type signed struct {
	der        []byte
	thisUpdate time.Time
	nextUpdate time.Time
}

// hashes are the CertID hash algorithms answered, each signed in advance
// for every certificate: SHA-1 (RFC 5019 clients, OpenSSL's default) and
// SHA-256. Unexported, so that no importer can change what the responder
// answers for.
var hashes = []crypto.Hash{crypto.SHA1, crypto.SHA256}

// Hashes lists the CertID hash algorithms answered, in a new slice on each
// call.
func Hashes() []crypto.Hash { return slices.Clone(hashes) }

// New builds a responder; it answers tryLater until SetCredential is called.
func New(cfg Config) (*Responder, error) {
	if cfg.Issuer == nil || cfg.Now == nil || cfg.Log == nil {
		return nil, errors.New("responder: incomplete configuration")
	}
	if cfg.Validity == 0 {
		cfg.Validity = 4 * time.Hour
	}
	if cfg.UnknownPerSecond == 0 {
		cfg.UnknownPerSecond = 100
	}
	if cfg.KnownPerSecond == 0 {
		cfg.KnownPerSecond = 200
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
		unknownBudget: rate.NewLimiter(rate.Limit(cfg.UnknownPerSecond), max(1, int(cfg.UnknownPerSecond))),
		knownBudget:   rate.NewLimiter(rate.Limit(cfg.KnownPerSecond), max(1, int(cfg.KnownPerSecond))),
		entries:       map[string]*entry{}, unknown: map[string]*signed{},
	}
	for _, h := range hashes {
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
func supersedes(old *entry, rec Record) bool {
	switch {
	case old == nil:
		return true
	case old.rec.final():
		return false
	case rec.Seq < old.rec.Seq:
		return false
	}
	return true
}

// Update records a certificate's status and signs its responses now, so
// that a revocation is visible to the next request. The old responses are
// dropped before signing: if signing fails, requests get tryLater (or an
// answer signed on demand), never the stale answer. A record older than
// the one held is ignored. Before the responder has a credential it only
// records the status, as Track does: every request is answered tryLater
// until then, and the Refresh that follows SetCredential signs it.
func (r *Responder) Update(rec Record) error {
	k := key(rec.Serial)
	r.mu.Lock()
	if old := r.entries[k]; !supersedes(old, rec) {
		r.mu.Unlock()
		return nil
	} else if old != nil && sameStatus(old.rec, rec) && len(old.resp) == len(hashes) {
		old.rec.NotAfter = rec.NotAfter
		r.mu.Unlock()
		return nil
	}
	r.entries[k] = &entry{rec: rec, resp: map[crypto.Hash]*signed{}}
	delete(r.unknown, k)
	r.mu.Unlock()
	if r.cred.Load() == nil {
		return nil
	}
	for _, h := range hashes {
		s, err := r.sign([]item{{rec, h}}, nil)
		if err != nil {
			return err
		}
		r.store(k, rec, h, s)
	}
	return nil
}

// Track records a certificate's status without signing; Refresh signs what
// is missing. A changed status drops the old responses at once.
func (r *Responder) Track(rec Record) {
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

func sameStatus(a, b Record) bool {
	return a.Seq == b.Seq && a.Status == b.Status && a.Reason == b.Reason && a.RevokedAt.Equal(b.RevokedAt)
}

// current says whether the responder still holds rec as k's status.
func (r *Responder) current(k string, rec Record) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.entries[k]
	return ok && sameStatus(e.rec, rec)
}

// store caches s if the entry still has the status it was signed for.
func (r *Responder) store(k string, rec Record, h crypto.Hash, s *signed) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.entries[k]; ok && sameStatus(e.rec, rec) {
		e.resp[h] = s
	}
}

// Refresh signs every response that is missing or past half its validity,
// and drops certificates that expired. It returns how many it signed.
// Signing is spread over GOMAXPROCS goroutines: a sync signs two responses
// per live certificate.
func (r *Responder) Refresh() (int, error) {
	now := r.cfg.Now()
	type job struct {
		k   string
		rec Record
		h   crypto.Hash
	}
	var jobs []job
	r.mu.Lock()
	for k, e := range r.entries {
		if !e.rec.NotAfter.IsZero() && e.rec.NotAfter.Before(now.Add(-24*time.Hour)) {
			delete(r.entries, k)
			continue
		}
		for _, h := range hashes {
			if s, ok := e.resp[h]; !ok || now.After(s.thisUpdate.Add(r.cfg.Validity/2)) {
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
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range min(runtime.GOMAXPROCS(0), len(jobs)) {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(jobs)); i = next.Add(1) - 1 {
				j := jobs[i]
				s, err := r.sign([]item{{j.rec, j.h}}, nil)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					continue
				}
				r.store(j.k, j.rec, j.h, s)
			}
		})
	}
	wg.Wait()
	return len(jobs) - len(errs), errors.Join(errs...)
}

// Len is the number of certificates the responder knows.
func (r *Responder) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.entries)
}

// item is one certificate's status to put in a response, for a CertID
// hashed with h.
type item struct {
	rec Record
	h   crypto.Hash
}

// sign makes one response holding every item, with the current
// credential.
func (r *Responder) sign(items []item, nonce *pkix.Extension) (*signed, error) {
	cred := r.cred.Load()
	if cred == nil {
		return nil, errors.New("responder: no responder credential")
	}
	now := r.cfg.Now().UTC().Truncate(time.Second)
	tpls := make([]ocsp.Response, len(items))
	for i, it := range items {
		tpl := ocsp.Response{SerialNumber: it.rec.Serial, IssuerHash: it.h, ThisUpdate: now, NextUpdate: now.Add(r.cfg.Validity)}
		switch it.rec.Status {
		case ocsp.Good:
			tpl.Status = ocsp.Good
		case ocsp.Revoked:
			tpl.Status, tpl.RevokedAt, tpl.RevocationReason = ocsp.Revoked, it.rec.RevokedAt, it.rec.Reason
		default:
			tpl.Status = ocsp.Unknown
		}
		tpls[i] = tpl
	}
	var exts []pkix.Extension
	if nonce != nil {
		exts = []pkix.Extension{*nonce}
	}
	// producedAt is thisUpdate: both are the injected clock's now, so
	// thisUpdate is never after producedAt (RFC 6960 §2.4).
	// ocsp.CreateResponse would take producedAt from the wall clock,
	// truncated to the minute, behind a thisUpdate truncated to the second.
	der, err := create(r.cfg.Issuer, cred.Cert, tpls, cred.Key, now, exts)
	if err != nil {
		return nil, fmt.Errorf("responder: signing: %w", err)
	}
	return &signed{der: der, thisUpdate: now, nextUpdate: now.Add(r.cfg.Validity)}, nil
}

// Errors answered without a signature (RFC 6960 §2.3).
var (
	malformed    = ocsp.MalformedRequestErrorResponse
	unauthorized = ocsp.UnauthorizedErrorResponse
	tryLater     = ocsp.TryLaterErrorResponse
)

// Answer is a response and how long it may be cached.
type Answer struct {
	DER []byte
	// MaxAge is how long HTTP caches may keep it; 0 means do not cache.
	MaxAge     time.Duration
	ThisUpdate time.Time
	// Status is what the answer says (AnswerGood, …, AnswerError).
	Status string
}

// MaxRequestSize bounds an OCSP request; a one-certificate request with a
// nonce is under 200 bytes, one with MaxCertIDs under 2 KB.
const MaxRequestSize = 4096

// asked is one CertID of a request with what the responder holds for it.
type asked struct {
	k      string
	known  bool
	item   item
	cached *signed // signed in advance for this CertID's hash, or nil
}

// Respond answers a DER OCSP request. It never fails: every problem is an
// OCSP error response.
func (r *Responder) Respond(reqDER []byte) Answer {
	a := r.respond(reqDER)
	if r.cfg.Answered != nil {
		r.cfg.Answered(a.Status)
	}
	return a
}

func (r *Responder) respond(reqDER []byte) Answer {
	if len(reqDER) > MaxRequestSize {
		return Answer{DER: malformed, Status: AnswerError}
	}
	qs, nonce, err := parseRequest(reqDER)
	if err != nil {
		return Answer{DER: malformed, Status: AnswerError}
	}
	for _, q := range qs {
		// A hash we do not answer for (e.g. SHA-512) or another issuer:
		// we are not the authority for that CertID.
		if q.hash == 0 || !bytes.Equal(r.nameHash[q.hash], q.nameHash) || !bytes.Equal(r.keyHash[q.hash], q.keyHash) {
			return Answer{DER: unauthorized, Status: AnswerError}
		}
	}
	if r.cred.Load() == nil {
		return Answer{DER: tryLater, Status: AnswerError}
	}
	now := r.cfg.Now()
	as := make([]asked, len(qs))
	budget := r.knownBudget
	r.mu.RLock()
	for i, q := range qs {
		a := asked{k: key(q.serial), item: item{h: q.hash}}
		if e, ok := r.entries[a.k]; ok {
			a.known, a.item.rec, a.cached = true, e.rec, e.resp[q.hash]
		} else {
			a.item.rec, a.cached = Record{Serial: q.serial, Status: ocsp.Unknown}, r.unknown[a.k]
			budget = r.unknownBudget
		}
		as[i] = a
	}
	r.mu.RUnlock()

	if len(as) == 1 {
		a := as[0]
		fresh := a.cached != nil && now.Before(a.cached.nextUpdate)
		if fresh && (nonce == nil || !budget.Allow()) {
			// Signed in advance; a nonce beyond the budget is dropped.
			return Answer{DER: a.cached.der, MaxAge: maxAge(a.cached, now), ThisUpdate: a.cached.thisUpdate, Status: answerStatus(a.item.rec)}
		}
		// With a nonce, the budget was just spent above; without one, the
		// answer is missing (an unknown serial, a failed signing).
		if !fresh && !budget.Allow() {
			return Answer{DER: tryLater, Status: AnswerError}
		}
	} else if !budget.Allow() {
		return Answer{DER: tryLater, Status: AnswerError}
	}
	items := make([]item, len(as))
	for i, a := range as {
		items[i] = a.item
	}
	s, err := r.sign(items, nonce)
	if err != nil {
		r.cfg.Log.Error("ocsp: signing on demand", "err", err, "certids", len(items), "nonce", nonce != nil)
		return Answer{DER: tryLater, Status: AnswerError}
	}
	for _, a := range as {
		if a.known && !r.current(a.k, a.item.rec) {
			return Answer{DER: tryLater, Status: AnswerError} // the status changed while signing
		}
	}
	if nonce != nil {
		return Answer{DER: s.der, ThisUpdate: s.thisUpdate, Status: answerStatus(as[0].item.rec)}
	}
	if len(as) == 1 {
		// Kept for the next request like it.
		if a := as[0]; a.known {
			r.store(a.k, a.item.rec, a.item.h, s)
		} else {
			r.mu.Lock()
			if len(r.unknown) < maxUnknown {
				r.unknown[a.k] = s
			}
			r.mu.Unlock()
		}
	}
	return Answer{DER: s.der, MaxAge: maxAge(s, now), ThisUpdate: s.thisUpdate, Status: answerStatus(as[0].item.rec)}
}

// maxUnknown bounds the cache of answers for serials we never issued.
const maxUnknown = 10000

func maxAge(s *signed, now time.Time) time.Duration {
	if d := s.nextUpdate.Sub(now); d > 0 {
		return d
	}
	return 0
}
