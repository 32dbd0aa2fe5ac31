package rules

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/nuskha/nuskha/internal/persian"
)

// Limits on a rule set file. They are far above any real set and keep a
// mistaken or hostile upload cheap to refuse.
const (
	MaxFileSize = 1 << 20
	maxRules    = 2000
	maxProblems = 100
	maxIDLen    = 64
	maxVersion  = 64
)

var ruleIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// The keys a file may use. Anything else is refused: a misspelled
// optional key ("wen:") would otherwise silently change a rule's meaning.
var (
	setKeys  = []string{"version", "description", "rules"}
	ruleKeys = []string{"id", "description", "scopes", "per", "when", "expr", "severity", "message"}
	textKeys = []string{"fa", "en"}
)

// Load parses, validates and compiles one rule set file. name is used in
// problem locations (a file name or "upload"). data is YAML (JSON is YAML).
//
// The file MUST be a mapping with a version, an optional description and a
// non-empty list of rules; each rule MUST have an id, a bilingual
// description, scopes, per, expr, severity and a bilingual message, and
// MAY have a when guard. Unknown or repeated keys, repeated rule ids, bad
// scopes, severities or per values, YAML aliases and tags, and any CEL
// expression that does not parse, does not type-check or is not bool-typed
// are refused.
//
// On any problem Load returns a nil Set and a *SetError listing them all.
func Load(name string, data []byte) (*Set, error) {
	env, err := sharedEnvironment()
	if err != nil {
		return nil, fmt.Errorf("rules: build the CEL environment: %w", err)
	}
	l := &loader{file: name, env: env, ids: map[string]int{}, guards: map[guardKey]int{}}
	set := l.load(data)
	if len(l.problems) > 0 {
		return nil, &SetError{File: name, Problems: l.problems}
	}
	sum := sha256.Sum256(data)
	set.digest = hex.EncodeToString(sum[:])
	set.finish()
	return set, nil
}

type guardKey struct {
	per  Per
	when string
}

type loader struct {
	file     string
	env      *environment
	lines    []string // the file's lines, to place CEL errors
	problems []Problem
	ids      map[string]int // rule id → line of its first definition
	guards   map[guardKey]int
	set      Set
}

func (l *loader) add(p Problem) {
	if len(l.problems) == maxProblems {
		l.problems = append(l.problems, Problem{File: l.file, Message: "too many problems; the rest are not listed"})
	}
	if len(l.problems) > maxProblems {
		return
	}
	p.File = l.file
	l.problems = append(l.problems, p)
}

func (l *loader) at(n *yaml.Node, rule, field, format string, args ...any) {
	l.add(Problem{Line: n.Line, Column: n.Column, Rule: rule, Field: field, Message: fmt.Sprintf(format, args...)})
}

// yamlLine pulls the line number out of the YAML parser's message
// ("yaml: line 7: did not find expected key").
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (l *loader) yamlError(err error) {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		l.add(Problem{Line: line, Message: "YAML: " + m[2]})
		return
	}
	l.add(Problem{Message: "YAML: " + strings.TrimPrefix(msg, "yaml: ")})
}

func (l *loader) load(data []byte) *Set {
	if len(data) > MaxFileSize {
		l.add(Problem{Message: fmt.Sprintf("the file is %d bytes, over the %d-byte limit", len(data), MaxFileSize)})
		return nil
	}
	l.lines = strings.Split(string(data), "\n")
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			l.add(Problem{Message: "the file is empty"})
		} else {
			l.yamlError(err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		l.at(&extra, "", "", "a rule set file holds one YAML document; a second one starts here")
		return nil
	case !errors.Is(err, io.EOF):
		l.yamlError(err)
		return nil
	}
	if len(doc.Content) != 1 {
		l.add(Problem{Message: "the file is empty"})
		return nil
	}
	root := doc.Content[0]
	fields, ok := l.mapping(root, "", "", setKeys, []string{"version", "rules"})
	if !ok {
		return nil
	}
	if n := fields["version"]; n != nil {
		if v, ok := l.text(n, "", "version"); ok {
			if len(v) > maxVersion || strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
				l.at(n, "", "version", "must be at most %d characters without spaces", maxVersion)
			}
			l.set.version = v
		}
	}
	if n := fields["description"]; n != nil {
		l.set.description, _ = l.text(n, "", "description")
	}
	if n := fields["rules"]; n != nil {
		l.rules(n)
	}
	return &l.set
}

