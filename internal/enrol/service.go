package enrol

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/ca"
	"github.com/nuskha/nuskha/internal/pki/ceremony"
	"github.com/nuskha/nuskha/internal/pki/keycheck"
	"github.com/nuskha/nuskha/internal/pki/profile"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/store"
)

// Store is what enrolment needs from trustd's store.
type Store interface {
	GetSubject(ctx context.Context, id string) (*registry.Subject, error)
	CreateEnrolment(ctx context.Context, r *Request, events ...audit.Event) error
	GetEnrolment(ctx context.Context, id string) (*Request, error)
	RecordDecision(ctx context.Context, d Decision, events ...audit.Event) error
	StoreCertificate(ctx context.Context, c *Certificate, events ...audit.Event) error

	// LatestIssuance returns the enrolment's latest issuance attempt
	// (store.ErrNotFound: none yet).
	LatestIssuance(ctx context.Context, enrolmentID string) (*Issuance, error)
	// ReserveIssuance commits attempt a before anything is signed in it.
	// An attempt number already taken gives a DuplicateError; an enrolment
	// with a certificate signed (recorded or not) gives store.ErrConflict.
	ReserveIssuance(ctx context.Context, a *Issuance) error
	// ConfirmIssuance is the fence before the issuing key signs in attempt
	// a: store.ErrConflict unless a is still the enrolment's latest
	// attempt, has no outcome, the enrolment has no certificate, and a's
	// lease (claimed at, plus lease) has not run out at now.
	ConfirmIssuance(ctx context.Context, a *Issuance, now time.Time, lease time.Duration) error
	// EndIssuance records how an attempt ended without a recorded certificate.
	EndIssuance(ctx context.Context, o IssuanceOutcome) error
	// SignedUnrecorded returns a certificate signed but not recorded, built
	// from the DER its attempt kept (store.ErrNotFound: none).
	SignedUnrecorded(ctx context.Context, serial *big.Int) (*Certificate, error)

	ListEnrolments(ctx context.Context, f store.EnrolmentFilter) ([]*Request, error)
	// GoodCertificates is for checking that a requester is still an officer.
	GoodCertificates(ctx context.Context, subjectID, profile string, at time.Time) (int, error)
}

// Issuer signs certificates (package ca).
type Issuer interface {
	Issue(ctx context.Context, req ca.Request, before ca.BeforeSign) (*x509.Certificate, error)
	Intermediate() *x509.Certificate
}

// Notifier hears of every certificate issued, so that OCSP can answer for
// it at once.
type Notifier interface {
	Issued(ctx context.Context, c *Certificate) error
}

// NoNotify is the Notifier of tools that publish nothing (init, tests).
type NoNotify struct{}

// Issued does nothing.
func (NoNotify) Issued(context.Context, *Certificate) error { return nil }

// DefaultRequestLifetime is how long a request waits for its second
// officer unless configured otherwise.
const DefaultRequestLifetime = 7 * 24 * time.Hour

// Config wires a Service. Every field is required but RequestLifetime.
type Config struct {
	// RequestLifetime is how long a request may wait for its second
	// officer [DefaultRequestLifetime].
	RequestLifetime time.Duration
	Notify          Notifier
	Store           Store
	Issuer          Issuer
	Profiles        *profile.Set
	Arc             pki.Arc
	URLs            profile.URLs
	Audit           audit.Recorder
	Log             *slog.Logger
	Now             func() time.Time
}

// Service runs enrolment.
type Service struct {
	cfg Config
}

// New checks cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Issuer == nil || cfg.Profiles == nil || cfg.Audit == nil || cfg.Log == nil || cfg.Now == nil || cfg.Notify == nil {
		return nil, errors.New("enrol: incomplete configuration")
	}
	if cfg.RequestLifetime < 0 {
		return nil, errors.New("enrol: negative request lifetime")
	}
	if cfg.RequestLifetime == 0 {
		cfg.RequestLifetime = DefaultRequestLifetime
	}
	return &Service{cfg: cfg}, nil
}

