package rules

import (
	"slices"
	"sync"
	"sync/atomic"

	"cel.dev/cel-go/cel"
)

// Per says what one evaluation of a rule judges.
type Per string

const (
	// PerItem rules are evaluated once for each item, with `item` bound.
	PerItem Per = "item"
	// PerPrescription rules are evaluated once for the whole prescription.
	PerPrescription Per = "prescription"
)

// Text is a text in Persian and English.
type Text struct {
	FA string `json:"fa"`
	EN string `json:"en"`
}

// Rule is one rule's definition as loaded, for listings and audit.
type Rule struct {
	ID          string   `json:"id"`
	Description Text     `json:"description"`
	Scopes      []Scope  `json:"scopes"`
	Per         Per      `json:"per"`
	When        string   `json:"when,omitempty"`
	Expr        string   `json:"expr"`
	Severity    Severity `json:"severity"`
	Message     Text     `json:"message"`
	Line        int      `json:"line"` // where the rule starts in its file
}

// program is one compiled expression: the cel-go program, and the fast
// evaluator's closures when the expression is within what fast.go handles.
type program struct {
	cel  cel.Program
	fast *fastProgram // nil: cel-go only
}

type compiledRule struct {
	Rule
	guard        int     // index into Set.guards; -1 when the rule has no when
	prg          program // expr
	msgEN, msgFA message
}

// plan is the rules one scope applies, split by what they judge, in file
// order. Computed at load so that Evaluate never looks at a rule whose
// scopes do not include the Input's.
type plan struct {
	perPrescription []*compiledRule
	perItem         []*compiledRule
}

// Set is a loaded, compiled, immutable rule set. It is safe for concurrent
// use.
type Set struct {
	version     string
	description string
	digest      string
	rules       []*compiledRule
	guards      []program // the distinct when guards
	plans       []plan    // indexed like scopes
	slots       int       // the most comprehension slots any fast program needs
	failures    atomic.Uint64
	states      sync.Pool // *evalState
}

// Version is the set's version label, as written in the file.
func (s *Set) Version() string { return s.version }

// Description is the set's description ("" when the file has none).
func (s *Set) Description() string { return s.description }

// Digest is the hex SHA-256 of the file the set was loaded from: with the
// version, it names exactly which rules judged a prescription.
func (s *Set) Digest() string { return s.digest }

// Rules lists the rules in file order. The slice is a copy.
func (s *Set) Rules() []Rule {
	out := make([]Rule, len(s.rules))
	for i, r := range s.rules {
		out[i] = r.Rule
		out[i].Scopes = slices.Clone(r.Scopes)
	}
	return out
}

// EvalFailures counts the rule evaluations this set has failed closed
// since it was loaded: a non-zero count means a rule needs fixing.
func (s *Set) EvalFailures() uint64 { return s.failures.Load() }
