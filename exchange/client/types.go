package client

import (
	"encoding/json"
	"time"
)

// The answers are the schemas of api/openapi.yaml, member for member.

// State is a prescription's state (schema State).
type State string

// The states of a prescription.
const (
	StateActive             State = "active"
	StateClaimed            State = "claimed"
	StatePartlyDispensed    State = "partly-dispensed"
	StateDispensed          State = "dispensed"
	StateCancelled          State = "cancelled"
	StateRemainderCancelled State = "remainder-cancelled"
	StateExpired            State = "expired"
)

// Session is an opened session (schema Session).
type Session struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	Actor     Actor     `json:"actor"`
}

// Actor is the card holder a session acts for (schema Actor).
type Actor struct {
	Role               string `json:"role"` // practitioner, pharmacy or paraclinic
	RegistrationNumber string `json:"registration_number"`
	CertificateSerial  string `json:"certificate_serial"`
	Name               string `json:"name,omitempty"`
}

// Find names a prescription by its tracking code and its patient's
// national id; both must match (schema Find).
type Find struct {
	TrackingCode string `json:"tracking_code"`
	NationalID   string `json:"national_id"`
}

// Amounts are money in rials (schema Amounts).
type Amounts struct {
	Total         int64 `json:"total"`
	Insurer       int64 `json:"insurer"`
	Supplementary int64 `json:"supplementary"`
	Patient       int64 `json:"patient"`
}

// Line is one item in one fill: fill 0 at issue, the repeats of a chronic
// item fills 1..N (schema Line).
type Line struct {
	Fill       int       `json:"fill"`
	Item       int       `json:"item"`
	Code       string    `json:"code"`
	Kind       string    `json:"kind"` // drug, lab, imaging or procedure
	Quantity   int       `json:"quantity"`
	Dispensed  int       `json:"dispensed"`
	ValidFrom  time.Time `json:"valid_from"`
	ValidUntil time.Time `json:"valid_until"`
}

// Decision is the adjudication: coverage, shares and violated rules
// (schema Decision; docs/rxd.md, POST /v1/rules/check).
type Decision struct {
	Scope             string          `json:"scope"`
	Date              string          `json:"date"`
	DateHijri         string          `json:"date_hijri,omitempty"`
	RuleSet           string          `json:"rule_set,omitempty"`
	CatalogueVersion  string          `json:"catalogue_version,omitempty"`
	Eligibility       json.RawMessage `json:"eligibility,omitempty"`
	Allowed           bool            `json:"allowed"`
	Items             []DecisionItem  `json:"items"`
	Violations        []Violation     `json:"violations,omitempty"`
	Total             int64           `json:"total"`
	InsurerPays       int64           `json:"insurer_pays"`
	SupplementaryPays int64           `json:"supplementary_pays"`
	PatientPays       int64           `json:"patient_pays"`
}

// DecisionItem is the decision on one item.
type DecisionItem struct {
	Index              int         `json:"index"`
	Code               string      `json:"code"`
	Kind               string      `json:"kind"`
	Name               string      `json:"name,omitempty"`
	NameFA             string      `json:"name_fa,omitempty"`
	Allowed            bool        `json:"allowed"` // covered: no rule rejects it
	Quantity           int         `json:"quantity"`
	MaxCoveredQuantity int         `json:"max_covered_quantity"`
	CoveredQuantity    int         `json:"covered_quantity"`
	UnitPrice          int64       `json:"unit_price"`
	Total              int64       `json:"total"`
	InsurerPays        int64       `json:"insurer_pays"`
	SupplementaryPays  int64       `json:"supplementary_pays"`
	PatientPays        int64       `json:"patient_pays"`
	Violations         []Violation `json:"violations,omitempty"`
}

// Violation is a rule that applies: a warning, or (severity reject) a
// refusal.
type Violation struct {
	Rule      string `json:"rule"`
	Severity  string `json:"severity"`
	Message   string `json:"message"`
	MessageFA string `json:"message_fa"`
	Item      int    `json:"item"` // -1 for the whole prescription
}

// PrescriptionAccepted answers Prescribe (schema PrescriptionAccepted).
type PrescriptionAccepted struct {
	ID           string    `json:"id"`
	TrackingCode string    `json:"tracking_code"`
	State        State     `json:"state"`
	AcceptedAt   time.Time `json:"accepted_at"`
	Lines        []Line    `json:"lines"`
	Decision     *Decision `json:"decision"`
	// Ack is the exchange's signed acknowledgement (a JWS of kind ack).
	Ack string `json:"ack"`
	// Replayed: the same document was accepted before and this is the
	// first answer again (HTTP 200, not 201).
	Replayed bool `json:"-"`
}

// PrescriptionView is a prescription as a pharmacy or centre finds it
// (schema PrescriptionView).
type PrescriptionView struct {
	ID           string `json:"id"`
	TrackingCode string `json:"tracking_code"`
	Kind         string `json:"kind,omitempty"` // electronic or paper
	State        State  `json:"state"`
	// JWS is the prescription exactly as the practitioner signed it.
	JWS          string     `json:"jws"`
	AcceptedAt   time.Time  `json:"accepted_at,omitzero"`
	Lines        []Line     `json:"lines"`
	ClaimedUntil *time.Time `json:"claimed_until,omitempty"`
}