// Actors that are not officers.
const (
	// Ceremony issues at `trustd init`, before any officer exists.
	Ceremony = "ceremony"
	// System is trustd itself, rotating its own credentials.
	System = "system"
)

// Backdate covers clock skew between trustd and relying parties.
const Backdate = time.Minute

func newID(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// done is the event recording an action that changes the store: the
// store appends it in the transaction of the change, so that the two
// commit together or not at all.
func (s *Service) done(actor, action, object string, detail map[string]string) audit.Event {
	return audit.Event{Time: s.cfg.Now().UTC(), Actor: actor, Action: action, Object: object, Outcome: audit.OK, Detail: detail}
}

// refuse records a refusal and returns err unchanged.
func (s *Service) refuse(ctx context.Context, actor, action, object string, err error, detail map[string]string) error {
	outcome := audit.Refused
	if errs.CodeOf(err) == errs.Internal || errs.CodeOf(err) == errs.Unavailable {
		outcome = audit.Failed
	}
	if aerr := s.cfg.Audit.Record(ctx, audit.Event{Actor: actor, Action: action, Object: object, Outcome: outcome, Code: errs.CodeOf(err), Detail: detail}); aerr != nil {
		return errors.Join(err, aerr)
	}
	return err
}

func (s *Service) subject(ctx context.Context, id string) (*registry.Subject, error) {
	sub, err := s.cfg.Store.GetSubject(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errs.FieldError(errs.NotFound, "subject_id", "no subject %q in the registry", id)
	}
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "reading the registry")
	}
	return sub, nil
}

// RequestInput is what the first officer enters.
type RequestInput struct {
	SubjectID string
	Profile   string
	CSR       []byte // PEM or DER
}

// Request records an enrolment request entered by officer. The CSR proves
// possession of the key; the key must be fit (keycheck), of a type the
// profile accepts, and never enrolled before.
func (s *Service) Request(ctx context.Context, officer string, in RequestInput) (*Request, error) {
	const action = "enrolment.request"
	object := "subject:" + in.SubjectID
	detail := map[string]string{"profile": in.Profile}
	r, err := s.request(ctx, officer, in, func(r *Request) audit.Event {
		return s.done(officer, action, object, map[string]string{"profile": in.Profile, "enrolment": r.ID, "key_type": r.KeyType, "spki_sha256": r.SPKIHash})
	})
	if err != nil {
		return nil, s.refuse(ctx, officer, action, object, err, detail)
	}
	return r, nil
}

// request makes and records the request, with the event ok makes of it.
func (s *Service) request(ctx context.Context, officer string, in RequestInput, ok func(*Request) audit.Event) (*Request, error) {
	p, err := s.cfg.Profiles.Get(in.Profile)
	if err != nil {
		return nil, err
	}
	sub, err := s.subject(ctx, in.SubjectID)
	if err != nil {
		return nil, err
	}
	if !p.AllowsKind(sub.Kind) {
		return nil, errs.FieldError(errs.ProfileMismatch, "profile", "profile %s is for %v, the subject is a %s", p.Name, p.SubjectKinds, sub.Kind)
	}
	if err := sub.CanBeCertified(s.cfg.Now()); err != nil {
		return nil, err
	}
	csr, err := keycheck.ParseCSR(in.CSR)
	if err != nil {
		return nil, err
	}
	kt, err := keycheck.Check(csr.PublicKey)
	if err != nil {
		return nil, err
	}
	if !p.AllowsKey(profile.KeyType(kt)) {
		return nil, errs.New(errs.WrongKeyType, "profile %s accepts %v, the key is %s", p.Name, p.KeyTypes, kt)
	}
	r := &Request{
		ID: newID("enr_"), SubjectID: sub.ID, Profile: p.Name, CSR: csr.Raw, KeyType: kt,
		SPKIHash: SPKIHash(csr.RawSubjectPublicKeyInfo), RequestedBy: officer, RequestedAt: s.cfg.Now().UTC(),
		SubjectVersion: sub.Version, Status: Pending,
	}
	if r.Review, r.ReviewDigest, err = NewReview(sub, p.Name, kt, r.SPKIHash).Encode(); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "describing the certificate")
	}
	r.ExpiresAt = r.RequestedAt.Add(s.cfg.RequestLifetime)
	e := ok(r)
	if err := s.cfg.Store.CreateEnrolment(ctx, r, e); err != nil {
		if f, dup := store.IsDuplicate(err); dup && f == "spki_sha256" {
			return nil, errs.New(errs.KeyReused, "this public key was already enrolled; generate a new key on the token")
		}
		return nil, errs.Wrap(errs.Unavailable, err, "recording the enrolment")
	}
	audit.Mirror(ctx, s.cfg.Log, e)
	return r, nil
}

