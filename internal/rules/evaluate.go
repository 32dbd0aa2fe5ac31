package rules

import (
	"fmt"
	"slices"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"

	"github.com/nuskha/nuskha/internal/errs"
)

// Evaluation. Load ends by planning, per scope, which rules apply
// (finish); Evaluate then runs each applicable rule, and its when guard,
// by the fast evaluator (fast.go) when it answers and by cel-go otherwise,
// over state pooled between evaluations so that a clean prescription
// allocates nothing. A rule that cannot be evaluated fails closed.

// finish prepares a loaded set for Evaluate: the rules each scope
// applies, and a pool of evaluation state sized for the set's fast
// programs.
func (s *Set) finish() {
	s.plans = make([]plan, len(scopes))
	for si, sc := range scopes {
		p := &s.plans[si]
		for _, r := range s.rules {
			switch {
			case !slices.Contains(r.Scopes, sc):
			case r.Per == PerItem:
				p.perItem = append(p.perItem, r)
			default:
				p.perPrescription = append(p.perPrescription, r)
			}
		}
	}
	for _, r := range s.rules {
		if r.prg.fast != nil {
			s.slots = max(s.slots, r.prg.fast.slots)
		}
	}
	for _, g := range s.guards {
		if g.fast != nil {
			s.slots = max(s.slots, g.fast.slots)
		}
	}
	s.states.New = func() any {
		return &evalState{
			guards: make([]guardState, len(s.guards)),
			fast:   fctx{slots: make([]slot, s.slots)},
		}
	}
}

func scopeIndex(sc Scope) int {
	return slices.Index(scopes, sc)
}

// guardState caches a when guard's answer for the item being judged.
type guardState uint8

const (
	guardUnknown guardState = iota
	guardTrue
	guardFalse
)

// evalState is what one Evaluate needs besides the Input, pooled so that a
// clean prescription allocates nothing.
type evalState struct {
	fast   fctx
	guards []guardState

	// The cel-go activation, bound only when some rule needs cel-go (it
	// is outside what the fast evaluator handles, or the fast evaluator
	// gave up on it).
	celBound     bool
	act          activation
	patient      view[Patient]
	prescriber   view[Prescriber]
	prescription view[Prescription]
	items        []view[Item]
	entries      []view[Entry]
	history      []view[Dispensed]
	itemVals     []ref.Val // object[Item] for each item: the `items` list
	historyVals  []ref.Val
}

// activation binds the rule variables for cel-go. Values are made once
// per Evaluate; only `item` changes between per-item evaluations.
type activation struct {
	scope        ref.Val
	patient      ref.Val
	prescriber   ref.Val
	prescription ref.Val
	items        ref.Val
	history      ref.Val
	item         ref.Val // nil while prescription rules run
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "item":
		return a.item, a.item != nil
	case "items":
		return a.items, true
	case "history":
		return a.history, true
	case "patient":
		return a.patient, true
	case "prescriber":
		return a.prescriber, true
	case "prescription":
		return a.prescription, true
	case "scope":
		return a.scope, true
	}
	return nil, false
}

// Parent is nil: the activation is the whole of the rule's world.
func (a *activation) Parent() interpreter.Activation { return nil }

// scopeValues are the CEL strings for `scope`, made once rather than on
// every Evaluate.
var scopeValues = func() []ref.Val {
	out := make([]ref.Val, len(scopes))
	for i, s := range scopes {
		out[i] = types.String(s)
	}
	return out
}()

// grow returns s with length n, reusing its array when it is big enough.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// bindCEL builds the cel-go activation over in.
func (st *evalState) bindCEL(in *Input) {
	n, h := len(in.Items), len(in.History)
	st.items, st.entries, st.itemVals = grow(st.items, n), grow(st.entries, n), grow(st.itemVals, n)
	st.history, st.historyVals = grow(st.history, h), grow(st.historyVals, h)
	for i := range in.Items {
		st.entries[i].reset(&in.Items[i].Catalogue)
		st.items[i].reset(&in.Items[i])
		st.items[i].nested = object[Entry]{&st.entries[i]}
		st.itemVals[i] = object[Item]{&st.items[i]}
	}
	for i := range in.History {
		st.history[i].reset(&in.History[i])
		st.historyVals[i] = object[Dispensed]{&st.history[i]}
	}
	st.patient.reset(&in.Patient)
	st.prescriber.reset(&in.Prescriber)
	st.prescription.reset(&in.Prescription)
	st.act = activation{
		scope:        scopeValues[scopeIndex(in.Scope)],
		patient:      object[Patient]{&st.patient},
		prescriber:   object[Prescriber]{&st.prescriber},
		prescription: object[Prescription]{&st.prescription},
		items:        types.NewRefValList(types.DefaultTypeAdapter, st.itemVals),
		history:      types.NewRefValList(types.DefaultTypeAdapter, st.historyVals),
	}
	st.celBound = true
}

