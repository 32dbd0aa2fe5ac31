package problem

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
)

// docs/problems.md is the published list of codes; it must match the
// code both ways: every code errs declares has a status here and a row
// there, and every status here and every row there is a code errs
// declares.
func TestDocumentedCodes(t *testing.T) {
	doc, err := os.ReadFile("../../docs/problems.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile("(?m)^\\| `([a-z-]+)` \\| (\\d+) \\|").FindAllStringSubmatch(string(doc), -1)
	documented := map[string]string{}
	for _, r := range rows {
		documented[r[1]] = r[2]
	}
	declared := declaredCodes(t)
	if len(declared) < 50 {
		t.Fatalf("only %d codes found in internal/errs: the parse is wrong", len(declared))
	}
	mapped := Codes()
	for _, code := range declared {
		m, ok := mapped[code]
		if !ok {
			t.Errorf("code %s (internal/errs) has no HTTP status in internal/problem", code)
			continue
		}
		if documented[string(code)] != fmt.Sprint(m.Status) {
			t.Errorf("code %s (status %d) is documented as %q in docs/problems.md", code, m.Status, documented[string(code)])
		}
	}
	for code := range mapped {
		if !slices.Contains(declared, code) {
			t.Errorf("internal/problem gives %s a status, but internal/errs does not declare it", code)
		}
	}
	for code := range documented {
		if !slices.Contains(declared, errs.Code(code)) {
			t.Errorf("docs/problems.md documents %s, which internal/errs does not declare", code)
		}
	}
}

// declaredCodes reads the errs.Code constants from internal/errs's
// source: a constant added there and forgotten here (no status, no row)
// is caught without anyone listing it twice.
func declaredCodes(t *testing.T) []errs.Code {
	t.Helper()
	pkgs, err := filepath.Glob("../errs/*.go")
	if err != nil {
		t.Fatal(err)
	}
	var out []errs.Code
	fset := token.NewFileSet()
	for _, path := range pkgs {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, spec := range g.Specs {
				v := spec.(*ast.ValueSpec)
				if id, ok := v.Type.(*ast.Ident); !ok || id.Name != "Code" {
					continue
				}
				for _, val := range v.Values {
					lit, ok := val.(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						t.Fatalf("%s: a Code constant that is not a string literal", fset.Position(val.Pos()))
					}
					s, _ := strconv.Unquote(lit.Value)
					out = append(out, errs.Code(s))
				}
			}
		}
	}
	return out
}

func TestFromHidesInternalDetail(t *testing.T) {
	p := From(fmt.Errorf("wrapped: %w", errors.New("pq: password authentication failed for user nuskha")))
	if p.Code != errs.Internal || p.Status != 500 || strings.Contains(p.Detail, "password") {
		t.Fatalf("internal error leaked: %+v", p)
	}
	p = From(fmt.Errorf("ctx: %w", errs.FieldError(errs.InvalidNID, "national_id", "check digit does not match")))
	if p.Code != errs.InvalidNID || p.Status != 422 || p.Field != "national_id" || p.Type != TypePrefix+"invalid-national-id" {
		t.Fatalf("wrapped domain error: %+v", p)
	}
}

func decode(body, ctype string) error {
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	var v struct {
		A string `json:"a"`
		B int    `json:"b"`
	}
	return Decode(r, 64, &v)
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name, body, ctype string
		code              errs.Code
	}{
		{"good", `{"a":"x","b":1}`, "application/json", ""},
		{"good with charset", `{"a":"x"}`, "application/json; charset=utf-8", ""},
		{"no content type", `{"a":"x"}`, "", ""},
		{"unknown field", `{"c":1}`, "application/json", errs.Malformed},
		{"repeated field", `{"a":"x","a":"y"}`, "application/json", errs.Malformed},
		{"case-folded field", `{"A":"x"}`, "application/json", errs.Malformed},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", "application/json", errs.Malformed},
		{"wrong type", `{"b":"one"}`, "application/json", errs.Malformed},
		{"two values", `{"a":"x"}{"a":"y"}`, "application/json", errs.Malformed},
		{"empty", ``, "application/json", errs.Malformed},
		{"truncated", `{"a":`, "application/json", errs.Malformed},
		{"too large", `{"a":"` + strings.Repeat("x", 100) + `"}`, "application/json", errs.TooLarge},
		{"form post", `a=x`, "application/x-www-form-urlencoded", errs.Malformed},
		{"JSON's name as a prefix", `{"a":"x"}`, "application/jsonx", errs.Malformed},
		{"JSON text sequence", `{"a":"x"}`, "application/json-seq", errs.Malformed},
		{"JSON Patch", `{"a":"x"}`, "application/json-patch+json", errs.Malformed},
		{"media type unparsable", `{"a":"x"}`, "application/json; charset", errs.Malformed},
		{"upper case", `{"a":"x"}`, "Application/JSON", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := decode(tc.body, tc.ctype)
			if tc.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if errs.CodeOf(err) != tc.code {
				t.Fatalf("got %v, want %s", err, tc.code)
			}
		})
	}
}

