package rules

import (
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"
)

// maxExprLen bounds one expression (in code points); Load checks it. Real
// rules are a line or two; the bound keeps a pasted mistake or a hostile
// file from costing the parser much. The parser's own limit is set far
// higher because a scope's rules are also compiled as one expression.
const maxExprLen = 4096

// The CEL environment every rule is compiled in.
//
// Variables (all typed; a rule that names anything else, or uses a field
// with the wrong type, is refused when the set is loaded):
//
//	scope        string             "prescribe", "dispense", "paper" or "paraclinic"
//	patient      rules.Patient      age_years, age_months int; sex, fund string; eligible, dependant bool
//	prescriber   rules.Prescriber   profession, specialty string
//	prescription rules.Prescription issued_days_ago, item_count, drug_count int
//	items        list(rules.Item)   every item, in order
//	history      list(rules.Dispensed) the patient's earlier dispenses, newest first
//	item         rules.Item         the item being judged; declared only for per: item rules
//
//	rules.Item       index, quantity, repeats, repeat_interval_days int; kind, code, substitute_for string;
//	                 catalogue rules.Entry
//	rules.Entry      found, prescription_only, paper_allowed bool; kind, generic_name, atc,
//	                 form, strength, sex, controlled_class string; price, coverage_percent,
//	                 max_quantity, min_age_years, max_age_years int;
//	                 professions, specialties list(string)
//	rules.Dispensed  code, atc string; quantity, days_supply, days_ago int
//
// Functions: the CEL standard library (including the has, all, exists,
// exists_one, map and filter macros) and the cel-go strings extension
// (substring, lowerAscii, split, ...). There is no clock, no I/O and no
// randomness: a rule's answer depends only on the Input.
//
// fields.go holds the field tables; docs/rules.md documents the same
// environment for rule authors.
type environment struct {
	prescription *cel.Env // for per: prescription rules
	item         *cel.Env // the above plus `item`, for per: item rules
}

// The environment is immutable and safe for concurrent use; building it
// costs about a millisecond, so every Load shares one.
var sharedEnvironment = sync.OnceValues(newEnvironment)

// MaxComprehensionNesting is how deeply exists/all/exists_one/filter/map
// may nest in one expression.
const MaxComprehensionNesting = 2

func newEnvironment() (*environment, error) {
	base, err := cel.NewEnv(
		inputTypes(),
		ext.Strings(),
		cel.ParserExpressionSizeLimit(4*MaxFileSize),
		// A rule's work grows with the product of the lists it nests
		// over: two levels (every item against the history) is what rules
		// need; three would let one rule stall every decision.
		cel.ASTValidators(cel.ValidateComprehensionNestingLimit(MaxComprehensionNesting)),
		cel.Variable("scope", cel.StringType),
		cel.Variable("patient", cel.ObjectType(typePatient)),
		cel.Variable("prescriber", cel.ObjectType(typePrescriber)),
		cel.Variable("prescription", cel.ObjectType(typePrescription)),
		cel.Variable("items", cel.ListType(cel.ObjectType(typeItem))),
		cel.Variable("history", cel.ListType(cel.ObjectType(typeDispensed))),
	)
	if err != nil {
		return nil, err
	}
	item, err := base.Extend(cel.Variable("item", cel.ObjectType(typeItem)))
	if err != nil {
		return nil, err
	}
	return &environment{prescription: base, item: item}, nil
}

// inputTypes layers the Input types over whatever provider and adapter the
// environment already has, so the standard and well-known types still
// resolve.
func inputTypes() cel.EnvOption {
	return func(env *cel.Env) (*cel.Env, error) {
		p := &provider{Provider: env.CELTypeProvider(), Adapter: env.CELTypeAdapter()}
		env, err := cel.CustomTypeAdapter(p)(env)
		if err != nil {
			return nil, err
		}
		return cel.CustomTypeProvider(p)(env)
	}
}
