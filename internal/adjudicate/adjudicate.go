// Package adjudicate decides, per item of a prescription, dispense or paper
// prescription, whether the insurer covers it and who pays what: the one
// library function behind the rules service (before a practitioner signs)
// and the submit and dispense paths (after), so that the answer before
// signing and the decision after can never disagree for the same data and
// date.
package adjudicate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/nuskha/nuskha/internal/catalogue"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/persian"
	"github.com/nuskha/nuskha/internal/rules"
	"github.com/nuskha/nuskha/internal/rx"
)

// Request is what is judged. Amounts are integer rials throughout.
type Request struct {
	Scope rules.Scope `json:"scope"`
	// Date is the day judged by, in either calendar. Default: the
	// prescription's issue day for prescribe and paper, today for
	// dispense and paraclinic.
	Date string `json:"date,omitempty"`
	// Prescription is the (unsigned) prescription payload, v1. For paper
	// it is the paper prescription as entered at the pharmacy.
	Prescription *rx.Prescription `json:"prescription"`
	// Dispensed is what is handed out or performed (dispense, paraclinic,
	// paper); absent means exactly what was prescribed.
	Dispensed []rx.DispensedItem `json:"dispensed,omitempty"`
	// HandedOutAt is, when the exchange judges again a dispense it
	// stored before (its settlement was interrupted), when it was handed
	// out: it is judged by that day — its eligibility, catalogue, caps
	// and refill window — not by the day it is settled (set by the
	// exchange, never read from a request body).
	HandedOutAt time.Time `json:"-"`
	// Fills are, when a stored prescription is dispensed (set by the
	// exchange, never read from a request body), the fill of the
	// prescription each judged line is counted against, in the order of
	// Dispensed (of the prescription's items when Dispensed is absent).
	// The patient's earlier dispenses of the same prescription and fill
	// complete the same supply — one fill given in parts over several
	// visits — so the rules judging a line do not see them (that no fill
	// is given more than its quantity is the exchange store's guard); an
	// earlier fill of the same prescription is judged against as any
	// other dispense. Without Fills every earlier dispense is seen, and
	// Commit records the dispense as of no prescription.
	Fills []int `json:"-"`
}

// Item is the decision for one item.
type Item struct {
	Index  int    `json:"index"`
	Code   string `json:"code"`
	Kind   string `json:"kind"`
	Name   string `json:"name,omitempty"`
	NameFA string `json:"name_fa,omitempty"`
	// Allowed: no rule rejects it, so the insurer covers it.
	Allowed  bool `json:"allowed"`
	Quantity int  `json:"quantity"`
	// MaxCoveredQuantity is the most units of this item the insurer
	// covers on one prescription (the catalogue's maximum; 0: no limit).
	MaxCoveredQuantity int `json:"max_covered_quantity"`
	// CoveredQuantity is how many units this decision covers: the
	// quantity up to that maximum, 0 when the item is not allowed.
	CoveredQuantity int   `json:"covered_quantity"`
	UnitPrice       int64 `json:"unit_price"`
	Total           int64 `json:"total"`
	// InsurerPays is the basic insurance's share (CoveredAmount).
	InsurerPays int64 `json:"insurer_pays"`
	// SupplementaryPays is what supplementary insurance pays of the
	// patient's share, up to what is left of its annual cap.
	SupplementaryPays int64 `json:"supplementary_pays"`
	// PatientPays is the amount payable at the counter.
	PatientPays int64             `json:"patient_pays"`
	Violations  []rules.Violation `json:"violations"`

	// suppAsk is what supplementary insurance would pay with no cap: the
	// patient's share of the covered units.
	suppAsk int64
	atc     string
}

// Decision is the answer for a whole request.
type Decision struct {
	Scope            rules.Scope       `json:"scope"`
	Date             string            `json:"date"`
	DateHijri        string            `json:"date_hijri"`
	RuleSet          string            `json:"rule_set"`
	CatalogueVersion string            `json:"catalogue_version"`
	Eligibility      insured.Result    `json:"eligibility"`
	Allowed          bool              `json:"allowed"` // no rule rejects anything
	Items            []Item            `json:"items"`
	Violations       []rules.Violation `json:"violations"` // prescription-wide
	Total            int64             `json:"total"`
	InsurerPays      int64             `json:"insurer_pays"`
	SupplementaryPay int64             `json:"supplementary_pays"`
	PatientPays      int64             `json:"patient_pays"`

	nationalID string
	supp       *insured.SuppCoverage
	input      *rules.Input
	// prescriptionID and fills are the request's, when it gave fills.
	prescriptionID string
	fills          []int
}