// mapping checks that n is a mapping whose keys are known, unique and
// include every required one, and returns the values by key.
func (l *loader) mapping(n *yaml.Node, rule, field string, known, required []string) (map[string]*yaml.Node, bool) {
	if !l.plain(n, rule, field) {
		return nil, false
	}
	if n.Kind != yaml.MappingNode {
		what := "the file"
		if field != "" {
			what = field
		}
		l.at(n, rule, field, "%s must be a mapping (key: value lines)", what)
		return nil, false
	}
	out := make(map[string]*yaml.Node, len(n.Content)/2)
	firstLine := make(map[string]int, len(n.Content)/2)
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || !l.plain(k, rule, field) {
			l.at(k, rule, field, "keys must be plain words")
			ok = false
			continue
		}
		key := k.Value
		path := key
		if field != "" {
			path = field + "." + key
		}
		switch {
		case !slices.Contains(known, key):
			l.at(k, rule, field, "unknown key %q (allowed: %s)", key, strings.Join(known, ", "))
			ok = false
		case firstLine[key] != 0:
			l.at(k, rule, path, "repeated key (first at line %d)", firstLine[key])
			ok = false
		default:
			out[key] = v
			firstLine[key] = k.Line
		}
	}
	for _, key := range required {
		if _, present := out[key]; !present && firstLine[key] == 0 {
			path := key
			if field != "" {
				path = field + "." + key
			}
			l.at(n, rule, path, "missing")
			ok = false
		}
	}
	return out, ok
}

// plain refuses the YAML features a rule file has no use for: aliases
// (which also rule out "billion laughs" expansion) and explicit tags.
func (l *loader) plain(n *yaml.Node, rule, field string) bool {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		l.at(n, rule, field, "YAML anchors and aliases are not allowed")
		return false
	}
	if n.Style&yaml.TaggedStyle != 0 {
		l.at(n, rule, field, "YAML tags are not allowed")
		return false
	}
	return true
}

// text returns a non-empty scalar as written. Unquoted numbers, dates and
// booleans are taken as their text ("version: 2026-11-01" is fine).
func (l *loader) text(n *yaml.Node, rule, field string) (string, bool) {
	if !l.plain(n, rule, field) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		l.at(n, rule, field, "must be a single value, not a list or mapping")
		return "", false
	}
	if n.Tag == "!!null" || strings.TrimSpace(n.Value) == "" {
		l.at(n, rule, field, "must not be empty")
		return "", false
	}
	if n.Tag == "!!binary" {
		l.at(n, rule, field, "must be text")
		return "", false
	}
	return n.Value, true
}

// bilingual reads a {fa, en} mapping. Persian text is normalised (Arabic
// yeh and kaf from Arabic keyboard layouts, stray ZWNJs, spacing) so that
// the same message is the same bytes whoever typed it.
func (l *loader) bilingual(n *yaml.Node, rule, field string) (Text, bool) {
	fields, ok := l.mapping(n, rule, field, textKeys, textKeys)
	if !ok {
		return Text{}, false
	}
	fa, okFA := l.text(fields["fa"], rule, field+".fa")
	en, okEN := l.text(fields["en"], rule, field+".en")
	return Text{FA: persian.Text(fa), EN: strings.TrimSpace(en)}, okFA && okEN
}

func (l *loader) rules(n *yaml.Node) {
	if !l.plain(n, "", "rules") {
		return
	}
	if n.Kind != yaml.SequenceNode {
		l.at(n, "", "rules", "must be a list of rules")
		return
	}
	if len(n.Content) == 0 {
		l.at(n, "", "rules", "a set with no rules would accept everything; refused")
		return
	}
	if len(n.Content) > maxRules {
		l.at(n, "", "rules", "%d rules, over the limit of %d", len(n.Content), maxRules)
		return
	}
	for _, rn := range n.Content {
		if r := l.rule(rn); r != nil {
			l.set.rules = append(l.set.rules, r)
		}
	}
}

