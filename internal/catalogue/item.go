// Package catalogue is the insurer's unified coding catalogue of drugs and
// paraclinical services (lab tests, imaging, procedures): what each code is,
// what it costs, how much the insurer covers and who may prescribe it to
// whom. The catalogue is imported from CSV as immutable, dated versions; a
// prescription is judged by the version in force on its date, so every
// lookup goes through At(date).
package catalogue

import (
	"regexp"
	"strings"
)

// Kinds of item. A drug comes from the drugs file; the service kinds from
// the services file.
const (
	KindDrug      = "drug"
	KindLab       = "lab"
	KindImaging   = "imaging"
	KindProcedure = "procedure"
)

// ServiceKinds are the kinds a services row may have.
var ServiceKinds = []string{KindLab, KindImaging, KindProcedure}

// Professions that may be named in an item's Professions list. They are
// the prescribing professions of the registry (internal/registry).
var Professions = []string{"physician", "dentist", "midwife"}

// Sexes an item may be restricted to ("" means either).
const (
	SexFemale = "female"
	SexMale   = "male"
)

// Item is one drug or service in a catalogue version. Items returned by a
// Version share their Professions and Specialties slices with it: callers
// MUST NOT modify them.
type Item struct {
	// Code is the national drug code or national service code, unique
	// (ignoring ASCII case) within a version.
	Code string `json:"code"`
	// Kind is KindDrug or one of ServiceKinds.
	Kind string `json:"kind"`
	// Name is the Latin name (the generic name for drugs).
	Name string `json:"name"`
	// NameFA is the Persian name, normalised with persian.Text; it may be
	// empty.
	NameFA string `json:"name_fa,omitempty"`
	// ATC is the drug's WHO ATC code (or a prefix of one); empty for
	// services and for drugs the WHO has not classified.
	ATC string `json:"atc,omitempty"`
	// Form and Strength describe a drug ("tablet", "500 mg").
	Form     string `json:"form,omitempty"`
	Strength string `json:"strength,omitempty"`
	// Price in rials: the unit price of a drug, the tariff of a service.
	// Always > 0. Money is never a float.
	Price int64 `json:"price"`
	// CoveragePercent is the insurer's share of Price, 0–100.
	CoveragePercent int `json:"coverage_percent"`
	// PrescriptionOnly is true for a drug that cannot be sold over the
	// counter. Always false for services.
	PrescriptionOnly bool `json:"prescription_only"`
	// MaxQuantity per prescription; 0 means no limit.
	MaxQuantity int `json:"max_quantity"`
	// Professions allowed to prescribe the item; empty means any.
	Professions []string `json:"professions,omitempty"`
	// Specialties (codes such as "cardiology") allowed to prescribe the
	// item; empty means any.
	Specialties []string `json:"specialties,omitempty"`
	// MinAgeYears and MaxAgeYears bound the patient's age in completed
	// years, inclusive; 0 means no limit on that side.
	MinAgeYears int `json:"min_age_years"`
	MaxAgeYears int `json:"max_age_years"`
	// Sex is SexFemale, SexMale, or "" for either.
	Sex string `json:"sex,omitempty"`
	// ControlledClass is "" or the class of a controlled substance, such
	// as "narcotic" or "psychotropic".
	ControlledClass string `json:"controlled_class,omitempty"`
	// PaperAllowed is true when the item may be dispensed from a paper
	// prescription.
	PaperAllowed bool `json:"paper_allowed"`
}

var (
	reCode      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,31}$`)
	reSpecialty = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,31}$`)
	reClass     = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
)

// MaxPrice is the highest unit price or tariff accepted: a trillion
// rials, about a thousand times the dearest medicine on the market.
const MaxPrice = 1_000_000_000_000

// ValidCode reports whether s has the shape of a catalogue code.
func ValidCode(s string) bool { return reCode.MatchString(s) }

// atcGroups are the fourteen anatomical main groups of the ATC system; a
// code starting with any other letter is a typo, not a new group.
const atcGroups = "ABCDGHJLMNPRSV"

// ValidATC reports whether s is a WHO ATC code or one of its levels:
// N, N02, N02B, N02BE or N02BE01 (upper case).
func ValidATC(s string) bool {
	// letter, digit, digit, letter, letter, digit, digit
	const shape = "LDDLLDD"
	switch len(s) {
	case 1, 3, 4, 5, 7:
	default:
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch shape[i] {
		case 'L':
			if c < 'A' || c > 'Z' {
				return false
			}
		case 'D':
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return strings.IndexByte(atcGroups, s[0]) >= 0
}
