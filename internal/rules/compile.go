package rules

import (
	"strings"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	yaml "go.yaml.in/yaml/v3"
)

// Compiling one expression of a rule: CEL parses and type-checks it in the
// environment of env.go, cel-go plans it, and the fast evaluator (fast.go)
// translates it when it can. Problems are placed in the file for the
// author.

// compile parses and type-checks one expression, which MUST be bool-typed,
// and plans it for evaluation by cel-go and, when it can, by the fast
// evaluator.
func (l *loader) compile(env *cel.Env, src string, n *yaml.Node, rule, field string) (program, bool) {
	if size := utf8.RuneCountInString(src); size > maxExprLen {
		l.at(n, rule, field, "the expression is %d characters, over the limit of %d", size, maxExprLen)
		return program{}, false
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		for _, e := range iss.Errors() {
			line, col := l.inFile(n, src, e.Location.Line(), e.Location.Column()+1)
			l.add(Problem{
				Line: line, Column: col, Rule: rule, Field: field,
				ExprLine: e.Location.Line(), ExprColumn: e.Location.Column() + 1,
				Message: e.Message,
			})
		}
		return program{}, false
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) {
		l.at(n, rule, field, "must be a true/false (bool) expression; this one gives %s", t)
		return program{}, false
	}
	native := ast.NativeRep()
	if made := celast.MatchDescendants(celast.NavigateAST(native), celast.KindMatcher(celast.StructKind)); len(made) > 0 {
		loc := native.SourceInfo().GetStartLocation(made[0].ID())
		line, col := l.inFile(n, src, loc.Line(), loc.Column()+1)
		l.add(Problem{
			Line: line, Column: col, Rule: rule, Field: field,
			ExprLine: loc.Line(), ExprColumn: loc.Column() + 1,
			Message: "rules may not construct objects; compare fields instead",
		})
		return program{}, false
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		l.at(n, rule, field, "%v", err)
		return program{}, false
	}
	fast, _ := compileFast(native)
	return program{cel: prg, fast: fast}, true
}

// inFile maps a position inside an expression (1-based line and column,
// in characters) to the file, for the two ways expressions are usually
// written: on the key's line (plain or quoted) and as a literal block
// (`expr: |`), whose lines are the file's lines. The expression's line
// text must appear once, verbatim, on the file line it maps to, which rules
// out escapes and folding; otherwise the position of the value is given.
func (l *loader) inFile(n *yaml.Node, src string, line, col int) (int, int) {
	exprLines := strings.Split(src, "\n")
	if line < 1 || line > len(exprLines) || col < 1 {
		return n.Line, n.Column
	}
	var fileLine int
	switch {
	case n.Style&yaml.LiteralStyle != 0:
		fileLine = n.Line + line
	case line == 1 && n.Style&yaml.FoldedStyle == 0:
		fileLine = n.Line
	default:
		return n.Line, n.Column
	}
	text := exprLines[line-1]
	if fileLine > len(l.lines) || text == "" || strings.Count(l.lines[fileLine-1], text) != 1 {
		return n.Line, n.Column
	}
	at := strings.Index(l.lines[fileLine-1], text)
	return fileLine, utf8.RuneCountInString(l.lines[fileLine-1][:at]) + col
}
