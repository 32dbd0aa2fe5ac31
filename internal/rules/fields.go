package rules

import (
	"fmt"

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
