package exchange

import (
	"context"
	"time"

	"github.com/nuskha/nuskha/internal/tlog"
)

// Store is what the exchange service keeps its state in. Every method that
// writes is ONE transaction: it commits all of its effect or none, and a
// write it returns without error is durable (synchronous commit). A
// refusal changes nothing. Times passed in are the caller's clock; the
// store reads no clock of its own.
//
// Every write of an action takes the action's audit entry, e (MUST NOT be
// nil): the store appends it to the audit log in the write's own
// transaction, whenever that transaction commits — a replay answered from
// what is stored included — and never when it rolls back (a refusal, an
// error). An entry that cannot be appended fails the write.
//
// Medicine is guarded in the database itself: every write that changes a
// prescription or its lines first locks the prescription's row (SELECT …
// FOR UPDATE on PostgreSQL, the write lock SQLite's immediate transactions
// take), so claims, dispenses, closes and cancellations of one prescription
// are serialised, and a CHECK (0 <= dispensed <= quantity) on every line is
// the last guard should the code ever be wrong.
type Store interface {
	// InsertPrescription stores p and its Lines (which MUST be non-empty,
	// each quantity > 0; ExpiresAt is set from them), in state Active —
	// or, for a paper prescription with its dispense d (nil otherwise,
	// d.ClaimID empty), in the state d leaves it in, d recorded (its
	// lines' Fill set) in the same transaction, checked as by Dispense. p.ID already stored: the stored
	// prescription is returned with ErrReplay if its JWSSHA256 is p's,
	// else with a document-id-conflict error; nothing is written. A
	// tracking code already another prescription's: ErrTrackingCodeTaken.
	InsertPrescription(ctx context.Context, e *tlog.Entry, p *Prescription, d *Dispense) (*Prescription, error)

	// PrescriptionByCode reads the prescription with this tracking code
	// (canonical form) for this patient, with its lines and the claim
	// holding it at now, its state as at now. A code that does not exist
	// and a code whose patient is another give the same not-found error.
	PrescriptionByCode(ctx context.Context, trackingCode, nationalID string, now time.Time) (*Prescription, error)
	// PrescriptionByID reads a prescription by id, as PrescriptionByCode.
	PrescriptionByID(ctx context.Context, id string, now time.Time) (*Prescription, error)

	// Claim gives c.Organisation the prescription c.PrescriptionID from
	// c.CreatedAt until c.ExpiresAt, under the prescription's lock. Held
	// by the same organisation's claim — or, held by nobody, the
	// organisation's last claim lapsed (expired, neither released nor
	// closed) with dispenses under it: that claim is returned, now with
	// c's secret hash, acting certificate and expiry (the old secret stops
	// working), whatever the prescription's state — the holder recovering
	// a lost secret to close what it dispensed, and have its receipt; when
	// nothing is left that its role hands out or performs in a fill in
	// force (LeftFor), with the secret only, its expiry unchanged (a lapsed
	// claim stays lapsed: it can be closed, not dispensed under). Held by
	// another organisation's claim while the organisation's last claim
	// lapsed with dispenses under it: that lapsed claim with c's secret
	// hash and acting certificate only, as lapsed as it was — the rival's
	// hold stands, and the visit can still be closed.
	// Otherwise, a prescription not dispensable at c.CreatedAt:
	// NotDispensableError; held by another organisation's claim:
	// ClaimedError with its expiry; nothing left that the organisation's
	// role hands out or performs in a fill in force (LeftFor):
	// NotDispensableError with For; else c is stored and returned. Either way the expiry is never past the start
	// of the organisation's hold plus twice c's time to live
	// (c.ExpiresAt − c.CreatedAt), the hold going back
	// through its claims of the prescription, none closed, each ending
	// (released or expired) less than a time to live before the next
	// began; a hold that has reached that bound: ClaimedError with Own set,
	// Until when the organisation may claim again (its last claim's end
	// plus a time to live). So claiming again and again — renewing, or
	// releasing or letting expire and claiming at once — holds a
	// prescription (and keeps its prescriber from cancelling it) for a
	// bounded time. Unknown prescription: not-found.
	Claim(ctx context.Context, e *tlog.Entry, c *Claim) (*Claim, error)
	// ClaimByID reads a claim with its SecretSHA256 (the one read that
	// fills it in: the caller checks a secret before anything else);
	// not-found if there is none.
	ClaimByID(ctx context.Context, id string) (*Claim, error)
	// Release ends the claim. Unknown claim: not-found; a hash that is not
	// the claim's current secret's: ErrSecretWrong; a closed claim:
	// ErrClaimEnded. Releasing a released or expired claim succeeds and
	// changes nothing.
	Release(ctx context.Context, e *tlog.Entry, claimID string, secretSHA256 []byte, now time.Time) error

	// Dispense records d (ClaimID set) under the prescription's lock,
	// judged at d.At: the claim MUST exist (else not-found), have this
	// secret (ErrSecretWrong) — checked before anything else, a replay
	// included —, be for d.PrescriptionID and hold the prescription at
	// d.At with no other claim having held it since — still holding it,
	// or closed or released by now (ErrClaimEnded: a dispense begun
	// before its claim lapsed and recorded after a new claim was made
	// would split the visit over two claims, or let two organisations
	// dispense at once; a replay is answered whether or not it still
	// holds); the prescription MUST be dispensable
	// (NotDispensableError with its state); each line of d is counted
	// against the earliest fill of its item in force at d.At with
	// something left (NotDispensableError naming the item when none is in
	// force) and MUST NOT exceed what remains of it (OverDispenseError).
	// The store sets each line's Fill, updates the prescription's lines
	// and state, and stores as d.Answer what answer returns (if answer is
	// not nil) given the prescription as it now stands — in the same
	// transaction, so a replay gets the same answer; an error from answer
	// is returned and nothing is written. With d.Seen set, the patient's
	// dispenses are counted under a lock of the patient's that every
	// dispense of the patient takes (InsertPrescription's too), and more
	// than *d.Seen: ErrJudgedStale, nothing written. d.ID already stored: the stored
	// dispense (Settled filled in) and the prescription as it stands, with ErrReplay if its
	// JWSSHA256 is d's and it was recorded under this claim, else
	// document-id-conflict. The prescription
	// returned has no Claim filled in (the caller holds it).
	Dispense(ctx context.Context, e *tlog.Entry, claimID string, secretSHA256 []byte, d *Dispense, answer func(*Prescription, *Dispense) ([]byte, error)) (*Dispense, *Prescription, error)

	// Settle keeps answer as the settled answer of the dispense id (written
	// once the dispense's adjudication is committed) unless one is kept:
	// the one kept is returned — the first settlement wins, however many
	// race. Unknown dispense: not-found. Settlements, as dispenses, are
	// never changed or removed. e, the settlement's audit entry, is
	// appended in the transaction that keeps answer, and only then: one
	// settlement, one entry.
	Settle(ctx context.Context, e *tlog.Entry, dispenseID string, answer []byte, at time.Time) ([]byte, error)
	// DispenseByID reads a dispense (Settled filled in); not-found if
	// there is none.
	DispenseByID(ctx context.Context, id string) (*Dispense, error)
	// PatientDispenses counts the dispenses of every prescription of the
	// patient, and reads those of them not settled (oldest first): what
	// Dispense.Seen is taken from.
	PatientDispenses(ctx context.Context, nationalID string) (count int, unsettled []*Dispense, err error)

	// Close ends the claim with a receipt, under the prescription's lock:
	// sign is called with the claim, the prescription and the claim's
	// dispenses (oldest first, Settled filled in) and its receipt stored, the claim closed at
	// now. A closed claim's stored receipt is returned (sign is not
	// called): one receipt per claim, however many closes race. Unknown
	// claim: not-found; wrong secret: ErrSecretWrong; a released claim:
	// ErrClaimEnded. An expired claim may be closed: what it dispensed
	// needs its receipt. An error from sign is returned and nothing is
	// written.
	Close(ctx context.Context, e *tlog.Entry, claimID string, secretSHA256 []byte, now time.Time, sign func(*Claim, *Prescription, []*Dispense) (*Receipt, error)) (*Receipt, error)

	// Cancel records c against c.PrescriptionID under its lock, judged at
	// c.At: a claim holding it: ClaimedError; not dispensable:
	// NotDispensableError. Nothing dispensed: Cancelled; else
	// RemainderCancelled, c.RemainderOnly set. c.ID already stored: the
	// stored cancellation with ErrReplay (same JWSSHA256) or
	// document-id-conflict. Returns the cancellation and the prescription
	// as it now stands.
	Cancel(ctx context.Context, e *tlog.Entry, c *Cancellation) (*Cancellation, *Prescription, error)

	// CancellationByID reads a cancellation; not-found if there is none.
	CancellationByID(ctx context.Context, id string) (*Cancellation, error)

	// History is a patient's prescriptions newest first (by IssuedAt, then
	// ID, both descending), after the cursor (nil: from the newest), at
	// most limit (1..MaxHistoryPage, else ErrHistoryLimit), each with its
	// dispenses and cancellations, states as at now. next is the cursor
	// of the last entry, nil when the page is the last.
	History(ctx context.Context, nationalID string, after *Cursor, limit int, now time.Time) (entries []HistoryEntry, next *Cursor, err error)

	// CreateSession stores s (its CardChain MUST hold at least one
	// certificate, each one DER value) and marks s.DocumentID used, in one
	// transaction: a document id used before gives ErrSessionUsed.
	CreateSession(ctx context.Context, e *tlog.Entry, s *Session) error
	// Session reads the session whose token hashes to tokenSHA256, with
	// its card chain as stored, if it has not ended and now is before its
	// ExpiresAt; else ErrNoSession.
	Session(ctx context.Context, tokenSHA256 []byte, now time.Time) (*Session, error)
	// EndSession ends the session (ending one that has ended succeeds).
	// Its document id stays used.
	EndSession(ctx context.Context, e *tlog.Entry, tokenSHA256 []byte) error

	// Idempotent looks up the answer kept for (key, caller) at now: nil if
	// there is none (or it expired), ErrKeyReused if it was kept for
	// another request hash.
	Idempotent(ctx context.Context, key, caller string, requestSHA256 []byte, now time.Time) (*IdempotencyRecord, error)
	// Remember keeps r's answer unless an unexpired one is kept for
	// (r.Key, r.Caller): for the same request hash that one is returned
	// (the first answer wins a race), for another ErrKeyReused. An expired
	// record under the key is replaced.
	Remember(ctx context.Context, r *IdempotencyRecord) (*IdempotencyRecord, error)

	// Purge deletes sessions and idempotency records expired before now.
	// Prescription expiry needs no purge: it is derived (see Expired).
	Purge(ctx context.Context, now time.Time) error
}
