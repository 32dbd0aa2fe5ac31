package rules

import (
	"errors"
	"strings"
	"testing"

	"github.com/nuskha/nuskha/internal/errs"
)

// validSet is a one-rule set; the broken files below change one line of
// it. Its lines:
//
//	1 version   2 rules   3 id   4 description   5 scopes   6 per
//	7 when      8 expr    9 severity   10 message
const validSet = `version: "1"
rules:
  - id: qty
    description: {fa: "سقف تعداد", en: "quantity limit"}
    scopes: [dispense]
    per: item
    when: 'item.kind == "drug"'
    expr: 'item.quantity <= 10'
    severity: reject
    message: {fa: "تعداد زیاد است", en: "too many"}
`

func TestLoadValid(t *testing.T) {
	set, err := Load("x.yaml", []byte(validSet))
	if err != nil {
		t.Fatal(err)
	}
	rules := set.Rules()
	want := Rule{
		ID: "qty", Description: Text{FA: "سقف تعداد", EN: "quantity limit"}, Scopes: []Scope{ScopeDispense},
		Per: PerItem, When: `item.kind == "drug"`, Expr: "item.quantity <= 10", Severity: Reject,
		Message: Text{FA: "تعداد زیاد است", EN: "too many"}, Line: 3,
	}
	if len(rules) != 1 || rules[0].ID != want.ID || rules[0].Expr != want.Expr || rules[0].When != want.When ||
		rules[0].Description != want.Description || rules[0].Message != want.Message || rules[0].Line != want.Line ||
		rules[0].Per != want.Per || rules[0].Severity != want.Severity || len(rules[0].Scopes) != 1 {
		t.Errorf("Rules() = %+v, want %+v", rules, want)
	}
	if set.Version() != "1" {
		t.Errorf("Version() = %q", set.Version())
	}
}