func (s *Service) enrolment(ctx context.Context, id string) (*Request, error) {
	r, err := s.cfg.Store.GetEnrolment(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errs.New(errs.NotFound, "no enrolment %q", id)
	}
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "reading the enrolment")
	}
	s.stateAt(r, s.cfg.Now())
	return r, nil
}

// openSince is the earliest request time of a request still open at now:
// one entered exactly RequestLifetime ago may still be approved.
func (s *Service) openSince(now time.Time) time.Time { return now.Add(-s.cfg.RequestLifetime) }

// stateAt turns a pending request past its lifetime into an expired one
// and fills in ExpiresAt for both.
func (s *Service) stateAt(r *Request, now time.Time) {
	if r.Status != Pending {
		return
	}
	r.ExpiresAt = r.RequestedAt.Add(s.cfg.RequestLifetime)
	if r.RequestedAt.Before(s.openSince(now)) {
		r.Status = Expired
	}
}

// Enrolment reads a request and where it stands now.
func (s *Service) Enrolment(ctx context.Context, id string) (*Request, error) {
	return s.enrolment(ctx, id)
}

// Enrolments lists requests, newest first, each as it stands now: pending
// lists only those an officer may still approve.
func (s *Service) Enrolments(ctx context.Context, f store.EnrolmentFilter) ([]*Request, error) {
	if f.Status != "" && !slices.Contains(Statuses, Status(f.Status)) {
		return nil, errs.FieldError(errs.Invalid, "status", "must be one of %v", Statuses)
	}
	now := s.cfg.Now()
	f.OpenSince = s.openSince(now)
	list, err := s.cfg.Store.ListEnrolments(ctx, f)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "reading enrolments")
	}
	for _, r := range list {
		s.stateAt(r, now)
	}
	return list, nil
}