// release drops every reference into the Input before pooling the state.
func (s *Set) release(st *evalState) {
	st.fast.in, st.fast.item = nil, nil
	clear(st.fast.slots)
	if st.celBound {
		for i := range st.items {
			st.items[i].reset(nil)
			st.entries[i].reset(nil)
		}
		for i := range st.history {
			st.history[i].reset(nil)
		}
		st.patient.reset(nil)
		st.prescriber.reset(nil)
		st.prescription.reset(nil)
		clear(st.itemVals)
		clear(st.historyVals)
		st.act = activation{}
		st.celBound = false
	}
	s.states.Put(st)
}

// Evaluate applies the rules whose scopes include in.Scope, and returns
// the violations: prescription-wide ones first (Item -1), then per item in
// item order, each group in file order. No violations is a nil slice.
//
// A rule that cannot be evaluated (division by zero, an index out of
// range, ...) fails closed: it is returned as a reject violation of that
// rule saying it could not be evaluated, it is counted in EvalFailures,
// and Evaluate also returns an *EvalError naming each failure with CEL's
// error. Callers MUST act on the violations in that case too; the error
// is for logs and alerts.
//
// Evaluate only reads in; in MUST NOT change while it runs. An unknown
// scope is an errs.UnknownScope error.
func (s *Set) Evaluate(in *Input) ([]Violation, error) {
	if s == nil {
		return nil, errs.New(errs.Internal, "no rule set loaded")
	}
	if in == nil {
		return nil, errs.New(errs.Invalid, "no input to judge")
	}
	si := scopeIndex(in.Scope)
	if si < 0 {
		return nil, errs.FieldError(errs.UnknownScope, "scope", "%q is not one of %s", in.Scope, scopeList())
	}
	p := &s.plans[si]
	st := s.states.Get().(*evalState)
	defer s.release(st)
	st.fast.in = in

	e := evaluation{set: s, in: in, st: st, item: -1}
	clear(st.guards)
	for _, r := range p.perPrescription {
		e.rule(r)
	}
	for i := range in.Items {
		e.item = i
		st.fast.item = &in.Items[i]
		clear(st.guards)
		for _, r := range p.perItem {
			e.rule(r)
		}
	}
	if len(e.failures) > 0 {
		s.failures.Add(uint64(len(e.failures)))
		return e.violations, &EvalError{Version: s.version, Failures: e.failures}
	}
	return e.violations, nil
}

type evaluation struct {
	set        *Set
	in         *Input
	st         *evalState
	item       int // the item being judged, -1 for prescription rules
	violations []Violation
	failures   []RuleFailure
}

// run evaluates one program for the current item: by the fast evaluator
// when it can answer, else by cel-go, whose error is returned as is.
func (e *evaluation) run(p program) (bool, error) {
	if p.fast != nil {
		if v, ok := p.fast.eval(&e.st.fast); ok {
			return v, nil
		}
	}
	if !e.st.celBound {
		e.st.bindCEL(e.in)
	}
	e.st.act.item = nil
	if e.item >= 0 {
		e.st.act.item = e.st.itemVals[e.item]
	}
	out, _, err := p.cel.Eval(&e.st.act)
	switch {
	case err != nil:
		return false, err
	case out == types.True:
		return true, nil
	case out == types.False:
		return false, nil
	}
	// The checker makes this unreachable; it is kept so that nothing but
	// true ever passes.
	return false, fmt.Errorf("the rule gave %v (%T), not true or false", out, out)
}

// rule evaluates one rule for the current item (or the prescription).
func (e *evaluation) rule(r *compiledRule) {
	if r.guard >= 0 {
		switch e.st.guards[r.guard] {
		case guardFalse:
			return
		case guardUnknown:
			applies, err := e.run(e.set.guards[r.guard])
			switch {
			case err != nil:
				// Not cached: every rule behind this guard fails closed
				// and is reported on its own.
				e.failClosed(r, "when", err)
				return
			case !applies:
				e.st.guards[r.guard] = guardFalse
				return
			}
			e.st.guards[r.guard] = guardTrue
		}
	}
	ok, err := e.run(r.prg)
	switch {
	case err != nil:
		e.failClosed(r, "expr", err)
	case !ok:
		e.violate(r)
	}
}

func (e *evaluation) violate(r *compiledRule) {
	var it *Item
	if e.item >= 0 {
		it = &e.in.Items[e.item]
	}
	e.violations = append(e.violations, Violation{
		RuleID:    r.ID,
		Severity:  r.Severity,
		Message:   r.msgEN.render(e.in, it),
		MessageFA: r.msgFA.render(e.in, it),
		Item:      e.item,
	})
}

func (e *evaluation) failClosed(r *compiledRule, field string, err error) {
	e.failures = append(e.failures, RuleFailure{Rule: r.ID, Field: field, Item: e.item, Err: err})
	e.violations = append(e.violations, Violation{
		RuleID:    r.ID,
		Severity:  Reject,
		Message:   fmt.Sprintf("Rule %s could not be evaluated, so it is treated as broken until the insurer corrects the rule set.", r.ID),
		MessageFA: fmt.Sprintf("قاعدهٔ %s قابل ارزیابی نبود؛ تا اصلاح مجموعهٔ قواعد از سوی بیمه، نقض\u200cشده به شمار می\u200cآید.", r.ID),
		Item:      e.item,
	})
}
