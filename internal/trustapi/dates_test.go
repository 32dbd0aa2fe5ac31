package trustapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

// Licence dates are days in Iran, typed in either calendar and with any
// digits; they are stored as the period from the start of the first day to
// the end of the last in Tehran, and shown as days in both calendars.
func TestLicenceDates(t *testing.T) {
	e := newEnv(t)
	// 1403-01-01 is 2024-03-20; 1408 is a leap year, so 1408-12-30 exists
	// and is 2030-03-20.
	startsTehran := time.Date(2024, 3, 19, 20, 30, 0, 0, time.UTC)
	endsTehran := time.Date(2030, 3, 20, 20, 30, 0, 0, time.UTC)
	want := map[string]string{
		"licence_valid_from": "2024-03-20", "licence_valid_from_hijri": "1403-01-01",
		"licence_valid_until": "2030-03-20", "licence_valid_until_hijri": "1408-12-30",
	}
	for i, tc := range []struct{ name, from, until string }{
		{"Solar Hijri", "1403-01-01", "1408-12-30"},
		{"Persian digits", "۱۴۰۳/۰۱/۰۱", "۱۴۰۸/۱۲/۳۰"},
		{"Arabic-Indic digits", "١٤٠٣-٠١-٠١", "١٤٠٨-١٢-٣٠"},
		{"Gregorian", "2024-03-20", "2030-03-20"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(e.alice, "POST", e.admin.URL+"/admin/v1/subjects", "application/json", licenceBody(t, "LD-"+string(rune('A'+i)), tc.from, tc.until))
			if r.status != http.StatusCreated {
				t.Fatalf("create: %d %s", r.status, r.body)
			}
			var got map[string]any
			if err := json.Unmarshal(r.body, &got); err != nil {
				t.Fatal(err)
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %v, want %q", k, got[k], v)
				}
			}
			if t.Failed() {
				t.Fatalf("answer: %s", r.body)
			}
			stored, err := e.db.GetSubject(ctx, got["id"].(string))
			if err != nil {
				t.Fatal(err)
			}
			if !stored.LicenceValidFrom.Equal(startsTehran) || !stored.LicenceValidUntil.Equal(endsTehran) {
				t.Fatalf("stored %s to %s, want %s to %s (the start of the first day to the end of the last, in Tehran)",
					stored.LicenceValidFrom, stored.LicenceValidUntil, startsTehran, endsTehran)
			}
			// The same dates on reading and listing.
			one := e.do(e.alice, "GET", e.admin.URL+"/admin/v1/subjects/"+stored.ID, "", nil)
			if !bytes.Contains(compactJSON(t, one.body), []byte(`"licence_valid_until_hijri":"1408-12-30"`)) || bytes.Contains(one.body, []byte("T00:00:00Z")) || bytes.Contains(one.body, []byte("T20:30:00Z")) {
				t.Fatalf("read back: %s", one.body)
			}
		})
	}

	for _, tc := range []struct{ name, from, until, field string }{
		{"30 Esfand of a common year", "1403-01-01", "1404-12-30", "licence_valid_until"},
		{"no 13th month", "1403-13-01", "1408-12-30", "licence_valid_from"},
		{"31 Mehr", "1403-07-31", "1408-12-30", "licence_valid_from"},
		{"29 February of a common year", "2024-03-20", "2031-02-29", "licence_valid_until"},
		{"not a date", "yesterday", "1408-12-30", "licence_valid_from"},
		{"last day before the first", "1403-01-02", "1403-01-01", "licence_valid_until"},
		{"an instant, not a day", "2024-03-20T00:00:00Z", "1408-12-30", "licence_valid_from"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s0, _, _ := e.counts()
			r := e.do(e.alice, "POST", e.admin.URL+"/admin/v1/subjects", "application/json", licenceBody(t, "LD-X", tc.from, tc.until))
			if r.status != http.StatusUnprocessableEntity || r.problem.Code != "invalid-field" || r.problem.Field != tc.field {
				t.Fatalf("got %d %s (field %q): %s; want 422 invalid-field naming %s", r.status, r.problem.Code, r.problem.Field, r.body, tc.field)
			}
			if s1, _, _ := e.counts(); s1 != s0 {
				t.Fatal("a refused subject was stored")
			}
		})
	}

	t.Run("one-day licence", func(t *testing.T) {
		r := e.do(e.alice, "POST", e.admin.URL+"/admin/v1/subjects", "application/json", licenceBody(t, "LD-1D", "1403-01-01", "1403-01-01"))
		if r.status != http.StatusCreated || !bytes.Contains(compactJSON(t, r.body), []byte(`"licence_valid_until":"2024-03-20"`)) {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
}

func licenceBody(t *testing.T, council, from, until string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"kind": "practitioner", "name": "Dr Test", "national_id": testpki.NationalID(), "council_number": council,
		"profession": "dentist", "specialty": "orthodontics", "licence_valid_from": from, "licence_valid_until": until,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// compactJSON is body without the whitespace between its tokens, to look
// for a member in whatever layout the server chose.
func compactJSON(t *testing.T, body []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, body); err != nil {
		t.Fatalf("not JSON: %v: %s", err, body)
	}
	return b.Bytes()
}