// Approve is the second officer's approval. The approver MUST NOT be the
// officer who entered the request, and approves exactly what the request
// was entered against: once the subject changes the request is stale and
// can never be approved. reviewed, if not empty, is the ReviewDigest the
// approver was shown; any other refuses. The request must still be within
// its lifetime, its requester still an active officer, and the registry
// must still allow issuance (a licence may have lapsed since). Then the
// decision is recorded and the certificate issued. If issuance fails after
// the approval was recorded, Approve may be called again (by any officer
// but the requester) to retry.
func (s *Service) Approve(ctx context.Context, officer, enrolmentID, reviewed string) (*Certificate, error) {
	const action = "enrolment.approve"
	object := "enrolment:" + enrolmentID
	r, err := s.enrolment(ctx, enrolmentID)
	if err != nil {
		return nil, s.refuse(ctx, officer, action, object, err, nil)
	}
	detail := map[string]string{"profile": r.Profile, "subject": r.SubjectID, "review_digest": r.ReviewDigest}
	if r.RequestedBy == officer {
		return nil, s.refuse(ctx, officer, action, object,
			errs.New(errs.DualControl, "the officer who entered an enrolment cannot approve it; a second officer must"), detail)
	}
	switch r.Status {
	case Issued:
		return nil, s.refuse(ctx, officer, action, object, errs.New(errs.NotPending, "enrolment already issued certificate %s", r.CertificateSerial), detail)
	case Rejected:
		return nil, s.refuse(ctx, officer, action, object, errs.New(errs.NotPending, "enrolment was rejected by %s", r.Decision.By), detail)
	}
	if r.Decision != nil {
		// A certificate signed on an earlier approval and not recorded
		// exists whatever has changed since: record it.
		if a, err := s.cfg.Store.LatestIssuance(ctx, r.ID); err == nil && a.Outcome != nil && a.Outcome.End == IssuanceSigned {
			return s.recordSigned(ctx, officer, a)
		}
	}
	if err := s.approvable(ctx, r, reviewed); err != nil {
		if a, lerr := s.cfg.Store.LatestIssuance(ctx, r.ID); lerr == nil && a.Outcome == nil {
			// An attempt that never ended may have signed, its certificate
			// lost with the database; the request can no longer be
			// approved to finish it, so say where to look.
			s.cfg.Log.ErrorContext(ctx, "an issuance attempt of this enrolment never ended and may have signed; if trustd's log holds its certificate (certificate signed but not recorded), record it with trustd record-certificate, then revoke it",
				"enrolment", r.ID, "serial", pki.SerialHex(a.Serial), "attempt", a.Attempt)
		}
		return nil, s.refuse(ctx, officer, action, object, err, detail)
	}
	p, err := s.cfg.Profiles.Get(r.Profile)
	if err != nil {
		return nil, s.refuse(ctx, officer, action, object, err, detail)
	}
	sub, err := s.subject(ctx, r.SubjectID)
	if err != nil {
		return nil, s.refuse(ctx, officer, action, object, err, detail)
	}
	if err := s.sameAsReviewed(r, sub); err != nil {
		return nil, s.refuse(ctx, officer, action, object, err, detail)
	}
	if err := s.eligible(sub, p); err != nil {
		return nil, s.refuse(ctx, officer, action, object, err, detail)
	}
	if r.Status == Pending {
		d := Decision{EnrolmentID: r.ID, Approved: true, By: officer, At: s.cfg.Now().UTC()}
		e := s.done(officer, action, object, detail)
		if err := s.cfg.Store.RecordDecision(ctx, d, e); err != nil {
			if _, dup := store.IsDuplicate(err); dup {
				err = errs.New(errs.NotPending, "another officer decided this enrolment at the same time")
			} else {
				err = errs.Wrap(errs.Unavailable, err, "recording the approval")
			}
			return nil, s.refuse(ctx, officer, action, object, err, detail)
		}
		audit.Mirror(ctx, s.cfg.Log, e)
	}
	csr, err := x509.ParseCertificateRequest(r.CSR)
	if err != nil {
		return nil, s.refuse(ctx, officer, action, object, errs.Wrap(errs.Internal, err, "stored CSR does not parse"), detail)
	}
	return s.issueEnrolment(ctx, officer, r, sub, p, csr)
}

// IssuanceLease is how long an issuance attempt is left to its officer.
// An attempt that neither recorded a certificate nor ended within it was
// abandoned (trustd stopped while the issuing key was signing, or the
// database went away just after): a later approval takes it over. Its
// signer is fenced: immediately before the issuing key signs, the attempt
// must still be the latest and within its lease (ConfirmIssuance), so an
// attempt taken over signs nothing more. A signer already past the fence
// when it stalled could still finish; so every attempt of an enrolment
// signs the same to-be-signed certificate — the first attempt's serial and
// validity, the certificate data the enrolment is bound to — and at worst
// one certificate carries two signatures, never two certificates one
// serial.
const IssuanceLease = 5 * time.Minute