// A body is read only as the type and text its headers say it is: what a
// proxy or filter in front of the daemon reads from the same bytes and
// headers must be the same document. Before CheckBody, a JSON body said to
// be UTF-16 or Latin-1, or gzip, or also text/plain in a second
// Content-Type, was read as plain UTF-8 JSON; and trustd's revocation
// route took any type beginning with application/jose.
func TestCheckBody(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header http.Header
		want   string
		ok     bool
	}{
		{"no headers", http.Header{}, "application/json", true},
		{"charset utf-8", http.Header{"Content-Type": {"application/json; charset=utf-8"}}, "application/json", true},
		{"charset UTF-8 quoted", http.Header{"Content-Type": {`application/json; charset="UTF-8"`}}, "application/json", true},
		{"identity", http.Header{"Content-Encoding": {"identity"}}, "application/json", true},
		{"jose", http.Header{"Content-Type": {"application/jose"}}, "application/jose", true},
		{"charset utf-16", http.Header{"Content-Type": {"application/json; charset=utf-16"}}, "application/json", false},
		{"charset latin-1", http.Header{"Content-Type": {"application/json; charset=iso-8859-1"}}, "application/json", false},
		{"charset on a JWS", http.Header{"Content-Type": {"application/jose; charset=utf-7"}}, "application/jose", false},
		{"two types", http.Header{"Content-Type": {"application/json", "text/plain"}}, "application/json", false},
		{"the same type twice", http.Header{"Content-Type": {"application/json", "application/json"}}, "application/json", false},
		{"gzip", http.Header{"Content-Encoding": {"gzip"}}, "application/json", false},
		{"gzip after identity", http.Header{"Content-Encoding": {"identity", "gzip"}}, "application/json", false},
		{"JWS JSON serialisation", http.Header{"Content-Type": {"application/jose+json"}}, "application/jose", false},
		{"jose as a prefix", http.Header{"Content-Type": {"application/josex"}}, "application/jose", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{}`))
			r.Header = tc.header
			err := CheckBody(r, tc.want)
			if tc.ok != (err == nil) || !tc.ok && errs.CodeOf(err) != errs.Malformed {
				t.Fatalf("%v, want ok=%v", err, tc.ok)
			}
			if tc.want != "application/json" {
				return
			}
			// Decode and Body refuse as CheckBody does.
			var v struct{}
			if err := Decode(r, 64, &v); tc.ok != (err == nil) {
				t.Fatalf("Decode: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// Refusals say where, by line and column, and what JSON was expected, in
// JSON's words: the sender wrote JSON and has never seen our Go types.
func TestDecodeMessages(t *testing.T) {
	type item struct {
		Code     string `json:"code"`
		Quantity int    `json:"quantity"`
	}
	type body struct {
		Name    string            `json:"name"`
		Count   int64             `json:"count"`
		Small   uint8             `json:"small"`
		Ratio   float64           `json:"ratio"`
		Urgent  bool              `json:"urgent"`
		Items   []item            `json:"items"`
		Labels  map[string]string `json:"labels"`
		Tags    []string          `json:"tags"`
		At      time.Time         `json:"at"`
		Pointer *int              `json:"pointer"`
	}
	for _, tc := range []struct {
		name, body, field, detail string
	}{
		{"string for a number", `{"count": "7"}`, "count", "line 1, column 11: count must be a whole number"},
		{"fraction for a whole number", `{"count": 1.5}`, "count", "line 1, column 11: count must be a whole number"},
		{"number for a string", `{"name": 7}`, "name", "line 1, column 10: name must be a string"},
		{"negative for an unsigned", `{"small": -1}`, "small", "line 1, column 11: small must be a whole number, not negative"},
		{"out of range", `{"small": 300}`, "small", "line 1, column 11: small is out of range"},
		{"string for a bool", `{"urgent": "yes"}`, "urgent", "line 1, column 12: urgent must be true or false"},
		{"string for a float", `{"ratio": "half"}`, "ratio", "line 1, column 11: ratio must be a number"},
		{"object for an array", `{"items": {}}`, "items", "line 1, column 11: items must be an array"},
		{"array for an object", `{"labels": []}`, "labels", "line 1, column 12: labels must be an object"},
		{"number in an array of objects", `{"items": [1]}`, "items.0", "line 1, column 12: items.0 must be an object"},
		{"nested, on a later line", "{\n  \"items\": [\n    {\"code\": \"A1\", \"quantity\": \"2\"}\n  ]\n}", "items.0.quantity", "line 3, column 32: items.0.quantity must be a whole number"},
		{"columns count characters", "{\"name\": \"دارو\", \"count\": true}", "count", "line 1, column 27: count must be a whole number"},
		{"number in a string array", `{"tags": ["a", 2]}`, "tags.1", "line 1, column 16: tags.1 must be a string"},
		{"NUL in a string", `{"name": "a\u0000b"}`, "", "line 1, column 12: a string holds the NUL character (\\u0000)"},
		{"bad time", `{"at": "yesterday"}`, "at", "line 1, column 8: at must be a time in RFC 3339 form (2026-09-06T10:30:00Z)"},
		{"string for a pointer", `{"pointer": "x"}`, "pointer", "line 1, column 13: pointer must be a whole number"},
		{"unknown member", `{"name": "a", "colour": "red"}`, "colour", "line 1, column 15: unknown member colour"},
		{"unknown nested member", `{"items": [{"code": "A", "qty": 1}]}`, "items.0.qty", "line 1, column 26: unknown member items.0.qty"},
		{"repeated member", `{"name": "a", "name": "b"}`, "name", "line 1, column 15: member name appears twice"},
		{"array, not an object", `[1, 2]`, "", "line 1, column 1: the body must be an object"},
		{"a string, not an object", `"hello"`, "", "line 1, column 1: the body must be an object"},
		{"truncated", "{\"name\": \"a\",\n \"count\":", "", "line 2, column 10: the JSON ends before it is complete"},
		{"trailing comma", `{"name": "a",}`, "", "line 1, column 13: invalid character ',' at start of value"},
		{"trailing data", "{\"name\": \"a\"}\n{}", "", "line 2, column 1: more data after the JSON value"},
		{"not JSON", `name=a`, "", "line 1, column 2: invalid character 'a' in literal null (expecting 'u')"},
		{"not JSON either", `<xml/>`, "", "line 1, column 1: invalid character '<' at start of value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v body
			err := Unmarshal([]byte(tc.body), &v)
			var e *errs.Error
			if !errors.As(err, &e) || e.Code != errs.Malformed || e.Field != tc.field || e.Detail != tc.detail {
				t.Fatalf("got %#v\nwant field %q, detail %q", err, tc.field, tc.detail)
			}
			for _, goish := range []string{"Go ", "struct", "int64", "uint8", "float64", "[]", "map[", "time.Time", "*int", "problem."} {
				if strings.Contains(e.Detail, goish) {
					t.Fatalf("detail %q names Go (%q)", e.Detail, goish)
				}
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"a":"x","b":1}`, `{`, `[]`, `{"a":"x"} `, "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		err := decode(body, "application/json")
		if err == nil {
			return
		}
		// Every refusal is a client error with a stable code, never internal.
		if c := errs.CodeOf(err); c != errs.Malformed && c != errs.TooLarge {
			t.Fatalf("refusal with code %s: %v", c, err)
		}
		if d := err.(*errs.Error).Detail; strings.Contains(d, "Go ") || strings.Contains(d, "problem.") {
			t.Fatalf("detail names Go: %s", d)
		}
	})
}

