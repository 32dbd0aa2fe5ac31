package exchange

import (
	"errors"
	"fmt"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
)

// ErrReplay is returned (with the stored document) when a document is
// stored again under its id with the same signing input: the caller
// answers what it answered the first time, and nothing was written.
var ErrReplay = errors.New("exchange: the same document was stored before")

// ErrTrackingCodeTaken is returned by InsertPrescription when the tracking
// code is another prescription's: the caller draws another code and tries
// again. It never reaches a client.
var ErrTrackingCodeTaken = errors.New("exchange: tracking code already in use")

// NotFound is the one answer for a prescription, claim or session that
// does not exist or is not the caller's to see: a lookup by a tracking
// code and a national id that do not belong together answers exactly as
// for a code that does not exist.
func NotFound(what string) error { return errs.New(errs.NotFound, "no such %s", what) }

// Conflict is the refusal of a document whose id is already another
// document's (another signing input).
func Conflict(kind, id string) error {
	return errs.New(errs.DocumentIDConflict, "a different %s is stored under id %s", kind, id)
}

// ClaimedError is returned when another organisation's claim holds the
// prescription (for a cancellation: any claim). Its code is
// prescription-claimed.
type ClaimedError struct {
	Until time.Time // when the claim expires unless released or closed first
	// Own is set when it is the claiming organisation's own hold that has
	// lasted as long as a hold may (Store.Claim): Until is when it may
	// claim the prescription again.
	Own bool
}

func (e *ClaimedError) Error() string { return e.Unwrap().Error() }

// Unwrap gives the coded error (errs.CodeOf, errors.Is with errs.Of).
func (e *ClaimedError) Unwrap() error {
	if e.Own {
		return errs.New(errs.PrescriptionClaimed, "this organisation has held the prescription for as long as a hold may last without closing a visit; it may claim it again from %s", e.Until.UTC().Format(time.RFC3339))
	}
	return errs.New(errs.PrescriptionClaimed, "the prescription is claimed until %s", e.Until.UTC().Format(time.RFC3339))
}

// NotDispensableError is returned when nothing may be dispensed (or
// claimed, or cancelled) in the prescription's state, or when an item has
// no fill in force. Its code is prescription-not-dispensable.
type NotDispensableError struct {
	State State
	Item  int // -1 when it is the whole prescription's state
	// For is set when a claim is refused because nothing of the kinds
	// its role hands out or performs is left in a fill in force, though
	// other items are (State says which state that leaves it in).
	For pki.Role
}

func (e *NotDispensableError) Error() string { return e.Unwrap().Error() }

// Unwrap gives the coded error.
func (e *NotDispensableError) Unwrap() error {
	if e.Item >= 0 {
		return errs.FieldError(errs.PrescriptionNotDispensable, fmt.Sprintf("items[%d]", e.Item), "item %d has no fill in force now", e.Item)
	}
	if e.For != "" {
		return errs.New(errs.PrescriptionNotDispensable, "the prescription is %s, but nothing a %s hands out or performs is left in a fill in force now", e.State, e.For)
	}
	return errs.New(errs.PrescriptionNotDispensable, "the prescription is %s", e.State)
}

// OverDispenseError is returned when a dispense asks more of an item than
// remains in the fill in force. Its code is over-dispense.
type OverDispenseError struct {
	Item, Fill int
	Asked      int
	Remaining  int
}

func (e *OverDispenseError) Error() string { return e.Unwrap().Error() }

// Unwrap gives the coded error.
func (e *OverDispenseError) Unwrap() error {
	return errs.FieldError(errs.OverDispense, fmt.Sprintf("items[%d]", e.Item), "%d asked of item %d, %d remains in fill %d", e.Asked, e.Item, e.Remaining, e.Fill)
}

// The other refusals a store returns, each with its errs code: callers
// match them with errors.Is or errs.CodeOf.
var (
	ErrSecretWrong  = errs.New(errs.ClaimSecretWrong, "the claim secret is not this claim's current one")
	ErrClaimEnded   = errs.New(errs.ClaimNotActive, "the claim was released, closed or has expired")
	ErrSessionUsed  = errs.New(errs.SessionIDUsed, "a session was opened with this session document before")
	ErrKeyReused    = errs.New(errs.IdempotencyKeyReused, "the Idempotency-Key was used for a different request")
	ErrNoSession    = errs.New(errs.Unauthorized, "no such session, or it has ended")
	ErrHistoryLimit = errs.FieldError(errs.Invalid, "limit", "a page holds 1 to %d prescriptions", MaxHistoryPage)
	// ErrJudgedStale refuses a dispense judged before another dispense of
	// the same patient was recorded (Dispense.Seen): the rules that read
	// the patient's history did not see that one.
	ErrJudgedStale = errs.New(errs.Conflict, "another dispense of this patient was recorded while this one was judged: send it again to be judged with it")
)
