package rules

import (
	"slices"
	"strings"
	"testing"
)

// cleanInput passes every starter rule in every scope: an eligible adult
// with two covered, unrestricted drugs prescribed by an internist
// yesterday, and an unrelated dispense long ago.
func cleanInput(scope Scope) *Input {
	return &Input{
		Scope:        scope,
		Patient:      Patient{AgeYears: 40, AgeMonths: 480, Sex: "female", Eligible: true, Fund: "salaried"},
		Prescriber:   Prescriber{Profession: "physician", Specialty: "internal-medicine"},
		Prescription: Prescription{IssuedDaysAgo: 1, ItemCount: 2, DrugCount: 2},
		Items: []Item{
			{Index: 0, Kind: "drug", Code: "1111111", Quantity: 60, Catalogue: Entry{
				Found: true, Kind: "drug", GenericName: "Metformin", ATC: "A10BA02", Form: "tablet", Strength: "500 mg",
				Price: 12000, CoveragePercent: 90, PrescriptionOnly: true, MaxQuantity: 180, PaperAllowed: true,
			}},
			{Index: 1, Kind: "drug", Code: "2222222", Quantity: 30, Catalogue: Entry{
				Found: true, Kind: "drug", GenericName: "Amlodipine", ATC: "C08CA01", Form: "tablet", Strength: "5 mg",
				Price: 8000, CoveragePercent: 70, PrescriptionOnly: true, MaxQuantity: 90, PaperAllowed: true,
			}},
		},
		History: []Dispensed{
			{Code: "3333333", ATC: "N02BE01", Quantity: 20, DaysSupply: 10, DaysAgo: 40},
		},
	}
}

type hit struct {
	rule     string
	severity Severity
	item     int
}

func hits(vs []Violation) []hit {
	out := make([]hit, len(vs))
	for i, v := range vs {
		out[i] = hit{v.RuleID, v.Severity, v.Item}
	}
	return out
}

