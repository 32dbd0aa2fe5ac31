package rules

import (
	"slices"
	"time"
)

// Scope is the moment a rule set is consulted.
type Scope string

// The scopes a rule may apply to.
const (
	ScopePrescribe  Scope = "prescribe"  // before a practitioner signs, and on submit
	ScopeDispense   Scope = "dispense"   // a pharmacy handing out an e-prescription
	ScopePaper      Scope = "paper"      // a paper prescription entered at the pharmacy
	ScopeParaclinic Scope = "paraclinic" // a lab or imaging centre performing services
)

// scopes lists every scope. It is unexported, and Scopes hands out
// copies, so that no importer can widen what Load and Evaluate accept.
var scopes = []Scope{ScopePrescribe, ScopeDispense, ScopePaper, ScopeParaclinic}

// Scopes lists every scope, in a new slice on each call.
func Scopes() []Scope { return slices.Clone(scopes) }

// Severity is what a violated rule does to its item (or prescription).
type Severity string

const (
	// Reject: the insurer does not cover the item (or, for a
	// prescription-wide rule, any item).
	Reject Severity = "reject"
	// Warn: covered, but the practitioner or pharmacist should look again.
	Warn Severity = "warn"
)

// Input is everything a rule may look at, for one prescription (or
// dispense, or paper prescription) judged on one date. It is built by the
// adjudication library from the draft, the eligibility registry, the
// catalogue in force on Date and the patient's dispense history; rules
// never do I/O.
type Input struct {
	Scope        Scope
	Date         time.Time // the day the prescription is judged by (UTC midnight)
	Patient      Patient
	Prescriber   Prescriber
	Prescription Prescription
	Items        []Item
	History      []Dispensed // the patient's dispenses in the look-back window, newest first
}

// Patient as the rules see it.
type Patient struct {
	AgeYears  int    // completed years on Date
	AgeMonths int    // completed months on Date (for paediatric limits)
	Sex       string // "female" or "male"
	Eligible  bool   // the eligibility check's answer on Date
	Fund      string // "salaried", "self-employed", "voluntary", ... ("" when not eligible)
	Dependant bool
}

// Prescriber as the rules see it (for a paper prescription, as entered).
type Prescriber struct {
	Profession string // "physician", "dentist", "midwife"
	Specialty  string // specialty code, e.g. "general", "cardiology", "psychiatry"
}

// Prescription-wide facts.
type Prescription struct {
	IssuedDaysAgo int // whole days from issue to Date
	ItemCount     int
	DrugCount     int
}

// Item is one line of the prescription with its catalogue entry.
type Item struct {
	Index              int
	Kind               string // "drug", "lab", "imaging", "procedure"
	Code               string
	Quantity           int
	Repeats            int
	RepeatIntervalDays int
	// SubstituteFor is the prescribed code this item is handed out in
	// place of ("" when it is what was prescribed).
	SubstituteFor string
	Catalogue     Entry
}

// Entry is the catalogue's record for an item's code on Date. Found is
// false when the code is not in the catalogue in force (every other field
// is then zero).
type Entry struct {
	Found            bool
	Kind             string // "drug" or the service kind: "lab", "imaging", "procedure"
	GenericName      string
	ATC              string // drugs only
	Form             string
	Strength         string
	Price            int64 // rials per unit (drugs) or the tariff (services)
	CoveragePercent  int   // the insurer's share, 0–100
	PrescriptionOnly bool
	MaxQuantity      int      // per prescription; 0 = no limit
	Professions      []string // allowed prescriber professions; empty = any
	Specialties      []string // allowed prescriber specialties; empty = any
	MinAgeYears      int      // 0 = no lower limit
	MaxAgeYears      int      // 0 = no upper limit
	Sex              string   // "female", "male", or "" for both
	ControlledClass  string   // "" when not a controlled substance
	PaperAllowed     bool     // may be dispensed from a paper prescription
}

// Dispensed is one item the patient was handed out before.
type Dispensed struct {
	Code       string
	ATC        string
	Quantity   int
	DaysSupply int // how many days the quantity lasts (0 when unknown)
	DaysAgo    int // whole days from the dispense to Date
}

// UnknownCode is the violation rxd reports, before any rule, for an item
// whose code is not in the catalogue in force: a mistyped or withdrawn
// code, not a coverage decision. No rule may take the id.
const UnknownCode = "unknown-code"

// Violation is one rule that an item (or the whole prescription) broke.
type Violation struct {
	RuleID    string   `json:"rule"`
	Severity  Severity `json:"severity"`
	Message   string   `json:"message"`    // English
	MessageFA string   `json:"message_fa"` // Persian
	Item      int      `json:"item"`       // index into Input.Items, or -1 for the whole prescription
}
