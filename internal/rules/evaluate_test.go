package rules

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/nuskha/nuskha/internal/errs"
)

// oneRule is a set with a single rule in every scope.
func oneRule(t testing.TB, per Per, when, expr string) *Set {
	t.Helper()
	src := fmt.Sprintf("version: t1\nrules:\n  - id: r\n    description: {fa: ق, en: r}\n    scopes: [prescribe, dispense, paper, paraclinic]\n    per: %s\n", per)
	if when != "" {
		src += fmt.Sprintf("    when: %q\n", when)
	}
	src += fmt.Sprintf("    expr: %q\n    severity: warn\n    message: {fa: ن, en: broken}\n", expr)
	set, err := Load("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// A rule that cannot be evaluated is a reject violation of that rule, is
// reported in an *EvalError and is counted; the other rules still run.
func TestRuntimeErrorsFailClosed(t *testing.T) {
	tests := []struct {
		name  string
		per   Per
		when  string
		expr  string
		field string
		items []int // the items (or -1) that fail
	}{
		{"division by zero", PerItem, "", "item.quantity / (item.repeats - item.repeats) > 0", "expr", []int{0, 1}},
		{"modulo by zero", PerPrescription, "", "prescription.drug_count % (prescription.item_count - 2) == 0", "expr", []int{-1}},
		{"index out of range", PerPrescription, "", "items[5].quantity > 0", "expr", []int{-1}},
		{"negative index", PerItem, "", `item.catalogue.professions[-1] == "x"`, "expr", []int{0, 1}},
		{"integer overflow", PerItem, "", "item.catalogue.price * 9223372036854775807 > 0", "expr", []int{0, 1}},
		{"only where it happens", PerItem, "", "item.quantity / (item.quantity - 60) < 100", "expr", []int{0}},
		{"in the guard", PerItem, "10 / (item.repeats - item.repeats) > 1", "true", "when", []int{0, 1}},
		{"in a comprehension", PerItem, "", "history.all(h, 100 / h.days_ago < 100)", "expr", []int{0, 1}},
		{"outside the fast evaluator", PerItem, "", `item.code.matches(item.kind + "[")`, "expr", []int{0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := oneRule(t, tt.per, tt.when, tt.expr)
			in := cleanInput(ScopeDispense)
			in.History = append(in.History, Dispensed{Code: "9", DaysAgo: 0})
			got, err := set.Evaluate(in)
			var ee *EvalError
			if !errors.As(err, &ee) {
				t.Fatalf("error %v (%T), want *EvalError", err, err)
			}
			var items []int
			for _, f := range ee.Failures {
				if f.Rule != "r" || f.Field != tt.field || f.Err == nil {
					t.Errorf("failure %+v", f)
				}
				items = append(items, f.Item)
			}
			if !slices.Equal(items, tt.items) {
				t.Errorf("failed for items %v, want %v", items, tt.items)
			}
			if len(got) != len(tt.items) {
				t.Fatalf("violations %+v, want one per failure", got)
			}
			for i, v := range got {
				if v.RuleID != "r" || v.Severity != Reject || v.Item != tt.items[i] ||
					!strings.Contains(v.Message, "could not be evaluated") || v.MessageFA == "" {
					t.Errorf("violation %+v is not a fail-closed reject (the rule's own severity is warn)", v)
				}
			}
			if n := set.EvalFailures(); n != uint64(len(tt.items)) {
				t.Errorf("EvalFailures = %d", n)
			}
			if ee.Version != "t1" || !strings.Contains(ee.Error(), "rule r") {
				t.Errorf("EvalError %q", ee.Error())
			}
			if errs.CodeOf(err) != errs.Internal {
				t.Errorf("CodeOf = %s, want internal", errs.CodeOf(err))
			}
		})
	}
}

// CEL's && and || absorb an error when the other side decides the answer,
// whichever side the error is on; the rule then has an answer and nothing
// fails.
func TestErrorsAbsorbedAsCELDefines(t *testing.T) {
	for _, expr := range []string{
		"1 / (item.repeats - item.repeats) == 1 || true",
		"true || 1 / (item.repeats - item.repeats) == 1",
		"!(1 / (item.repeats - item.repeats) == 1 && false)",
		"history.exists(h, 100 / h.days_ago > 1 || true)",
		"history.exists(h, 100 / h.days_ago > 1) || true",
	} {
		t.Run(expr, func(t *testing.T) {
			in := cleanInput(ScopeDispense)
			in.History = append(in.History, Dispensed{Code: "9", DaysAgo: 0})
			got, err := oneRule(t, PerItem, "", expr).Evaluate(in)
			if err != nil || got != nil {
				t.Errorf("got %+v, %v; want a pass", got, err)
			}
		})
	}
}

func TestEvaluateRefuses(t *testing.T) {
	set := Starter()
	in := cleanInput("pharmacy")
	if _, err := set.Evaluate(in); !errors.Is(err, errs.Of(errs.UnknownScope)) {
		t.Errorf("unknown scope: %v", err)
	}
	if _, err := set.Evaluate(nil); !errors.Is(err, errs.Of(errs.Invalid)) {
		t.Errorf("nil input: %v", err)
	}
	var none *Set
	if _, err := none.Evaluate(cleanInput(ScopeDispense)); !errors.Is(err, errs.Of(errs.Internal)) {
		t.Errorf("nil set: %v", err)
	}
}

// TestScopesIsACopy: changing what Scopes returns changes neither the
// scopes Load accepts in a file nor those Evaluate judges.
func TestScopesIsACopy(t *testing.T) {
	got := Scopes()
	if !slices.Equal(got, []Scope{ScopePrescribe, ScopeDispense, ScopePaper, ScopeParaclinic}) {
		t.Fatalf("Scopes() = %v", got)
	}
	got[0] = "pharmacy"
	_ = append(got[:1], "anything")
	if s := Scopes(); s[0] != ScopePrescribe || s[1] != ScopeDispense {
		t.Fatalf("Scopes() after its copy was changed: %v", s)
	}
	if _, err := Starter().Evaluate(cleanInput("pharmacy")); !errors.Is(err, errs.Of(errs.UnknownScope)) {
		t.Errorf("Evaluate with a scope written into the copy: %v", err)
	}
	src := "version: t1\nrules:\n  - id: r\n    description: {fa: ق, en: r}\n    scopes: [pharmacy]\n    per: item\n    expr: 'true'\n    severity: warn\n    message: {fa: ن, en: r}\n"
	if _, err := Load("t.yaml", []byte(src)); err == nil || !strings.Contains(err.Error(), `unknown scope "pharmacy"`) {
		t.Errorf("Load of a scope written into the copy: %v", err)
	}
	if vs, err := Starter().Evaluate(cleanInput(ScopePrescribe)); err != nil {
		t.Errorf("Evaluate(prescribe) after the copy was changed: %v %v", vs, err)
	}
}

// Guards are cached per item: a rule is skipped when its when is false, and
// rules sharing a guard see the same answer.
func TestWhenGuards(t *testing.T) {
	src := `version: g
rules:
  - id: drugs-at-most-60
    description: {fa: ا, en: a}
    scopes: [dispense]
    per: item
    when: 'item.kind == "drug"'
    expr: 'item.quantity <= 40'
    severity: warn
    message: {fa: ا, en: "{{item.code}} over 40"}
  - id: drugs-need-atc
    description: {fa: ب, en: b}
    scopes: [dispense]
    per: item
    when: 'item.kind == "drug"'
    expr: 'item.catalogue.atc != ""'
    severity: reject
    message: {fa: ب, en: no atc}
  - id: few-items
    description: {fa: پ, en: c}
    scopes: [dispense]
    per: prescription
    when: 'patient.fund == "voluntary"'
    expr: 'prescription.item_count <= 1'
    severity: reject
    message: {fa: پ, en: "{{prescription.item_count}} items"}
`
	set, err := Load("g.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	in := cleanInput(ScopeDispense)
	in.Items[1].Kind = "lab" // not a drug: neither drug rule applies to it
	in.Items[1].Catalogue.ATC = ""
	in.Items[1].Quantity = 500
	got, err := set.Evaluate(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := []hit{{"drugs-at-most-60", Warn, 0}}; !slices.Equal(hits(got), want) {
		t.Errorf("%+v, want %+v", hits(got), want)
	}
	if got[0].Message != "1111111 over 40" {
		t.Errorf("message %q", got[0].Message)
	}
	in.Patient.Fund = "voluntary"
	got, _ = set.Evaluate(in)
	if want := []hit{{"few-items", Reject, -1}, {"drugs-at-most-60", Warn, 0}}; !slices.Equal(hits(got), want) {
		t.Errorf("%+v, want %+v", hits(got), want)
	}
	if got[0].Message != "2 items" {
		t.Errorf("message %q", got[0].Message)
	}
}

// Rules outside the fast evaluator are evaluated by cel-go alone, with the
// same results.
func TestCELOnlyRules(t *testing.T) {
	tests := []struct {
		expr string
		pass bool
	}{
		{`item.code.matches("^[0-9]{7}$")`, true},
		{`item.catalogue.generic_name.lowerAscii() == "metformin"`, false}, // true for item 0 only
		{`items.map(i, i.quantity).exists(q, q > 50)`, true},
		{`double(item.quantity) / 2.0 < 20.0`, false},
		{`item == items[0]`, false},
		{`dyn(item).quantity > 0 && has(dyn(item).catalogue.atc)`, true},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			set := oneRule(t, PerItem, "", tt.expr)
			if set.rules[0].prg.fast != nil {
				t.Fatal("the fast evaluator took it; pick another example")
			}
			got, err := set.Evaluate(cleanInput(ScopeDispense))
			if err != nil {
				t.Fatal(err)
			}
			if pass := len(got) == 0; pass != tt.pass {
				t.Errorf("violations %+v", got)
			}
		})
	}
}