// TestStarterRules gives every starter rule an input that just passes it
// and one that breaks it, and checks the exact violations.
func TestStarterRules(t *testing.T) {
	set := Starter()
	tests := []struct {
		name   string
		rule   string // the starter rule the case is about
		scope  Scope
		change func(in *Input)
		want   []hit // nil: no violation at all
	}{
		{"covered with the smallest share", "item-covered", ScopeDispense, func(in *Input) {
			in.Items[1].Catalogue.CoveragePercent = 1
		}, nil},
		// rxd says unknown-code itself; "not covered" would send the
		// practitioner to the insurer about a typing mistake.
		{"not in the catalogue in force", "item-covered", ScopeDispense, func(in *Input) {
			in.Items[1].Catalogue = Entry{}
		}, nil},
		{"not in the catalogue in force, on paper", "paper-item-allowed", ScopePaper, func(in *Input) {
			in.Items[1].Catalogue = Entry{}
		}, nil},
		{"in the catalogue with no insurer share", "item-covered", ScopeParaclinic, func(in *Input) {
			in.Items[0] = Item{Kind: "lab", Code: "L100", Quantity: 1, Catalogue: Entry{Found: true, Kind: "lab", CoveragePercent: 0}}
		}, []hit{{"item-covered", Reject, 0}}},

		{"quantity at the limit", "quantity-limit", ScopeDispense, func(in *Input) {
			in.Items[1].Quantity = 90
		}, nil},
		{"no limit in the catalogue", "quantity-limit", ScopeDispense, func(in *Input) {
			in.Items[1].Catalogue.MaxQuantity, in.Items[1].Quantity = 0, 5000
		}, nil},
		{"quantity over the limit", "quantity-limit", ScopePrescribe, func(in *Input) {
			in.Items[1].Quantity = 91
		}, []hit{{"quantity-limit", Reject, 1}}},
		{"services have no quantity limit", "quantity-limit", ScopeDispense, func(in *Input) {
			in.Items[1].Kind, in.Items[1].Quantity = "lab", 91
		}, nil},

		{"profession allowed", "prescriber-profession", ScopeDispense, func(in *Input) {
			in.Items[0].Catalogue.Professions = []string{"dentist", "physician"}
		}, nil},
		{"profession not allowed", "prescriber-profession", ScopeDispense, func(in *Input) {
			in.Items[0].Catalogue.Professions = []string{"physician"}
			in.Prescriber.Profession = "dentist"
		}, []hit{{"prescriber-profession", Reject, 0}}},

		{"specialty allowed", "prescriber-specialty", ScopeDispense, func(in *Input) {
			in.Items[1].Catalogue.Specialties = []string{"cardiology", "internal-medicine"}
		}, nil},
		{"specialty not allowed", "prescriber-specialty", ScopeParaclinic, func(in *Input) {
			in.Items[1].Catalogue.Specialties = []string{"cardiology"}
		}, []hit{{"prescriber-specialty", Reject, 1}}},

		{"at the minimum and maximum ages", "age-limit", ScopeDispense, func(in *Input) {
			in.Items[0].Catalogue.MinAgeYears = 40
			in.Items[1].Catalogue.MaxAgeYears = 40
		}, nil},
		{"under the minimum age", "age-limit", ScopeDispense, func(in *Input) {
			in.Items[0].Catalogue.MinAgeYears = 41
		}, []hit{{"age-limit", Reject, 0}}},
		{"over the maximum age", "age-limit", ScopePrescribe, func(in *Input) {
			in.Items[1].Catalogue.MaxAgeYears = 39
		}, []hit{{"age-limit", Reject, 1}}},

		{"item for the patient's sex", "sex-limit", ScopeDispense, func(in *Input) {
			in.Items[1].Catalogue.Sex = "female"
		}, nil},
		{"item for the other sex", "sex-limit", ScopeDispense, func(in *Input) {
			in.Items[1].Catalogue.Sex = "male"
		}, []hit{{"sex-limit", Reject, 1}}},

		{"same substance 31 days ago", "duplicate-therapy", ScopeDispense, func(in *Input) {
			in.History = append(in.History, Dispensed{Code: "2222299", ATC: "C08CA01", DaysSupply: 30, DaysAgo: 31})
		}, nil},
		{"same substance, other code, 30 days ago", "duplicate-therapy", ScopeDispense, func(in *Input) {
			in.History = append(in.History, Dispensed{Code: "2222299", ATC: "C08CA01", DaysSupply: 30, DaysAgo: 30})
		}, []hit{{"duplicate-therapy", Warn, 1}}},
		{"only an ATC group, not a substance", "duplicate-therapy", ScopeDispense, func(in *Input) {
			in.Items[1].Catalogue.ATC = "C08"
			in.History = append(in.History, Dispensed{Code: "2222299", ATC: "C08", DaysSupply: 30, DaysAgo: 3})
		}, nil},
		{"same substance, same code, is a refill not a duplicate", "duplicate-therapy", ScopeDispense, func(in *Input) {
			in.History = append(in.History, Dispensed{Code: "2222222", ATC: "C08CA01", DaysSupply: 30, DaysAgo: 28})
		}, nil},

		{"80% of the supply elapsed", "refill-too-early", ScopeDispense, func(in *Input) {
			in.History = append(in.History, Dispensed{Code: "1111111", ATC: "A10BA02", DaysSupply: 30, DaysAgo: 24})
		}, nil},
		{"less than 80% of the supply elapsed", "refill-too-early", ScopePaper, func(in *Input) {
			in.History = append(in.History, Dispensed{Code: "1111111", ATC: "A10BA02", DaysSupply: 30, DaysAgo: 23})
		}, []hit{{"refill-too-early", Reject, 0}}},
		{"another brand of the substance, too early", "refill-too-early", ScopeDispense, func(in *Input) {
			in.Items[0].SubstituteFor = "1111199"
			in.History = append(in.History, Dispensed{Code: "1111199", ATC: "A10BA02", DaysSupply: 30, DaysAgo: 10})
		}, []hit{{"duplicate-therapy", Warn, 0}, {"refill-too-early", Reject, 0}}},
		{"another code of the substance, as prescribed (a dose change)", "refill-too-early", ScopeDispense, func(in *Input) {
			in.History = append(in.History, Dispensed{Code: "1111199", ATC: "A10BA02", DaysSupply: 30, DaysAgo: 10})
		}, []hit{{"duplicate-therapy", Warn, 0}}},
		{"supply unknown", "refill-too-early", ScopeDispense, func(in *Input) {
			in.History = append(in.History, Dispensed{Code: "1111111", ATC: "A10BA02", DaysSupply: 0, DaysAgo: 1})
		}, nil},
		{"early refill at prescribing is the pharmacy's call", "refill-too-early", ScopePrescribe, func(in *Input) {
			in.History = append(in.History, Dispensed{Code: "1111111", ATC: "A10BA02", DaysSupply: 30, DaysAgo: 1})
		}, nil},

		{"four drugs", "max-drug-items", ScopeDispense, func(in *Input) {
			in.Prescription.DrugCount, in.Prescription.ItemCount = 4, 4
		}, nil},
		{"five drugs", "max-drug-items", ScopePrescribe, func(in *Input) {
			in.Prescription.DrugCount, in.Prescription.ItemCount = 5, 5
		}, []hit{{"max-drug-items", Reject, -1}}},

		{"controlled substance from an allowed specialist", "controlled-needs-specialist", ScopeDispense, func(in *Input) {
			in.Items[1].Catalogue.ControlledClass = "narcotic"
			in.Items[1].Catalogue.Specialties = []string{"psychiatry"}
			in.Prescriber.Specialty = "psychiatry"
		}, nil},
		{"controlled substance from a general practitioner", "controlled-needs-specialist", ScopeDispense, func(in *Input) {
			in.Items[1].Catalogue.ControlledClass = "narcotic"
			in.Prescriber.Specialty = "general"
		}, []hit{{"controlled-needs-specialist", Reject, 1}}},
		{"controlled substance with no specialty given", "controlled-needs-specialist", ScopePrescribe, func(in *Input) {
			in.Items[0].Catalogue.ControlledClass = "psychotropic"
			in.Prescriber.Specialty = ""
		}, []hit{{"controlled-needs-specialist", Reject, 0}}},
		{"controlled substance from a specialist the catalogue does not allow", "controlled-needs-specialist", ScopeDispense, func(in *Input) {
			in.Items[1].Catalogue.ControlledClass = "narcotic"
			in.Items[1].Catalogue.Specialties = []string{"psychiatry"}
			in.Prescriber.Specialty = "cardiology"
		}, []hit{{"prescriber-specialty", Reject, 1}, {"controlled-needs-specialist", Reject, 1}}},

		{"paper prescription of paper-allowed items", "paper-item-allowed", ScopePaper, func(*Input) {}, nil},
		{"paper prescription of an e-prescription-only item", "paper-item-allowed", ScopePaper, func(in *Input) {
			in.Items[1].Catalogue.PaperAllowed = false
		}, []hit{{"paper-item-allowed", Reject, 1}}},
		{"paper rules do not apply to e-prescriptions", "paper-item-allowed", ScopeDispense, func(in *Input) {
			in.Items[1].Catalogue.PaperAllowed = false
		}, nil},

		{"controlled substance on paper", "paper-no-controlled", ScopePaper, func(in *Input) {
			in.Items[0].Catalogue.ControlledClass = "narcotic"
			in.Prescriber.Specialty = "psychiatry"
		}, []hit{{"paper-no-controlled", Reject, 0}}},
		{"controlled substance on an e-prescription", "paper-no-controlled", ScopeDispense, func(in *Input) {
			in.Items[0].Catalogue.ControlledClass = "narcotic"
			in.Prescriber.Specialty = "psychiatry"
		}, nil},

		{"paper prescription three days old", "paper-max-age", ScopePaper, func(in *Input) {
			in.Prescription.IssuedDaysAgo = 3
		}, nil},
		{"paper prescription four days old", "paper-max-age", ScopePaper, func(in *Input) {
			in.Prescription.IssuedDaysAgo = 4
		}, []hit{{"paper-max-age", Reject, -1}}},

		{"not insured at dispensing", "patient-eligible", ScopeDispense, func(in *Input) {
			in.Patient.Eligible, in.Patient.Fund = false, ""
		}, []hit{{"patient-eligible", Reject, -1}}},
		{"not insured at a lab", "patient-eligible", ScopeParaclinic, func(in *Input) {
			in.Patient.Eligible = false
			in.Items = []Item{{Kind: "lab", Code: "L100", Quantity: 1, Catalogue: Entry{Found: true, Kind: "lab", CoveragePercent: 90}}}
		}, []hit{{"patient-eligible", Reject, -1}}},
		{"insured", "patient-eligible", ScopePaper, func(*Input) {}, nil},

		{"not insured at prescribing", "patient-eligible-prescribe", ScopePrescribe, func(in *Input) {
			in.Patient.Eligible = false
		}, []hit{{"patient-eligible-prescribe", Warn, -1}}},
		{"insured at prescribing", "patient-eligible-prescribe", ScopePrescribe, func(*Input) {}, nil},
	}

	passes, breaks := map[string]bool{}, map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := cleanInput(tt.scope)
			tt.change(in)
			got, err := set.Evaluate(in)
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			if !slices.Equal(hits(got), tt.want) {
				t.Fatalf("violations = %+v, want %+v", hits(got), tt.want)
			}
			for _, v := range got {
				if v.Message == "" || v.MessageFA == "" || strings.Contains(v.Message+v.MessageFA, "{{") {
					t.Errorf("violation %s has an unrendered or empty message: %q / %q", v.RuleID, v.Message, v.MessageFA)
				}
			}
		})
		if slices.ContainsFunc(tt.want, func(h hit) bool { return h.rule == tt.rule }) {
			breaks[tt.rule] = true
		} else {
			passes[tt.rule] = true
		}
	}
	for _, r := range set.Rules() {
		if !passes[r.ID] || !breaks[r.ID] {
			t.Errorf("starter rule %s needs a passing and a violating case (passing %v, violating %v)", r.ID, passes[r.ID], breaks[r.ID])
		}
	}
}

