package rules

import (
	"cmp"
	"math"
	"strings"
	"unicode/utf8"

	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/overloads"
	"cel.dev/cel-go/common/types"
)

// The fast evaluator.
//
// cel-go's interpreter costs a few hundred nanoseconds per rule here, most
// of it in dynamic dispatch, boxing every value it reads into a ref.Val,
// and comprehension bookkeeping: a 100-rule set over a 3-item prescription
// took 80–120 µs (BenchmarkHundredRulesCELOnly), against a budget of 20.
// Rule sets are type-checked, so every expression's static type is known
// at load, and the rules people write use a small part of CEL: field
// reads, comparisons, integer arithmetic, && || ! ?:, `in`, size,
// startsWith/endsWith/contains, indexing, constant list literals, and the
// exists, all and exists_one macros and size(filter) over lists. Load
// translates a checked expression built only from those into Go closures
// over the Input's own fields (no boxing, no maps, no reflection, no
// allocation); anything else keeps the cel-go program alone.
//
// cel-go stays the reference. A closure either gives the exact answer or
// gives up (ok == false): on integer overflow, division by zero, an index
// out of range, or any sub-expression that gave up. It never produces a
// CEL error itself. When it gives up, Evaluate asks the cel-go program,
// whose answer (or error, which fails closed) is the one that counts. So
// the only obligation of this file is that an answer it does give equals
// cel-go's; fast_test.go checks that differentially over generated
// inputs for every construct handled here.

// kind is a static type the fast evaluator handles.
type kind uint8

const (
	kNone kind = iota
	kBool
	kInt
	kString
	kPatient
	kPrescriber
	kPrescription
	kItem
	kEntry
	kDispensed
	kStrings
	kInts
	kItems
	kHistory
)

func kindOf(t *types.Type) kind {
	if t == nil {
		return kNone
	}
	switch t.Kind() {
	case types.BoolKind:
		return kBool
	case types.IntKind:
		return kInt
	case types.StringKind:
		return kString
	case types.StructKind:
		switch t.TypeName() {
		case typePatient:
			return kPatient
		case typePrescriber:
			return kPrescriber
		case typePrescription:
			return kPrescription
		case typeItem:
			return kItem
		case typeEntry:
			return kEntry
		case typeDispensed:
			return kDispensed
		}
	case types.ListKind:
		if len(t.Parameters()) == 1 {
			switch kindOf(t.Parameters()[0]) {
			case kString:
				return kStrings
			case kInt:
				return kInts
			case kItem:
				return kItems
			case kDispensed:
				return kHistory
			}
		}
	}
	return kNone
}

// fn is a compiled expression giving a V; ok is false when it gives up.
type fn[V any] func(*fctx) (v V, ok bool)

// fexpr is a compiled sub-expression: its kind and an fn of the matching
// Go type (fn[bool], fn[int64], fn[string], fn[*Item], fn[[]Item], ...).
type fexpr struct {
	k   kind
	fn  any
	lit any // for a literal, its value (bool, int64 or string)
}

// fctx is what a compiled expression reads: the Input, the item being
// judged and the comprehension variables.
type fctx struct {
	in    *Input
	item  *Item // nil for prescription rules
	slots []slot
}

// slot holds one comprehension's element.
type slot struct {
	i    int64
	s    string
	item *Item
	disp *Dispensed
}

// fastProgram is one expression compiled to closures.
type fastProgram struct {
	eval  fn[bool]
	slots int // comprehension slots it needs
}

type localVar struct {
	name string
	slot int
	k    kind
}

type fcompiler struct {
	ast    *celast.AST
	locals []localVar // innermost last
	nslots int
}

// compileFast translates a checked bool expression, or reports that it
// uses something the fast evaluator does not handle.
func compileFast(a *celast.AST) (*fastProgram, bool) {
	c := &fcompiler{ast: a}
	e, ok := c.expr(a.Expr())
	if !ok || e.k != kBool {
		return nil, false
	}
	return &fastProgram{eval: e.fn.(fn[bool]), slots: c.nslots}, true
}

