// Package rules evaluates the insurer's rule sets: versioned data files of
// CEL expressions, written by the insurer's medical and actuarial staff,
// compiled and type-checked when loaded, over the typed Input.
//
// The package does two jobs, in files named for them:
//
//   - Compiling a rule set file into a Set: load.go reads and validates the
//     YAML, compile.go parses, type-checks and plans each expression in the
//     CEL environment of env.go, and message.go parses the messages.
//   - Evaluating a Set: evaluate.go runs each rule by the fast evaluator
//     (fast.go, Go closures translated from the checked expression) when it
//     answers, and by cel-go otherwise, and fails closed.
//
// Both jobs read the field tables in fields.go, so that the type checker,
// cel-go (through the values in celvalues.go) and the fast evaluator cannot
// disagree about what a field is. input.go holds the Input and Violation
// types; set.go the Set; engine.go the Engine that holds the set in force;
// errors.go the errors. Watching a file and reloading an Engine is package
// internal/rules/watch.
//
// Compiling and evaluating stay one package: a Set is the compiled
// programs, and evaluating it reads them, the field tables and the Input
// types together. Splitting them (or taking the fast evaluator out) would
// need the Input types moved below package rules and the compiled programs
// and field tables exported, which would widen the API without separating
// anything. The fast evaluator is held to cel-go by differential tests and
// FuzzFastMatchesCEL (fast_test.go).
package rules