// Every scope passes the clean input, and each scope applies only its own
// rules to the same troubled input.
func TestScopeFiltering(t *testing.T) {
	set := Starter()
	for _, sc := range Scopes() {
		if got, err := set.Evaluate(cleanInput(sc)); err != nil || got != nil {
			t.Errorf("%s: clean input gave %+v, %v", sc, got, err)
		}
	}
	troubled := func(sc Scope) *Input {
		in := cleanInput(sc)
		in.Patient.Eligible = false
		in.Prescription.IssuedDaysAgo = 10
		in.Items[0].Catalogue.PaperAllowed = false
		in.History = append(in.History, Dispensed{Code: "1111111", ATC: "A10BA02", DaysSupply: 30, DaysAgo: 2})
		return in
	}
	want := map[Scope][]hit{
		ScopePrescribe:  {{"patient-eligible-prescribe", Warn, -1}},
		ScopeDispense:   {{"patient-eligible", Reject, -1}, {"refill-too-early", Reject, 0}},
		ScopePaper:      {{"paper-max-age", Reject, -1}, {"patient-eligible", Reject, -1}, {"refill-too-early", Reject, 0}, {"paper-item-allowed", Reject, 0}},
		ScopeParaclinic: {{"patient-eligible", Reject, -1}},
	}
	for _, sc := range Scopes() {
		got, err := set.Evaluate(troubled(sc))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(hits(got), want[sc]) {
			t.Errorf("%s: %+v, want %+v", sc, hits(got), want[sc])
		}
	}
}