func (c *fcompiler) expr(e celast.Expr) (fexpr, bool) {
	var out fexpr
	var ok bool
	switch e.Kind() {
	case celast.LiteralKind:
		out, ok = literal(e)
	case celast.IdentKind:
		out, ok = c.ident(e)
	case celast.SelectKind:
		out, ok = c.selectField(e)
	case celast.CallKind:
		out, ok = c.call(e)
	case celast.ListKind:
		out, ok = c.list(e)
	case celast.ComprehensionKind:
		out, ok = c.comprehension(e)
	}
	// The checker's type is the authority: a translation that disagrees
	// with it is a misunderstanding here, and the rule stays with cel-go.
	if !ok || out.k != kindOf(c.ast.GetType(e.ID())) {
		return fexpr{}, false
	}
	return out, true
}

func constant[V any](v V) fn[V] {
	return func(*fctx) (V, bool) { return v, true }
}

func literal(e celast.Expr) (fexpr, bool) {
	switch v := e.AsLiteral().(type) {
	case types.Bool:
		return fexpr{k: kBool, fn: constant(bool(v)), lit: bool(v)}, true
	case types.Int:
		return fexpr{k: kInt, fn: constant(int64(v)), lit: int64(v)}, true
	case types.String:
		return fexpr{k: kString, fn: constant(string(v)), lit: string(v)}, true
	}
	return fexpr{}, false
}

func (c *fcompiler) ident(e celast.Expr) (fexpr, bool) {
	name := e.AsIdent()
	for i := len(c.locals) - 1; i >= 0; i-- {
		if v := c.locals[i]; v.name == name {
			return local(v)
		}
	}
	switch name {
	case "scope":
		return fexpr{k: kString, fn: fn[string](func(x *fctx) (string, bool) { return string(x.in.Scope), true })}, true
	case "patient":
		return fexpr{k: kPatient, fn: fn[*Patient](func(x *fctx) (*Patient, bool) { return &x.in.Patient, true })}, true
	case "prescriber":
		return fexpr{k: kPrescriber, fn: fn[*Prescriber](func(x *fctx) (*Prescriber, bool) { return &x.in.Prescriber, true })}, true
	case "prescription":
		return fexpr{k: kPrescription, fn: fn[*Prescription](func(x *fctx) (*Prescription, bool) { return &x.in.Prescription, true })}, true
	case "items":
		return fexpr{k: kItems, fn: fn[[]Item](func(x *fctx) ([]Item, bool) { return x.in.Items, true })}, true
	case "history":
		return fexpr{k: kHistory, fn: fn[[]Dispensed](func(x *fctx) ([]Dispensed, bool) { return x.in.History, true })}, true
	case "item":
		return fexpr{k: kItem, fn: fn[*Item](func(x *fctx) (*Item, bool) { return x.item, x.item != nil })}, true
	}
	return fexpr{}, false
}

func local(v localVar) (fexpr, bool) {
	s := v.slot
	switch v.k {
	case kInt:
		return fexpr{k: kInt, fn: fn[int64](func(x *fctx) (int64, bool) { return x.slots[s].i, true })}, true
	case kString:
		return fexpr{k: kString, fn: fn[string](func(x *fctx) (string, bool) { return x.slots[s].s, true })}, true
	case kItem:
		return fexpr{k: kItem, fn: fn[*Item](func(x *fctx) (*Item, bool) { return x.slots[s].item, true })}, true
	case kDispensed:
		return fexpr{k: kDispensed, fn: fn[*Dispensed](func(x *fctx) (*Dispensed, bool) { return x.slots[s].disp, true })}, true
	}
	return fexpr{}, false
}

func (c *fcompiler) selectField(e celast.Expr) (fexpr, bool) {
	sel := e.AsSelect()
	op, ok := c.expr(sel.Operand())
	if !ok {
		return fexpr{}, false
	}
	name, test := sel.FieldName(), sel.IsTestOnly()
	switch op.k {
	case kPatient:
		return field(op.fn.(fn[*Patient]), patientDef, name, test)
	case kPrescriber:
		return field(op.fn.(fn[*Prescriber]), prescriberDef, name, test)
	case kPrescription:
		return field(op.fn.(fn[*Prescription]), prescriptionDef, name, test)
	case kItem:
		return field(op.fn.(fn[*Item]), itemDef, name, test)
	case kEntry:
		return field(op.fn.(fn[*Entry]), entryDef, name, test)
	case kDispensed:
		return field(op.fn.(fn[*Dispensed]), dispensedDef, name, test)
	}
	return fexpr{}, false
}