// Catalogue finds the catalogue version in force on a day.
type Catalogue interface {
	At(ctx context.Context, day time.Time) (*catalogue.Version, error)
}

// Adjudicator holds what decisions are made from.
type Adjudicator struct {
	Eligibility *insured.Checker
	Catalogue   Catalogue
	Rules       *rules.Engine
	History     insured.History
	Usage       insured.Usage
	Now         func() time.Time
	// LookBack is how far back dispenses are read for the rules (365
	// days when zero).
	LookBack time.Duration
	// DefaultDaysSupply is how long a dispensed quantity is assumed to
	// last when the prescription gives no repeat interval (30 when zero).
	DefaultDaysSupply int
	Log               *slog.Logger
}

// Check decides a request without changing anything. Errors are for a
// request that cannot be judged at all (bad input, no catalogue in force,
// a store that cannot be read); a request that is judged and refused is a
// Decision with Allowed false.
//
// It goes in steps, each a function below: the request is checked before
// anything is read; the day judged by decides what is read (eligibility,
// the catalogue, the history); the rules judge an Input built from those;
// then each item is priced and shared between the insurer, supplementary
// insurance (within what its caps have left) and the patient.
func (a *Adjudicator) Check(ctx context.Context, req Request) (*Decision, error) {
	p, err := checkRequest(req)
	if err != nil {
		return nil, err
	}
	day, err := judgedDay(req, p, persian.Day(a.Now()))
	if err != nil {
		return nil, err
	}
	lines, err := judgedLines(req, p)
	if err != nil {
		return nil, err
	}
	f, err := a.read(ctx, p.Patient.NationalID, day)
	if err != nil {
		return nil, err
	}
	set := a.Rules.Current() // once: a reload meanwhile does not split the decision
	in, entries, err := ruleInput(req.Scope, day, p, lines, f)
	if err != nil {
		return nil, err
	}
	if len(req.Fills) > 0 && (len(req.Fills) != len(lines) || p.ID == "") {
		return nil, fmt.Errorf("adjudicate: %d fills for %d lines of prescription %q", len(req.Fills), len(lines), p.ID)
	}
	violations, err := a.evaluateByFill(ctx, set, in, f.hist, p.ID, req.Fills)
	if err != nil {
		return nil, err
	}

	dec, wideReject := newDecision(req.Scope, day, set.Version(), f, p.Patient.NationalID, in, violations)
	if len(req.Fills) > 0 {
		dec.prescriptionID, dec.fills = p.ID, slices.Clone(req.Fills)
	}
	caps := a.caps(dec, day)
	for i, l := range lines {
		it, err := judgeItem(i, l, entries[i], in.Items[i], violations, !wideReject && f.elig.Eligible, day)
		if err != nil {
			return nil, err
		}
		if it.Allowed {
			covered := cover(&it, entries[i])
			if err := caps.supplementary(ctx, &it, covered); err != nil {
				return nil, err
			}
		}
		it.PatientPays = it.Total - it.InsurerPays - it.SupplementaryPays // what nobody else pays
		if err := dec.add(it); err != nil {
			return nil, err
		}
	}
	if wideReject || !f.elig.Eligible {
		dec.Allowed = false
	}
	return dec, nil
}

