package revoke

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/holder"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/store"
)

// Store is what revocation needs from trustd's store.
type Store interface {
	OfficerStore
	CertificateBySerial(ctx context.Context, serial *big.Int) (*enrol.Certificate, error)
	// SignedUnrecorded and StoreCertificate record a certificate that
	// was signed but could not be recorded at issuance (enrol.Store).
	SignedUnrecorded(ctx context.Context, serial *big.Int) (*enrol.Certificate, error)
	StoreCertificate(ctx context.Context, c *enrol.Certificate, events ...audit.Event) error
	RecordStatus(ctx context.Context, ev *Event, from []Status, events ...audit.Event) (Status, error)
	CreateStatusChange(ctx context.Context, c *Change, events ...audit.Event) error
	GetStatusChange(ctx context.Context, id string) (*Change, error)
	ListStatusChanges(ctx context.Context, f store.StatusChangeFilter) ([]*Change, error)
	DecideStatusChange(ctx context.Context, id string, approved bool, by string, at time.Time, comment string, events ...audit.Event) error
	// ApproveStatusChange records the approval of a change and the status
	// event it makes (as RecordStatus: ErrConflict, and nothing recorded,
	// unless the status is one of from), with the audit events, in one
	// transaction; a change already decided gives a DuplicateError.
	ApproveStatusChange(ctx context.Context, id, by string, at time.Time, comment string, ev *Event, from []Status, events ...audit.Event) (Status, error)
}

// Publisher makes a recorded status change visible to relying parties. It
// MUST NOT return before OCSP answers reflect rec (or refuse to answer);
// the CRL may follow asynchronously.
type Publisher interface {
	StatusChanged(ctx context.Context, rec Record) error
}

// Refusals counts refused requests that proved nothing (audit.Tally):
// they are summarised, not recorded one by one.
type Refusals interface {
	Count(actor, action string, code errs.Code)
}

// Config wires a Service; every field is required.
type Config struct {
	Store     Store
	Audit     audit.Recorder
	Refusals  Refusals
	Publisher Publisher
	Log       *slog.Logger
	Now       func() time.Time
}

// Service changes certificate statuses.
type Service struct {
	cfg Config
	// quorum serialises approvals that can remove an officer, so that two
	// approved at once cannot each leave the other's officer counted and
	// together break the quorum (within this process: trustd runs one).
	quorum sync.Mutex
}

// New checks cfg.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Audit == nil || cfg.Refusals == nil || cfg.Publisher == nil || cfg.Log == nil || cfg.Now == nil {
		return nil, errors.New("revoke: incomplete configuration")
	}
	return &Service{cfg: cfg}, nil
}

// Holder requested a revocation: the requester of its status event, and
// the actor of the summaries of holder requests that proved nothing. A
// request signed with the certificate's key is audited under the
// certificate (HolderActor).
const Holder = "holder"

// HolderActor is the audit actor of a request signed with the key of the
// certificate c: the certificate, by its SHA-256 fingerprint.
func HolderActor(c *enrol.Certificate) string { return "cert:" + c.Fingerprint }

// ActionRevoke is the audit action of a revocation, by an officer or the
// holder.
const ActionRevoke = "certificate.revoke"

func object(serial *big.Int) string { return "certificate:" + pki.SerialHex(serial) }

// done is the event of an action that changes the store: the store
// appends it in the change's own transaction.
func (s *Service) done(actor, action string, serial *big.Int, detail map[string]string) audit.Event {
	return audit.Event{Time: s.cfg.Now().UTC(), Actor: actor, Action: action, Object: object(serial), Outcome: audit.OK, Detail: detail}
}

func (s *Service) record(ctx context.Context, actor, action string, serial *big.Int, err error, detail map[string]string) error {
	e := audit.Event{Actor: actor, Action: action, Object: object(serial), Outcome: audit.OK, Detail: detail}
	if err != nil {
		e.Code = errs.CodeOf(err)
		e.Outcome = audit.OutcomeOf(e.Code)
	}
	if aerr := s.cfg.Audit.Record(ctx, e); aerr != nil {
		return errors.Join(err, errs.Wrap(errs.Unavailable, aerr, "the audit log is unavailable"))
	}
	return err
}