// field reads one field of an object, or (test, for has()) whether it is
// set, which means not its zero value, as in the CEL field tables.
func field[T any](obj fn[*T], d *objectDef, name string, test bool) (fexpr, bool) {
	spec, ok := d.specs[name].(fieldSpec[T])
	if !ok {
		return fexpr{}, false
	}
	if test {
		var set func(*T) bool
		switch {
		case spec.num != nil:
			set = func(p *T) bool { return spec.num(p) != 0 }
		case spec.str != nil:
			set = func(p *T) bool { return spec.str(p) != "" }
		case spec.flag != nil:
			set = spec.flag
		case spec.strs != nil:
			set = func(p *T) bool { return len(spec.strs(p)) > 0 }
		default:
			set = func(*T) bool { return true }
		}
		return fexpr{k: kBool, fn: read(obj, set)}, true
	}
	switch {
	case spec.num != nil:
		return fexpr{k: kInt, fn: read(obj, spec.num)}, true
	case spec.str != nil:
		return fexpr{k: kString, fn: read(obj, spec.str)}, true
	case spec.flag != nil:
		return fexpr{k: kBool, fn: read(obj, spec.flag)}, true
	case spec.strs != nil:
		return fexpr{k: kStrings, fn: read(obj, spec.strs)}, true
	case spec.entry != nil:
		return fexpr{k: kEntry, fn: read(obj, spec.entry)}, true
	}
	return fexpr{}, false
}

func read[T, V any](obj fn[*T], get func(*T) V) fn[V] {
	return func(x *fctx) (V, bool) {
		p, ok := obj(x)
		if !ok {
			var zero V
			return zero, false
		}
		return get(p), true
	}
}

