package adjudicate_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/adjudicate"
	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/persian"
	"github.com/nuskha/nuskha/internal/rules"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/testutil/rxdtest"
)

var ctx = context.Background()

// day is 1405-06-15; the registry's generated persons are covered then.
var day = insuredtest.Day

type fixture struct {
	a   *adjudicate.Adjudicator
	reg *rxstore.Insured
}

// on moves the fixture's clock to 10:00 UTC of a day (Gregorian or Solar
// Hijri): what is handed out is judged on the day it is handed out.
func (f *fixture) on(t testing.TB, date string) time.Time {
	t.Helper()
	d, err := persian.ParseDate(date)
	if err != nil {
		t.Fatal(err)
	}
	now := d.Add(10 * time.Hour)
	f.a.Now = func() time.Time { return now }
	return now
}

// setup is the real thing on SQLite (or PostgreSQL): the generated
// registry, the sample catalogue in force from 2026-01-01 and the starter
// rule set.
func setup(t testing.TB, driver string) *fixture {
	t.Helper()
	d := rxdtest.Open(t, driver, 80)
	return &fixture{reg: d.Registry, a: d.Adjudicator(func() time.Time { return day.Add(9 * time.Hour) })}
}

// person i of the generated registry: 0 is a woman born 1330 with
// supplementary insurance, 1 a man born 1331 without, 69 a boy of five.
func prescription(person int, specialty string, items ...rx.Item) *rx.Prescription {
	births := map[int]string{0: "1951-03-21", 1: "1952-04-22", 69: "2021-01-03", 4: "1955-07-27"}
	sex := []string{"female", "male"}[person%2]
	return &rx.Prescription{
		V: rx.Version, Type: rx.KindPrescription, ID: rx.NewID(), IssuedAt: day.Add(6 * time.Hour),
		Patient:    rx.Patient{NationalID: insuredtest.NationalID(person), Name: "بیمار آزمایشی", BirthDate: births[person], Sex: sex},
		Prescriber: rx.Prescriber{CouncilNumber: "MC-1", Profession: "physician", Specialty: specialty},
		Practice:   rx.Practice{Name: "درمانگاه نمونه"},
		Items:      items,
	}
}

func drug(code string, qty int) rx.Item { return rx.Item{Kind: "drug", Code: code, Quantity: qty} }

func ruleIDs(vs []rules.Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.RuleID)
	}
	return out
}

func TestCoverageAndCost(t *testing.T) {
	f := setup(t, sqlstore.SQLite)
	d, err := f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopePrescribe, Prescription: prescription(0, "general",
		drug(catalogtest.Amoxicillin, 20), drug(catalogtest.Metformin, 200), drug(catalogtest.Sildenafil, 4))})
	if err != nil {
		t.Fatal(err)
	}
	if d.Date != "2026-09-06" || d.DateHijri != "1405-06-15" || !d.Eligibility.Eligible || d.RuleSet == "" || d.CatalogueVersion == "" {
		t.Fatalf("decision header %+v", d)
	}
	amox, metf, sild := d.Items[0], d.Items[1], d.Items[2]
	// 20 × 32 000 = 640 000; the insurer 70 % = 448 000; the patient's
	// 192 000 is paid by supplementary insurance (drug cap 50 000 000).
	if !amox.Allowed || amox.Total != 640000 || amox.InsurerPays != 448000 || amox.SupplementaryPays != 192000 || amox.PatientPays != 0 || amox.CoveredQuantity != 20 || amox.MaxCoveredQuantity != 30 {
		t.Errorf("amoxicillin %+v", amox)
	}
	// 200 over the maximum of 180: rejected, the patient pays everything,
	// and the answer says how many would be covered.
	if metf.Allowed || metf.InsurerPays != 0 || metf.PatientPays != 200*18000 || metf.MaxCoveredQuantity != 180 || !slices.Contains(ruleIDs(metf.Violations), "quantity-limit") {
		t.Errorf("metformin %+v", metf)
	}
	// Sildenafil is for men and not covered (0 %).
	if sild.Allowed || !slices.Contains(ruleIDs(sild.Violations), "sex-limit") || !slices.Contains(ruleIDs(sild.Violations), "item-covered") {
		t.Errorf("sildenafil %+v", sild)
	}
	if d.Allowed || d.Total != amox.Total+metf.Total+sild.Total || d.InsurerPays != 448000 || d.PatientPays != d.Total-448000-192000 {
		t.Errorf("totals %+v", d)
	}
	// Rounding: 3 × 25 000 × 70 % is exact; 1 × 45 000 × 70 % = 31 500;
	// a price whose share has a fraction is rounded down for the insurer.
	d, err = f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopePrescribe, Prescription: prescription(1, "general", drug(catalogtest.Atorvastatin, 1))})
	if err != nil || d.Items[0].InsurerPays != 31500 || d.Items[0].SupplementaryPays != 0 || d.Items[0].PatientPays != 13500 {
		t.Fatalf("atorvastatin for a man without supplementary insurance: %+v %v", d.Items, err)
	}
}