// publish makes rec visible. A failure leaves the change recorded (an
// acknowledged write is never lost) and the responder refusing to answer
// for the certificate until it can sign again; it is logged and audited.
// If that audit write fails as well, the caller is told, as when the
// change's own audit write fails, and the log keeps what the audit log
// lacks.
func (s *Service) publish(ctx context.Context, actor string, rec Record) error {
	err := s.cfg.Publisher.StatusChanged(ctx, rec)
	if err == nil {
		return nil
	}
	serial := pki.SerialHex(rec.Serial)
	s.cfg.Log.ErrorContext(ctx, "status change recorded but not yet published", "serial", serial, "err", err)
	if aerr := s.cfg.Audit.Record(ctx, audit.Event{Actor: actor, Action: "certificate.status.publish", Object: object(rec.Serial),
		Outcome: audit.Failed, Code: errs.Unavailable}); aerr != nil {
		s.cfg.Log.ErrorContext(ctx, "the audit log did not record that a status change was not published", "actor", actor, "serial", serial,
			"status", rec.Status, "reason", rec.Reason, "effective_at", rec.EffectiveAt, "err", aerr)
		return errs.Wrap(errs.Unavailable, aerr, "the audit log is unavailable")
	}
	return nil
}

func (s *Service) certificate(ctx context.Context, serial *big.Int) (*enrol.Certificate, error) {
	c, err := s.cfg.Store.CertificateBySerial(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		c, err = s.recordSigned(ctx, serial)
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, errs.New(errs.NotFound, "no certificate with serial %s was issued here", pki.SerialHex(serial))
	}
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "reading the certificate")
	}
	return c, nil
}

// recordSigned records a certificate the issuing key signed but that could
// not be recorded at issuance (the database failed just after the
// signature): it exists, so it must be revocable by its serial.
func (s *Service) recordSigned(ctx context.Context, serial *big.Int) (*enrol.Certificate, error) {
	c, err := s.cfg.Store.SignedUnrecorded(ctx, serial)
	if err != nil {
		return nil, err
	}
	e := s.done(enrol.System, "certificate.issue", serial, map[string]string{"enrolment": c.EnrolmentID, "recorded_late": "true", "fingerprint_sha256": c.Fingerprint})
	if err := s.cfg.Store.StoreCertificate(ctx, c, e); err != nil {
		if _, dup := store.IsDuplicate(err); !dup {
			return nil, err
		}
		// Recorded meanwhile by an approval.
		return s.cfg.Store.CertificateBySerial(ctx, serial)
	}
	audit.Mirror(ctx, s.cfg.Log, e)
	s.cfg.Log.WarnContext(ctx, "recorded a certificate signed at issuance but not recorded then", "serial", pki.SerialHex(serial), "enrolment", c.EnrolmentID)
	return c, nil
}

// transition records ev, with its audit event done, if the certificate's
// status allows it, mapping the store's answer to domain errors.
func (s *Service) transition(ctx context.Context, ev *Event, from []Status, done audit.Event) (Record, error) {
	if _, err := s.certificate(ctx, ev.Serial); err != nil {
		return Record{}, err
	}
	cur, err := s.cfg.Store.RecordStatus(ctx, ev, from, done)
	if err := s.transitionError(ev, cur, err); err != nil {
		return Record{}, err
	}
	audit.Mirror(ctx, s.cfg.Log, done)
	rec, err := s.cfg.Store.CertificateStatus(ctx, ev.Serial)
	if err != nil {
		return Record{}, errs.Wrap(errs.Unavailable, err, "reading the new status")
	}
	return rec, nil
}