// rule validates and compiles one rule; it returns nil (having recorded
// the problems) when anything is wrong.
func (l *loader) rule(n *yaml.Node) *compiledRule {
	// The id is read first so that every later problem can name the rule.
	id := ""
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "id" && n.Content[i+1].Kind == yaml.ScalarNode {
				id = n.Content[i+1].Value
				break
			}
		}
	}
	if !ruleIDPattern.MatchString(id) || len(id) > maxIDLen {
		id = "" // an unusable id is reported below; do not echo it as the rule's name
	}
	fields, ok := l.mapping(n, id, "", ruleKeys, []string{"id", "description", "scopes", "per", "expr", "severity", "message"})
	if fields == nil {
		return nil
	}
	r := &compiledRule{guard: -1}

	if v := fields["id"]; v != nil {
		if s, good := l.text(v, "", "id"); good {
			switch {
			case !ruleIDPattern.MatchString(s) || len(s) > maxIDLen:
				l.at(v, "", "id", "%q is not a rule id: lower-case letters, digits and hyphens, starting with a letter or digit, at most %d characters", s, maxIDLen)
				ok = false
			case s == UnknownCode:
				l.at(v, "", "id", "%q is reserved: rxd reports codes that are not in the catalogue itself", s)
				ok = false
			case l.ids[s] != 0:
				l.at(v, s, "id", "repeated rule id (first at line %d)", l.ids[s])
				ok = false
			default:
				l.ids[s] = v.Line
				r.ID = s
			}
		} else {
			ok = false
		}
	}
	r.Line = n.Line
	if v := fields["description"]; v != nil {
		var good bool
		r.Description, good = l.bilingual(v, id, "description")
		ok = ok && good
	}
	if v := fields["scopes"]; v != nil {
		var good bool
		r.Scopes, good = l.scopes(v, id)
		ok = ok && good
	}
	if v := fields["per"]; v != nil {
		s, good := l.text(v, id, "per")
		switch Per(s) {
		case PerItem, PerPrescription:
			r.Per = Per(s)
		default:
			if good {
				l.at(v, id, "per", "%q: must be %q or %q", s, PerItem, PerPrescription)
			}
			ok = false
		}
	}
	if v := fields["severity"]; v != nil {
		s, good := l.text(v, id, "severity")
		switch Severity(s) {
		case Reject, Warn:
			r.Severity = Severity(s)
		default:
			if good {
				l.at(v, id, "severity", "%q: must be %q or %q", s, Reject, Warn)
			}
			ok = false
		}
	}
	if v := fields["message"]; v != nil {
		msg, good := l.bilingual(v, id, "message")
		r.Message = msg
		if good && r.Per != "" {
			var err error
			if r.msgEN, err = parseMessage(msg.EN, r.Per == PerItem); err != nil {
				l.at(v, id, "message.en", "%v", err)
				good = false
			}
			if r.msgFA, err = parseMessage(msg.FA, r.Per == PerItem); err != nil {
				l.at(v, id, "message.fa", "%v", err)
				good = false
			}
		}
		ok = ok && good
	}

	// The expressions are compiled only once per is known: it decides
	// whether `item` is in scope.
	if r.Per == "" {
		return nil
	}
	env := l.env.prescription
	if r.Per == PerItem {
		env = l.env.item
	}
	if v := fields["when"]; v != nil {
		if src, good := l.text(v, id, "when"); good {
			r.When = src
			key := guardKey{r.Per, strings.TrimSpace(src)}
			if g, seen := l.guards[key]; seen {
				r.guard = g
			} else if prg, good := l.compile(env, src, v, id, "when"); good {
				r.guard = len(l.set.guards)
				l.guards[key] = r.guard
				l.set.guards = append(l.set.guards, prg)
			} else {
				ok = false
			}
		} else {
			ok = false
		}
	}
	if v := fields["expr"]; v != nil {
		if src, good := l.text(v, id, "expr"); good {
			r.Expr = src
			if r.prg, good = l.compile(env, src, v, id, "expr"); !good {
				ok = false
			}
		} else {
			ok = false
		}
	}
	if !ok {
		return nil
	}
	return r
}

func (l *loader) scopes(n *yaml.Node, rule string) ([]Scope, bool) {
	if !l.plain(n, rule, "scopes") {
		return nil, false
	}
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		l.at(n, rule, "scopes", "must be a non-empty list of %s", scopeList())
		return nil, false
	}
	var out []Scope
	ok := true
	for _, sn := range n.Content {
		s, good := l.text(sn, rule, "scopes")
		switch {
		case !good:
			ok = false
		case !slices.Contains(scopes, Scope(s)):
			l.at(sn, rule, "scopes", "unknown scope %q (allowed: %s)", s, scopeList())
			ok = false
		case slices.Contains(out, Scope(s)):
			l.at(sn, rule, "scopes", "scope %q listed twice", s)
			ok = false
		default:
			out = append(out, Scope(s))
		}
	}
	return out, ok
}

func scopeList() string {
	names := make([]string, len(scopes))
	for i, s := range scopes {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}
