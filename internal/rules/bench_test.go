package rules

import (
	"fmt"
	"strings"
	"testing"
)

// benchInput is a realistic dispense: three drugs, five earlier dispenses,
// nothing violated (the common case, and the one that runs every rule to
// completion).
func benchInput() *Input {
	return &Input{
		Scope:        ScopeDispense,
		Patient:      Patient{AgeYears: 54, AgeMonths: 54 * 12, Sex: "female", Eligible: true, Fund: "salaried"},
		Prescriber:   Prescriber{Profession: "physician", Specialty: "cardiology"},
		Prescription: Prescription{IssuedDaysAgo: 1, ItemCount: 3, DrugCount: 3},
		Items: []Item{
			{Index: 0, Kind: "drug", Code: "1020304", Quantity: 30, Catalogue: Entry{
				Found: true, Kind: "drug", GenericName: "Atorvastatin", ATC: "C10AA05", Form: "tablet", Strength: "20 mg",
				Price: 45000, CoveragePercent: 70, PrescriptionOnly: true, MaxQuantity: 90,
				Professions: []string{"physician"},
			}},
			{Index: 1, Kind: "drug", Code: "2030405", Quantity: 60, Catalogue: Entry{
				Found: true, Kind: "drug", GenericName: "Metformin", ATC: "A10BA02", Form: "tablet", Strength: "500 mg",
				Price: 12000, CoveragePercent: 90, PrescriptionOnly: true, MaxQuantity: 180,
			}},
			{Index: 2, Kind: "drug", Code: "3040506", Quantity: 30, Catalogue: Entry{
				Found: true, Kind: "drug", GenericName: "Amlodipine", ATC: "C08CA01", Form: "tablet", Strength: "5 mg",
				Price: 8000, CoveragePercent: 70, PrescriptionOnly: true, MaxQuantity: 90,
				Specialties: []string{"cardiology", "internal-medicine", "general"},
			}},
		},
		History: []Dispensed{
			{Code: "1020304", ATC: "C10AA05", Quantity: 30, DaysSupply: 30, DaysAgo: 29},
			{Code: "2030405", ATC: "A10BA02", Quantity: 60, DaysSupply: 30, DaysAgo: 29},
			{Code: "3040506", ATC: "C08CA01", Quantity: 30, DaysSupply: 30, DaysAgo: 29},
			{Code: "4050607", ATC: "N02BE01", Quantity: 20, DaysSupply: 10, DaysAgo: 45},
			{Code: "5060708", ATC: "J01CA04", Quantity: 21, DaysSupply: 7, DaysAgo: 80},
		},
	}
}

// hundredRules generates a 100-rule set: variations of the starter rules
// with other thresholds and codes, about two thirds per item and one third
// per prescription, every one applying to the dispense scope so that the
// benchmark is the worst case for that scope. None is violated by
// benchInput.
func hundredRules() []byte {
	item := []struct{ when, expr string }{
		{`item.kind == "drug"`, `item.catalogue.max_quantity == 0 || item.quantity <= item.catalogue.max_quantity + %d`},
		{``, `item.catalogue.found && item.catalogue.coverage_percent > %d - %d`},
		{``, `item.catalogue.min_age_years == 0 || patient.age_years >= item.catalogue.min_age_years - %d`},
		{``, `item.code != "99%05d"`},
		{`item.kind == "drug" && item.catalogue.atc != ""`, `!history.exists(h, h.atc == item.catalogue.atc && h.code != item.code && h.days_ago <= %d)`},
		{`item.kind == "drug"`, `!history.exists(h, h.code == item.code && h.days_supply > 0 && h.days_ago * 5 < h.days_supply * 4 - %d)`},
		{``, `item.catalogue.specialties.size() == 0 || prescriber.specialty in item.catalogue.specialties || %d < 0`},
		{`item.kind == "drug"`, `!item.catalogue.atc.startsWith("N0%d") || patient.age_years >= 18`},
		{``, `item.catalogue.price * item.quantity <= %d000000`},
		{``, `item.catalogue.sex == "" || item.catalogue.sex == patient.sex || %d < 0`},
		{`item.catalogue.controlled_class != ""`, `prescriber.specialty != "general" && %d >= 0`},
	}
	prescription := []struct{ when, expr string }{
		{``, `prescription.drug_count <= 4 + %d`},
		{``, `patient.eligible || scope == "prescribe" || %d < 0`},
		{``, `items.filter(i, i.kind == "drug").size() <= 4 + %d`},
		{`patient.fund == "voluntary"`, `prescription.item_count <= %d`},
		{``, `items.all(i, i.catalogue.price * i.quantity <= %d000000)`},
		{``, `history.filter(h, h.days_ago <= 30).size() <= 10 + %d`},
	}
	var b strings.Builder
	b.WriteString("version: bench-100\nrules:\n")
	for i := range 100 {
		var t struct{ when, expr string }
		per := "item"
		if i%3 == 2 {
			per = "prescription"
			t = prescription[(i/3)%len(prescription)]
		} else {
			t = item[(i*2/3)%len(item)]
		}
		expr := t.expr
		if strings.Count(expr, "%") == 2 {
			expr = fmt.Sprintf(expr, i, i+100)
		} else {
			expr = fmt.Sprintf(expr, i+1)
		}
		fmt.Fprintf(&b, "  - id: rule-%03d\n    description: {fa: قاعده, en: rule}\n    scopes: [prescribe, dispense, paper]\n    per: %s\n", i, per)
		if t.when != "" {
			fmt.Fprintf(&b, "    when: '%s'\n", t.when)
		}
		fmt.Fprintf(&b, "    expr: '%s'\n    severity: reject\n    message: {fa: نقض, en: broken}\n", expr)
	}
	return []byte(b.String())
}

func BenchmarkStarterSet(b *testing.B) {
	set := Starter()
	in := benchInput()
	benchEvaluate(b, set, in)
}

func BenchmarkHundredRules(b *testing.B) {
	set, err := Load("hundred.yaml", hundredRules())
	if err != nil {
		b.Fatal(err)
	}
	benchEvaluate(b, set, benchInput())
}

// The same two benchmarks with the fast evaluator switched off: cel-go's
// interpreter alone, for comparison.
func BenchmarkStarterSetCELOnly(b *testing.B) {
	benchEvaluate(b, celOnly(Starter()), benchInput())
}

func BenchmarkHundredRulesCELOnly(b *testing.B) {
	set, err := Load("hundred.yaml", hundredRules())
	if err != nil {
		b.Fatal(err)
	}
	benchEvaluate(b, celOnly(set), benchInput())
}

// celOnly drops the fast evaluator's programs from a set.
func celOnly(s *Set) *Set {
	for _, r := range s.rules {
		r.prg.fast = nil
	}
	for k := range s.guards {
		s.guards[k].fast = nil
	}
	return s
}

func benchEvaluate(b *testing.B, set *Set, in *Input) {
	b.Helper()
	if v, err := set.Evaluate(in); err != nil || len(v) != 0 {
		b.Fatalf("the benchmark input should pass every rule: %v %+v", err, v)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := set.Evaluate(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoad is the cost of validating and compiling a set, paid once
// per reload.
func BenchmarkLoad(b *testing.B) {
	for name, data := range map[string][]byte{"starter": starterYAML, "hundred": hundredRules()} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Load(name, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