// A code that is not in the catalogue in force is said to be unknown —
// a typing mistake to fix — not "not covered", which would send the
// practitioner to argue with the insurer.
func TestUnknownCode(t *testing.T) {
	f := setup(t, sqlstore.SQLite)
	for _, scope := range []rules.Scope{rules.ScopePrescribe, rules.ScopePaper} {
		t.Run(string(scope), func(t *testing.T) {
			d, err := f.a.Check(ctx, adjudicate.Request{Scope: scope, Prescription: prescription(0, "general",
				drug(catalogtest.Amoxicillin, 20), drug("1000299", 10))})
			if err != nil {
				t.Fatal(err)
			}
			amox, typo := d.Items[0], d.Items[1]
			if !amox.Allowed || d.Allowed {
				t.Fatalf("decision %+v", d)
			}
			if typo.Allowed || typo.PatientPays != 0 || !slices.Equal(ruleIDs(typo.Violations), []string{rules.UnknownCode}) {
				t.Fatalf("unknown code judged %+v", typo)
			}
			v := typo.Violations[0]
			if v.Severity != rules.Reject || v.Item != 1 || v.Message != "Unknown code 1000299: it is not in the catalogue in force on 2026-09-06 (1405-06-15)." ||
				v.MessageFA != "کد 1000299 ناشناخته است: در فهرست دارو و خدمات معتبر در 1405-06-15 نیست." {
				t.Fatalf("violation %+v", v)
			}
		})
	}
}

func TestEligibilityDecides(t *testing.T) {
	f := setup(t, sqlstore.SQLite)
	// Person 11 is a dependant of 8; neither is registered as unpaid here,
	// so make one up: person 99 is not in the registry at all.
	p := prescription(1, "general", drug(catalogtest.Amoxicillin, 10))
	p.Patient.NationalID = insuredtest.NationalID(99)
	d, err := f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopeDispense, Prescription: p})
	if err != nil {
		t.Fatal(err)
	}
	if d.Allowed || d.Eligibility.Reason != insured.NoRecord || d.InsurerPays != 0 || d.PatientPays != 320000 || !slices.Contains(ruleIDs(d.Violations), "patient-eligible") {
		t.Fatalf("uninsured patient: %+v", d)
	}
}