// transitionError is the domain error of the store's answer to a status
// event (nil for none).
func (s *Service) transitionError(ev *Event, cur Status, err error) error {
	switch {
	case errors.Is(err, store.ErrConflict):
		switch cur {
		case Revoked:
			return errs.New(errs.AlreadyRevoked, "certificate %s is already revoked; revocation is final", pki.SerialHex(ev.Serial))
		case OnHold:
			return errs.New(errs.AlreadyOnHold, "certificate %s is already on hold", pki.SerialHex(ev.Serial))
		default:
			return errs.New(errs.NotOnHold, "certificate %s is not on hold", pki.SerialHex(ev.Serial))
		}
	case err != nil:
		if f, dup := store.IsDuplicate(err); dup && f == "serial" {
			return errs.New(errs.AlreadyRevoked, "certificate %s is already revoked", pki.SerialHex(ev.Serial))
		}
		return errs.Wrap(errs.Unavailable, err, "recording the status change")
	}
	return nil
}

// Revoke revokes a certificate for good, on an officer's word. It takes
// effect at once: OCSP answers "revoked" before Revoke returns. An
// officer's certificate cannot be revoked by one officer: that goes through
// RequestRevocation and a second officer's approval.
func (s *Service) Revoke(ctx context.Context, officer string, serial *big.Int, reason Reason) (Record, error) {
	const action = ActionRevoke
	detail := map[string]string{"reason": reason.String()}
	if !slices.Contains(officerReasons, reason) {
		return Record{}, s.record(ctx, officer, action, serial, errs.FieldError(errs.ReasonNotAllowed, "reason",
			"%s is not a reason for revocation here (use %v; holds go through the hold request)", reason, officerReasons), detail)
	}
	cert, err := s.certificate(ctx, serial)
	if err == nil && cert.Profile == OfficerProfile {
		err = errs.New(errs.DualControl, "certificate %s is a security officer's: revoking it needs two officers; request the revocation (rxctl cert revoke -request) for another officer to approve",
			pki.SerialHex(serial))
	}
	if err != nil {
		return Record{}, s.record(ctx, officer, action, serial, err, detail)
	}
	now := s.cfg.Now().UTC()
	rec, err := s.transition(ctx, &Event{Serial: serial, Status: Revoked, Reason: reason, EffectiveAt: now, RecordedAt: now, RequestedBy: officer},
		[]Status{Good, OnHold}, s.done(officer, action, serial, detail))
	if err != nil {
		return Record{}, s.record(ctx, officer, action, serial, err, detail)
	}
	if err := s.publish(ctx, officer, rec); err != nil {
		return Record{}, err
	}
	return rec, nil
}

// holderWindow is how far a holder request's iat may be from now.
const holderWindow = 10 * time.Minute

// RevokeByHolder revokes on a request signed with the certificate's own key
// (proof of possession): what a practitioner does when a card is stolen
// while still in reach of its PIN, or a vendor system when it is retired.
func (s *Service) RevokeByHolder(ctx context.Context, token string) (Record, error) {
	const action = ActionRevoke
	req, cert, err := s.verifyHolder(ctx, token)
	if err != nil && cert == nil {
		// Nothing was proved: the serial in a request whose signature did
		// not verify is anyone's claim, and anyone can send such requests
		// as fast as their network allows. They are counted, and
		// summarised in the audit log once a minute, not recorded one by
		// one.
		s.cfg.Refusals.Count(Holder, action, errs.CodeOf(err))
		return Record{}, err
	}
	if err != nil {
		// Signed by the certificate's own key (stale, wrong type, a
		// reason a holder may not give): recorded under the certificate,
		// like every request its key made.
		return Record{}, s.record(ctx, HolderActor(cert), action, cert.Serial, err, nil)
	}
	actor := HolderActor(cert)
	reason, _ := ParseReason(req.Reason)
	detail := map[string]string{"reason": reason.String(), "requested_by": "holder"}
	if cert.Profile == OfficerProfile {
		s.noteQuorum(ctx, cert, detail)
	}
	now := s.cfg.Now().UTC()
	rec, err := s.transition(ctx, &Event{Serial: cert.Serial, Status: Revoked, Reason: reason, EffectiveAt: now, RecordedAt: now, RequestedBy: Holder},
		[]Status{Good, OnHold}, s.done(actor, action, cert.Serial, detail))
	if err != nil {
		return Record{}, s.record(ctx, actor, action, cert.Serial, err, detail)
	}
	if cert.Profile == OfficerProfile && detail["active_officers"] != "" {
		if n, _ := strconv.Atoi(detail["active_officers"]); n < Quorum {
			s.cfg.Log.ErrorContext(ctx, "an officer revoked their own certificate and fewer than two officers can act: nothing can be approved until officers are added with trustd add-officer and the root key",
				"active_officers", n)
		}
	}
	if err := s.publish(ctx, actor, rec); err != nil {
		return Record{}, err
	}
	return rec, nil
}

