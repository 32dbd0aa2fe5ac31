// Package exchange is the prescription exchange's domain: what rxd stores
// of a prescription once it is accepted (the signed document as received,
// its fills and what was dispensed of each), the claims pharmacies and
// paraclinic centres hold, dispenses, receipts, cancellations, sessions and
// idempotency records, with the Store contract that store/rxstore
// implements on PostgreSQL and SQLite (held to it by exchangetest). It
// knows no HTTP and no SQL.
package exchange

import (
	"slices"
	"strings"
	"time"

	"github.com/nuskha/nuskha/internal/pki"
)

// Kind is how a prescription reached the exchange.
type Kind string

// Kinds of prescription.
const (
	Electronic Kind = "electronic" // signed by the prescriber
	Paper      Kind = "paper"      // entered (and signed) by the pharmacy from a paper form
)

// State is a prescription's state. "Claimed" is not one: it is derived
// from an unexpired, unreleased, unclosed claim (Prescription.Claim).
type State string

// States (docs: exchange design, Prescription, fills and states).
const (
	Active             State = "active"
	PartlyDispensed    State = "partly-dispensed"
	Dispensed          State = "dispensed"
	Cancelled          State = "cancelled"
	RemainderCancelled State = "remainder-cancelled"
	// Expired is never stored: a prescription still active or partly
	// dispensed reads as expired once its last fill's window has ended
	// (at ExpiresAt), so expiry needs no job to be correct and the time
	// it is judged at is the caller's clock.
	Expired State = "expired"
)

// Dispensable reports whether something may still be dispensed in state s.
func (s State) Dispensable() bool { return s == Active || s == PartlyDispensed }

// Item kinds (rx.Item.Kind): pharmacies dispense drugs, paraclinic centres
// perform the rest.
const (
	ItemDrug      = "drug"
	ItemLab       = "lab"
	ItemImaging   = "imaging"
	ItemProcedure = "procedure"
)

// Prescription is an accepted prescription.
type Prescription struct {
	ID           string
	TrackingCode string // canonical form, as the tracking-code package prints it
	Kind         Kind
	// JWS is the compact JWS exactly as received; JWSSHA256 its
	// signing-input hash (rx.SHA256), what later documents reference.
	JWS               string
	JWSSHA256         string
	PatientNationalID string
	PrescriberCouncil string // the prescriber's council number
	PrescriberSerial  string // the signing certificate's serial, lower-case hex
	IssuedAt          time.Time
	AcceptedAt        time.Time
	// ExpiresAt is the end of the last fill's window (set by the store
	// from Lines).
	ExpiresAt time.Time
	// State as of the time it was read at (Expired derived, see State).
	State State
	// Answer is the first answer to the prescribe request (opaque JSON),
	// returned again to a replay.
	Answer []byte
	// Lines are the fills of every item, ordered by fill then item.
	Lines []Line
	// Claim is the claim holding the prescription when it was read (nil
	// if none); its SecretSHA256 is never filled in by reads.
	Claim *Claim
}

// Line is one item in one fill: what may be dispensed of it, when, and
// how much has been.
type Line struct {
	Fill      int    // 0 at issue, k for the k-th repeat
	Item      int    // index into the prescription's items
	Code      string // catalogue code as prescribed
	Kind      string // drug, lab, imaging, procedure
	Quantity  int
	Dispensed int
	// The fill may be dispensed at times t with From <= t < Until.
	From, Until time.Time
}

// Remaining is what may still be dispensed of the line.
func (l Line) Remaining() int { return l.Quantity - l.Dispensed }

// InForce reports whether the line's window holds at t.
func (l Line) InForce(t time.Time) bool { return !t.Before(l.From) && t.Before(l.Until) }

// Claim is an organisation's exclusive hold on a prescription.
type Claim struct {
	ID             string
	PrescriptionID string
	// Organisation is who holds the claim: the role and the licence
	// from the card certificate, "pharmacy:PH-1001" (ClaimHolder). The
	// registry makes licence numbers unique per role only, so a licence
	// alone does not name one organisation.
	Organisation string
	CertSerial   string // the acting card certificate's serial, hex
	// SecretSHA256 is the SHA-256 of the claim's secret; the secret
	// itself is given to the holder once and never stored.
	SecretSHA256 []byte
	CreatedAt    time.Time
	ExpiresAt    time.Time
	ReleasedAt   time.Time // zero while not released
	ClosedAt     time.Time // zero while not closed
}

// ClaimHolder is the Claim.Organisation of a licence acting in role.
func ClaimHolder(role pki.Role, licence string) string { return string(role) + ":" + licence }