func TestAgeSpecialtyControlledAndPaper(t *testing.T) {
	f := setup(t, sqlstore.SQLite)
	check := func(scope rules.Scope, p *rx.Prescription) *adjudicate.Decision {
		t.Helper()
		d, err := f.a.Check(ctx, adjudicate.Request{Scope: scope, Prescription: p})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	// A five-year-old: isotretinoin (from 12) refused, the paediatric
	// syrup (up to 12) allowed.
	d := check(rules.ScopePrescribe, prescription(69, "dermatology", drug(catalogtest.Isotretinoin, 30), drug(catalogtest.AcetaminophenSyrup, 1)))
	if d.Items[0].Allowed || !slices.Contains(ruleIDs(d.Items[0].Violations), "age-limit") || !d.Items[1].Allowed {
		t.Fatalf("child: %+v", d.Items)
	}
	// Methylphenidate by a general practitioner: controlled, specialist only.
	d = check(rules.ScopePrescribe, prescription(1, "general", drug(catalogtest.Methylphenidate, 30)))
	if got := ruleIDs(d.Items[0].Violations); d.Items[0].Allowed || !slices.Contains(got, "controlled-needs-specialist") || !slices.Contains(got, "prescriber-specialty") {
		t.Fatalf("methylphenidate by a GP: %v", got)
	}
	if d = check(rules.ScopePrescribe, prescription(1, "psychiatry", drug(catalogtest.Methylphenidate, 30))); !d.Allowed {
		t.Fatalf("methylphenidate by a psychiatrist: %+v", d.Items)
	}
	// On paper, a pharmacy may not accept it at all, nor a prescription
	// issued four days ago.
	if d = check(rules.ScopePaper, prescription(1, "psychiatry", drug(catalogtest.Methylphenidate, 30))); d.Items[0].Allowed {
		t.Fatalf("controlled on paper: %+v", d.Items)
	}
	old := prescription(1, "general", drug(catalogtest.Amoxicillin, 10))
	old.IssuedAt = day.AddDate(0, 0, -4)
	d, err := f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopePaper, Prescription: old})
	if err != nil || d.Allowed || !slices.Contains(ruleIDs(d.Violations), "paper-max-age") || d.Items[0].Allowed {
		t.Fatalf("stale paper: %+v %v", d, err)
	}
	// Five drugs on one prescription.
	p := prescription(1, "general", drug(catalogtest.Amoxicillin, 1), drug(catalogtest.Metformin, 1), drug(catalogtest.Atorvastatin, 1), drug(catalogtest.Omeprazole, 1), drug(catalogtest.Acetaminophen, 1))
	if d = check(rules.ScopePrescribe, p); d.Allowed || !slices.Contains(ruleIDs(d.Violations), "max-drug-items") || d.InsurerPays != 0 {
		t.Fatalf("five drugs: %+v", d)
	}
}

func TestHistoryRules(t *testing.T) {
	f := setup(t, sqlstore.SQLite)
	at := f.on(t, "1405-05-01")
	first, err := f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopeDispense, Prescription: early(prescription(1, "general", drug(catalogtest.Atorvastatin, 30)))})
	if err != nil || !first.Allowed {
		t.Fatalf("first dispense: %+v %v", first, err)
	}
	if err := f.a.Commit(ctx, first, "dispense-1", at); err != nil {
		t.Fatal(err)
	}
	// Ten days later the same drug again: a 30-day supply is not 80 % used.
	f.on(t, "2026-08-02")
	again, err := f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopeDispense, Prescription: early(prescription(1, "general", drug(catalogtest.Atorvastatin, 30)))})
	if err != nil || again.Items[0].Allowed || !slices.Contains(ruleIDs(again.Items[0].Violations), "refill-too-early") {
		t.Fatalf("refill after 10 days: %+v %v", again, err)
	}
	// Thirty days later it is due.
	at = f.on(t, "2026-08-22")
	due, err := f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopeDispense, Prescription: early(prescription(1, "general", drug(catalogtest.Atorvastatin, 30)))})
	if err != nil || !due.Allowed {
		t.Fatalf("refill after 30 days: %+v %v", due, err)
	}
	// Acetaminophen syrup shares the tablet's ATC code: duplicate therapy
	// is a warning, still covered.
	tab, _ := f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopeDispense, Prescription: early(prescription(69, "general", drug(catalogtest.Acetaminophen, 10)))})
	if err := f.a.Commit(ctx, tab, "dispense-2", at); err != nil {
		t.Fatal(err)
	}
	syr, _ := f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopePrescribe, Prescription: early(prescription(69, "general", drug(catalogtest.AcetaminophenSyrup, 1))), Date: "2026-08-22"})
	if !syr.Items[0].Allowed || !slices.Contains(ruleIDs(syr.Items[0].Violations), "duplicate-therapy") {
		t.Fatalf("duplicate therapy: %+v", syr.Items[0])
	}
	// Handing the syrup out in place of more tablets is still the same
	// substance too early: a brand change at the counter does not reset
	// the clock.
	sub, err := f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopeDispense, Prescription: early(prescription(69, "general", drug(catalogtest.Acetaminophen, 10))),
		Dispensed: []rx.DispensedItem{{Code: catalogtest.AcetaminophenSyrup, SubstituteFor: catalogtest.Acetaminophen, Quantity: 1}}})
	if err != nil || sub.Items[0].Allowed || !slices.Contains(ruleIDs(sub.Items[0].Violations), "refill-too-early") {
		t.Fatalf("an early refill as a substitute: %+v %v", sub, err)
	}
}

// early dates a prescription 20 July 2026, before the dispenses above.
func early(p *rx.Prescription) *rx.Prescription {
	p.IssuedAt = time.Date(2026, 7, 20, 8, 0, 0, 0, time.UTC)
	return p
}