// checkRequest refuses a request that cannot be judged, before anything
// is read for it, and returns its prescription normalised (rx.Prepare).
func checkRequest(req Request) (*rx.Prescription, error) {
	if !slices.Contains(rules.Scopes(), req.Scope) {
		return nil, errs.FieldError(errs.UnknownScope, "scope", "scope %q is not one of %v", req.Scope, rules.Scopes())
	}
	p := req.Prescription
	if p == nil {
		return nil, errs.FieldError(errs.Invalid, "prescription", "a prescription is required")
	}
	if !p.IssuedAt.IsZero() && !persian.InRange(p.IssuedAt) {
		return nil, errs.FieldError(errs.Invalid, "prescription.issued_at", "is outside the years accepted")
	}
	if err := rx.Prepare(p); err != nil {
		return nil, prefixed("prescription.", err)
	}
	for i, it := range p.Items {
		// One line per code: the per-prescription maximum and the
		// covered quantity are per code.
		if slices.ContainsFunc(p.Items[:i], func(o rx.Item) bool { return o.Code == it.Code }) {
			return nil, errs.FieldError(errs.Invalid, fmt.Sprintf("prescription.items[%d].code", i), "%s appears twice; one line per code", it.Code)
		}
	}
	return p, nil
}

// judgedDay is the day a request is judged by. A prescription is judged
// by its issue day (a vendor may ask about another day, for planning).
// What is handed out is judged today, whatever the caller would prefer:
// eligibility, the catalogue, the caps and the refill window are those of
// the day it happens.
func judgedDay(req Request, p *rx.Prescription, today time.Time) (time.Time, error) {
	issued := persian.Day(p.IssuedAt)
	if issued.After(today) {
		return time.Time{}, errs.FieldError(errs.Invalid, "prescription.issued_at", "is in the future")
	}
	if req.Scope != rules.ScopePrescribe {
		if !req.HandedOutAt.IsZero() {
			if d := persian.Day(req.HandedOutAt); !d.Before(issued) && !d.After(today) {
				return d, nil
			}
			return time.Time{}, fmt.Errorf("adjudicate: a stored dispense handed out at %s, not between the prescription's issue day and today", req.HandedOutAt)
		}
		if req.Date != "" {
			if d, err := persian.ParseDate(req.Date); err != nil || !d.Equal(today) {
				return time.Time{}, errs.FieldError(errs.Invalid, "date", "what is handed out is judged on the day it is handed out (today, %s); date is for prescribe only", today.Format(time.DateOnly))
			}
		}
		return today, nil
	}
	if req.Date == "" {
		return issued, nil
	}
	d, err := persian.ParseDate(req.Date)
	if err != nil {
		return time.Time{}, errs.FieldError(errs.Invalid, "date", "%v", err)
	}
	if d.Before(issued) {
		return time.Time{}, errs.FieldError(errs.Invalid, "date", "is before the prescription's issue day")
	}
	return d, nil
}

// facts are what a decision is made from besides the request, as they
// stand on the day judged.
type facts struct {
	elig insured.Result
	cat  *catalogue.Version
	hist []insured.Dispensed // the look-back window, newest first
}

// read gathers the facts for a patient on day. A store that cannot be
// read is errs.Unavailable: the request may be asked again, and is not
// refused for it.
func (a *Adjudicator) read(ctx context.Context, nationalID string, day time.Time) (facts, error) {
	cat, err := a.Catalogue.At(ctx, day)
	if err != nil {
		return facts{}, err
	}
	lookBack := a.LookBack
	if lookBack == 0 {
		lookBack = 365 * 24 * time.Hour
	}
	since := day.Add(-lookBack)
	// The registry's record and the history read together when one store
	// keeps both (rxstore.Insured): one round trip, not two.
	if both, ok := a.History.(insured.Facts); ok && sameStore(a.History, a.Eligibility.Registry) {
		p, main, found, hist, err := both.PersonWithHistory(ctx, nationalID, since)
		if err != nil {
			return facts{}, errs.Wrap(errs.Unavailable, err, "the insured-person registry and the dispense history cannot be read now")
		}
		return facts{elig: a.Eligibility.Judge(nationalID, day, p, main, found), cat: cat, hist: hist}, nil
	}
	elig, err := a.Eligibility.Check(ctx, nationalID, day)
	if err != nil {
		return facts{}, errs.Wrap(errs.Unavailable, err, "the insured-person registry cannot be read now")
	}
	hist, err := a.History.Since(ctx, nationalID, since)
	if err != nil {
		return facts{}, errs.Wrap(errs.Unavailable, err, "the dispense history cannot be read now")
	}
	return facts{elig: elig, cat: cat, hist: hist}, nil
}

