// Package publish makes certificate status visible to relying parties: it
// feeds the OCSP responder, generates and serves the CRL, serves the root's
// ARL (signed at ceremonies; see SetARL), and assembles the signed offline
// trust bundle. Status changes reach OCSP synchronously (a
// revocation is visible before the API call returns) and the CRL soon after
// (many changes coalesce into one CRL: at a million entries a CRL takes
// seconds to sign, and one is always being served).
package publish

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki/bundle"
	"github.com/nuskha/nuskha/internal/pki/crl"
	"github.com/nuskha/nuskha/internal/pki/responder"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store"
)

// Store is what publishing reads and writes.
type Store interface {
	ForEachStatus(ctx context.Context, notAfter time.Time, fn func(revoke.Record) error) error
	ForEachCertificate(ctx context.Context, notAfter time.Time, fn func(revoke.Record) error) error
	LatestCRL(ctx context.Context) (revoke.CRL, error)
	// CRLState is the highest CRL number recorded and the highest status
	// event sequence number, by any trustd on the database.
	CRLState(ctx context.Context) (crlNumber, statusSeq int64, err error)
	// ReserveCRLNumber durably takes a CRL number above every one taken or
	// stored before, and at least atLeast.
	ReserveCRLNumber(ctx context.Context, atLeast int64, at time.Time) (int64, error)
	StoreCRL(ctx context.Context, c revoke.CRL, generatedAt time.Time) error
}

// Issuer is the issuing CA as publishing needs it: its certificate, and
// CRLs signed with its key. The key stays behind it (ca.CA is one): the
// CRL is linted, before sees the linted TBS immediately before the key
// signs, and the DER returned covers exactly that TBS.
type Issuer interface {
	Intermediate() *x509.Certificate
	SignCRL(req crl.Request, before crl.BeforeSign) ([]byte, error)
}

// Signer is a key with its certificate chain (leaf first).
type Signer struct {
	Key   crypto.Signer
	Chain []*x509.Certificate
}

// Config wires a Publisher. All fields but the durations are required.
type Config struct {
	Store Store
	Roots []*x509.Certificate
	// Issuer signs the CRLs (its key is on the HSM).
	Issuer    Issuer
	Responder *responder.Responder
	// BundleSigner signs trust bundles (trust-bundle-signing profile).
	BundleSigner Signer
	Audit        audit.Recorder
	Log          *slog.Logger
	Now          func() time.Time
	// CRLValidity is nextUpdate - thisUpdate (default 24h); a new CRL is
	// made every CRLRefresh (default 1h) and after every status change.
	CRLValidity time.Duration
	CRLRefresh  time.Duration
	// Logs are the audit logs the trust bundle names, with their
	// checkpoint keys (trustd's own and those configured).
	Logs []bundle.Log
}

// Publisher publishes status.
type Publisher struct {
	cfg     Config
	crl     atomic.Pointer[revoke.CRL]
	arl     atomic.Pointer[x509.RevocationList]
	trigger chan struct{}
	signer  atomic.Pointer[Signer]
	genMu   sync.Mutex
	// changes counts the status changes reported; covered is how many of
	// them the served CRL includes. While covered < changes, the CRL and
	// the bundle are made anew before they are served, so that whoever
	// fetches them after a revocation sees it.
	changes atomic.Uint64
	covered atomic.Uint64
	// seq is the highest status event sequence number recorded before the
	// CRL this publisher last made read the statuses: a higher one in the
	// database is a change, perhaps made through another trustd, that the
	// CRL may lack.
	seq atomic.Int64

	bundleMu  sync.Mutex
	bundle    []byte
	bundleFor int64 // CRL number the cached bundle holds
}