// issueEnrolment issues an approved enrolment's certificate: exactly one
// signature, whatever the number of officers approving at once. The attempt
// is reserved in the store before the issuing key signs; of callers racing
// for it only one wins, and the others are refused with NotPending.
func (s *Service) issueEnrolment(ctx context.Context, officer string, r *Request, sub *registry.Subject, p *profile.Profile, csr *x509.CertificateRequest) (*Certificate, error) {
	const action = "certificate.issue"
	object := "enrolment:" + r.ID
	now := s.cfg.Now().UTC()
	latest, err := s.cfg.Store.LatestIssuance(ctx, r.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, s.refuse(ctx, officer, action, object, errs.Wrap(errs.Unavailable, err, "reading the enrolment's issuance"), nil)
	}
	next := &Issuance{EnrolmentID: r.ID, Attempt: 1, ClaimedBy: officer, ClaimedAt: now}
	switch {
	case latest == nil:
		if next.Serial, err = ceremony.Serial(); err != nil {
			return nil, err
		}
		next.NotBefore, next.NotAfter = s.validity(sub, p, now)
	case latest.Outcome != nil && latest.Outcome.End == IssuanceSigned:
		return s.recordSigned(ctx, officer, latest)
	case latest.Outcome == nil && now.Before(latest.ClaimedAt.Add(IssuanceLease)):
		return nil, s.refuse(ctx, officer, action, object, errs.New(errs.NotPending,
			"officer %s is issuing this enrolment's certificate (since %s); if that fails, approve again", latest.ClaimedBy,
			latest.ClaimedAt.Format(time.RFC3339)), nil)
	default:
		// Abandoned (it may have signed), or failed (having signed nothing,
		// but an earlier attempt it took over may yet): the same serial and
		// validity, so the same certificate.
		next.Attempt, next.Serial, next.NotBefore, next.NotAfter = latest.Attempt+1, latest.Serial, latest.NotBefore, latest.NotAfter
	}
	if err := s.cfg.Store.ReserveIssuance(ctx, next); err != nil {
		if _, dup := store.IsDuplicate(err); dup || errors.Is(err, store.ErrConflict) {
			err = errs.New(errs.NotPending, "another officer is issuing or has issued this enrolment's certificate")
		} else {
			err = errs.Wrap(errs.Unavailable, err, "reserving the issuance")
		}
		return nil, s.refuse(ctx, officer, action, object, err, nil)
	}
	// Reserved: the attempt's outcome is recorded whatever becomes of ctx.
	ctx, cancel := Finishing(ctx)
	defer cancel()
	c, signed, err := s.issue(ctx, officer, sub, p, csr, r.ID, next)
	if err == nil {
		return c, nil
	}
	end := IssuanceOutcome{EnrolmentID: r.ID, Attempt: next.Attempt, End: IssuanceFailed, Code: errs.CodeOf(err), At: s.cfg.Now().UTC()}
	if signed != nil {
		end.End, end.DER = IssuanceSigned, signed.Raw
	}
	if eerr := s.cfg.Store.EndIssuance(ctx, end); eerr != nil {
		// The attempt stays open until IssuanceLease passes; then an
		// approval takes it over.
		s.cfg.Log.ErrorContext(ctx, "issuance attempt outcome not recorded", "enrolment", r.ID, "attempt", next.Attempt, "err", eerr)
	}
	return nil, err
}

// FinishWithin bounds the work that goes on, once a signature is under
// way, after its caller's context has ended (Finishing).
const FinishWithin = 2 * time.Minute

// Finishing is ctx without its cancellation, for at most FinishWithin:
// for the work that must end in a recorded outcome once it has begun.
func Finishing(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), FinishWithin)
}

// validity is the validity of a certificate issued at now: the profile's,
// never beyond the subject's licence nor the issuer's certificate.
func (s *Service) validity(sub *registry.Subject, p *profile.Profile, now time.Time) (notBefore, notAfter time.Time) {
	notAfter = now.Add(p.Validity)
	if sub.LicenceValidUntil.Before(notAfter) {
		notAfter = sub.LicenceValidUntil
	}
	if ia := s.cfg.Issuer.Intermediate().NotAfter; ia.Before(notAfter) {
		notAfter = ia
	}
	return now.Add(-Backdate), notAfter
}

