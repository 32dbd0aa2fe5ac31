package trustapi_test

import (
	"bytes"
	"net/http"
	"testing"
)

// Bad JSON is refused by line and column, in JSON's terms, whatever the
// endpoint: an officer has never seen trustd's Go types.
func TestBadJSONSaysWhere(t *testing.T) {
	e := newEnv(t)
	admin := e.admin.URL + "/admin/v1"
	for _, tc := range []struct {
		name, url, body, field, detail string
	}{
		{"number for a string", "/subjects", "{\n  \"kind\": \"practitioner\",\n  \"name\": 42\n}", "name", "line 3, column 11: name must be a string"},
		{"string for a number", "/subjects", `{"kind": "practitioner", "version": "2"}`, "version", "line 1, column 37: version must be a whole number"},
		{"string for an array", "/subjects", `{"kind": "vendor", "dns_names": "a.example"}`, "dns_names", "line 1, column 33: dns_names must be an array"},
		{"repeated member", "/subjects", `{"kind": "vendor", "kind": "service"}`, "kind", "line 1, column 20: member kind appears twice"},
		{"case-folded member", "/subjects", `{"Kind": "vendor"}`, "Kind", "line 1, column 2: unknown member Kind"},
		{"unknown member", "/status-changes", `{"serial": "0a", "action": "hold", "comment": "x", "urgent": true}`, "urgent", "line 1, column 52: unknown member urgent"},
		{"trailing data", "/status-changes", `{"serial": "0a"} {"serial": "0b"}`, "", "line 1, column 18: more data after the JSON value"},
		{"truncated", "/enrolments", `{"subject_id": "sub_1", "profile": `, "", "line 1, column 36: the JSON ends before it is complete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(e.alice, "POST", admin+tc.url, "application/json", []byte(tc.body))
			if r.status != http.StatusBadRequest || r.problem.Code != "malformed-request" || r.problem.Field != tc.field || r.problem.Detail != tc.detail {
				t.Fatalf("got %d %s field %q detail %q\nwant 400 malformed-request field %q detail %q", r.status, r.problem.Code, r.problem.Field, r.problem.Detail, tc.field, tc.detail)
			}
			for _, goish := range []string{"Go ", "struct", "int", "[]", "map[", "trustapi."} {
				if bytes.Contains([]byte(r.problem.Detail), []byte(goish)) {
					t.Fatalf("detail %q names Go (%q)", r.problem.Detail, goish)
				}
			}
		})
	}
}