// New checks cfg.
func New(cfg Config) (*Publisher, error) {
	if cfg.Store == nil || len(cfg.Roots) == 0 || cfg.Issuer == nil ||
		cfg.Responder == nil || cfg.BundleSigner.Key == nil || cfg.Audit == nil || cfg.Log == nil || cfg.Now == nil {
		return nil, errors.New("publish: incomplete configuration")
	}
	if cfg.CRLValidity == 0 {
		cfg.CRLValidity = 24 * time.Hour
	}
	if cfg.CRLRefresh == 0 {
		cfg.CRLRefresh = time.Hour
	}
	if cfg.CRLRefresh >= cfg.CRLValidity {
		return nil, errors.New("publish: the CRL must be refreshed more often than it expires")
	}
	p := &Publisher{cfg: cfg, trigger: make(chan struct{}, 1)}
	s := cfg.BundleSigner
	p.signer.Store(&s)
	return p, nil
}

// Start publishes: a new CRL of every status recorded (numbered above
// every CRL before it), and every live certificate's status in the OCSP
// responder, signed. It returns when both can be served.
//
// The CRL is made anew at every start rather than the latest stored one
// served again: a status may have been recorded after that CRL was made
// (by a trustd that stopped before regenerating), and a CRL fetched after
// a change must include it.
func (p *Publisher) Start(ctx context.Context) error {
	latest, err := p.cfg.Store.LatestCRL(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return err
	default:
		p.crl.Store(&latest)
	}
	if _, err := p.GenerateCRL(ctx); err != nil {
		return err
	}
	n, err := p.SyncResponder(ctx)
	if err != nil {
		return err
	}
	p.cfg.Log.Info("status published", "crl", p.crl.Load().Number, "ocsp_certificates", n)
	return nil
}

// SyncResponder gives the responder every live certificate's current
// status and signs what it lacks. It returns how many certificates it knows.
func (p *Publisher) SyncResponder(ctx context.Context) (int, error) {
	now := p.cfg.Now()
	err := p.cfg.Store.ForEachCertificate(ctx, now, func(r revoke.Record) error {
		p.cfg.Responder.Track(ocspRecord(r))
		return nil
	})
	if err != nil {
		return 0, err
	}
	if _, err := p.cfg.Responder.Refresh(); err != nil {
		return 0, err
	}
	return p.cfg.Responder.Len(), nil
}

// Run regenerates the CRL when triggered and on schedule, and keeps OCSP
// responses fresh, until ctx ends. Failures are retried with back-off. It
// returns once a generation or refresh in progress has ended: after it,
// nothing here uses the store or the keys.
func (p *Publisher) Run(ctx context.Context) {
	crlTick := time.NewTicker(p.cfg.CRLRefresh)
	defer crlTick.Stop()
	ocspTick := time.NewTicker(time.Minute)
	defer ocspTick.Stop()
	backoff := time.Second
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	generate := func() {
		if _, err := p.GenerateCRL(ctx); err != nil {
			if ctx.Err() != nil {
				// Stopping: the next start makes a CRL anew. A number
				// reserved was finished with regardless (generate), so
				// this failure is its own, and is logged, not dropped.
				p.cfg.Log.ErrorContext(ctx, "CRL generation failed while stopping", "err", err)
				return
			}
			p.cfg.Log.ErrorContext(ctx, "CRL generation failed; retrying", "err", err, "in", backoff)
			retry.Reset(backoff)
			backoff = min(2*backoff, 5*time.Minute)
			return
		}
		backoff = time.Second
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.trigger:
			generate()
		case <-crlTick.C:
			generate()
		case <-retry.C:
			generate()
		case <-ocspTick.C:
			if _, err := p.SyncResponder(ctx); err != nil && ctx.Err() == nil {
				p.cfg.Log.ErrorContext(ctx, "OCSP refresh failed", "err", err)
			}
		}
	}
}

// StatusChanged is revoke.Publisher: OCSP now; the CRL at once in the
// background, and in any case before the CRL or the bundle is next served.
func (p *Publisher) StatusChanged(ctx context.Context, rec revoke.Record) error {
	p.changes.Add(1)
	err := p.cfg.Responder.Update(ocspRecord(rec))
	select {
	case p.trigger <- struct{}{}:
	default: // a regeneration is already pending; it will include this change
	}
	return err
}