// recordSigned records a certificate that an earlier attempt signed but
// could not record. It exists already: recording it signs nothing, and
// makes it visible and revocable.
func (s *Service) recordSigned(ctx context.Context, actor string, a *Issuance) (*Certificate, error) {
	const action = "certificate.issue"
	object := "certificate:" + pki.SerialHex(a.Serial)
	rec, err := s.cfg.Store.SignedUnrecorded(ctx, a.Serial)
	var e audit.Event
	if err == nil {
		e = s.done(actor, action, object, map[string]string{"enrolment": a.EnrolmentID, "recorded_late": "true", "fingerprint_sha256": rec.Fingerprint,
			"not_after": rec.NotAfter.Format(time.RFC3339)})
		err = s.cfg.Store.StoreCertificate(ctx, rec, e)
	}
	if err != nil {
		if _, dup := store.IsDuplicate(err); dup || errors.Is(err, store.ErrNotFound) {
			err = errs.New(errs.NotPending, "another officer recorded this enrolment's certificate at the same time")
		} else {
			err = errs.Wrap(errs.Unavailable, err, "recording the certificate signed in attempt %d", a.Attempt)
		}
		return nil, s.refuse(ctx, actor, action, object, err, map[string]string{"enrolment": a.EnrolmentID})
	}
	audit.Mirror(ctx, s.cfg.Log, e)
	if err := s.cfg.Notify.Issued(ctx, rec); err != nil {
		s.cfg.Log.WarnContext(ctx, "issued certificate not yet published to OCSP", "object", object, "err", err)
	}
	return rec, nil
}

// approvable refuses a request that can no longer be approved: stale,
// expired, not what the approver reviewed, or entered by an officer who
// has left.
func (s *Service) approvable(ctx context.Context, r *Request, reviewed string) error {
	switch r.Status {
	case Stale:
		return errs.New(errs.EnrolmentStale, "the subject changed since the request was entered (version %d); enter a new request", r.SubjectVersion)
	case Expired:
		return errs.New(errs.EnrolmentExpired, "the request expired at %s, undecided for %s; enter a new request",
			r.ExpiresAt.Format(time.RFC3339), s.cfg.RequestLifetime)
	}
	if reviewed != "" && reviewed != r.ReviewDigest {
		return errs.FieldError(errs.ReviewMismatch, "reviewed", "the enrolment certifies review %s, not %s; show it again", r.ReviewDigest, reviewed)
	}
	if err := registry.ActiveOfficer(ctx, s.cfg.Store, r.RequestedBy, s.cfg.Now()); err != nil {
		var e *errs.Error
		if errors.As(err, &e) && e.Code == errs.NotAnOfficer {
			return errs.New(errs.RequesterNotActive, "%s, who entered the request, is no longer an active officer (%s); enter a new request", r.RequestedBy, e.Detail)
		}
		return err
	}
	return nil
}

// sameAsReviewed checks the subject is still what the request was entered
// against: the certificate is made from sub, so it must describe exactly
// the review.
func (s *Service) sameAsReviewed(r *Request, sub *registry.Subject) error {
	raw, _, err := NewReview(sub, r.Profile, r.KeyType, r.SPKIHash).Encode()
	if err != nil {
		return errs.Wrap(errs.Internal, err, "describing the certificate")
	}
	if sub.Version != r.SubjectVersion || string(raw) != string(r.Review) {
		return errs.New(errs.EnrolmentStale, "the subject changed since the request was entered (version %d, now %d); enter a new request",
			r.SubjectVersion, sub.Version)
	}
	return nil
}

// eligible is the policy re-checked immediately before signing.
func (s *Service) eligible(sub *registry.Subject, p *profile.Profile) error {
	if !p.AllowsKind(sub.Kind) {
		return errs.New(errs.ProfileMismatch, "profile %s is for %v, the subject is a %s", p.Name, p.SubjectKinds, sub.Kind)
	}
	return sub.CanBeCertified(s.cfg.Now())
}