func (c *fcompiler) call(e celast.Expr) (fexpr, bool) {
	call := e.AsCall()
	name := call.FunctionName()
	argExprs := call.Args()
	if call.IsMemberFunction() {
		argExprs = append([]celast.Expr{call.Target()}, argExprs...)
	}
	// size(list.filter(...)) counts without building the list.
	if name == overloads.Size && len(argExprs) == 1 {
		if n, ok := c.filterCount(argExprs[0]); ok {
			return fexpr{k: kInt, fn: n}, true
		}
	}
	args := make([]fexpr, len(argExprs))
	for i, a := range argExprs {
		var ok bool
		if args[i], ok = c.expr(a); !ok {
			return fexpr{}, false
		}
	}
	kinds := func(ks ...kind) bool {
		if len(args) != len(ks) {
			return false
		}
		for i, k := range ks {
			if args[i].k != k {
				return false
			}
		}
		return true
	}
	switch name {
	case operators.LogicalAnd:
		if kinds(kBool, kBool) {
			return fexpr{k: kBool, fn: and(args[0].fn.(fn[bool]), args[1].fn.(fn[bool]))}, true
		}
	case operators.LogicalOr:
		if kinds(kBool, kBool) {
			return fexpr{k: kBool, fn: or(args[0].fn.(fn[bool]), args[1].fn.(fn[bool]))}, true
		}
	case operators.LogicalNot:
		if kinds(kBool) {
			return fexpr{k: kBool, fn: unary(args[0].fn.(fn[bool]), func(b bool) (bool, bool) { return !b, true })}, true
		}
	case operators.Conditional:
		if len(args) == 3 && args[0].k == kBool && args[1].k == args[2].k {
			cond := args[0].fn.(fn[bool])
			switch args[1].k {
			case kBool:
				return fexpr{k: kBool, fn: conditional(cond, args[1].fn.(fn[bool]), args[2].fn.(fn[bool]))}, true
			case kInt:
				return fexpr{k: kInt, fn: conditional(cond, args[1].fn.(fn[int64]), args[2].fn.(fn[int64]))}, true
			case kString:
				return fexpr{k: kString, fn: conditional(cond, args[1].fn.(fn[string]), args[2].fn.(fn[string]))}, true
			}
		}
	case operators.Equals, operators.NotEquals, operators.Less, operators.LessEquals, operators.Greater, operators.GreaterEquals:
		// A literal on the left moves to the right (x == 3, x > 3), where
		// compare folds it into the closure.
		if len(args) == 2 && args[0].lit != nil && args[1].lit == nil {
			args[0], args[1] = args[1], args[0]
			name = mirrored[name]
		}
		switch {
		case kinds(kBool, kBool) && (name == operators.Equals || name == operators.NotEquals):
			eq := name == operators.Equals
			return fexpr{k: kBool, fn: compare(name, args[0], args[1], func(x, y bool) bool { return (x == y) == eq })}, true
		case kinds(kInt, kInt):
			return fexpr{k: kBool, fn: compare(name, args[0], args[1], relation[int64](name))}, true
		case kinds(kString, kString):
			return fexpr{k: kBool, fn: compare(name, args[0], args[1], relation[string](name))}, true
		}
	case operators.Add, operators.Subtract, operators.Multiply, operators.Divide, operators.Modulo:
		if kinds(kInt, kInt) {
			return fexpr{k: kInt, fn: binary(args[0].fn.(fn[int64]), args[1].fn.(fn[int64]), arithmetic[name])}, true
		}
	case operators.Negate:
		if kinds(kInt) {
			return fexpr{k: kInt, fn: unary(args[0].fn.(fn[int64]), func(v int64) (int64, bool) { return -v, v != math.MinInt64 })}, true
		}
	case operators.In:
		switch {
		case kinds(kString, kStrings):
			return fexpr{k: kBool, fn: in(args[0].fn.(fn[string]), args[1].fn.(fn[[]string]))}, true
		case kinds(kInt, kInts):
			return fexpr{k: kBool, fn: in(args[0].fn.(fn[int64]), args[1].fn.(fn[[]int64]))}, true
		}
	case overloads.Size:
		if len(args) == 1 {
			switch args[0].k {
			case kString:
				return fexpr{k: kInt, fn: unary(args[0].fn.(fn[string]), func(s string) (int64, bool) { return int64(utf8.RuneCountInString(s)), true })}, true
			case kStrings:
				return fexpr{k: kInt, fn: size(args[0].fn.(fn[[]string]))}, true
			case kInts:
				return fexpr{k: kInt, fn: size(args[0].fn.(fn[[]int64]))}, true
			case kItems:
				return fexpr{k: kInt, fn: size(args[0].fn.(fn[[]Item]))}, true
			case kHistory:
				return fexpr{k: kInt, fn: size(args[0].fn.(fn[[]Dispensed]))}, true
			}
		}
	case overloads.StartsWith, overloads.EndsWith, overloads.Contains:
		if call.IsMemberFunction() && kinds(kString, kString) {
			test := map[string]func(s, sub string) bool{
				overloads.StartsWith: strings.HasPrefix,
				overloads.EndsWith:   strings.HasSuffix,
				overloads.Contains:   strings.Contains,
			}[name]
			return fexpr{k: kBool, fn: binary(args[0].fn.(fn[string]), args[1].fn.(fn[string]), func(s, sub string) (bool, bool) { return test(s, sub), true })}, true
		}
	case operators.Index:
		switch {
		case kinds(kItems, kInt):
			return fexpr{k: kItem, fn: indexRef(args[0].fn.(fn[[]Item]), args[1].fn.(fn[int64]))}, true
		case kinds(kHistory, kInt):
			return fexpr{k: kDispensed, fn: indexRef(args[0].fn.(fn[[]Dispensed]), args[1].fn.(fn[int64]))}, true
		case kinds(kStrings, kInt):
			return fexpr{k: kString, fn: index(args[0].fn.(fn[[]string]), args[1].fn.(fn[int64]))}, true
		case kinds(kInts, kInt):
			return fexpr{k: kInt, fn: index(args[0].fn.(fn[[]int64]), args[1].fn.(fn[int64]))}, true
		}
	}
	return fexpr{}, false
}

// and and or short-circuit left to right. CEL's are commutative over
// errors (false && error is false whichever side the error is on); giving
// up when the left side gives up leaves those cases to cel-go.
func and(a, b fn[bool]) fn[bool] {
	return func(x *fctx) (bool, bool) {
		if v, ok := a(x); !ok || !v {
			return false, ok
		}
		return b(x)
	}
}

func or(a, b fn[bool]) fn[bool] {
	return func(x *fctx) (bool, bool) {
		if v, ok := a(x); !ok || v {
			return v, ok
		}
		return b(x)
	}
}

func conditional[V any](cond fn[bool], then, otherwise fn[V]) fn[V] {
	return func(x *fctx) (V, bool) {
		c, ok := cond(x)
		if !ok {
			var zero V
			return zero, false
		}
		if c {
			return then(x)
		}
		return otherwise(x)
	}
}