func TestStarterMessages(t *testing.T) {
	in := cleanInput(ScopeDispense)
	in.Items[1].Quantity = 120
	got, err := Starter().Evaluate(in)
	if err != nil || len(got) != 1 {
		t.Fatalf("%+v %v", got, err)
	}
	if want := "Quantity 120 of Amlodipine is over the limit of 90 per prescription."; got[0].Message != want {
		t.Errorf("Message = %q, want %q", got[0].Message, want)
	}
	if want := "تعداد 120 از Amlodipine بیش از سقف 90 عدد در هر نسخه است."; got[0].MessageFA != want {
		t.Errorf("MessageFA = %q, want %q", got[0].MessageFA, want)
	}
}

func TestStarterMetadata(t *testing.T) {
	set := Starter()
	if set.Version() != "2026-11-01" || set.Description() == "" || len(set.Digest()) != 64 {
		t.Errorf("version %q, description %q, digest %q", set.Version(), set.Description(), set.Digest())
	}
	rules := set.Rules()
	if len(rules) != 15 {
		t.Fatalf("%d rules", len(rules))
	}
	for _, r := range rules {
		if r.Description.FA == "" || r.Description.EN == "" || r.Message.FA == "" || r.Message.EN == "" || len(r.Scopes) == 0 || r.Line == 0 {
			t.Errorf("rule %s is missing metadata: %+v", r.ID, r)
		}
	}
	// Rules returns a copy: changing it does not change the set.
	rules[0].Scopes[0] = "changed"
	if set.Rules()[0].Scopes[0] == "changed" {
		t.Error("Rules shares its slices with the set")
	}
	if !slices.Equal(StarterYAML(), starterYAML) {
		t.Error("StarterYAML differs from the embedded file")
	}
}