// TestCapsConsumedByDispenses: supplementary insurance pays until its
// annual cap and never past it, however many dispenses commit at once.
func TestCapsConsumedByDispenses(t *testing.T) {
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			// Insulin: 5 pens × 2 500 000 = 12 500 000; the patient's 10 %
			// share is 1 250 000. The drug cap is 50 000 000: 40 such
			// dispenses are worth 50 000 000 exactly; run 48.
			const n = 48
			decisions := make([]*adjudicate.Decision, n)
			for i := range decisions {
				d, err := f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopeDispense, Prescription: prescription(0, "general", drug(catalogtest.InsulinGlargine, 5))})
				if err != nil || d.Items[0].SupplementaryPays != 1250000 {
					t.Fatalf("check %d: %+v %v", i, d, err)
				}
				decisions[i] = d
			}
			var wg sync.WaitGroup
			for i, d := range decisions {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := f.a.Commit(ctx, d, fmt.Sprintf("d-%d", i), day.Add(10*time.Hour)); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			var paid int64
			for _, d := range decisions {
				it := d.Items[0]
				paid += it.SupplementaryPays
				if it.PatientPays != it.Total-it.InsurerPays-it.SupplementaryPays || it.PatientPays < 0 || it.SupplementaryPays < 0 {
					t.Fatalf("amounts do not add up: %+v", it)
				}
			}
			if paid != 50_000_000 {
				t.Fatalf("supplementary paid %d in total, the cap is 50 000 000", paid)
			}
			// The rules service now estimates nothing left.
			d, _ := f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopePrescribe, Prescription: prescription(0, "general", drug(catalogtest.InsulinGlargine, 5))})
			if d.Items[0].SupplementaryPays != 0 {
				t.Fatalf("after the cap: %+v", d.Items[0])
			}
			// Committing a dispense again changes nothing; the same id for
			// another dispense is a conflict.
			if err := f.a.Commit(ctx, decisions[0], "d-0", day.Add(10*time.Hour)); err != nil {
				t.Fatal(err)
			}
			if err := f.a.Commit(ctx, decisions[1], "d-0", day.Add(11*time.Hour)); !errors.Is(err, &errs.Error{Code: errs.Conflict}) {
				t.Fatalf("a reused dispense id: %v", err)
			}
			if used, _ := f.reg.Used(ctx, insured.Cap{NationalID: insuredtest.NationalID(0), Insurer: "دی", Plan: "gold", Year: 1405, Category: "drug"}); used != 50_000_000 {
				t.Fatalf("used %d", used)
			}
		})
	}
}