// holder is the role and licence of the claim's organisation (ok false
// for one not written by ClaimHolder).
func (c *Claim) holder() (role pki.Role, licence string, ok bool) {
	r, l, ok := strings.Cut(c.Organisation, ":")
	return pki.Role(r), l, ok && r != "" && l != ""
}

// Role is the role of the claim's organisation ("" for one not written by
// ClaimHolder).
func (c *Claim) Role() pki.Role {
	r, _, ok := c.holder()
	if !ok {
		return ""
	}
	return r
}

// LeftFor reports whether lines have something left that role hands out or
// performs, in a fill in force at t: what a claim by an organisation of
// that role could be for.
func LeftFor(lines []Line, role pki.Role, t time.Time) bool {
	return slices.ContainsFunc(lines, func(l Line) bool {
		return slices.Contains(performs[role], l.Kind) && l.Remaining() > 0 && l.InForce(t)
	})
}

// Holds reports whether the claim holds its prescription at t.
func (c *Claim) Holds(t time.Time) bool {
	return c.ReleasedAt.IsZero() && c.ClosedAt.IsZero() && t.Before(c.ExpiresAt)
}

// Dispense is an accepted dispense (or performance) record.
type Dispense struct {
	ID             string
	PrescriptionID string
	ClaimID        string // empty for the dispense of a paper prescription
	JWS            string
	JWSSHA256      string
	Lines          []DispensedLine
	At             time.Time
	// Answer is the answer to the dispense request (opaque JSON) as the
	// store recorded it, with the amounts estimated before the
	// adjudication was committed.
	Answer []byte
	// Settled is the answer settled once the adjudication was committed
	// (Store.Settle), with the amounts actually paid: what replays answer
	// and receipts add up. Nil until then.
	Settled []byte
	// Seen is, for a dispense being recorded, how many dispenses of the
	// prescription's patient were stored, every one settled, when it was
	// judged (Store.PatientDispenses): the rules read the patient's
	// dispense history, which a dispense joins when it is settled, so a
	// dispense of the patient recorded since was not seen by them. The
	// store refuses it (ErrJudgedStale) if the patient has more by the
	// time it is recorded. The exchange MUST set it; nil (a store's own
	// tests) is not checked. Not stored.
	Seen *int
}

// DispensedLine is how much of one item a dispense gave.
type DispensedLine struct {
	Item     int
	Fill     int // set by the store: the fill the quantity was counted against
	Quantity int
}

// Receipt is the exchange's signed receipt closing a claim.
type Receipt struct {
	ID      string
	ClaimID string
	JWS     string
	At      time.Time
}

// Cancellation is an accepted cancellation.
type Cancellation struct {
	ID             string
	PrescriptionID string
	JWS            string
	JWSSHA256      string
	At             time.Time
	// RemainderOnly is set by the store: something had been dispensed,
	// which stands; only the rest was cancelled.
	RemainderOnly bool
}

// Actor is who acts in a session: the card's holder.
type Actor struct {
	CertSerial string // hex
	// CertSHA256 is the card certificate's SHA-256, lowercase hex: how
	// the audit log names the actor (set by Authenticate, not stored).
	CertSHA256    string
	Role          string // practitioner, pharmacy, paraclinic
	Organisation  string // pharmacy or centre licence, or the practice's registration number
	CouncilNumber string // a practitioner's (or the responsible professional's)
}

// Session is an opened session. The bearer token itself is never stored.
type Session struct {
	TokenSHA256 []byte
	// DocumentID is the session document's id: one session per document.
	DocumentID string
	Actor      Actor
	// VendorThumbprint is the x5t#S256 of the mTLS certificate the
	// session was opened through; it is usable through that one only.
	VendorThumbprint string
	// CardChain is the card's certificate chain as verified when the
	// session was opened, DER, leaf first: any instance checks its
	// revocation again on every call.
	CardChain [][]byte
	CreatedAt time.Time
	ExpiresAt time.Time
}

// IdempotencyRecord is the answer kept for an Idempotency-Key.
type IdempotencyRecord struct {
	Key    string
	Caller string // who may replay it: the vendor certificate and the actor
	// RequestSHA256 is the hash of the request the key was used for;
	// another request under the same key is refused.
	RequestSHA256 []byte
	Status        int
	Body          []byte
	CreatedAt     time.Time
	ExpiresAt     time.Time
}

// HistoryEntry is one prescription in a patient's history.
type HistoryEntry struct {
	Prescription  *Prescription
	Dispenses     []*Dispense // oldest first
	Cancellations []*Cancellation
}

// Cursor is the keyset position of a history page: the last prescription
// seen.
type Cursor struct {
	IssuedAt time.Time
	ID       string
}

// MaxHistoryPage is the most prescriptions one history page holds.
const MaxHistoryPage = 100