// sameStore reports whether x and y are one store: the same pointer
// (comparing values of other kinds could panic, or mean nothing).
func sameStore(x, y any) bool {
	t := reflect.TypeOf(x)
	return t != nil && t.Kind() == reflect.Pointer && t == reflect.TypeOf(y) && x == y
}

// ruleInput is what the rules see, and each line's catalogue entry (the
// zero Item when its code is not in the catalogue). A substitute is
// refused here, where both codes' entries are at hand.
func ruleInput(scope rules.Scope, day time.Time, p *rx.Prescription, lines []line, f facts) (*rules.Input, []catalogue.Item, error) {
	in := &rules.Input{Scope: scope, Date: day}
	in.Patient = patient(p, f.elig, day)
	in.Prescriber = rules.Prescriber{Profession: p.Prescriber.Profession, Specialty: p.Prescriber.Specialty}
	in.Prescription.IssuedDaysAgo = days(persian.Day(p.IssuedAt), day)
	entries := make([]catalogue.Item, len(lines))
	for i, l := range lines {
		e, found := f.cat.Lookup(l.Code)
		if l.SubstituteFor != "" {
			orig, ok := f.cat.Lookup(l.SubstituteFor)
			if !ok || !found || !substitutable(orig, e) {
				return nil, nil, errs.FieldError(errs.Invalid, fmt.Sprintf("dispensed[%d].code", i), "%s is not a substitute for %s (a drug needs the same active substance, ATC level 5)", l.Code, l.SubstituteFor)
			}
		}
		entries[i] = e
		kind := l.Kind
		if found {
			kind = e.Kind
		}
		in.Items = append(in.Items, rules.Item{Index: i, Kind: kind, Code: l.Code, Quantity: l.Quantity, Repeats: l.Repeats,
			RepeatIntervalDays: l.RepeatIntervalDays, SubstituteFor: l.SubstituteFor, Catalogue: entry(e, found)})
		if kind == catalogue.KindDrug {
			in.Prescription.DrugCount++
		}
	}
	in.Prescription.ItemCount = len(in.Items)
	for _, h := range f.hist {
		in.History = append(in.History, rules.Dispensed{Code: h.Code, ATC: h.ATC, Quantity: h.Quantity, DaysSupply: h.DaysSupply,
			DaysAgo: days(persian.Day(h.DispensedAt), day)})
	}
	return in, entries, nil
}

// evaluate judges in by set. A rule that could not be evaluated has
// already failed closed: it is a reject violation among the others. The
// decision stands; the failure is the rule author's to fix, and is
// counted by the set and logged here.
func (a *Adjudicator) evaluate(ctx context.Context, set *rules.Set, in *rules.Input) ([]rules.Violation, error) {
	violations, err := set.Evaluate(in)
	var evalErr *rules.EvalError
	switch {
	case errors.As(err, &evalErr):
		if a.Log != nil {
			a.Log.ErrorContext(ctx, "rule evaluation failed; the rule rejected", "rule_set", set.Version(), "err", evalErr)
		}
	case err != nil:
		return nil, err
	}
	return violations, nil
}

// evaluateByFill judges in by set, each line against the history less
// the earlier parts of its own fill (hist is in.History as read, row for
// row): once per fill among the lines — once in all but the rare dispense
// of items in different fills — each line's violations taken from its
// fill's evaluation, the prescription-wide ones from any (once each).
func (a *Adjudicator) evaluateByFill(ctx context.Context, set *rules.Set, in *rules.Input, hist []insured.Dispensed, prescriptionID string, fills []int) ([]rules.Violation, error) {
	if len(fills) == 0 {
		return a.evaluate(ctx, set, in)
	}
	var out []rules.Violation
	for i, fill := range fills {
		if slices.Contains(fills[:i], fill) {
			continue
		}
		judged := *in
		judged.History = make([]rules.Dispensed, 0, len(in.History))
		for j, h := range hist {
			if h.PrescriptionID != prescriptionID || h.Fill != fill {
				judged.History = append(judged.History, in.History[j])
			}
		}
		vs, err := a.evaluate(ctx, set, &judged)
		if err != nil {
			return nil, err
		}
		for _, v := range vs {
			switch {
			case v.Item >= 0 && v.Item < len(fills) && fills[v.Item] != fill:
			case v.Item < 0 && slices.ContainsFunc(out, func(o rules.Violation) bool { return o.Item < 0 && o.RuleID == v.RuleID }):
			default:
				out = append(out, v)
			}
		}
	}
	return out, nil
}