func TestLoadAccepts(t *testing.T) {
	tests := []struct{ name, src string }{
		{"JSON", `{"version": "j1", "rules": [{"id": "a", "description": {"fa": "ا", "en": "a"}, "scopes": ["paper"],
			"per": "prescription", "expr": "prescription.issued_days_ago <= 3", "severity": "warn", "message": {"fa": "ا", "en": "a"}}]}`},
		{"unquoted date as the version", strings.Replace(validSet, `version: "1"`, "version: 2026-11-01", 1)},
		{"expression as a literal block", strings.Replace(validSet, "    expr: 'item.quantity <= 10'\n", "    expr: |\n      item.quantity <= 10 &&\n      item.quantity > 0\n", 1)},
		{"comment inside an expression", strings.Replace(validSet, "    expr: 'item.quantity <= 10'\n", "    expr: |\n      item.quantity <= 10 // the insurer's cap\n", 1)},
		{"no when", strings.Replace(validSet, "    when: 'item.kind == \"drug\"'\n", "", 1)},
		{"has() and the strings extension", strings.Replace(validSet, "'item.quantity <= 10'", `'!has(item.catalogue.atc) || item.catalogue.atc.substring(0, 1) != "N"'`, 1)},
		{"placeholders", strings.Replace(validSet, `en: "too many"`, `en: "{{ item.quantity }} > {{item.catalogue.max_quantity}} ({{prescriber.specialty}})"`, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Load("x.yaml", []byte(tt.src)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLoadRefuses covers each class of error, and checks that the message
// places it: file:line:column, the rule, and for CEL errors CEL's own
// line:column inside the expression.
func TestLoadRefuses(t *testing.T) {
	replace := func(old, new string) string {
		if !strings.Contains(validSet, old) {
			panic("test fixture: " + old)
		}
		return strings.Replace(validSet, old, new, 1)
	}
	tests := []struct {
		name string
		src  string
		want []string // each a substring of the error
	}{
		// The line is the YAML parser's, which points at the flow sequence's
		// context rather than at the missing bracket.
		{"YAML syntax", replace(`    scopes: [dispense]`, `    scopes: [dispense`), []string{"x.yaml:4: YAML: did not find expected ',' or ']'"}},
		{"unknown key", replace("    when:", "    wen:"), []string{`x.yaml:7:5: rule qty: unknown key "wen"`}},
		{"unknown top-level key", replace(`version: "1"`, "version: \"1\"\nowner: actuarial"), []string{`x.yaml:2:1: unknown key "owner"`}},
		{"repeated key", replace("    severity: reject", "    severity: reject\n    severity: warn"), []string{"x.yaml:10:5: rule qty: severity: repeated key (first at line 9)"}},
		{"duplicate id", validSet + strings.Join(strings.Split(validSet, "\n")[2:], "\n"), []string{"x.yaml:11:9: rule qty: id: repeated rule id (first at line 3)"}},
		{"bad id", replace("id: qty", "id: Qty_1"), []string{`x.yaml:3:9: id: "Qty_1" is not a rule id`}},
		{"reserved id", replace("id: qty", "id: unknown-code"), []string{`x.yaml:3:9: id: "unknown-code" is reserved`}},
		{"missing field", replace("    message: {fa: \"تعداد زیاد است\", en: \"too many\"}\n", ""), []string{"x.yaml:3:5: rule qty: message: missing"}},
		{"missing language", replace(`en: "quantity limit"`, `de: "Mengengrenze"`), []string{`x.yaml:4:36: rule qty: description: unknown key "de"`, "x.yaml:4:18: rule qty: description.en: missing"}},
		{"bad scope", replace("[dispense]", "[dispense, pharmacy]"), []string{`x.yaml:5:24: rule qty: scopes: unknown scope "pharmacy"`}},
		{"repeated scope", replace("[dispense]", "[dispense, dispense]"), []string{`x.yaml:5:24: rule qty: scopes: scope "dispense" listed twice`}},
		{"bad severity", replace("severity: reject", "severity: block"), []string{`x.yaml:9:15: rule qty: severity: "block": must be "reject" or "warn"`}},
		{"bad per", replace("per: item", "per: line"), []string{`x.yaml:6:10: rule qty: per: "line"`}},
		{"CEL syntax error", replace("'item.quantity <= 10'", "'item.quantity <= '"), []string{"x.yaml:8:29: rule qty: expr: CEL 1:18: Syntax error"}},
		{"unknown field", replace("'item.quantity <= 10'", "'item.quantiy <= 10'"), []string{"x.yaml:8:16: rule qty: expr: CEL 1:5: undefined field 'quantiy'"}},
		{"unknown field in a literal block", replace("    expr: 'item.quantity <= 10'", "    expr: |\n      item.quantity <= 10 &&\n      item.catalogue.max_quantty > 0"), []string{"x.yaml:10:21: rule qty: expr: CEL 2:15: undefined field 'max_quantty'"}},
		{"unknown variable", replace("'item.quantity <= 10'", "'itme.quantity <= 10'"), []string{"rule qty: expr: CEL 1:1: undeclared reference to 'itme'"}},
		{"type error", replace("'item.quantity <= 10'", `'item.quantity == "3"'`), []string{"x.yaml:8:26: rule qty: expr: CEL 1:15: found no matching overload for '_==_' applied to '(int, string)'"}},
		{"non-bool expr", replace("'item.quantity <= 10'", "'item.quantity + 1'"), []string{"x.yaml:8:11: rule qty: expr: must be a true/false (bool) expression; this one gives int"}},
		{"non-bool when", replace(`'item.kind == "drug"'`, "'item.kind'"), []string{"x.yaml:7:11: rule qty: when: must be a true/false (bool) expression; this one gives string"}},
		{"item in a prescription rule", replace("per: item", "per: prescription"), []string{"rule qty: when: CEL 1:1: undeclared reference to 'item'", "rule qty: expr: CEL 1:1: undeclared reference to 'item'"}},
		{"constructing an object", replace("'item.quantity <= 10'", "'rules.Item{quantity: 1} == item'"), []string{"x.yaml:8:22: rule qty: expr: CEL 1:11: rules may not construct objects"}},
		{"bad regular expression", replace("'item.quantity <= 10'", `'item.code.matches("[")'`), []string{"x.yaml:8:11: rule qty: expr: error parsing regexp: missing closing ]"}},
		{"unknown placeholder", replace(`en: "too many"`, `en: "{{item.price}}"`), []string{"x.yaml:10:14: rule qty: message.en: unknown placeholder {{item.price}}"}},
		{"item placeholder in a prescription rule", strings.NewReplacer("per: item", "per: prescription", `'item.kind == "drug"'`, "'true'", "'item.quantity <= 10'", "'true'", `en: "too many"`, `en: "{{item.code}}"`).Replace(validSet), []string{"message.en: placeholder {{item.code}} needs per: item"}},
		{"unclosed placeholder", replace(`en: "too many"`, `en: "{{item.code"`), []string{"message.en: unclosed {{"}},
		{"empty text", replace(`en: "too many"`, `en: ""`), []string{"x.yaml:10:41: rule qty: message.en: must not be empty"}},
		{"anchor and alias", replace(`    scopes: [dispense]`, "    scopes: &s [dispense]"), []string{"x.yaml:5:13: rule qty: scopes: YAML anchors and aliases are not allowed"}},
		{"tag", replace(`severity: reject`, `severity: !!str reject`), []string{"x.yaml:9:15: rule qty: severity: YAML tags are not allowed"}},
		{"expression too long", replace("'item.quantity <= 10'", "'"+strings.Repeat("true && ", 600)+"true'"), []string{"x.yaml:8:11: rule qty: expr: the expression is 4804 characters, over the limit of 4096"}},
		{"no rules", "version: \"1\"\nrules: []\n", []string{"x.yaml:2:8: rules: a set with no rules would accept everything; refused"}},
		{"rules not a list", "version: \"1\"\nrules: {}\n", []string{"x.yaml:2:8: rules: must be a list of rules"}},
		{"no version", strings.Replace(validSet, "version: \"1\"\n", "", 1), []string{"x.yaml:1:1: version: missing"}},
		{"version with spaces", replace(`version: "1"`, `version: "release one"`), []string{"x.yaml:1:10: version: must be at most 64 characters without spaces"}},
		{"not a mapping", "- a\n- b\n", []string{"x.yaml:1:1: the file must be a mapping"}},
		{"empty file", "", []string{"x.yaml: the file is empty"}},
		{"comments only", "# nothing yet\n", []string{"x.yaml: the file is empty"}},
		{"two documents", validSet + "---\nversion: \"2\"\n", []string{"x.yaml:11:1: a rule set file holds one YAML document"}},
		{"too large", strings.Repeat("#", MaxFileSize+1), []string{"over the 1048576-byte limit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := Load("x.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("loaded %v; want refused", set.Rules())
			}
			if set != nil {
				t.Error("a refused set was returned")
			}
			var se *SetError
			if !errors.As(err, &se) || len(se.Problems) == 0 || se.File != "x.yaml" {
				t.Fatalf("error %T %v is not a *SetError with problems", err, err)
			}
			for _, p := range se.Problems {
				if p.File != "x.yaml" {
					t.Errorf("problem without the file name: %+v", p)
				}
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n  %v\ndoes not contain\n  %s", err, w)
				}
			}
		})
	}
}

// A refused set maps to errs.InvalidRuleSet for the HTTP edge, with the
// locations in the detail.
func TestSetErrorIsInvalidRuleSet(t *testing.T) {
	_, err := Load("x.yaml", []byte(strings.Replace(validSet, "severity: reject", "severity: block", 1)))
	if !errors.Is(err, errs.Of(errs.InvalidRuleSet)) {
		t.Errorf("errors.Is(%v, InvalidRuleSet) is false", err)
	}
	if errors.Is(err, errs.Of(errs.Invalid)) {
		t.Error("matches another code")
	}
	if got := errs.CodeOf(err); got != errs.InvalidRuleSet {
		t.Errorf("CodeOf = %s", got)
	}
	var e *errs.Error
	if !errors.As(err, &e) || !strings.Contains(e.Detail, "x.yaml:9:15: rule qty: severity") {
		t.Errorf("errs.Error = %+v", e)
	}
}

// All the problems in a file are reported at once, in file order.
func TestLoadReportsEveryProblem(t *testing.T) {
	src := strings.NewReplacer("severity: reject", "severity: block", "[dispense]", "[dispensing]", "'item.quantity <= 10'", "'item.quantity'").Replace(validSet)
	_, err := Load("x.yaml", []byte(src))
	var se *SetError
	if !errors.As(err, &se) {
		t.Fatal(err)
	}
	var lines []int
	for _, p := range se.Problems {
		lines = append(lines, p.Line)
	}
	if want := []int{5, 9, 8}; len(lines) != 3 || lines[0] != want[0] || lines[1] != want[1] || lines[2] != want[2] {
		// Structural checks run in key order; expressions are compiled last.
		t.Errorf("problem lines %v, want %v (%v)", lines, want, err)
	}
}

func TestLoadNormalisesPersian(t *testing.T) {
	// Arabic yeh and kaf, as typed on an Arabic keyboard layout.
	src := strings.Replace(validSet, `fa: "تعداد زیاد است"`, `fa: "تعداد زياد است  كه"`, 1)
	set, err := Load("x.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := set.Rules()[0].Message.FA; got != "تعداد زیاد است که" {
		t.Errorf("FA message %q", got)
	}
}

// TestNestingLimit: two levels of comprehension load (each item against
// the history); three are refused, since their cost is the product of
// three list lengths on every decision.
func TestNestingLimit(t *testing.T) {
	rule := func(expr string) []byte {
		return []byte(`version: "n"
rules:
  - id: nested
    description: {fa: "تو در تو", en: "nested"}
    scopes: [prescribe]
    per: prescription
    expr: '` + expr + `'
    severity: warn
    message: {fa: "پیام", en: "message"}
`)
	}
	if _, err := Load("two.yaml", rule(`items.all(i, history.all(h, h.atc != i.catalogue.atc || h.days_ago > 30))`)); err != nil {
		t.Fatalf("two levels refused: %v", err)
	}
	_, err := Load("three.yaml", rule(`history.all(a, history.all(b, history.all(c, a.days_ago + b.days_ago + c.days_ago >= 0)))`))
	if err == nil || !strings.Contains(err.Error(), "nesting") {
		t.Fatalf("three levels: %v", err)
	}
}