func TestRefusedRequests(t *testing.T) {
	f := setup(t, sqlstore.SQLite)
	good := func() *rx.Prescription { return prescription(1, "general", drug(catalogtest.Amoxicillin, 10)) }
	badNID := good()
	badNID.Patient.NationalID = insuredtest.NationalID(1)[:9] + "0"
	if badNID.Patient.NationalID == insuredtest.NationalID(1) {
		badNID.Patient.NationalID = insuredtest.NationalID(1)[:9] + "1"
	}
	future := good()
	future.IssuedAt = day.AddDate(0, 0, 2)
	far := good()
	far.IssuedAt = time.Date(4000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name  string
		req   adjudicate.Request
		code  errs.Code
		field string
	}{
		{"unknown scope", adjudicate.Request{Scope: "dispensary", Prescription: good()}, errs.UnknownScope, "scope"},
		{"no prescription", adjudicate.Request{Scope: rules.ScopePrescribe}, errs.Invalid, "prescription"},
		{"bad national id", adjudicate.Request{Scope: rules.ScopePrescribe, Prescription: badNID}, errs.InvalidNID, "prescription.patient.national_id"},
		{"bad date", adjudicate.Request{Scope: rules.ScopePrescribe, Prescription: good(), Date: "1405-13-01"}, errs.Invalid, "date"},
		{"a dispense on another day", adjudicate.Request{Scope: rules.ScopeDispense, Prescription: good(), Date: "1405-06-20"}, errs.Invalid, "date"},
		{"judged before issue", adjudicate.Request{Scope: rules.ScopePrescribe, Prescription: good(), Date: "1405-06-01"}, errs.Invalid, "date"},
		{"issued in the future", adjudicate.Request{Scope: rules.ScopePrescribe, Prescription: future}, errs.Invalid, "prescription.issued_at"},
		{"issued in year 4000", adjudicate.Request{Scope: rules.ScopePrescribe, Prescription: far}, errs.Invalid, "prescription.issued_at"},
		{"a code twice on the prescription", adjudicate.Request{Scope: rules.ScopePrescribe, Prescription: prescription(1, "general", drug(catalogtest.Amoxicillin, 30), drug(catalogtest.Amoxicillin, 30))}, errs.Invalid, "prescription.items[1].code"},
		{"more dispensed than prescribed", adjudicate.Request{Scope: rules.ScopeDispense, Prescription: good(), Dispensed: []rx.DispensedItem{{Code: catalogtest.Amoxicillin, Quantity: 11}}}, errs.Invalid, "dispensed[0].quantity"},
		{"a dispensed code twice", adjudicate.Request{Scope: rules.ScopeDispense, Prescription: good(), Dispensed: []rx.DispensedItem{{Code: catalogtest.Amoxicillin, Quantity: 5}, {Code: catalogtest.Amoxicillin, Quantity: 5}}}, errs.Invalid, "dispensed[1].code"},
		{"a substitute for itself", adjudicate.Request{Scope: rules.ScopeDispense, Prescription: good(), Dispensed: []rx.DispensedItem{{Code: catalogtest.Amoxicillin, SubstituteFor: catalogtest.Amoxicillin, Quantity: 5}}}, errs.Invalid, "dispensed[0].substitute_for"},
		{"insulin for amoxicillin", adjudicate.Request{Scope: rules.ScopeDispense, Prescription: good(), Dispensed: []rx.DispensedItem{{Code: catalogtest.InsulinGlargine, SubstituteFor: catalogtest.Amoxicillin, Quantity: 5}}}, errs.Invalid, "dispensed[0].code"},
		{"dispensing what was not prescribed", adjudicate.Request{Scope: rules.ScopeDispense, Prescription: good(), Dispensed: []rx.DispensedItem{{Code: catalogtest.Morphine, Quantity: 1}}}, errs.Invalid, "dispensed[0].code"},
		{"dispensed when prescribing", adjudicate.Request{Scope: rules.ScopePrescribe, Prescription: good(), Dispensed: []rx.DispensedItem{{Code: catalogtest.Amoxicillin, Quantity: 1}}}, errs.Invalid, "dispensed"},
	} {
		_, err := f.a.Check(ctx, c.req)
		var e *errs.Error
		if !errors.As(err, &e) || e.Code != c.code || e.Field != c.field {
			t.Errorf("%s: %v, want %s on %s", c.name, err, c.code, c.field)
		}
	}
	// An equivalent substitute (the same active substance) is judged as
	// itself, priced at its own entry.
	syrupForTablets := prescription(69, "general", drug(catalogtest.Acetaminophen, 20))
	d, err := f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopeDispense, Prescription: syrupForTablets,
		Dispensed: []rx.DispensedItem{{Code: "۱۰۰۱۳۶۵", SubstituteFor: catalogtest.Acetaminophen, Quantity: 2}}})
	if err != nil || d.Items[0].Code != catalogtest.AcetaminophenSyrup || d.Items[0].Total != 2*90000 || !d.Items[0].Allowed {
		t.Fatalf("syrup for tablets: %+v %v", d, err)
	}
	// No catalogue in force before 2026.
	f.on(t, "2025-12-02")
	old := good()
	old.IssuedAt = time.Date(2025, 12, 1, 8, 0, 0, 0, time.UTC)
	if _, err := f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopeDispense, Prescription: old}); !errors.Is(err, &errs.Error{Code: errs.CatalogueNotInForce}) {
		t.Errorf("before any catalogue: %v", err)
	}
}

// TestSameAnswerBeforeAndAfter: the same data and date give the same
// decision, whoever asks and however often.
func TestSameAnswerBeforeAndAfter(t *testing.T) {
	f := setup(t, sqlstore.SQLite)
	p := prescription(0, "general", drug(catalogtest.Amoxicillin, 20), drug(catalogtest.Omeprazole, 70))
	a, err := f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopePrescribe, Prescription: p})
	if err != nil {
		t.Fatal(err)
	}
	q := *p
	q.Items = slices.Clone(p.Items)
	b, err := f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopePrescribe, Prescription: &q, Date: "1405-06-15"})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%+v", a.Items) != fmt.Sprintf("%+v", b.Items) || a.Allowed != b.Allowed || a.PatientPays != b.PatientPays {
		t.Fatalf("two answers:\n%+v\n%+v", a, b)
	}
}

