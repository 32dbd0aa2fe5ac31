package rules

import (
	"fmt"
	"reflect"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
)

// The Input types are exposed to CEL through hand-written field tables
// rather than ext.NativeTypes: each field has a snake_case name chosen here
// (input.go carries no struct tags), a getter that is a plain Go field
// read, and nothing outside the tables is visible to a rule. The checker
// uses the same tables, so a misspelled field or a type mismatch is
// refused when the rule set is loaded.

// CEL names of the object types.
const (
	typePatient      = "rules.Patient"
	typePrescriber   = "rules.Prescriber"
	typePrescription = "rules.Prescription"
	typeItem         = "rules.Item"
	typeEntry        = "rules.Entry"
	typeDispensed    = "rules.Dispensed"
)

// objectDef is one Go struct as CEL sees it.
type objectDef struct {
	celType *types.Type
	fields  map[string]*types.FieldType
	names   []string       // in declaration order, for FindStructFieldNames and docs
	specs   map[string]any // name → fieldSpec[T], for the fast evaluator
}

// fieldSpec declares one field of T: its CEL name and type, and a typed
// getter (exactly one of num, str, flag, strs, entry is set). Both the
// CEL field table and the fast evaluator are made from it, so the two
// cannot disagree about what a field is.
type fieldSpec[T any] struct {
	name  string
	typ   *types.Type
	num   func(*T) int64
	str   func(*T) string
	flag  func(*T) bool
	strs  func(*T) []string
	entry func(*T) *Entry
}

// intField takes an int64 getter even for int fields: wrapping an int
// getter would cost the fast evaluator a second call per read.
func intField[T any](name string, f func(*T) int64) fieldSpec[T] {
	return fieldSpec[T]{name: name, typ: types.IntType, num: f}
}

func stringField[T any](name string, f func(*T) string) fieldSpec[T] {
	return fieldSpec[T]{name: name, typ: types.StringType, str: f}
}

func boolField[T any](name string, f func(*T) bool) fieldSpec[T] {
	return fieldSpec[T]{name: name, typ: types.BoolType, flag: f}
}

func stringListField[T any](name string, f func(*T) []string) fieldSpec[T] {
	return fieldSpec[T]{name: name, typ: types.NewListType(types.StringType), strs: f}
}

// celValue makes the CEL value of the field for one view.
func (s fieldSpec[T]) celValue(vw *view[T]) ref.Val {
	switch {
	case s.num != nil:
		return types.Int(s.num(vw.v))
	case s.str != nil:
		return types.String(s.str(vw.v))
	case s.flag != nil:
		return types.Bool(s.flag(vw.v))
	case s.strs != nil:
		return types.NewStringList(types.DefaultTypeAdapter, s.strs(vw.v))
	}
	return vw.nested // entry: the Item's catalogue, viewed alongside it
}

func newObjectDef[T any](name string, specs ...fieldSpec[T]) *objectDef {
	d := &objectDef{
		celType: types.NewObjectType(name, traits.FieldTesterType|traits.IndexerType),
		fields:  make(map[string]*types.FieldType, len(specs)),
		specs:   make(map[string]any, len(specs)),
	}
	for k, s := range specs {
		fieldName := s.name
		d.names = append(d.names, fieldName)
		d.specs[fieldName] = s
		// value reads field k through the view's cache: the first read
		// in an evaluation makes the CEL value (boxing strings and larger
		// ints allocates), later reads by other rules reuse it.
		value := func(obj any) (ref.Val, bool) {
			vw, ok := obj.(*view[T])
			if !ok {
				return nil, false
			}
			if c := vw.cache[k]; c != nil {
				return c, true
			}
			c := s.celValue(vw)
			vw.cache[k] = c
			return c, true
		}
		d.fields[fieldName] = &types.FieldType{
			Type: s.typ,
			GetFrom: func(obj any) (any, error) {
				v, ok := value(obj)
				if !ok {
					return nil, fmt.Errorf("field %s of %s read from a %T", fieldName, name, obj)
				}
				return v, nil
			},
			IsSet: func(obj any) bool {
				v, ok := value(obj)
				return ok && !isZero(v)
			},
		}
	}
	return d
}

// isZero gives has() its meaning on Input fields: a field is "set" when it
// is not its zero value (0, "", false, an empty list).
func isZero(v ref.Val) bool {
	switch v := v.(type) {
	case types.Int:
		return v == 0
	case types.String:
		return v == ""
	case types.Bool:
		return !bool(v)
	case traits.Sizer:
		return v.Size() == types.IntZero
	}
	return false
}

