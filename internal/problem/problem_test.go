package problem

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/nuskha/nuskha/internal/errs"
)

// docs/problems.md is the published list of codes; it must match the code.
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
	for code, m := range Codes() {
		if documented[string(code)] != fmt.Sprint(m.Status) {
			t.Errorf("code %s (status %d) is documented as %q in docs/problems.md", code, m.Status, documented[string(code)])
		}
		delete(documented, string(code))
	}
	for code := range documented {
		t.Errorf("docs/problems.md documents %s, which the code does not have", code)
	}
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
		{"wrong type", `{"b":"one"}`, "application/json", errs.Malformed},
		{"two values", `{"a":"x"}{"a":"y"}`, "application/json", errs.Malformed},
		{"empty", ``, "application/json", errs.Malformed},
		{"truncated", `{"a":`, "application/json", errs.Malformed},
		{"too large", `{"a":"` + strings.Repeat("x", 100) + `"}`, "application/json", errs.TooLarge},
		{"form post", `a=x`, "application/x-www-form-urlencoded", errs.Malformed},
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
	})
}

func TestMuxAnswersProblems(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /things/{id}", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(r.PathValue("id"))) })
	h := Mux(mux)
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/things/42", 200, "42"},
		{"GET", "/nothing", 404, `"code":"not-found"`},
		{"POST", "/things/42", 405, `"code":"method-not-allowed"`},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.body) {
			t.Fatalf("%s %s: %d %s", tc.method, tc.path, rec.Code, rec.Body)
		}
		if tc.status >= 400 && rec.Header().Get("Content-Type") != ContentType {
			t.Fatalf("%s %s: content type %q", tc.method, tc.path, rec.Header().Get("Content-Type"))
		}
	}
}