// newDecision starts the decision with the prescription-wide violations,
// and says whether one of them rejects, which rejects every item.
func newDecision(scope rules.Scope, day time.Time, ruleSet string, f facts, nationalID string, in *rules.Input, violations []rules.Violation) (dec *Decision, wideReject bool) {
	dec = &Decision{
		Scope: scope, Date: day.Format(time.DateOnly), DateHijri: persian.Hijri(day).String(),
		RuleSet: ruleSet, CatalogueVersion: f.cat.ID, Eligibility: f.elig, Allowed: true,
		Violations: []rules.Violation{}, nationalID: nationalID, input: in,
	}
	if f.elig.Coverage != nil && f.elig.Eligible {
		dec.supp = f.elig.Coverage.Supplementary
	}
	for _, v := range violations {
		if v.Item < 0 {
			dec.Violations = append(dec.Violations, v)
			if v.Severity == rules.Reject {
				wideReject = true
			}
		}
	}
	return dec, wideReject
}

// judgeItem is item i's ruling and price before anyone's share: its own
// violations, whether it is allowed (allowed says whether the patient is
// eligible and no prescription-wide rule rejects), and its total.
func judgeItem(i int, l line, e catalogue.Item, ri rules.Item, violations []rules.Violation, allowed bool, day time.Time) (Item, error) {
	it := Item{Index: i, Code: l.Code, Kind: ri.Kind, Name: e.Name, NameFA: e.NameFA, Quantity: l.Quantity,
		UnitPrice: e.Price, MaxCoveredQuantity: e.MaxQuantity, Allowed: allowed, Violations: []rules.Violation{}, atc: e.ATC}
	if !ri.Catalogue.Found {
		// Said first and in its own words: a mistyped code is not a
		// coverage decision, whatever the rules made of an empty entry.
		it.Violations = append(it.Violations, unknownCode(i, l.Code, day))
		it.Allowed = false
	}
	for _, v := range violations {
		if v.Item == i {
			it.Violations = append(it.Violations, v)
			if v.Severity == rules.Reject {
				it.Allowed = false
			}
		}
	}
	var err error
	if it.Total, err = mul(e.Price, int64(l.Quantity)); err != nil {
		return Item{}, errs.FieldError(errs.Invalid, fmt.Sprintf("items[%d]", i), "the amount does not fit in rials arithmetic")
	}
	return it, nil
}

// cover sets an allowed item's covered quantity (up to the catalogue's
// maximum) and the insurer's share of it, and returns the covered amount.
// The share is rounded down to the rial: the patient never pays a
// fraction, and the insurer never more than its percentage.
func cover(it *Item, e catalogue.Item) int64 {
	it.CoveredQuantity = it.Quantity
	if e.MaxQuantity > 0 {
		it.CoveredQuantity = min(it.Quantity, e.MaxQuantity)
	}
	covered := e.Price * int64(it.CoveredQuantity) // ≤ Total, which fitted
	it.InsurerPays = share(covered, e.CoveragePercent)
	return covered
}

// capsLeft is what each supplementary cap has left for one request: read
// once per category, then less what the request's earlier items take, so
// that two items of one request cannot both spend the same remainder.
type capsLeft struct {
	usage insured.Usage
	dec   *Decision
	year  int
	left  map[string]int64
}

func (a *Adjudicator) caps(dec *Decision, day time.Time) *capsLeft {
	return &capsLeft{usage: a.Usage, dec: dec, year: persian.Hijri(day).Year, left: map[string]int64{}}
}

