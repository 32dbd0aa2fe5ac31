package exchange

import (
	"time"

	"github.com/nuskha/nuskha/internal/adjudicate"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/rx/trackcode"
)

// The service's answers are the schemas of api/openapi.yaml, member for
// member: the HTTP handlers write them as they are.

// LineView is a Line as the contract shows it (schema Line).
type LineView struct {
	Fill       int       `json:"fill"`
	Item       int       `json:"item"`
	Code       string    `json:"code"`
	Kind       string    `json:"kind"`
	Quantity   int       `json:"quantity"`
	Dispensed  int       `json:"dispensed"`
	ValidFrom  time.Time `json:"valid_from"`
	ValidUntil time.Time `json:"valid_until"`
}

func linesView(lines []Line) []LineView {
	out := make([]LineView, len(lines))
	for i, l := range lines {
		out[i] = LineView{Fill: l.Fill, Item: l.Item, Code: l.Code, Kind: l.Kind, Quantity: l.Quantity, Dispensed: l.Dispensed,
			ValidFrom: l.From.UTC(), ValidUntil: l.Until.UTC()}
	}
	return out
}

// Amounts are a dispense's (or a visit's) money, in rials (schema
// Amounts).
type Amounts struct {
	Total         int64 `json:"total"`
	Insurer       int64 `json:"insurer"`
	Supplementary int64 `json:"supplementary"`
	Patient       int64 `json:"patient"`
}

func amountsOf(d *adjudicate.Decision) Amounts {
	return Amounts{Total: d.Total, Insurer: d.InsurerPays, Supplementary: d.SupplementaryPay, Patient: d.PatientPays}
}

func (a Amounts) plus(b Amounts) Amounts {
	return Amounts{Total: a.Total + b.Total, Insurer: a.Insurer + b.Insurer, Supplementary: a.Supplementary + b.Supplementary, Patient: a.Patient + b.Patient}
}

// PrescriptionAccepted answers a submitted prescription (schema
// PrescriptionAccepted).
type PrescriptionAccepted struct {
	ID           string               `json:"id"`
	TrackingCode string               `json:"tracking_code"`
	State        State                `json:"state"`
	AcceptedAt   time.Time            `json:"accepted_at"`
	Lines        []LineView           `json:"lines"`
	Decision     *adjudicate.Decision `json:"decision"`
	// Ack is the exchange's signed acknowledgement (kind ack).
	Ack string `json:"ack"`
}

// PrescriptionView is a prescription found by a pharmacy or centre
// (schema PrescriptionView).
type PrescriptionView struct {
	ID           string     `json:"id"`
	TrackingCode string     `json:"tracking_code"`
	Kind         Kind       `json:"kind"`
	State        State      `json:"state"`
	JWS          string     `json:"jws"`
	AcceptedAt   time.Time  `json:"accepted_at"`
	Lines        []LineView `json:"lines"`
	// ClaimedUntil is when the claim holding it ends, if one does.
	ClaimedUntil *time.Time `json:"claimed_until,omitempty"`
}

func viewOf(p *Prescription) *PrescriptionView {
	v := &PrescriptionView{ID: p.ID, TrackingCode: trackcode.Format(p.TrackingCode), Kind: p.Kind, State: p.State, JWS: p.JWS,
		AcceptedAt: p.AcceptedAt.UTC(), Lines: linesView(p.Lines)}
	if p.Claim != nil {
		t := p.Claim.ExpiresAt.UTC()
		v.ClaimedUntil = &t
	}
	return v
}

// Find names a prescription by its tracking code and its patient's
// national id (schema Find).
type Find struct {
	TrackingCode string `json:"tracking_code"`
	NationalID   string `json:"national_id"`
}

// ClaimGranted answers a claim (schema ClaimGranted). Secret is given
// here once; the exchange keeps only its hash.
type ClaimGranted struct {
	ClaimID      string            `json:"claim_id"`
	Secret       string            `json:"secret"`
	ExpiresAt    time.Time         `json:"expires_at"`
	Prescription *PrescriptionView `json:"prescription"`
}

// DispenseAccepted answers a dispense (schema DispenseAccepted).
type DispenseAccepted struct {
	ID             string               `json:"id"`
	PrescriptionID string               `json:"prescription_id"`
	State          State                `json:"state"`
	Decision       *adjudicate.Decision `json:"decision"`
	Amounts        Amounts              `json:"amounts"`
	Lines          []LineView           `json:"lines"`
}

// Closed answers a close (schema Closed).
type Closed struct {
	ReceiptID string  `json:"receipt_id"`
	Receipt   string  `json:"receipt"`
	Amounts   Amounts `json:"amounts"`
}

// CancellationAccepted answers a cancellation (schema
// CancellationAccepted).
type CancellationAccepted struct {
	PrescriptionID string    `json:"prescription_id"`
	State          State     `json:"state"`
	CancelledAt    time.Time `json:"cancelled_at"`
}

// HistoryQuery asks for a page of a patient's history (schema
// HistoryQuery).
type HistoryQuery struct {
	NationalID string `json:"national_id"`
	Cursor     string `json:"cursor,omitempty"`
	Limit      int    `json:"limit,omitempty"`
}

// HistoryPage is one page of a patient's history (schema HistoryPage).
type HistoryPage struct {
	Prescriptions []HistoryItem `json:"prescriptions"`
	NextCursor    string        `json:"next_cursor,omitempty"`
}

// HistoryItem is one prescription in a patient's history.
type HistoryItem struct {
	ID           string            `json:"id"`
	TrackingCode string            `json:"tracking_code"` // what the patient takes to a pharmacy
	Kind         Kind              `json:"kind"`
	State        State             `json:"state"`
	IssuedAt     time.Time         `json:"issued_at"`
	Prescriber   HistoryPrescriber `json:"prescriber"`
	Lines        []LineView        `json:"lines"`
	Dispenses    []HistoryDispense `json:"dispenses"`
	CancelledAt  *time.Time        `json:"cancelled_at,omitempty"`
}

// HistoryPrescriber is who prescribed, as the prescription says.
type HistoryPrescriber struct {
	CouncilNumber string `json:"council_number"`
	Profession    string `json:"profession,omitempty"`
	Specialty     string `json:"specialty,omitempty"`
	Name          string `json:"name,omitempty"`
}

// HistoryDispense is one dispense (or performance) in a patient's
// history: who, when, what.
type HistoryDispense struct {
	ID           string             `json:"id"`
	At           time.Time          `json:"at"`
	Organisation string             `json:"organisation"`
	Role         string             `json:"role"`
	Items        []rx.DispensedItem `json:"items"`
}
