package insured

import (
	"context"
	"fmt"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/nationalid"
	"github.com/nuskha/nuskha/internal/persian"
)

// Reason says why a person is not eligible. The codes are stable: vendors'
// software branches on them.
type Reason string

// Reasons.
const (
	NoRecord                  Reason = "no-record"                  // not in the registry
	CoverageNotStarted        Reason = "coverage-not-started"       // the date is before coverage_start
	CoverageEnded             Reason = "coverage-ended"             // the date is after coverage_end
	StatusSuspended           Reason = "suspended"                  // suspended by the insurer
	StatusUnpaid              Reason = "unpaid"                     // contributions in arrears
	InsufficientContributions Reason = "insufficient-contributions" // too few paid days in the window
	MainInsuredNotEligible    Reason = "main-insured-not-eligible"  // a dependant whose main insured is not eligible
)

// Policy is the insurer's eligibility policy.
type Policy struct {
	// WindowMonths is how many whole Solar Hijri months before the date's
	// month are counted for contributions.
	WindowMonths int
	// MinPaidDays is the paid days a main insured needs in the window, per
	// fund (a fund not listed needs none).
	MinPaidDays map[Fund]int
}

// DefaultPolicy follows the Social Security Organization's rule for
// medical treatment: at least 30 days of contributions in the year before
// the visit. Pensioners' contributions are withheld from the pension.
func DefaultPolicy() Policy {
	return Policy{WindowMonths: 12, MinPaidDays: map[Fund]int{Salaried: 30, SelfEmployed: 30, Voluntary: 30}}
}

// Lookup reads a person from the registry version in force and, for a
// dependant, their main insured, in one read of one version (main is nil
// for a main insured, or when the main insured is missing).
type Lookup interface {
	PersonWithMain(ctx context.Context, nationalID string) (p Person, main *Person, found bool, err error)
}

// Checker answers eligibility questions.
type Checker struct {
	Registry Lookup
	Policy   Policy
}

// Coverage is what applies to an eligible person (and, for information, to
// one who is not but has a record).
type Coverage struct {
	InsuranceNumber string `json:"insurance_number"`
	Fund            Fund   `json:"fund"`
	Dependant       bool   `json:"dependant"`
	Relation        string `json:"relation,omitempty"`
	MainNationalID  string `json:"main_national_id,omitempty"` // masked
	// Days, as "x" (Gregorian) and "x_hijri" (Solar Hijri) like every
	// date rxd answers with.
	CoverageStart      string        `json:"coverage_start"`
	CoverageStartHijri string        `json:"coverage_start_hijri"`
	CoverageEnd        string        `json:"coverage_end,omitempty"`
	CoverageEndHijri   string        `json:"coverage_end_hijri,omitempty"`
	Status             Status        `json:"status"`
	PaidDays           int           `json:"paid_days_in_window"`
	Supplementary      *SuppCoverage `json:"supplementary,omitempty"`
	Person             *Person       `json:"-"`
	Main               *Person       `json:"-"` // a dependant's main insured
}

// SuppCoverage is supplementary insurance in force on the date.
type SuppCoverage struct {
	Insurer string `json:"insurer"`
	Plan    string `json:"plan"`
	Caps    Caps   `json:"annual_caps_rials"`
}

// Result is the eligibility answer for one person on one date.
type Result struct {
	NationalID string    `json:"national_id"` // masked
	Date       string    `json:"date"`        // Gregorian YYYY-MM-DD
	DateHijri  string    `json:"date_hijri"`  // Solar Hijri YYYY-MM-DD
	Eligible   bool      `json:"eligible"`
	Reason     Reason    `json:"reason,omitempty"`
	Detail     string    `json:"detail,omitempty"`
	Coverage   *Coverage `json:"coverage,omitempty"`
}

// Minimal is the minimum a prescriber's or pharmacy's software needs of an
// eligibility answer: whether the person is covered on the date and, if
// not, why; and, if so, the fund and whether supplementary insurance pays
// too. What identifies a person's insurance or family — the insurance
// number, the main insured and the relation to them, the supplementary
// insurer, plan and caps — is left out (Result has it, for the insurer's
// own services).
type Minimal struct {
	NationalID string           `json:"national_id"` // masked
	Date       string           `json:"date"`
	DateHijri  string           `json:"date_hijri"`
	Eligible   bool             `json:"eligible"`
	Reason     Reason           `json:"reason,omitempty"`
	Detail     string           `json:"detail,omitempty"`
	Coverage   *MinimalCoverage `json:"coverage,omitempty"` // for an eligible person only
}

// MinimalCoverage is what applies to an eligible person, at its least.
type MinimalCoverage struct {
	Fund             Fund `json:"fund"`
	HasSupplementary bool `json:"has_supplementary"`
}