// TestBrokenRuleFailsClosed: a rule that cannot be evaluated for this
// prescription rejects, and the decision still comes back.
func TestBrokenRuleFailsClosed(t *testing.T) {
	f := setup(t, sqlstore.SQLite)
	set, err := rules.Load("broken.yaml", []byte(`version: "broken-1"
rules:
  - id: third-item-positive
    description: {fa: "قلم سوم", en: "the third item"}
    scopes: [prescribe]
    per: prescription
    expr: 'items[2].quantity > 0'
    severity: reject
    message: {fa: "نشد", en: "no"}
`))
	if err != nil {
		t.Fatal(err)
	}
	f.a.Rules = rules.NewEngine(set)
	d, err := f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopePrescribe, Prescription: prescription(1, "general", drug(catalogtest.Amoxicillin, 10))})
	if err != nil {
		t.Fatal(err)
	}
	if d.Allowed || d.RuleSet != "broken-1" || !slices.Contains(ruleIDs(d.Violations), "third-item-positive") || d.InsurerPays != 0 {
		t.Fatalf("a rule that failed did not reject: %+v", d)
	}
	if set.EvalFailures() == 0 {
		t.Fatal("the failure was not counted")
	}
}

// TestParaclinic: a laboratory or imaging centre performing what was
// prescribed. Services have no quantity rule, their own supplementary cap
// category, and the catalogue's specialty limits.
func TestParaclinic(t *testing.T) {
	f := setup(t, sqlstore.SQLite)
	lab := func(code string) rx.Item { return rx.Item{Kind: "lab", Code: code, Quantity: 1} }
	p := prescription(0, "general", lab(catalogtest.CBC), lab(catalogtest.FBS), rx.Item{Kind: "imaging", Code: catalogtest.BrainMRI, Quantity: 1})
	d, err := f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopeParaclinic, Prescription: p})
	if err != nil {
		t.Fatal(err)
	}
	cbc, fbs, mri := d.Items[0], d.Items[1], d.Items[2]
	// CBC 450 000: the insurer 70 % = 315 000, the rest from the lab cap.
	if !cbc.Allowed || cbc.Kind != "lab" || cbc.InsurerPays != 315000 || cbc.SupplementaryPays != 135000 || cbc.PatientPays != 0 {
		t.Errorf("CBC %+v", cbc)
	}
	if !fbs.Allowed || fbs.InsurerPays != 84000 || fbs.SupplementaryPays != 36000 {
		t.Errorf("FBS %+v", fbs)
	}
	// A brain MRI needs a neurologist or neurosurgeon.
	if mri.Allowed || !slices.Contains(ruleIDs(mri.Violations), "prescriber-specialty") || mri.PatientPays != 9500000 {
		t.Errorf("MRI ordered by a GP %+v", mri)
	}
	// The quantity rule is for drugs; eligibility rejects here as at the pharmacy.
	for _, it := range d.Items {
		if slices.Contains(ruleIDs(it.Violations), "quantity-limit") {
			t.Errorf("quantity-limit applied to a service: %+v", it)
		}
	}
	p.Patient.NationalID = insuredtest.NationalID(99)
	d, err = f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopeParaclinic, Prescription: p})
	if err != nil || d.Allowed || !slices.Contains(ruleIDs(d.Violations), "patient-eligible") {
		t.Fatalf("uninsured at the lab: %+v %v", d, err)
	}
	// Committing consumes the lab cap, not the drug cap.
	d, _ = f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopeParaclinic, Prescription: prescription(0, "general", lab(catalogtest.CBC))})
	if err := f.a.Commit(ctx, d, "lab-1", day.Add(9*time.Hour)); err != nil {
		t.Fatal(err)
	}
	k := insured.Cap{NationalID: insuredtest.NationalID(0), Insurer: "دی", Plan: "gold", Year: 1405, Category: "lab"}
	if used, _ := f.reg.Used(ctx, k); used != 135000 {
		t.Fatalf("lab cap used %d", used)
	}
	k.Category = "drug"
	if used, _ := f.reg.Used(ctx, k); used != 0 {
		t.Fatalf("drug cap used %d by a lab test", used)
	}
}

