package rules

import (
	"fmt"
	"reflect"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
)

// How Input values look to cel-go while a rule runs: each struct is an
// object over a view that caches the CEL values of the fields rules read,
// and provider adds the Input types to the environment's own. The field
// tables in fields.go say what the fields are; this file makes their
// values.

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