func unary[A, V any](a fn[A], op func(A) (V, bool)) fn[V] {
	return func(x *fctx) (V, bool) {
		v, ok := a(x)
		if !ok {
			var zero V
			return zero, false
		}
		return op(v)
	}
}

func binary[A, B, V any](a fn[A], b fn[B], op func(A, B) (V, bool)) fn[V] {
	return func(x *fctx) (V, bool) {
		var zero V
		va, ok := a(x)
		if !ok {
			return zero, false
		}
		vb, ok := b(x)
		if !ok {
			return zero, false
		}
		return op(va, vb)
	}
}

// mirrored is the operator with its operands swapped.
var mirrored = map[string]string{
	operators.Equals:        operators.Equals,
	operators.NotEquals:     operators.NotEquals,
	operators.Less:          operators.Greater,
	operators.LessEquals:    operators.GreaterEquals,
	operators.Greater:       operators.Less,
	operators.GreaterEquals: operators.LessEquals,
}

// compare applies test, with special closures for == and != against a
// literal, the commonest thing rules do (item.kind == "drug").
func compare[V comparable](op string, a, b fexpr, test func(x, y V) bool) fn[bool] {
	fa, fb := a.fn.(fn[V]), b.fn.(fn[V])
	if c, ok := b.lit.(V); ok {
		switch op {
		case operators.Equals:
			return func(x *fctx) (bool, bool) { v, ok := fa(x); return ok && v == c, ok }
		case operators.NotEquals:
			return func(x *fctx) (bool, bool) { v, ok := fa(x); return ok && v != c, ok }
		}
		return func(x *fctx) (bool, bool) { v, ok := fa(x); return ok && test(v, c), ok }
	}
	return func(x *fctx) (bool, bool) {
		va, ok := fa(x)
		if !ok {
			return false, false
		}
		vb, ok := fb(x)
		return ok && test(va, vb), ok
	}
}

func relation[V cmp.Ordered](op string) func(x, y V) bool {
	switch op {
	case operators.Equals:
		return func(x, y V) bool { return x == y }
	case operators.NotEquals:
		return func(x, y V) bool { return x != y }
	case operators.Less:
		return func(x, y V) bool { return x < y }
	case operators.LessEquals:
		return func(x, y V) bool { return x <= y }
	case operators.Greater:
		return func(x, y V) bool { return x > y }
	}
	return func(x, y V) bool { return x >= y }
}

// arithmetic gives up wherever CEL reports an error: overflow, and
// division or modulo by zero.
var arithmetic = map[string]func(x, y int64) (int64, bool){
	operators.Add: func(x, y int64) (int64, bool) {
		r := x + y
		return r, (x >= 0) != (y >= 0) || (r >= 0) == (x >= 0)
	},
	operators.Subtract: func(x, y int64) (int64, bool) {
		r := x - y
		return r, (x >= 0) == (y >= 0) || (r >= 0) == (x >= 0)
	},
	operators.Multiply: func(x, y int64) (int64, bool) {
		if x == 0 || y == 0 {
			return 0, true
		}
		r := x * y
		return r, r/y == x && !(x == -1 && y == math.MinInt64) && !(y == -1 && x == math.MinInt64)
	},
	operators.Divide: func(x, y int64) (int64, bool) {
		if y == 0 || (x == math.MinInt64 && y == -1) {
			return 0, false
		}
		return x / y, true
	},
	operators.Modulo: func(x, y int64) (int64, bool) {
		if y == 0 || (x == math.MinInt64 && y == -1) {
			return 0, false
		}
		return x % y, true
	},
}

func in[V comparable](v fn[V], list fn[[]V]) fn[bool] {
	return binary(v, list, func(x V, l []V) (bool, bool) {
		for _, e := range l {
			if e == x {
				return true, true
			}
		}
		return false, true
	})
}

func size[E any](list fn[[]E]) fn[int64] {
	return unary(list, func(l []E) (int64, bool) { return int64(len(l)), true })
}

func index[E any](list fn[[]E], i fn[int64]) fn[E] {
	return binary(list, i, func(l []E, i int64) (E, bool) {
		if i < 0 || i >= int64(len(l)) {
			var zero E
			return zero, false
		}
		return l[i], true
	})
}

func indexRef[E any](list fn[[]E], i fn[int64]) fn[*E] {
	return binary(list, i, func(l []E, i int64) (*E, bool) {
		if i < 0 || i >= int64(len(l)) {
			return nil, false
		}
		return &l[i], true
	})
}