// noteQuorum records, when the holder of an officer's key revokes it, how
// many officers can act without it (counted before the revocation, which
// carries the count in its own audit record). A compromised key must be
// revocable by its holder alone and at once, even if that breaks the
// quorum; then nothing can be approved until officers are added with the
// offline root (trustd add-officer), and the log and the audit record say
// so.
func (s *Service) noteQuorum(ctx context.Context, cert *enrol.Certificate, detail map[string]string) {
	active, err := ActiveOfficers(ctx, s.cfg.Store, s.cfg.Now(), func(_ *registry.Subject, c *enrol.Certificate) bool {
		return c.Serial.Cmp(cert.Serial) == 0
	})
	if err != nil {
		s.cfg.Log.ErrorContext(ctx, "an officer's certificate is being revoked and the active officers could not be counted", "err", err)
		return
	}
	detail["active_officers"] = fmt.Sprint(len(active))
}

func (s *Service) verifyHolder(ctx context.Context, token string) (*holder.Request, *enrol.Certificate, error) {
	signed, err := holder.Parse(token)
	if err != nil {
		return nil, nil, err
	}
	req := &signed.Request
	serial, ok := pki.ParseSerialHex(req.Serial)
	if !ok {
		return req, nil, errs.New(errs.BadRevocationRequest, "serial must be hex")
	}
	cert, err := s.certificate(ctx, serial)
	if err != nil {
		return req, nil, err
	}
	parsed, err := x509.ParseCertificate(cert.DER)
	if err != nil {
		return req, nil, errs.Wrap(errs.Internal, err, "stored certificate does not parse")
	}
	if err := signed.Verify(parsed.PublicKey); err != nil {
		return req, nil, err
	}
	// Only now, with the signature checked, is the content trusted (and
	// refusals from here on are filed under the certificate).
	if err := req.CheckVersion(); err != nil {
		return req, cert, err
	}
	if d := s.cfg.Now().Sub(req.IssuedAt); d > holderWindow || d < -holderWindow {
		return req, cert, errs.New(errs.BadRevocationRequest, "iat is more than %s from now; sign a fresh request", holderWindow)
	}
	reason, ok := ParseReason(req.Reason)
	if !ok || !slices.Contains(holderReasons, reason) {
		return req, cert, errs.FieldError(errs.ReasonNotAllowed, "reason", "a holder may give %v", holderReasons)
	}
	return req, cert, nil
}

func newChangeID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "chg_" + hex.EncodeToString(b)
}

// RequestChange enters a hold or release, to be approved by a second officer.
func (s *Service) RequestChange(ctx context.Context, officer string, serial *big.Int, action Action, comment string) (*Change, error) {
	if action == Revocation {
		return nil, s.record(ctx, officer, "certificate.revoke.request", serial, errs.FieldError(errs.Invalid, "reason", "a revocation request needs a reason"), nil)
	}
	return s.request(ctx, officer, serial, action, "", comment)
}

// RequestRevocation enters the revocation of a certificate, to be approved
// by a second officer: the only way an officer's certificate is revoked by
// officers.
func (s *Service) RequestRevocation(ctx context.Context, officer string, serial *big.Int, reason Reason, comment string) (*Change, error) {
	if !slices.Contains(officerReasons, reason) {
		return nil, s.record(ctx, officer, "certificate.revoke.request", serial, errs.FieldError(errs.ReasonNotAllowed, "reason",
			"%s is not a reason for revocation here (use %v)", reason, officerReasons), map[string]string{"reason": reason.String()})
	}
	return s.request(ctx, officer, serial, Revocation, reason.String(), comment)
}