// supplementary sets what supplementary insurance pays of the patient's
// share of the covered amount, up to what its cap for the item's
// category has left; nothing when the patient has no supplementary plan
// or the plan has no cap for the category.
func (c *capsLeft) supplementary(ctx context.Context, it *Item, covered int64) error {
	if c.dec.supp == nil {
		return nil
	}
	category := capCategory(it.Kind)
	limit, ok := c.dec.supp.Caps[category]
	if !ok {
		return nil
	}
	remaining, read := c.left[category]
	if !read {
		used, err := c.usage.Used(ctx, c.dec.cap(category, c.year))
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "supplementary usage cannot be read now")
		}
		remaining = max(0, limit-used)
	}
	patientShareOfCovered := covered - it.InsurerPays
	it.suppAsk = patientShareOfCovered
	it.SupplementaryPays = min(patientShareOfCovered, remaining)
	c.left[category] = remaining - it.SupplementaryPays
	return nil
}

// add appends a decided item and adds its amounts to the decision's. An
// item not allowed makes the decision not allowed.
func (d *Decision) add(it Item) error {
	if !it.Allowed {
		d.Allowed = false
	}
	var err error
	if d.Total, err = add(d.Total, it.Total); err != nil {
		return errs.FieldError(errs.Invalid, "prescription.items", "the amounts do not fit in rials arithmetic")
	}
	d.InsurerPays += it.InsurerPays // each ≤ its item's total, so the sums fit too
	d.SupplementaryPay += it.SupplementaryPays
	d.PatientPays += it.PatientPays
	d.Items = append(d.Items, it)
	return nil
}

// unknownCode is the violation of item i, whose code is not in the
// catalogue in force on day.
func unknownCode(i int, code string, day time.Time) rules.Violation {
	g, h := persian.Dates(day)
	return rules.Violation{RuleID: rules.UnknownCode, Severity: rules.Reject, Item: i,
		Message:   fmt.Sprintf("Unknown code %s: it is not in the catalogue in force on %s (%s).", code, g, h),
		MessageFA: fmt.Sprintf("کد %s ناشناخته است: در فهرست دارو و خدمات معتبر در %s نیست.", code, h)}
}

// Commit records a dispense that Check decided: supplementary caps are
// consumed (each item keyed by dispenseID and its index, so that a retried
// commit consumes once and gets the same amounts) and the items enter the
// patient's history for the rules that look back, with the prescription
// and fill each was counted against when the request gave them (Fills).
// The decision's supplementary and patient amounts become what the caps
// actually paid, which is less than Check estimated if another dispense
// used the cap in between; a cap is never driven below zero.
func (a *Adjudicator) Commit(ctx context.Context, dec *Decision, dispenseID string, at time.Time) error {
	if dec.Scope == rules.ScopePrescribe {
		return errs.New(errs.Invalid, "a prescription is not dispensed; only dispense, paper and paraclinic decisions are committed")
	}
	if dispenseID == "" {
		return errs.FieldError(errs.Invalid, "id", "a dispense id is required")
	}
	day, _ := time.Parse(time.DateOnly, dec.Date)
	year := persian.Hijri(day).Year
	dec.SupplementaryPay, dec.PatientPays = 0, 0
	var hist []insured.Dispensed
	for i := range dec.Items {
		it := &dec.Items[i]
		if it.suppAsk > 0 {
			limit := dec.supp.Caps[capCategory(it.Kind)]
			paid, err := a.Usage.Consume(ctx, insured.Consumption{Key: fmt.Sprintf("%s/%d", dispenseID, i), Cap: dec.cap(capCategory(it.Kind), year), Limit: limit, Amount: it.suppAsk})
			if errors.Is(err, &errs.Error{Code: errs.Conflict}) {
				return err // the dispense id was used for another dispense
			}
			if err != nil {
				return errs.Wrap(errs.Unavailable, err, "supplementary insurance cannot be charged now")
			}
			if paid < 0 || paid > it.suppAsk {
				return fmt.Errorf("adjudicate: supplementary usage paid %d of %d asked", paid, it.suppAsk)
			}
			it.SupplementaryPays = paid
		}
		it.PatientPays = it.Total - it.InsurerPays - it.SupplementaryPays
		dec.SupplementaryPay += it.SupplementaryPays
		dec.PatientPays += it.PatientPays
		h := insured.Dispensed{DispenseID: dispenseID, Item: i, NationalID: dec.nationalID, Code: it.Code, ATC: it.atc,
			Quantity: it.Quantity, DaysSupply: a.daysSupply(dec.input.Items[i]), DispensedAt: at.UTC()}
		if dec.fills != nil {
			h.PrescriptionID, h.Fill = dec.prescriptionID, dec.fills[i]
		}
		hist = append(hist, h)
	}
	if err := a.History.Record(ctx, hist); err != nil {
		if errors.Is(err, &errs.Error{Code: errs.Conflict}) {
			return err
		}
		return errs.Wrap(errs.Unavailable, err, "the dispense history cannot be written now")
	}
	return nil
}

