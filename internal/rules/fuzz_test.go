package rules

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// FuzzLoad: Load never panics, and its answer is always one of two
// shapes: a usable set, or a *SetError whose every problem names the file.
// A loaded set evaluates any scope without panicking and only ever names
// its own rules.
func FuzzLoad(f *testing.F) {
	f.Add(starterYAML)
	f.Add(hundredRules())
	f.Add([]byte(validSet))
	f.Add(broken)
	f.Add([]byte(`{"version": "j", "rules": [{"id": "a", "description": {"fa": "ا", "en": "a"}, "scopes": ["paper"], "per": "item", "when": "true", "expr": "items.exists(i, i.code == item.code)", "severity": "warn", "message": {"fa": "{{item.code}}", "en": "a"}}]}`))
	f.Add([]byte("version: x\nrules: &a [*a]\n"))
	f.Add([]byte("a: &a [*a, *a, *a, *a]\nb: &b [*a, *a, *a, *a]\n"))
	f.Add([]byte("version: 1\n---\nversion: 2\n"))
	f.Add([]byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := Load("f.yaml", data)
		if err != nil {
			var se *SetError
			if set != nil || !errors.As(err, &se) || len(se.Problems) == 0 {
				t.Fatalf("Load gave %v, %T %v", set, err, err)
			}
			for _, p := range se.Problems {
				if p.File != "f.yaml" || p.Message == "" {
					t.Fatalf("problem %+v", p)
				}
			}
			return
		}
		if set.Version() == "" || len(set.Rules()) == 0 || len(set.Digest()) != 64 {
			t.Fatalf("a loaded set without version, rules or digest: %q %d", set.Version(), len(set.Rules()))
		}
		ids := make([]string, 0, len(set.Rules()))
		for _, r := range set.Rules() {
			if !ruleIDPattern.MatchString(r.ID) || len(r.Scopes) == 0 || strings.TrimSpace(r.Expr) == "" {
				t.Fatalf("a loaded rule is not valid: %+v", r)
			}
			ids = append(ids, r.ID)
		}
		for _, sc := range Scopes() {
			vs, _ := set.Evaluate(cleanInput(sc))
			for _, v := range vs {
				if !slices.Contains(ids, v.RuleID) || (v.Item < -1 || v.Item >= 2) {
					t.Fatalf("violation %+v names no rule of the set", v)
				}
			}
		}
	})
}