func (s *Service) request(ctx context.Context, officer string, serial *big.Int, action Action, reason, comment string) (*Change, error) {
	act := "certificate." + string(action) + ".request"
	comment = strings.TrimSpace(comment)
	detail := map[string]string{}
	if reason != "" {
		detail["reason"] = reason
	}
	var err error
	switch {
	case action != Hold && action != Release && action != Revocation:
		err = errs.FieldError(errs.Invalid, "action", "must be hold, release or revoke")
	case comment == "" || len(comment) > 500:
		err = errs.FieldError(errs.Invalid, "comment", "a comment of 1 to 500 characters is required")
	}
	var cert *enrol.Certificate
	var rec Record
	if err == nil {
		cert, rec, err = s.checkChange(ctx, serial, action)
	}
	if err == nil {
		err = s.nonePending(ctx, serial, rec)
	}
	if err == nil {
		err = s.keepsQuorum(ctx, cert, action)
	}
	if err != nil {
		return nil, s.record(ctx, officer, act, serial, err, detail)
	}
	now := s.cfg.Now().UTC()
	c := &Change{ID: newChangeID(), Serial: pki.SerialHex(serial), Action: action, Reason: reason, Comment: comment, RequestedBy: officer,
		RequestedAt: now, BaseSeq: rec.Seq}
	done := map[string]string{"change": c.ID}
	for k, v := range detail {
		done[k] = v
	}
	e := s.done(officer, act, serial, done)
	if err := s.cfg.Store.CreateStatusChange(ctx, c, e); err != nil {
		return nil, s.record(ctx, officer, act, serial, errs.Wrap(errs.Unavailable, err, "recording the request"), detail)
	}
	audit.Mirror(ctx, s.cfg.Log, e)
	c.stateAt(now)
	return c, nil
}

// keepsQuorum refuses to hold or revoke an officer's certificate when
// fewer than Quorum officers could act without it: dual control would then
// stop every approval, this one's undoing included.
func (s *Service) keepsQuorum(ctx context.Context, cert *enrol.Certificate, action Action) error {
	if cert.Profile != OfficerProfile || (action != Hold && action != Revocation) {
		return nil
	}
	active, err := ActiveOfficers(ctx, s.cfg.Store, s.cfg.Now(), func(_ *registry.Subject, c *enrol.Certificate) bool {
		return c.Serial.Cmp(cert.Serial) == 0
	})
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "counting the officers who can act")
	}
	if len(active) < Quorum {
		return errs.New(errs.OfficerQuorum, "a %s of officer certificate %s would leave %d officer(s) able to act; dual control needs %d: enrol another officer first",
			action, cert.SerialHex(), len(active), Quorum)
	}
	return nil
}

// WithOfficerQuorum takes the officer subjectID out of service by running
// apply (suspending or ending their registration), unless fewer than
// Quorum other officers could then act. The count and apply run under the
// lock that approvals removing an officer hold, so that two removals at
// once cannot together break the quorum.
func (s *Service) WithOfficerQuorum(ctx context.Context, subjectID string, apply func() error) error {
	s.quorum.Lock()
	defer s.quorum.Unlock()
	active, err := ActiveOfficers(ctx, s.cfg.Store, s.cfg.Now(), func(sub *registry.Subject, _ *enrol.Certificate) bool { return sub.ID == subjectID })
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "counting the officers who can act")
	}
	if len(active) < Quorum {
		return errs.New(errs.OfficerQuorum, "without officer %s, %d officer(s) could act; dual control needs %d: enrol another officer first", subjectID, len(active), Quorum)
	}
	return apply()
}