// list handles list literals whose elements are all literals of one kind
// (`item.code in ["a", "b"]`), made once at load.
func (c *fcompiler) list(e celast.Expr) (fexpr, bool) {
	l := e.AsList()
	if len(l.OptionalIndices()) > 0 || len(l.Elements()) == 0 {
		return fexpr{}, false
	}
	var strs []string
	var ints []int64
	for _, el := range l.Elements() {
		if el.Kind() != celast.LiteralKind {
			return fexpr{}, false
		}
		switch v := el.AsLiteral().(type) {
		case types.String:
			strs = append(strs, string(v))
		case types.Int:
			ints = append(ints, int64(v))
		default:
			return fexpr{}, false
		}
	}
	switch n := len(l.Elements()); {
	case len(strs) == n:
		return fexpr{k: kStrings, fn: constant(strs)}, true
	case len(ints) == n:
		return fexpr{k: kInts, fn: constant(ints)}, true
	}
	return fexpr{}, false
}

// Shapes of the macros' expansions (cel-go parser/macro.go), matched
// exactly; anything else stays with cel-go.

func isIdent(e celast.Expr, name string) bool {
	return e.Kind() == celast.IdentKind && e.AsIdent() == name
}

// isLiteral compares with == rather than CEL equality, under which 1 and
// 1.0 are equal.
func isLiteral(e celast.Expr, v any) bool {
	return e.Kind() == celast.LiteralKind && e.AsLiteral() == v
}

// callTo returns the arguments of a global call to function with n
// arguments.
func callTo(e celast.Expr, function string, n int) ([]celast.Expr, bool) {
	if e.Kind() != celast.CallKind || e.AsCall().IsMemberFunction() || e.AsCall().FunctionName() != function || len(e.AsCall().Args()) != n {
		return nil, false
	}
	return e.AsCall().Args(), true
}

type quantifier int

const (
	qExists quantifier = iota
	qAll
	qExistsOne
	qFilterCount // size(l.filter(v, p))
)

// macro recognises the exists, all, exists_one and filter expansions and
// returns which one and its predicate.
func macro(comp celast.ComprehensionExpr) (quantifier, celast.Expr, bool) {
	if comp.HasIterVar2() {
		return 0, nil, false
	}
	accu, iter := comp.AccuVar(), comp.IterVar()
	init, cond, step, result := comp.AccuInit(), comp.LoopCondition(), comp.LoopStep(), comp.Result()
	// exists: false; @not_strictly_false(!accu); accu || p; accu
	if a, ok := callTo(cond, operators.NotStrictlyFalse, 1); ok && isLiteral(init, types.False) && isIdent(result, accu) {
		if n, ok := callTo(a[0], operators.LogicalNot, 1); ok && isIdent(n[0], accu) {
			if s, ok := callTo(step, operators.LogicalOr, 2); ok && isIdent(s[0], accu) {
				return qExists, s[1], true
			}
		}
	}
	// all: true; @not_strictly_false(accu); accu && p; accu
	if a, ok := callTo(cond, operators.NotStrictlyFalse, 1); ok && isLiteral(init, types.True) && isIdent(result, accu) && isIdent(a[0], accu) {
		if s, ok := callTo(step, operators.LogicalAnd, 2); ok && isIdent(s[0], accu) {
			return qAll, s[1], true
		}
	}
	// exists_one: 0; true; p ? accu + 1 : accu; accu == 1
	if isLiteral(init, types.Int(0)) && isLiteral(cond, types.True) {
		if r, ok := callTo(result, operators.Equals, 2); ok && isIdent(r[0], accu) && isLiteral(r[1], types.Int(1)) {
			if s, ok := callTo(step, operators.Conditional, 3); ok && isIdent(s[2], accu) {
				if add, ok := callTo(s[1], operators.Add, 2); ok && isIdent(add[0], accu) && isLiteral(add[1], types.Int(1)) {
					return qExistsOne, s[0], true
				}
			}
		}
	}
	// filter: []; true; p ? accu + [v] : accu; accu
	if init.Kind() == celast.ListKind && len(init.AsList().Elements()) == 0 && isLiteral(cond, types.True) && isIdent(result, accu) {
		if s, ok := callTo(step, operators.Conditional, 3); ok && isIdent(s[2], accu) {
			if add, ok := callTo(s[1], operators.Add, 2); ok && isIdent(add[0], accu) && add[1].Kind() == celast.ListKind {
				if el := add[1].AsList().Elements(); len(el) == 1 && isIdent(el[0], iter) && len(add[1].AsList().OptionalIndices()) == 0 {
					return qFilterCount, s[0], true
				}
			}
		}
	}
	return 0, nil, false
}