// ClaimGranted answers Claim (schema ClaimGranted). The secret is shown
// once: rxd keeps only its hash.
type ClaimGranted struct {
	ClaimID      string            `json:"claim_id"`
	Secret       string            `json:"secret"`
	ExpiresAt    time.Time         `json:"expires_at"`
	Prescription *PrescriptionView `json:"prescription"`
}

// DispenseAccepted answers Dispense (schema DispenseAccepted).
type DispenseAccepted struct {
	ID             string    `json:"id"`
	PrescriptionID string    `json:"prescription_id"`
	State          State     `json:"state"`
	Decision       *Decision `json:"decision"`
	Amounts        Amounts   `json:"amounts"`
	Lines          []Line    `json:"lines"`
	// Replayed: the same dispense record was recorded before.
	Replayed bool `json:"-"`
}

// Closed answers Close (schema Closed).
type Closed struct {
	ReceiptID string `json:"receipt_id"`
	// Receipt is signed by the exchange (a JWS of kind receipt): the
	// pharmacy's proof for claims review.
	Receipt string  `json:"receipt"`
	Amounts Amounts `json:"amounts"`
}

// CancellationAccepted answers Cancel (schema CancellationAccepted).
type CancellationAccepted struct {
	PrescriptionID string    `json:"prescription_id"`
	State          State     `json:"state"`
	CancelledAt    time.Time `json:"cancelled_at,omitzero"`
	// Replayed: the same cancellation was accepted before.
	Replayed bool `json:"-"`
}

// PaperAccepted answers Paper (schema PaperAccepted).
type PaperAccepted struct {
	ID           string    `json:"id"`
	TrackingCode string    `json:"tracking_code"`
	Decision     *Decision `json:"decision"`
	Amounts      Amounts   `json:"amounts"`
	Receipt      string    `json:"receipt"`
	// Replayed: the same paper prescription was entered before.
	Replayed bool `json:"-"`
}

// HistoryQuery asks for a page of a patient's history (schema
// HistoryQuery). Limit 0 is rxd's default; at most 100.
type HistoryQuery struct {
	NationalID string `json:"national_id"`
	Cursor     string `json:"cursor,omitempty"`
	Limit      int    `json:"limit,omitempty"`
}

// HistoryPage is one page, newest first (schema HistoryPage). NextCursor
// is "" on the last page.
type HistoryPage struct {
	Prescriptions []HistoryItem `json:"prescriptions"`
	NextCursor    string        `json:"next_cursor,omitempty"`
}

// AccessLogQuery asks for a page of a patient's access log (schema
// AccessLogQuery). Limit 0 is rxd's default; at most 200.
type AccessLogQuery struct {
	NationalID string `json:"national_id"`
	Cursor     string `json:"cursor,omitempty"`
	Limit      int    `json:"limit,omitempty"`
}

// AccessLogPage is one page, newest first (schema AccessLogPage).
// NextCursor is "" on the last page.
type AccessLogPage struct {
	Accesses   []Access `json:"accesses"`
	NextCursor string   `json:"next_cursor,omitempty"`
}

// Access is one action on the patient's records: when, what, how it
// ended, and by whom (a role and an organisation: a licence or council
// number, or the calling software's registry id).
type Access struct {
	At           time.Time `json:"at"`
	Action       string    `json:"action"`
	Outcome      string    `json:"outcome"`
	Code         string    `json:"code,omitempty"`
	Role         string    `json:"role,omitempty"`
	Organisation string    `json:"organisation,omitempty"`
	Prescription string    `json:"prescription_id,omitempty"`
	// LogIndex is the entry's index in rxd's audit log.
	LogIndex uint64 `json:"log_index"`
}

// HistoryItem is one prescription in a patient's history.
type HistoryItem struct {
	ID           string            `json:"id"`
	TrackingCode string            `json:"tracking_code"`
	Kind         string            `json:"kind"`
	State        State             `json:"state"`
	IssuedAt     time.Time         `json:"issued_at"`
	Prescriber   HistoryPrescriber `json:"prescriber"`
	Lines        []Line            `json:"lines"`
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

// HistoryDispense is one dispense or performance: who, when, what.
type HistoryDispense struct {
	ID           string          `json:"id"`
	At           time.Time       `json:"at"`
	Organisation string          `json:"organisation"`
	Role         string          `json:"role"`
	Items        []DispensedItem `json:"items"`
}

// DispensedItem is what was handed out or performed of one item, as the
// dispense record says.
type DispensedItem struct {
	Code     string `json:"code"`
	Quantity int    `json:"quantity"`
	// SubstituteFor is the prescribed code when an equivalent was given.
	SubstituteFor string `json:"substitute_for,omitempty"`
	Note          string `json:"note,omitempty"`
}
