package rules

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/nuskha/nuskha/internal/errs"
)

// Problem is one thing wrong with a rule set file.
type Problem struct {
	File string
	// Line and Column locate the problem in the file (1-based, columns in
	// characters; 0 when the file did not parse far enough to say). For a
	// CEL error they locate the error itself when the expression is on the
	// key's line or in a literal block (`expr: |`), else the expression's
	// value.
	Line, Column int
	Rule         string // the rule's id; "" for the set itself or a rule without a usable id
	Field        string // the key concerned: "version", "scopes", "expr", "when", ...
	// ExprLine and ExprColumn locate a CEL error inside the expression
	// text, as CEL counts them (1-based; 0 when not a CEL error).
	ExprLine, ExprColumn int
	Message              string
}

// String renders the problem the way compilers do, so that editors can jump
// to it: "rules.yaml:14:11: rule quantity-limit: expr: CEL 1:23: ...".
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteString(":" + strconv.Itoa(p.Line))
		if p.Column > 0 {
			b.WriteString(":" + strconv.Itoa(p.Column))
		}
	}
	b.WriteString(": ")
	if p.Rule != "" {
		b.WriteString("rule " + p.Rule + ": ")
	}
	if p.Field != "" {
		b.WriteString(p.Field + ": ")
	}
	if p.ExprLine > 0 {
		fmt.Fprintf(&b, "CEL %d:%d: ", p.ExprLine, p.ExprColumn)
	}
	b.WriteString(p.Message)
	return b.String()
}

// SetError is a refused rule set: every problem found, in file order. A set
// with any problem is refused as a whole.
//
// Load and Engine.Reload return a *SetError as is. It also answers to the
// errs package: errors.Is(err, errs.Of(errs.InvalidRuleSet)) is true, and
// errors.As(err, &e) with e an *errs.Error yields code
// errs.InvalidRuleSet whose Detail lists the problems with their
// locations (rule files hold no secrets, and the author needs them).
type SetError struct {
	File     string
	Problems []Problem
}

func (e *SetError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rule set %s refused (%d problem", e.File, len(e.Problems))
	if len(e.Problems) != 1 {
		b.WriteByte('s')
	}
	b.WriteString(")")
	for _, p := range e.Problems {
		b.WriteString("; ")
		b.WriteString(p.String())
	}
	return b.String()
}

func (e *SetError) asErrs() *errs.Error {
	return &errs.Error{Code: errs.InvalidRuleSet, Detail: e.Error()}
}

// Is makes errors.Is(err, errs.Of(errs.InvalidRuleSet)) true.
func (e *SetError) Is(target error) bool { return e.asErrs().Is(target) }

// As makes a *SetError discoverable as an *errs.Error with code
// errs.InvalidRuleSet, so errs.CodeOf and the HTTP edge map it.
func (e *SetError) As(target any) bool {
	if t, ok := target.(**errs.Error); ok {
		*t = e.asErrs()
		return true
	}
	return false
}

// RuleFailure is one rule that could not be evaluated for one item (or the
// prescription). Evaluate failed it closed: it is also in the violations,
// with severity reject.
type RuleFailure struct {
	Rule  string
	Field string // "expr" or "when"
	Item  int    // index into Input.Items, or -1
	Err   error  // CEL's runtime error: division by zero, index out of range, ...
}

// EvalError reports the rules that failed during one Evaluate. It
// accompanies the violations; it does not replace them.
type EvalError struct {
	Version  string
	Failures []RuleFailure
}

func (e *EvalError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rule set %s: %d rule evaluation(s) failed closed", e.Version, len(e.Failures))
	for _, f := range e.Failures {
		fmt.Fprintf(&b, "; rule %s %s (item %d): %v", f.Rule, f.Field, f.Item, f.Err)
	}
	return b.String()
}

// Unwrap exposes the CEL errors.
func (e *EvalError) Unwrap() []error {
	out := make([]error, len(e.Failures))
	for i, f := range e.Failures {
		out[i] = f.Err
	}
	return out
}