// TestPartialDispenses: one fill of an item given in parts — over several
// visits or under one claim — is one supply: the later parts are not
// refills of the earlier. Another prescription of the same drug, the next
// fill of the same one, and a request that names no fill are still judged
// against every part given.
func TestPartialDispenses(t *testing.T) {
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			statin := drug(catalogtest.Atorvastatin, 10)
			statin.Repeats, statin.RepeatIntervalDays = 1, 30
			p := early(prescription(1, "general", statin))
			check := func(p *rx.Prescription, qty int, fills ...int) *adjudicate.Decision {
				t.Helper()
				d, err := f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopeDispense, Prescription: p,
					Dispensed: []rx.DispensedItem{{Code: catalogtest.Atorvastatin, Quantity: qty}}, Fills: fills})
				if err != nil {
					t.Fatal(err)
				}
				return d
			}
			tooEarly := func(d *adjudicate.Decision) bool {
				return !d.Allowed && slices.Contains(ruleIDs(d.Items[0].Violations), "refill-too-early")
			}

			at := f.on(t, "2026-08-01")
			first := check(p, 4, 0)
			if !first.Allowed {
				t.Fatalf("first part: %+v", first.Items[0])
			}
			if err := f.a.Commit(ctx, first, "part-1", at); err != nil {
				t.Fatal(err)
			}
			// The same day (one claim) and two days on (another visit).
			for i, date := range []string{"2026-08-01", "2026-08-03"} {
				at = f.on(t, date)
				more := check(p, 3, 0)
				if !more.Allowed {
					t.Fatalf("part %d of the same fill: %+v", i+2, more.Items[0])
				}
				if err := f.a.Commit(ctx, more, fmt.Sprintf("part-%d", i+2), at); err != nil {
					t.Fatal(err)
				}
			}
			hist, err := f.reg.Since(ctx, p.Patient.NationalID, day.AddDate(0, -3, 0))
			if err != nil || len(hist) != 3 || hist[0].PrescriptionID != p.ID || hist[0].Fill != 0 || hist[0].DispenseID != "part-3" {
				t.Fatalf("history %+v %v", hist, err)
			}

			// Another prescription of the same drug is a refill, too early.
			if d := check(early(prescription(1, "general", drug(catalogtest.Atorvastatin, 10))), 10, 0); !tooEarly(d) {
				t.Fatalf("another prescription: %+v", d.Items[0])
			}
			// Without fills (the rules service), every part is history.
			if d := check(p, 3); !tooEarly(d) {
				t.Fatalf("no fill named: %+v", d.Items[0])
			}
			// The next fill of the same prescription, eight days on.
			f.on(t, "2026-08-09")
			if d := check(p, 10, 1); !tooEarly(d) {
				t.Fatalf("fill 1 after eight days: %+v", d.Items[0])
			}
		})
	}
}

// TestStoredDispenseJudgedByItsDay: a stored dispense judged again (its
// settlement interrupted) is judged by the day it was handed out, not by
// the day it is settled, three days later; a time before the
// prescription was issued, or after today, is refused.
func TestStoredDispenseJudgedByItsDay(t *testing.T) {
	f := setup(t, sqlstore.SQLite)
	p := prescription(1, "general", drug(catalogtest.Amoxicillin, 10))
	handed := day.Add(8 * time.Hour)
	later := f.on(t, day.AddDate(0, 0, 3).Format(time.DateOnly))
	d, err := f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopeDispense, Prescription: p, HandedOutAt: handed})
	if err != nil {
		t.Fatal(err)
	}
	if want := day.Format(time.DateOnly); d.Date != want {
		t.Errorf("judged by %s, want the day it was handed out, %s", d.Date, want)
	}
	today, err := f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopeDispense, Prescription: p})
	if err != nil {
		t.Fatal(err)
	}
	if want := persian.Day(later).Format(time.DateOnly); today.Date != want {
		t.Errorf("a new dispense judged by %s, want today, %s", today.Date, want)
	}
	for _, at := range []time.Time{day.AddDate(0, 0, -1), later.AddDate(0, 0, 1)} {
		if _, err := f.a.Check(ctx, adjudicate.Request{Scope: rules.ScopeDispense, Prescription: p, HandedOutAt: at}); err == nil {
			t.Errorf("handed out at %s: judged", at)
		}
	}
}