// The field tables. docs/rules.md lists the same fields for rule authors
// (TestDocsListEveryField holds it to them).
var (
	patientDef = newObjectDef(typePatient,
		intField("age_years", func(p *Patient) int64 { return int64(p.AgeYears) }),
		intField("age_months", func(p *Patient) int64 { return int64(p.AgeMonths) }),
		stringField("sex", func(p *Patient) string { return p.Sex }),
		boolField("eligible", func(p *Patient) bool { return p.Eligible }),
		stringField("fund", func(p *Patient) string { return p.Fund }),
		boolField("dependant", func(p *Patient) bool { return p.Dependant }),
	)
	prescriberDef = newObjectDef(typePrescriber,
		stringField("profession", func(p *Prescriber) string { return p.Profession }),
		stringField("specialty", func(p *Prescriber) string { return p.Specialty }),
	)
	prescriptionDef = newObjectDef(typePrescription,
		intField("issued_days_ago", func(p *Prescription) int64 { return int64(p.IssuedDaysAgo) }),
		intField("item_count", func(p *Prescription) int64 { return int64(p.ItemCount) }),
		intField("drug_count", func(p *Prescription) int64 { return int64(p.DrugCount) }),
	)
	entryDef = newObjectDef(typeEntry,
		boolField("found", func(e *Entry) bool { return e.Found }),
		stringField("kind", func(e *Entry) string { return e.Kind }),
		stringField("generic_name", func(e *Entry) string { return e.GenericName }),
		stringField("atc", func(e *Entry) string { return e.ATC }),
		stringField("form", func(e *Entry) string { return e.Form }),
		stringField("strength", func(e *Entry) string { return e.Strength }),
		intField("price", func(e *Entry) int64 { return e.Price }),
		intField("coverage_percent", func(e *Entry) int64 { return int64(e.CoveragePercent) }),
		boolField("prescription_only", func(e *Entry) bool { return e.PrescriptionOnly }),
		intField("max_quantity", func(e *Entry) int64 { return int64(e.MaxQuantity) }),
		stringListField("professions", func(e *Entry) []string { return e.Professions }),
		stringListField("specialties", func(e *Entry) []string { return e.Specialties }),
		intField("min_age_years", func(e *Entry) int64 { return int64(e.MinAgeYears) }),
		intField("max_age_years", func(e *Entry) int64 { return int64(e.MaxAgeYears) }),
		stringField("sex", func(e *Entry) string { return e.Sex }),
		stringField("controlled_class", func(e *Entry) string { return e.ControlledClass }),
		boolField("paper_allowed", func(e *Entry) bool { return e.PaperAllowed }),
	)
	itemDef = newObjectDef(typeItem,
		intField("index", func(it *Item) int64 { return int64(it.Index) }),
		stringField("kind", func(it *Item) string { return it.Kind }),
		stringField("code", func(it *Item) string { return it.Code }),
		intField("quantity", func(it *Item) int64 { return int64(it.Quantity) }),
		intField("repeats", func(it *Item) int64 { return int64(it.Repeats) }),
		intField("repeat_interval_days", func(it *Item) int64 { return int64(it.RepeatIntervalDays) }),
		stringField("substitute_for", func(it *Item) string { return it.SubstituteFor }),
		fieldSpec[Item]{name: "catalogue", typ: entryDef.celType, entry: func(it *Item) *Entry { return &it.Catalogue }},
	)
	dispensedDef = newObjectDef(typeDispensed,
		stringField("code", func(d *Dispensed) string { return d.Code }),
		stringField("atc", func(d *Dispensed) string { return d.ATC }),
		intField("quantity", func(d *Dispensed) int64 { return int64(d.Quantity) }),
		intField("days_supply", func(d *Dispensed) int64 { return int64(d.DaysSupply) }),
		intField("days_ago", func(d *Dispensed) int64 { return int64(d.DaysAgo) }),
	)
	objectDefs = map[string]*objectDef{
		typePatient:      patientDef,
		typePrescriber:   prescriberDef,
		typePrescription: prescriptionDef,
		typeItem:         itemDef,
		typeEntry:        entryDef,
		typeDispensed:    dispensedDef,
	}
)

// maxFields is the most fields any Input type exposes (Entry's 17).
const maxFields = 17

// view is one Input struct during one Evaluate, with the CEL values of its
// fields cached as rules read them. Views live in the pooled evaluation
// state, so a clean evaluation allocates only the CEL values it makes.
type view[T any] struct {
	v      *T
	cache  [maxFields]ref.Val
	nested ref.Val // for an Item, the view of its catalogue Entry
}

func (vw *view[T]) reset(v *T) {
	vw.v = v
	clear(vw.cache[:])
	vw.nested = nil
}