// comprehension handles exists, all and exists_one.
func (c *fcompiler) comprehension(e celast.Expr) (fexpr, bool) {
	q, pred, ok := macro(e.AsComprehension())
	if !ok || q == qFilterCount {
		return fexpr{}, false
	}
	f, ok := c.loop(e.AsComprehension(), q, pred)
	if !ok {
		return fexpr{}, false
	}
	return fexpr{k: kBool, fn: f}, true
}

// filterCount handles size(l.filter(v, p)): it counts the matches instead
// of building the list.
func (c *fcompiler) filterCount(e celast.Expr) (fn[int64], bool) {
	if e.Kind() != celast.ComprehensionKind {
		return nil, false
	}
	q, pred, ok := macro(e.AsComprehension())
	if !ok || q != qFilterCount {
		return nil, false
	}
	f, ok := c.loop(e.AsComprehension(), q, pred)
	if !ok {
		return nil, false
	}
	return f.(fn[int64]), true
}

// loop compiles the range, and the predicate with the element in scope,
// into an fn[bool] (exists, all, exists_one) or fn[int64] (filter count).
func (c *fcompiler) loop(comp celast.ComprehensionExpr, q quantifier, pred celast.Expr) (any, bool) {
	rng, ok := c.expr(comp.IterRange())
	if !ok {
		return nil, false
	}
	var elem kind
	switch rng.k {
	case kItems:
		elem = kItem
	case kHistory:
		elem = kDispensed
	case kStrings:
		elem = kString
	case kInts:
		elem = kInt
	default:
		return nil, false
	}
	s := c.nslots
	c.nslots++
	depth := len(c.locals)
	c.locals = append(c.locals, localVar{comp.IterVar(), s, elem})
	p, ok := c.expr(pred)
	c.locals = c.locals[:depth]
	if !ok || p.k != kBool {
		return nil, false
	}
	pf := p.fn.(fn[bool])
	switch rng.k {
	case kItems:
		return quantify(rng.fn.(fn[[]Item]), func(sl *slot, e *Item) { sl.item = e }, s, pf, q), true
	case kHistory:
		return quantify(rng.fn.(fn[[]Dispensed]), func(sl *slot, e *Dispensed) { sl.disp = e }, s, pf, q), true
	case kStrings:
		return quantify(rng.fn.(fn[[]string]), func(sl *slot, e *string) { sl.s = *e }, s, pf, q), true
	default:
		return quantify(rng.fn.(fn[[]int64]), func(sl *slot, e *int64) { sl.i = *e }, s, pf, q), true
	}
}

// quantify evaluates the macros as their expansions do when no element's
// predicate gives up (if one does, so does the whole, and cel-go decides):
// exists stops at the first true, all at the first false, exists_one and
// the filter count look at every element.
func quantify[E any](list fn[[]E], bind func(*slot, *E), s int, p fn[bool], q quantifier) any {
	switch q {
	case qExists, qAll:
		// exists stops at a true, all at a false: stopAt is that value,
		// and also the answer when the loop stops.
		stopAt := q == qExists
		return fn[bool](func(x *fctx) (bool, bool) {
			l, ok := list(x)
			if !ok {
				return false, false
			}
			it := &x.slots[s]
			for i := range l {
				bind(it, &l[i])
				v, ok := p(x)
				if !ok {
					return false, false
				}
				if v == stopAt {
					return stopAt, true
				}
			}
			return !stopAt, true
		})
	}
	count := func(x *fctx) (int64, bool) {
		l, ok := list(x)
		if !ok {
			return 0, false
		}
		it := &x.slots[s]
		var n int64
		for i := range l {
			bind(it, &l[i])
			v, ok := p(x)
			if !ok {
				return 0, false
			}
			if v {
				n++
			}
		}
		return n, true
	}
	if q == qFilterCount {
		return fn[int64](count)
	}
	return fn[bool](func(x *fctx) (bool, bool) {
		n, ok := count(x)
		return n == 1, ok
	})
}