// Issued is enrolment's Notifier (enrol.Config.Notify): a new certificate
// is answered "good" by the OCSP responder at once (SyncResponder catches
// up if this fails). It needs only the responder, so that enrolment, which
// issues the publisher's own credentials, is built before the Publisher.
type Issued struct{ Responder *responder.Responder }

// Issued tells the responder of c.
func (i Issued) Issued(_ context.Context, c *enrol.Certificate) error {
	return i.Responder.Update(responder.Record{Serial: c.Serial, Status: ocsp.Good, NotAfter: c.NotAfter})
}

// ocspRecord is a certificate's status as the responder states it: a
// suspension is a revocation for certificateHold (as on the CRL), the one
// the responder lets a later status replace.
func ocspRecord(r revoke.Record) responder.Record {
	o := responder.Record{Serial: r.Serial, Status: ocsp.Good, NotAfter: r.NotAfter, Seq: r.Seq}
	switch r.Status {
	case revoke.Good:
	case revoke.OnHold:
		o.Status, o.Reason, o.RevokedAt = ocsp.Revoked, ocsp.CertificateHold, r.EffectiveAt
	case revoke.Revoked:
		o.Status, o.Reason, o.RevokedAt = ocsp.Revoked, int(r.Reason), r.EffectiveAt
	default:
		o.Status = ocsp.Unknown
	}
	return o
}

// GenerateCRL makes, records and starts serving a new CRL of every live
// revoked or suspended certificate.
func (p *Publisher) GenerateCRL(ctx context.Context) (revoke.CRL, error) {
	p.genMu.Lock()
	defer p.genMu.Unlock()
	return p.generate(ctx)
}

// current is the CRL to serve. Several trustd may share the database,
// each serving what it made, so before serving the database is asked
// what was done since: a status change recorded since the CRL was made
// (here or through another trustd) has a new one made first; a CRL made
// by another trustd with a higher number is served instead, so that
// numbers served never go back. Without the database's answer nothing is
// served: a CRL fetched after a change must include it.
func (p *Publisher) current(ctx context.Context) (*revoke.CRL, error) {
	stored, seq, err := p.cfg.Store.CRLState(ctx)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "the CRL's currency cannot be checked; try again")
	}
	stale := func() bool { return p.covered.Load() < p.changes.Load() || p.seq.Load() < seq }
	behind := func() bool { c := p.crl.Load(); return c == nil || c.Number < stored }
	if stale() || behind() {
		p.genMu.Lock()
		defer p.genMu.Unlock()
		// Checked again: made by someone else while this call waited for
		// the lock?
		switch {
		case stale():
			// Not under the request's context: a client hanging up
			// must not cut short a CRL being made for every client.
			if _, err := p.generate(context.WithoutCancel(ctx)); err != nil {
				p.cfg.Log.ErrorContext(ctx, "CRL generation failed; not serving one without the latest change", "err", err)
				return nil, errs.Wrap(errs.Unavailable, err, "the CRL is being remade after a status change; try again")
			}
		case behind():
			latest, err := p.cfg.Store.LatestCRL(ctx)
			if err != nil {
				return nil, errs.Wrap(errs.Unavailable, err, "reading the latest CRL")
			}
			if c := p.crl.Load(); c == nil || c.Number < latest.Number {
				p.crl.Store(&latest)
			}
		}
	}
	c := p.crl.Load()
	if c == nil {
		return nil, errs.New(errs.Unavailable, "no CRL has been published yet")
	}
	return c, nil
}

// Served is the CRL made or loaded last, which is served unless a
// status change since asks for a new one; false before the first. For
// readiness and metrics: it reads nothing.
func (p *Publisher) Served() (revoke.CRL, bool) {
	c := p.crl.Load()
	if c == nil {
		return revoke.CRL{}, false
	}
	return *c, true
}

// finishWithin bounds the signing, recording and auditing of a CRL once
// its number is reserved: a million entries sign in seconds.
const finishWithin = 2 * time.Minute