// newView makes a standalone view, for values that reach CEL other than
// through Evaluate's activation.
func newView[T any](v *T) *view[T] {
	vw := &view[T]{v: v}
	if it, ok := any(v).(*Item); ok {
		vw.nested = object[Entry]{newView(&it.Catalogue)}
	}
	return vw
}

// object is a CEL value over a view. It is a single pointer so that
// storing it in an interface does not allocate. Rules only read: the Input
// MUST NOT be modified during Evaluate.
type object[T any] struct{ vw *view[T] }

func (o object[T]) def() *objectDef {
	switch any(o.vw.v).(type) {
	case *Patient:
		return patientDef
	case *Prescriber:
		return prescriberDef
	case *Prescription:
		return prescriptionDef
	case *Item:
		return itemDef
	case *Entry:
		return entryDef
	case *Dispensed:
		return dispensedDef
	}
	// Unreachable: object is only instantiated with the types above.
	return nil
}

// Value returns the view, which is what the field getters take.
func (o object[T]) Value() any { return o.vw }

func (o object[T]) Type() ref.Type { return o.def().celType }

func (o object[T]) ConvertToNative(typeDesc reflect.Type) (any, error) {
	switch typeDesc {
	case reflect.TypeFor[*T]():
		return o.vw.v, nil
	case reflect.TypeFor[T]():
		return *o.vw.v, nil
	}
	return nil, fmt.Errorf("type conversion error from %s to '%v'", o.def().celType.TypeName(), typeDesc)
}

func (o object[T]) ConvertToType(t ref.Type) ref.Val {
	switch {
	case t == types.TypeType:
		return o.def().celType
	case t.TypeName() == o.def().celType.TypeName():
		return o
	}
	return types.NewErr("type conversion error from '%s' to '%s'", o.def().celType.TypeName(), t.TypeName())
}

// Equal compares by content, as CEL equality on messages does.
func (o object[T]) Equal(other ref.Val) ref.Val {
	p, ok := other.(object[T])
	if !ok {
		return types.False
	}
	return types.Bool(o.vw.v == p.vw.v || reflect.DeepEqual(*o.vw.v, *p.vw.v))
}

// Get and IsSet serve field access when the checker could not see the
// type statically (a rule that goes through dyn()).
func (o object[T]) Get(field ref.Val) ref.Val {
	ft, ok := o.field(field)
	if !ok {
		return types.NewErr("no such field '%v' on %s", field, o.def().celType.TypeName())
	}
	v, err := ft.GetFrom(o.vw)
	if err != nil {
		return types.WrapErr(err)
	}
	return v.(ref.Val)
}

func (o object[T]) IsSet(field ref.Val) ref.Val {
	ft, ok := o.field(field)
	if !ok {
		return types.NewErr("no such field '%v' on %s", field, o.def().celType.TypeName())
	}
	return types.Bool(ft.IsSet(o.vw))
}

func (o object[T]) field(field ref.Val) (*types.FieldType, bool) {
	name, ok := field.(types.String)
	if !ok {
		return nil, false
	}
	ft, ok := o.def().fields[string(name)]
	return ft, ok
}

// provider adds the Input types to the environment's own provider and
// adapter.
type provider struct {
	types.Provider
	types.Adapter
}

func (p *provider) FindStructType(name string) (*types.Type, bool) {
	if d, ok := objectDefs[name]; ok {
		return types.NewTypeTypeWithParam(d.celType), true
	}
	return p.Provider.FindStructType(name)
}

func (p *provider) FindStructFieldNames(name string) ([]string, bool) {
	if d, ok := objectDefs[name]; ok {
		return append([]string(nil), d.names...), true
	}
	return p.Provider.FindStructFieldNames(name)
}

func (p *provider) FindStructFieldType(name, field string) (*types.FieldType, bool) {
	if d, ok := objectDefs[name]; ok {
		ft, ok := d.fields[field]
		return ft, ok
	}
	return p.Provider.FindStructFieldType(name, field)
}

// NewValue refuses to build Input objects: rules judge the Input, they do
// not make new ones. Load also refuses such expressions up front.
func (p *provider) NewValue(name string, fields map[string]ref.Val) ref.Val {
	if _, ok := objectDefs[name]; ok {
		return types.NewErr("rules may not construct %s values", name)
	}
	return p.Provider.NewValue(name, fields)
}

func (p *provider) NativeToValue(v any) ref.Val {
	switch v := v.(type) {
	case *Patient:
		return object[Patient]{newView(v)}
	case *Prescriber:
		return object[Prescriber]{newView(v)}
	case *Prescription:
		return object[Prescription]{newView(v)}
	case *Item:
		return object[Item]{newView(v)}
	case *Entry:
		return object[Entry]{newView(v)}
	case *Dispensed:
		return object[Dispensed]{newView(v)}
	}
	return p.Adapter.NativeToValue(v)
}