// Minimal is r at its least (see Minimal). The reason stays; a detail
// about the main insured's own record is not given, only that they are not
// eligible.
func (r Result) Minimal() Minimal {
	s := Minimal{NationalID: r.NationalID, Date: r.Date, DateHijri: r.DateHijri, Eligible: r.Eligible, Reason: r.Reason, Detail: r.Detail}
	if r.Reason == MainInsuredNotEligible {
		s.Detail = "the main insured is not eligible"
	}
	if r.Eligible && r.Coverage != nil {
		s.Coverage = &MinimalCoverage{Fund: r.Coverage.Fund, HasSupplementary: r.Coverage.Supplementary != nil}
	}
	return s
}

// Check decides whether the person with this (already parsed) national id
// is covered on day, a date as persian.ParseDate and persian.Day return it
// (UTC midnight of the day in Iran). A registry that cannot be read is
// errs.Unavailable.
func (c *Checker) Check(ctx context.Context, nid string, day time.Time) (Result, error) {
	p, main, ok, err := c.Registry.PersonWithMain(ctx, nid)
	if err != nil {
		return Result{}, errs.Wrap(errs.Unavailable, err, "the insured-person registry cannot be read now")
	}
	return c.Judge(nid, day, p, main, ok), nil
}

// Facts reads what judging a patient's prescription or dispense needs of
// the patient, together: the registry's record, as Lookup.PersonWithMain,
// and the dispense history, as History.Since. A store that is both may
// implement it to read them in one round trip.
type Facts interface {
	PersonWithHistory(ctx context.Context, nationalID string, since time.Time) (p Person, main *Person, found bool, hist []Dispensed, err error)
}

// Judge is Check of a record already read from c.Registry (found false:
// none).
func (c *Checker) Judge(nid string, day time.Time, p Person, main *Person, ok bool) Result {
	day = day.UTC().Truncate(24 * time.Hour)
	res := Result{NationalID: nationalid.Mask(nid), Date: day.Format(time.DateOnly), DateHijri: persian.Hijri(day).String()}
	if !ok {
		res.Reason, res.Detail = NoRecord, "not in the insured-person registry"
		return res
	}
	res.Coverage = c.coverage(&p, day)
	if r, d := c.own(&p, day, res.Coverage); r != "" {
		res.Reason, res.Detail = r, d
		return res
	}
	if p.Dependant() {
		if main == nil {
			res.Reason, res.Detail = MainInsuredNotEligible, "the main insured is not in the registry"
			return res
		}
		res.Coverage.Main = main
		if main.Dependant() {
			// A chain of dependants is not coverage: fail closed rather
			// than judge by a record that is itself covered through
			// someone else.
			res.Reason, res.Detail = MainInsuredNotEligible, "the main insured is registered as a dependant"
			return res
		}
		mainCov := c.coverage(main, day)
		if r, d := c.own(main, day, mainCov); r != "" {
			res.Reason, res.Detail = MainInsuredNotEligible, fmt.Sprintf("the main insured is not eligible: %s (%s)", r, d)
			return res
		}
		res.Coverage.PaidDays = mainCov.PaidDays
	}
	res.Eligible = true
	return res
}

// own checks a person's own record: dates, status and, for a main
// insured, contributions.
func (c *Checker) own(p *Person, day time.Time, cov *Coverage) (Reason, string) {
	switch {
	case day.Before(p.CoverageStart):
		return CoverageNotStarted, "coverage starts on " + cov.CoverageStart
	case !p.CoverageEnd.IsZero() && day.After(p.CoverageEnd):
		return CoverageEnded, "coverage ended on " + cov.CoverageEnd
	case p.Status == Suspended:
		return StatusSuspended, "the insurance is suspended"
	case p.Status == Unpaid:
		return StatusUnpaid, "contributions are in arrears"
	}
	if !p.Dependant() {
		if need := c.Policy.MinPaidDays[p.Fund]; cov.PaidDays < need {
			return InsufficientContributions, fmt.Sprintf("%d paid days in the %d months before this month, %d needed", cov.PaidDays, c.Policy.WindowMonths, need)
		}
	}
	return "", ""
}

func (c *Checker) coverage(p *Person, day time.Time) *Coverage {
	cov := &Coverage{
		InsuranceNumber: p.InsuranceNumber, Fund: p.Fund, Dependant: p.Dependant(), Relation: p.Relation,
		Status: p.Status, Person: p,
	}
	cov.CoverageStart, cov.CoverageStartHijri = persian.Dates(p.CoverageStart)
	if p.Dependant() {
		cov.MainNationalID = nationalid.Mask(p.MainNationalID)
	}
	if !p.CoverageEnd.IsZero() {
		cov.CoverageEnd, cov.CoverageEndHijri = persian.Dates(p.CoverageEnd)
	}
	month := persian.Hijri(day).MonthIndex()
	cov.PaidDays = p.Contributions.PaidDays(month-c.Policy.WindowMonths, month-1)
	if p.Supplementary.Covers(day) {
		cov.Supplementary = &SuppCoverage{Insurer: p.Supplementary.Insurer, Plan: p.Supplementary.Plan, Caps: p.Supplementary.Caps}
	}
	return cov
}