// generate is GenerateCRL with genMu held.
func (p *Publisher) generate(ctx context.Context) (revoke.CRL, error) {
	// Changes reported by now were recorded before they were reported, so
	// the statuses read below include them.
	seen := p.changes.Load()
	// Likewise every status event up to seq was recorded before the
	// statuses are read below.
	_, seq, err := p.cfg.Store.CRLState(ctx)
	if err != nil {
		return revoke.CRL{}, fmt.Errorf("publish: reading the status sequence: %w", err)
	}
	clock := p.cfg.Now()
	now := clock.UTC().Truncate(time.Second)
	var entries []crl.Entry
	err = p.cfg.Store.ForEachStatus(ctx, now, func(r revoke.Record) error {
		reason := int(r.Reason)
		if r.Status == revoke.OnHold {
			reason = int(revoke.CertificateHold)
		}
		at := r.EffectiveAt
		if at.After(now) {
			at = now
		}
		entries = append(entries, crl.Entry{Serial: r.Serial, RevokedAt: at, Reason: reason})
		return nil
	})
	if err != nil {
		return revoke.CRL{}, fmt.Errorf("publish: reading statuses: %w", err)
	}
	// The number is the time in nanoseconds (as Boulder numbers its CRLs),
	// or one more than every number used before if that is larger, and it
	// is reserved in the database before the key signs. So a number is
	// never signed twice over different contents: not after a CRL that
	// was signed but not recorded, not by two trustd on one database; and
	// numbers keep growing across restarts, and past a database restored
	// from a backup older than the last CRL relying parties saw.
	number, err := p.cfg.Store.ReserveCRLNumber(ctx, clock.UnixNano(), clock)
	if err != nil {
		return revoke.CRL{}, fmt.Errorf("publish: reserving a CRL number: %w", err)
	}
	// With a number reserved, the CRL is signed, recorded and its outcome
	// audited even if ctx ends meanwhile (a shutdown, a client hanging
	// up): a signature made and then dropped would leave an audit intent
	// without an outcome and a signed CRL nobody has. The time limit
	// bounds how long a shutdown waits on a hung HSM or database.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishWithin)
	defer cancel()
	object := fmt.Sprintf("crl:%d", number)
	fail := func(err error, code errs.Code) error {
		return audit.RecordFailure(ctx, p.cfg.Audit, audit.Event{Actor: "system", Action: "crl.generate", Object: object, Code: code}, err)
	}
	der, err := p.cfg.Issuer.SignCRL(crl.Request{Number: big.NewInt(number), ThisUpdate: now, NextUpdate: now.Add(p.cfg.CRLValidity), Entries: entries},
		func(tbs []byte) error {
			h := sha256.Sum256(tbs)
			return p.cfg.Audit.Record(ctx, audit.Event{Actor: "system", Action: "crl.generate", Object: object, Outcome: audit.Intent,
				Detail: map[string]string{"entries": fmt.Sprint(len(entries)), "tbs_sha256": hex.EncodeToString(h[:])}})
		})
	if err != nil {
		return revoke.CRL{}, fail(err, errs.CodeOf(err))
	}
	c := revoke.CRL{Number: number, ThisUpdate: now, NextUpdate: now.Add(p.cfg.CRLValidity), Entries: len(entries), DER: der}
	if err := p.cfg.Store.StoreCRL(ctx, c, p.cfg.Now()); err != nil {
		// Signed but not served; its number stays reserved, so the next
		// CRL has another.
		return revoke.CRL{}, fail(fmt.Errorf("publish: recording CRL %d: %w", number, err), errs.Unavailable)
	}
	p.crl.Store(&c)
	if p.covered.Load() < seen {
		p.covered.Store(seen) // genMu is held: no other writer
	}
	if p.seq.Load() < seq {
		p.seq.Store(seq)
	}
	if err := p.cfg.Audit.Record(ctx, audit.Event{Actor: "system", Action: "crl.generate", Object: object, Outcome: audit.OK,
		Detail: map[string]string{"entries": fmt.Sprint(len(entries)), "next_update": c.NextUpdate.Format(time.RFC3339)}}); err != nil {
		return c, err
	}
	return c, nil
}