// judgedLines is what is judged: the prescribed items, or what is handed
// out, normalised and checked against the prescription — each dispensed
// code once, each from a prescribed line (as itself or as a substitute
// naming it), no more in total per prescribed line than was prescribed —
// and carrying that line's kind and repeats.
func judgedLines(req Request, p *rx.Prescription) ([]line, error) {
	if len(req.Dispensed) == 0 {
		out := make([]line, len(p.Items))
		for i, it := range p.Items {
			out[i] = line{it.Code, it.Kind, it.Quantity, it.Repeats, it.RepeatIntervalDays, ""}
		}
		return out, nil
	}
	if req.Scope == rules.ScopePrescribe {
		return nil, errs.FieldError(errs.Invalid, "dispensed", "nothing is dispensed when prescribing")
	}
	if len(req.Dispensed) > 50 {
		return nil, errs.FieldError(errs.Invalid, "dispensed", "at most 50 items")
	}
	out := make([]line, len(req.Dispensed))
	given := make([]int, len(p.Items)) // dispensed quantity per prescribed line
	for i, d := range req.Dispensed {
		f := func(name string) string { return fmt.Sprintf("dispensed[%d].%s", i, name) }
		d.Code = strings.TrimSpace(persian.Digits(d.Code))
		d.SubstituteFor = strings.TrimSpace(persian.Digits(d.SubstituteFor))
		switch {
		case !rx.ValidCode(d.Code):
			return nil, errs.FieldError(errs.Invalid, f("code"), "is not a catalogue code")
		case d.SubstituteFor != "" && !rx.ValidCode(d.SubstituteFor):
			return nil, errs.FieldError(errs.Invalid, f("substitute_for"), "is not a catalogue code")
		case d.SubstituteFor == d.Code:
			return nil, errs.FieldError(errs.Invalid, f("substitute_for"), "an item cannot substitute for itself")
		case d.Quantity < 1 || d.Quantity > 10000:
			return nil, errs.FieldError(errs.Invalid, f("quantity"), "must be from 1 to 10000")
		case slices.ContainsFunc(out[:i], func(o line) bool { return o.Code == d.Code }):
			return nil, errs.FieldError(errs.Invalid, f("code"), "%s appears twice", d.Code)
		}
		prescribed := d.Code
		if d.SubstituteFor != "" {
			prescribed = d.SubstituteFor
			if slices.ContainsFunc(p.Items, func(it rx.Item) bool { return it.Code == d.Code }) {
				return nil, errs.FieldError(errs.Invalid, f("code"), "%s is itself prescribed: dispense it as itself", d.Code)
			}
		}
		j := slices.IndexFunc(p.Items, func(it rx.Item) bool { return it.Code == prescribed })
		if j < 0 {
			return nil, errs.FieldError(errs.Invalid, f("code"), "%s is not on the prescription (a substitute names the prescribed code in substitute_for)", prescribed)
		}
		if given[j] += d.Quantity; given[j] > p.Items[j].Quantity {
			return nil, errs.FieldError(errs.Invalid, f("quantity"), "more of %s than the %d prescribed", prescribed, p.Items[j].Quantity)
		}
		it := p.Items[j]
		out[i] = line{d.Code, it.Kind, d.Quantity, it.Repeats, it.RepeatIntervalDays, d.SubstituteFor}
	}
	return out, nil
}

