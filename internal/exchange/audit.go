package exchange

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"regexp"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/tlog"
)

// Every action of the exchange — prescribe, view, claim, release,
// dispense, close, cancel, paper, history, access-log, session-open,
// session-close, and the settlement of a dispense — leaves one entry in rxd's audit log (internal/tlog):
// who acted (the card's certificate, or the calling software's when no
// card acts or the document's signer is not yet verified), the action,
// the prescription (rx:<id>), the outcome and, when the exchange has read
// the patient, the patient's pseudonym — never a national id or what was
// prescribed. A write's entry is given to the Store, which appends it in
// the write's own transaction: the two commit together or not at all. A
// refusal, a read and a replay answered from what is stored append their
// entry in a transaction of their own before they are answered; if it
// cannot be written the request fails (unavailable): nothing is answered
// that the log does not hold. docs/audit-log.md lists the entries.

// The audit log's dependencies.
type (
	// Pseudonyms names patients in the audit log (tlog.Pseudonyms).
	Pseudonyms interface {
		Of(nationalID string) (tlog.Pseudonym, error)
	}
	// AuditLog appends entries in a transaction of their own, and reads a
	// patient's (tlogstore.Store).
	AuditLog interface {
		Append(ctx context.Context, entries ...*tlog.Entry) error
		PatientEntries(ctx context.Context, p tlog.Pseudonym, before uint64, limit int) ([]tlog.Indexed, error)
	}
)

// Actions the exchange records.
const (
	ActPrescribe    = "prescribe"
	ActView         = "view"
	ActClaim        = "claim"
	ActRelease      = "release"
	ActDispense     = "dispense"
	ActClose        = "close"
	ActCancel       = "cancel"
	ActPaper        = "paper"
	ActHistory      = "history"
	ActAccessLog    = "access-log"
	ActSessionOpen  = "session-open"
	ActSessionClose = "session-close"
	// ActSettle is the exchange settling a stored dispense: its
	// adjudication committed (supplementary caps consumed) and its amounts
	// kept, by the dispense or close that completes it.
	ActSettle = "settle"
)

// action is one action being recorded: its entry, filled in as the
// exchange learns who acted on what, and whether the Store has already
// committed it with the action's write.
type action struct {
	e       tlog.Entry
	written bool
}

// begin starts the record of an action of the calling software; a card
// that acts replaces it as the actor (byCard, bySession).
func (s *Service) begin(name string, caller Caller) *action {
	a := &action{e: tlog.Entry{Time: s.cfg.Now().UTC(), Action: name}}
	a.e.Actor = tlog.Actor{Kind: tlog.ActorCert, ID: caller.CertSHA256, Role: string(caller.Role), Org: tlog.Holdable(caller.SubjectID)}
	return a
}

// bySession makes the session's card holder the actor.
func (a *action) bySession(actor *Actor) {
	org := actor.Organisation
	if org == "" {
		org = actor.CouncilNumber
	}
	a.e.Actor = tlog.Actor{Kind: tlog.ActorCert, ID: actor.CertSHA256, Role: actor.Role, Org: tlog.Holdable(org)}
}

// byCard makes the verified signer of a document the actor: its
// certificate, role and registration (council or licence) number.
func (a *action) byCard(leaf *x509.Certificate, role pki.Role, registration string) {
	a.e.Actor = tlog.Actor{Kind: tlog.ActorCert, ID: fingerprint(leaf.Raw), Role: string(role), Org: tlog.Holdable(registration)}
}

// on names the object acted on (kind:id). Every id the exchange names an
// object by is a UUID — documents' (their schema's pattern), claims' and
// sessions' (rx.NewID) — so anything else came from a caller's URL and is
// left out: it is written into a log that keeps it for ever, and a text
// such as "nid-0499370899" would carry a national id past the log's own
// guard, which refuses only values that are one.
func (a *action) on(kind, id string) {
	if objectID.MatchString(id) {
		a.e.Object = kind + ":" + id
	}
}

// objectID is a UUID as the exchange writes them: lowercase hex.
var objectID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// about names the patient of the prescription acted on, by pseudonym. An
// id that is not one gives none; a key that cannot be used is an error
// (the action stops: it cannot be recorded as it must).
func (s *Service) about(a *action, nationalID string) error {
	p, err := s.cfg.Pseudonyms.Of(nationalID)
	if err != nil {
		if errs.CodeOf(err) == errs.InvalidNID {
			return nil
		}
		return errs.Wrap(errs.Unavailable, err, "the audit log's pseudonym key cannot be used now; try again")
	}
	a.e.Patient = p
	return nil
}

// entry is the action's entry for the Store to append with its write.
func (a *action) entry() *tlog.Entry {
	e := a.e
	e.Outcome = audit.OK
	return &e
}

// stored notes what the Store answered to the write given a.entry(): its
// entry committed with it when the write did (an error but ErrReplay
// rolls both back).
func (a *action) stored(err error) {
	a.written = err == nil || errors.Is(err, ErrReplay)
}

// end records the action's outcome, err, unless the Store committed its
// entry with it: refused (with err's code) or failed, or ok for a read or
// a replay answered from what is stored. It returns err, or an
// unavailable error if the entry cannot be written: fail closed.
func (s *Service) end(ctx context.Context, a *action, err error) error {
	if a.written {
		return err
	}
	e := a.e
	switch code := errs.CodeOf(err); {
	case err == nil:
		e.Outcome = audit.OK
	case code == errs.Internal:
		e.Outcome, e.Code = audit.Failed, string(code)
	default:
		e.Outcome, e.Code = audit.Refused, string(code)
	}
	if aerr := s.cfg.AuditLog.Append(ctx, &e); aerr != nil {
		s.cfg.Log.ErrorContext(ctx, "an exchange action cannot be written to the audit log; it is not answered", "action", e.Action, "outcome", string(e.Outcome), "err", aerr)
		return errs.Wrap(errs.Unavailable, aerr, "the action cannot be recorded in the audit log now, so it is not answered; try again")
	}
	return err
}

// fingerprint is a certificate's SHA-256 in lowercase hex: how the audit
// log names a certificate holder.
func fingerprint(der []byte) string {
	h := sha256.Sum256(der)
	return hex.EncodeToString(h[:])
}