// nonePending refuses a second request while one for the certificate can
// still be approved: undecided, unexpired and made against its current
// status. Two officers who both hear of a lost card would otherwise enter
// two holds, and a third officer see two to approve. (Two requests made at
// the same instant can both pass; then approving one overtakes the other,
// which the base-sequence check refuses.)
func (s *Service) nonePending(ctx context.Context, serial *big.Int, rec Record) error {
	open, err := s.cfg.Store.ListStatusChanges(ctx, store.StatusChangeFilter{Serial: pki.SerialHex(serial), Undecided: true,
		RequestedSince: openSince(s.cfg.Now())})
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "reading the certificate's pending requests")
	}
	for _, c := range open {
		if c.BaseSeq == rec.Seq {
			return errs.New(errs.ChangeAlreadyPending, "a %s of certificate %s (%s, by %s at %s) already awaits a second officer: approve or reject it",
				c.Action, c.Serial, c.ID, c.RequestedBy, c.RequestedAt.Format(time.RFC3339))
		}
	}
	return nil
}

// Change reads a hold or release request and where it stands now.
func (s *Service) Change(ctx context.Context, id string) (*Change, error) {
	c, err := s.cfg.Store.GetStatusChange(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errs.New(errs.NotFound, "no status change %s", id)
	}
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "reading the status change")
	}
	c.stateAt(s.cfg.Now())
	return c, nil
}

// Changes lists hold, release and revocation requests, newest first: all of them, or
// only those still pending (undecided and unexpired), each with where it
// stands now.
func (s *Service) Changes(ctx context.Context, pendingOnly bool, limit int) ([]*Change, error) {
	now := s.cfg.Now()
	f := store.StatusChangeFilter{Limit: limit}
	if pendingOnly {
		f.Undecided, f.RequestedSince = true, openSince(now)
	}
	list, err := s.cfg.Store.ListStatusChanges(ctx, f)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "reading status changes")
	}
	for _, c := range list {
		c.stateAt(now)
	}
	return list, nil
}

// checkChange says whether action applies to the certificate's status now.
func (s *Service) checkChange(ctx context.Context, serial *big.Int, action Action) (*enrol.Certificate, Record, error) {
	cert, err := s.certificate(ctx, serial)
	if err != nil {
		return nil, Record{}, err
	}
	rec, err := s.cfg.Store.CertificateStatus(ctx, serial)
	if err != nil {
		return nil, Record{}, errs.Wrap(errs.Unavailable, err, "reading the status")
	}
	switch {
	case rec.Status == Revoked:
		return cert, rec, errs.New(errs.AlreadyRevoked, "certificate %s is revoked; revocation is final", pki.SerialHex(serial))
	case action == Hold && rec.Status == OnHold:
		return cert, rec, errs.New(errs.AlreadyOnHold, "certificate %s is already on hold", pki.SerialHex(serial))
	case action == Release && rec.Status != OnHold:
		return cert, rec, errs.New(errs.NotOnHold, "certificate %s is not on hold", pki.SerialHex(serial))
	}
	return cert, rec, nil
}