// Reject records an officer's refusal of a pending enrolment. The requester
// may withdraw their own request.
func (s *Service) Reject(ctx context.Context, officer, enrolmentID, reason string) (*Request, error) {
	const action = "enrolment.reject"
	object := "enrolment:" + enrolmentID
	reason = strings.TrimSpace(reason)
	if reason == "" || len(reason) > 500 {
		return nil, s.refuse(ctx, officer, action, object, errs.FieldError(errs.Invalid, "reason", "a reason of 1 to 500 characters is required"), nil)
	}
	r, err := s.enrolment(ctx, enrolmentID)
	if err != nil {
		return nil, s.refuse(ctx, officer, action, object, err, nil)
	}
	if r.Status != Pending {
		return nil, s.refuse(ctx, officer, action, object, errs.New(errs.NotPending, "enrolment is %s", r.Status), nil)
	}
	d := Decision{EnrolmentID: r.ID, Approved: false, By: officer, At: s.cfg.Now().UTC(), Reason: reason}
	e := s.done(officer, action, object, nil)
	if err := s.cfg.Store.RecordDecision(ctx, d, e); err != nil {
		if _, dup := store.IsDuplicate(err); dup {
			err = errs.New(errs.NotPending, "another officer decided this enrolment at the same time")
		} else {
			err = errs.Wrap(errs.Unavailable, err, "recording the rejection")
		}
		return nil, s.refuse(ctx, officer, action, object, err, nil)
	}
	audit.Mirror(ctx, s.cfg.Log, e)
	r.Status, r.Decision = Rejected, &d
	return r, nil
}

// Bootstrap issues a certificate without an enrolment, for trustd's own
// needs: at `trustd init` the first officers and trustd's TLS certificate
// (before any officer exists to enter or approve a request), and later the
// rotation of its OCSP-responder and trust-bundle credentials. actor is
// Ceremony or System.
func (s *Service) Bootstrap(ctx context.Context, actor string, sub *registry.Subject, profileName string, csr *x509.CertificateRequest) (*Certificate, error) {
	if actor != Ceremony && actor != System {
		return nil, fmt.Errorf("enrol: bootstrap actor must be %q or %q", Ceremony, System)
	}
	p, err := s.cfg.Profiles.Get(profileName)
	if err != nil {
		return nil, err
	}
	if err := s.eligible(sub, p); err != nil {
		return nil, err
	}
	if _, err := keycheck.Check(csr.PublicKey); err != nil {
		return nil, err
	}
	serial, err := ceremony.Serial()
	if err != nil {
		return nil, err
	}
	a := &Issuance{Serial: serial}
	a.NotBefore, a.NotAfter = s.validity(sub, p, s.cfg.Now().UTC())
	c, _, err := s.issue(ctx, actor, sub, p, csr, "", a)
	return c, err
}