// substitutable reports whether sub may be handed out for prescribed: the
// same active substance (ATC level 5) for a drug, the same kind of service
// otherwise. Anything else is a different treatment, for the prescriber
// to decide.
func substitutable(prescribed, sub catalogue.Item) bool {
	if prescribed.Kind != sub.Kind {
		return false
	}
	if prescribed.Kind == catalogue.KindDrug {
		return len(prescribed.ATC) == 7 && prescribed.ATC == sub.ATC
	}
	return true
}

// line is one thing judged: a prescribed item, or a dispensed one with
// what it was prescribed as.
type line struct {
	Code               string
	Kind               string
	Quantity           int
	Repeats            int
	RepeatIntervalDays int
	SubstituteFor      string // the prescribed code this line replaces
}

// DaysSupply is how long a dispensed item lasts, for the refill rule.
func (a *Adjudicator) daysSupply(in rules.Item) int {
	if in.RepeatIntervalDays > 0 {
		return in.RepeatIntervalDays
	}
	if a.DefaultDaysSupply > 0 {
		return a.DefaultDaysSupply
	}
	return 30
}

func patient(p *rx.Prescription, elig insured.Result, day time.Time) rules.Patient {
	birth, _ := time.Parse(time.DateOnly, p.Patient.BirthDate) // checked by rx.Prepare
	sex := p.Patient.Sex
	out := rules.Patient{Eligible: elig.Eligible}
	if c := elig.Coverage; c != nil {
		// The registry's record is the insurer's; what the prescription
		// says is what the practitioner typed.
		if c.Person != nil {
			birth, sex = c.Person.BirthDate, c.Person.Sex
		}
		if elig.Eligible {
			out.Fund, out.Dependant = string(c.Fund), c.Dependant
		}
	}
	out.Sex = sex
	out.AgeYears, out.AgeMonths = age(birth, day)
	return out
}

// age is completed years and months on day.
func age(birth, day time.Time) (years, months int) {
	months = (day.Year()-birth.Year())*12 + int(day.Month()) - int(birth.Month())
	if day.Day() < birth.Day() {
		months--
	}
	months = max(0, months)
	return months / 12, months
}

// days is whole days from a to b (dates at UTC midnight).
func days(a, b time.Time) int { return int(b.Sub(a).Hours() / 24) }

func entry(e catalogue.Item, found bool) rules.Entry {
	if !found {
		return rules.Entry{}
	}
	return rules.Entry{
		Found: true, Kind: e.Kind, GenericName: e.Name, ATC: e.ATC, Form: e.Form, Strength: e.Strength, Price: e.Price,
		CoveragePercent: e.CoveragePercent, PrescriptionOnly: e.PrescriptionOnly, MaxQuantity: e.MaxQuantity,
		Professions: e.Professions, Specialties: e.Specialties, MinAgeYears: e.MinAgeYears, MaxAgeYears: e.MaxAgeYears,
		Sex: e.Sex, ControlledClass: e.ControlledClass, PaperAllowed: e.PaperAllowed,
	}
}

// capCategory is the supplementary benefit category of an item kind.
func capCategory(kind string) string { return kind }

func (d *Decision) cap(category string, year int) insured.Cap {
	return insured.Cap{NationalID: d.nationalID, Insurer: d.supp.Insurer, Plan: d.supp.Plan, Year: year, Category: category}
}

// share is percent of amount, rounded down.
func share(amount int64, percent int) int64 {
	hi, lo := bits.Mul64(uint64(amount), uint64(percent))
	q, _ := bits.Div64(hi, lo, 100)
	return int64(q)
}

var errOverflow = errors.New("overflow")

func add(a, b int64) (int64, error) {
	if b > math.MaxInt64-a {
		return 0, errOverflow
	}
	return a + b, nil
}

func mul(a, b int64) (int64, error) {
	if a < 0 || b < 0 || (b != 0 && a > math.MaxInt64/b) {
		return 0, errOverflow
	}
	return a * b, nil
}

// prefixed puts a field error inside the request's member.
func prefixed(prefix string, err error) error {
	var e *errs.Error
	if errors.As(err, &e) && e.Field != "" {
		c := *e
		c.Field = prefix + e.Field
		return &c
	}
	return err
}