// DecideChange approves or rejects a pending hold, release or revocation.
// The approver MUST NOT be the officer who requested it. An approval
// applies the change at once; holding or revoking an officer's certificate
// is refused if it would break the officer quorum.
func (s *Service) DecideChange(ctx context.Context, officer, id string, approve bool, comment string) (*Change, error) {
	c, err := s.cfg.Store.GetStatusChange(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errs.New(errs.NotFound, "no status change %s", id)
	}
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "reading the status change")
	}
	serial, ok := pki.ParseSerialHex(c.Serial)
	if !ok {
		return nil, errs.New(errs.Internal, "status change %s names the serial %q, which is not one: the database is damaged", id, c.Serial)
	}
	act := "certificate." + string(c.Action) + ".approve"
	if !approve {
		act = "certificate." + string(c.Action) + ".reject"
	}
	detail := map[string]string{"change": id}
	if c.Reason != "" {
		detail["reason"] = c.Reason
	}
	switch {
	case c.Decided:
		err = errs.New(errs.ChangeNotPending, "status change %s was already decided by %s", id, c.DecidedBy)
	case approve && c.RequestedBy == officer:
		err = errs.New(errs.DualControl, "the officer who requested a %s cannot approve it; a second officer must", c.Action)
	}
	if approve {
		// Held until the change is recorded: see quorum.
		s.quorum.Lock()
		defer s.quorum.Unlock()
	}
	if err == nil && approve {
		var cert *enrol.Certificate
		var rec Record
		cert, rec, err = s.checkChange(ctx, serial, c.Action)
		switch {
		case err != nil:
		case rec.Seq != c.BaseSeq:
			// Approving an old request against a newer status would let
			// one officer undo a change two officers just made.
			err = errs.New(errs.ChangeNotPending, "the certificate's status changed after %s was requested; request it again", id)
		case c.RequestedAt.Before(openSince(s.cfg.Now())):
			err = errs.New(errs.ChangeNotPending, "status change %s expired after %s; request it again", id, ChangeLifetime)
		default:
			err = s.keepsQuorum(ctx, cert, c.Action)
		}
	}
	if err != nil {
		return nil, s.record(ctx, officer, act, serial, err, detail)
	}
	now := s.cfg.Now().UTC()
	comment = strings.TrimSpace(comment)
	decided := func() *Change {
		c.Decided, c.Approved, c.DecidedBy, c.DecidedAt, c.DecisionOn = true, approve, officer, now, comment
		c.stateAt(now)
		return c
	}
	dupDecision := func(err error) error {
		if f, dup := store.IsDuplicate(err); dup && f == "change_id" {
			return errs.New(errs.ChangeNotPending, "another officer decided status change %s at the same time", id)
		}
		return nil
	}
	e := s.done(officer, act, serial, detail)
	if !approve {
		if err := s.cfg.Store.DecideStatusChange(ctx, id, false, officer, now, comment, e); err != nil {
			if derr := dupDecision(err); derr != nil {
				err = derr
			} else {
				err = errs.Wrap(errs.Unavailable, err, "recording the decision")
			}
			return nil, s.record(ctx, officer, act, serial, err, detail)
		}
		audit.Mirror(ctx, s.cfg.Log, e)
		return decided(), nil
	}
	ev := &Event{Serial: serial, Status: OnHold, Reason: CertificateHold, EffectiveAt: now, RecordedAt: now, RequestedBy: c.RequestedBy, ApprovedBy: officer, ChangeID: id}
	from := []Status{Good}
	switch c.Action {
	case Release:
		ev.Status, ev.Reason, from = Good, RemoveFromCRL, []Status{OnHold}
	case Revocation:
		reason, _ := ParseReason(c.Reason)
		ev.Status, ev.Reason, from = Revoked, reason, []Status{Good, OnHold}
	}
	// The decision, the status event and their audit record: one
	// transaction.
	cur, err := s.cfg.Store.ApproveStatusChange(ctx, id, officer, now, comment, ev, from, e)
	if derr := dupDecision(err); derr != nil {
		err = derr
	} else {
		err = s.transitionError(ev, cur, err)
	}
	if err != nil {
		return nil, s.record(ctx, officer, act, serial, err, detail)
	}
	audit.Mirror(ctx, s.cfg.Log, e)
	rec, err := s.cfg.Store.CertificateStatus(ctx, serial)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "reading the new status")
	}
	if err := s.publish(ctx, officer, rec); err != nil {
		return nil, err
	}
	return decided(), nil
}

// Status returns a certificate's current status.
func (s *Service) Status(ctx context.Context, serial *big.Int) (Record, error) {
	if _, err := s.certificate(ctx, serial); err != nil {
		return Record{}, err
	}
	rec, err := s.cfg.Store.CertificateStatus(ctx, serial)
	if err != nil {
		return Record{}, errs.Wrap(errs.Unavailable, err, "reading the status")
	}
	return rec, nil
}

// String renders a record for people.
func (r Record) String() string {
	if r.Status == Good {
		return fmt.Sprintf("%s: good", pki.SerialHex(r.Serial))
	}
	return fmt.Sprintf("%s: %s (%s) since %s", pki.SerialHex(r.Serial), r.Status, r.Reason, r.EffectiveAt.Format(time.RFC3339))
}