// issue signs and records a certificate with a's serial and validity, with
// an audit record immediately before the issuing key signs and another,
// in the certificate's own transaction, after. With an error, signed is
// the certificate if it was signed but could not be recorded: it exists,
// is logged, and must be recorded later (see recordSigned).
func (s *Service) issue(ctx context.Context, actor string, sub *registry.Subject, p *profile.Profile, csr *x509.CertificateRequest, enrolmentID string, a *Issuance) (rec *Certificate, signed *x509.Certificate, err error) {
	// Signing, recording and auditing go to the end even if ctx ends
	// meanwhile (an officer's client hanging up, trustd stopping during a
	// credential renewal): a certificate signed and then dropped leaves an
	// audit intent without an outcome.
	ctx, cancel := Finishing(ctx)
	defer cancel()
	const action = "certificate.issue"
	object := "certificate:" + pki.SerialHex(a.Serial)
	detail := map[string]string{"profile": p.Name, "subject": sub.ID}
	if enrolmentID != "" {
		detail["enrolment"] = enrolmentID
		detail["attempt"] = fmt.Sprint(a.Attempt)
	}
	data, err := CertificateData(sub, s.cfg.Arc, s.cfg.URLs)
	if err != nil {
		return nil, nil, s.refuse(ctx, actor, action, object, errs.Wrap(errs.Internal, err, "building certificate data"), detail)
	}
	req := ca.Request{
		CSR: csr, Template: p.Template, Data: data.TemplateData(), Serial: a.Serial,
		NotBefore: a.NotBefore, NotAfter: a.NotAfter,
	}
	cert, err := s.cfg.Issuer.Issue(ctx, req, func(tbs []byte) error {
		if enrolmentID != "" {
			if err := s.cfg.Store.ConfirmIssuance(ctx, a, s.cfg.Now().UTC(), IssuanceLease); err != nil {
				if errors.Is(err, store.ErrConflict) {
					return errs.New(errs.NotPending, "this approval can no longer sign: its issuance was taken over by another officer's (its lease ran out), or the subject changed since it was approved; nothing was signed")
				}
				return errs.Wrap(errs.Unavailable, err, "confirming the issuance before signing")
			}
		}
		h := sha256.Sum256(tbs)
		intent := map[string]string{"tbs_sha256": hex.EncodeToString(h[:])}
		for k, v := range detail {
			intent[k] = v
		}
		return s.cfg.Audit.Record(ctx, audit.Event{Actor: actor, Action: action, Object: object, Outcome: audit.Intent, Detail: intent})
	})
	if err != nil {
		if _, ok := err.(*errs.Error); !ok && !errors.As(err, new(*errs.Error)) {
			s.cfg.Log.ErrorContext(ctx, "issuance failed", "object", object, "err", err)
			err = errs.Wrap(errs.Unavailable, err, "the issuing key could not sign; try again")
		}
		return nil, nil, s.refuse(ctx, actor, action, object, err, detail)
	}
	rec = NewCertificateRecord(cert, sub.ID, p.Name, enrolmentID, actor, s.cfg.Now().UTC())
	done := map[string]string{"fingerprint_sha256": rec.Fingerprint, "not_after": rec.NotAfter.Format(time.RFC3339)}
	for k, v := range detail {
		done[k] = v
	}
	e := s.done(actor, action, object, done)
	if err := s.cfg.Store.StoreCertificate(ctx, rec, e); err != nil {
		// Signed but not recorded. The certificate is public, so the log
		// keeps it whole: should the store lose it too, it can be recorded
		// from here.
		s.cfg.Log.ErrorContext(ctx, "certificate signed but not recorded; approving the enrolment again records it", "object", object,
			"enrolment", enrolmentID, "certificate_der_base64", base64.StdEncoding.EncodeToString(cert.Raw), "err", err)
		return nil, cert, s.refuse(ctx, actor, action, object, errs.Wrap(errs.Unavailable, err, "the certificate was signed but could not be recorded; approve again to record it"), detail)
	}
	audit.Mirror(ctx, s.cfg.Log, e)
	// The certificate exists; if OCSP cannot sign for it now, the
	// responder's periodic sync will.
	if err := s.cfg.Notify.Issued(ctx, rec); err != nil {
		s.cfg.Log.WarnContext(ctx, "issued certificate not yet published to OCSP", "object", object, "err", err)
	}
	return rec, nil, nil
}

// CertificateData formats a registry subject for the profile templates.
func CertificateData(sub *registry.Subject, arc pki.Arc, urls profile.URLs) (profile.Data, error) {
	ext, err := sub.Identity().Marshal()
	if err != nil {
		return profile.Data{}, err
	}
	id := profile.IdentityData{
		Name:         sub.Name,
		Title:        sub.Title(),
		SerialNumber: sub.SerialNumberAttr(),
		Organization: sub.Organization,
		ProvinceName: registry.ProvinceName(sub.Province),
		URI:          sub.URI(),
		DNSNames:     []string{},
		IPAddresses:  []string{},
		Extension:    ext,
	}
	for _, n := range sub.DNSNames {
		if net.ParseIP(n) != nil {
			id.IPAddresses = append(id.IPAddresses, n)
		} else {
			id.DNSNames = append(id.DNSNames, n)
		}
	}
	return profile.Data{Identity: id, OID: arc.OIDs(), URL: urls}, nil
}

// String renders a request for logs without identifying data.
func (r *Request) String() string {
	return fmt.Sprintf("enrolment %s (%s, %s, %s)", r.ID, r.Profile, r.KeyType, r.Status)
}