// Answers carry rule expressions and messages as written, not escaped for
// pasting into HTML.
func TestJSONAsWritten(t *testing.T) {
	rec := httptest.NewRecorder()
	JSON(rec, http.StatusOK, map[string]string{"expr": "a && b < c"})
	if !strings.Contains(rec.Body.String(), `"a && b < c"`) {
		t.Fatalf("JSON: %s", rec.Body)
	}
	rec = httptest.NewRecorder()
	Write(rec, httptest.NewRequest("GET", "/x", nil), nil, errs.New(errs.InvalidRuleSet, "rule r1: a && b is not a bool"))
	if !strings.Contains(rec.Body.String(), `a && b is not`) {
		t.Fatalf("Write: %s", rec.Body)
	}
}

// TestEscapedNUL: only a \u0000 escape is a NUL; the text \\u0000 (an
// escaped backslash, then u0000) is not.
func TestEscapedNUL(t *testing.T) {
	for in, want := range map[string]int{
		`"a\u0000"`:   2,
		`"a\\u0000"`:  -1,
		`"a\\\u0000"`: 4,
		`"u0000"`:     -1,
		`"\u00001"`:   1,
		`"\u0001"`:    -1,
	} {
		if got := escapedNUL([]byte(in)); got != want {
			t.Errorf("%s: %d, want %d", in, got, want)
		}
	}
}