// CRL is the CRL being served (nil before Start).
func (p *Publisher) CRL() *revoke.CRL { return p.crl.Load() }

// SetARL installs the root's authority revocation list (its CRL of the CAs
// it certified), made offline by the root key. It must verify under one of
// the roots and may not go back to a lower CRL number than the one served.
func (p *Publisher) SetARL(der []byte) (*x509.RevocationList, error) {
	list, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("publish: the ARL does not parse: %w", err)
	}
	signed := false
	for _, r := range p.cfg.Roots {
		if bytes.Equal(list.RawIssuer, r.RawSubject) && list.CheckSignatureFrom(r) == nil {
			signed = true
		}
	}
	if !signed || list.Number == nil {
		return nil, errors.New("publish: the ARL is not a numbered CRL signed by one of the roots")
	}
	if old := p.arl.Load(); old != nil && list.Number.Cmp(old.Number) < 0 {
		return nil, fmt.Errorf("publish: ARL %s is older than ARL %s, which is served", list.Number, old.Number)
	}
	p.arl.Store(list)
	p.bundleMu.Lock()
	p.bundle = nil
	p.bundleMu.Unlock()
	return list, nil
}

// ARL is the root's ARL being served (nil without one).
func (p *Publisher) ARL() *x509.RevocationList { return p.arl.Load() }

// ARLHandler serves the root's ARL as DER (application/pkix-crl).
func (p *Publisher) ARLHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := p.arl.Load()
		if a == nil {
			http.Error(w, "no ARL is configured", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Header().Set("Last-Modified", a.ThisUpdate.UTC().Format(http.TimeFormat))
		w.Header().Set("Expires", a.NextUpdate.UTC().Format(http.TimeFormat))
		// A revoked intermediate is news to spread within the hour, even
		// though the ARL itself is valid for a year.
		w.Header().Set("Cache-Control", "public, max-age=3600")
		_, _ = w.Write(a.Raw)
	})
}

// SetBundleSigner installs a rotated trust-bundle signing credential.
func (p *Publisher) SetBundleSigner(s Signer) {
	p.signer.Store(&s)
	p.bundleMu.Lock()
	p.bundle = nil
	p.bundleMu.Unlock()
}

// Bundle returns the signed trust bundle holding the current CRL and the
// root's ARL.
func (p *Publisher) Bundle(ctx context.Context) ([]byte, error) {
	c, err := p.current(ctx)
	if err != nil {
		return nil, err
	}
	p.bundleMu.Lock()
	defer p.bundleMu.Unlock()
	if p.bundle != nil && p.bundleFor == c.Number {
		return p.bundle, nil
	}
	payload := bundle.Payload{IssuedAt: p.cfg.Now().UTC(), Intermediates: [][]byte{p.cfg.Issuer.Intermediate().Raw}, CRLs: [][]byte{c.DER}, Logs: p.cfg.Logs}
	if a := p.arl.Load(); a != nil {
		payload.CRLs = append(payload.CRLs, a.Raw)
	}
	for _, r := range p.cfg.Roots {
		payload.Roots = append(payload.Roots, r.Raw)
	}
	s := p.signer.Load()
	b, err := bundle.Sign(payload, s.Key, s.Chain)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "signing the trust bundle")
	}
	p.bundle, p.bundleFor = b, c.Number
	return b, nil
}

// CRLHandler serves the current CRL as DER (application/pkix-crl), with
// cache headers up to its nextUpdate.
func (p *Publisher) CRLHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := p.current(r.Context())
		if err != nil {
			w.Header().Set("Retry-After", "5")
			http.Error(w, "no current CRL; try again", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Header().Set("Last-Modified", c.ThisUpdate.UTC().Format(http.TimeFormat))
		w.Header().Set("Expires", c.NextUpdate.UTC().Format(http.TimeFormat))
		if age := time.Until(c.NextUpdate); age > 0 {
			// Caches may keep it until the next scheduled CRL, not longer.
			w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(min(age, p.cfg.CRLRefresh).Seconds())))
		}
		_, _ = w.Write(c.DER)
	})
}
