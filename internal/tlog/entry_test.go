package tlog_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/persian"
	"github.com/nuskha/nuskha/internal/tlog"
)

var fingerprint = strings.Repeat("ab", 32)

func sampleEntry() *tlog.Entry {
	return &tlog.Entry{
		Time:    time.Date(2026, 12, 5, 10, 11, 12, 123456789, time.UTC),
		Actor:   tlog.Actor{Kind: tlog.ActorCert, ID: fingerprint, Role: "pharmacist", Org: "PH-1"},
		Action:  "dispense",
		Object:  "rx:01JEXAMPLE",
		Outcome: audit.OK,
		Patient: tlog.Pseudonym{1, 2, 3},
	}
}

func TestEntryEncoding(t *testing.T) {
	e := sampleEntry()
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := "nuskha-audit/v1\n" +
		"time 2026-12-05T10:11:12.123456789Z\n" +
		"actor cert:" + fingerprint + "\n" +
		"role pharmacist\n" +
		"org PH-1\n" +
		"action dispense\n" +
		"object rx:01JEXAMPLE\n" +
		"outcome ok\n" +
		"code\n" +
		"patient 0102030000000000000000000000000000000000000000000000000000000000\n"
	if string(b) != want {
		t.Fatalf("encoded:\n%s\nwant:\n%s", b, want)
	}
	got, err := tlog.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !equalEntries(got, e) {
		t.Fatalf("round trip: %+v, want %+v", got, e)
	}
	// A time in another zone is the same instant, written in UTC.
	tehran := *e
	tehran.Time = e.Time.In(persian.Tehran)
	if b2, _ := tehran.Encode(); !bytes.Equal(b2, b) {
		t.Fatalf("the zone changed the encoding:\n%s", b2)
	}
}

func equalEntries(a, b *tlog.Entry) bool {
	return a.Time.Equal(b.Time) && a.Actor == b.Actor && a.Action == b.Action && a.Object == b.Object &&
		a.Outcome == b.Outcome && a.Code == b.Code && a.Patient == b.Patient
}

func TestEntryRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(e *tlog.Entry)
	}{
		{"no time", func(e *tlog.Entry) { e.Time = time.Time{} }},
		{"certificate actor not a fingerprint", func(e *tlog.Entry) { e.Actor.ID = "officer-a" }},
		{"upper-case fingerprint", func(e *tlog.Entry) { e.Actor.ID = strings.ToUpper(fingerprint) }},
		{"unknown actor kind", func(e *tlog.Entry) { e.Actor.Kind = "robot" }},
		{"officer without id", func(e *tlog.Entry) { e.Actor = tlog.Actor{Kind: tlog.ActorOfficer} }},
		{"action with a space", func(e *tlog.Entry) { e.Action = "rules check" }},
		{"action upper case", func(e *tlog.Entry) { e.Action = "Dispense" }},
		{"action starting with a digit", func(e *tlog.Entry) { e.Action = "1dispense" }},
		{"empty action", func(e *tlog.Entry) { e.Action = "" }},
		{"unknown outcome", func(e *tlog.Entry) { e.Outcome = "maybe" }},
		{"object with a newline", func(e *tlog.Entry) { e.Object = "rx:1\nrole admin" }},
		{"object with Persian digits", func(e *tlog.Entry) { e.Object = "rx:۱۲۳" }},
		{"role too long", func(e *tlog.Entry) { e.Actor.Role = strings.Repeat("r", 129) }},
		{"national id as the object", func(e *tlog.Entry) { e.Object = "0499370899" }},
		{"national id inside the object", func(e *tlog.Entry) { e.Object = "patient:0499370899" }},
		{"printed national id", func(e *tlog.Entry) { e.Code = "049-937089-9" }},
		{"national id as an officer", func(e *tlog.Entry) { e.Actor = tlog.Actor{Kind: tlog.ActorOfficer, ID: "0499370899"} }},
		{"national id as the organisation", func(e *tlog.Entry) { e.Actor.Org = "0499370899" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := sampleEntry()
			tc.edit(e)
			if _, err := e.Encode(); !errors.Is(err, tlog.ErrInvalidEntry) {
				t.Fatalf("Encode: got %v, want ErrInvalidEntry", err)
			}
		})
	}
	e := sampleEntry()
	e.Object = "patient:0499370899"
	if _, err := e.Encode(); !errors.Is(err, audit.ErrIdentifying) {
		t.Fatalf("a national id: got %v, want audit.ErrIdentifying", err)
	}
}

// TestDecodeRefusesNonCanonical: every way of writing an entry other than
// Encode's is refused.
func TestDecodeRefusesNonCanonical(t *testing.T) {
	good, _ := sampleEntry().Encode()
	s := string(good)
	for _, tc := range []struct{ name, text string }{
		{"another version", strings.Replace(s, "/v1", "/v2", 1)},
		{"CRLF", strings.ReplaceAll(s, "\n", "\r\n")},
		{"no final newline", strings.TrimSuffix(s, "\n")},
		{"trailing line", s + "extra\n"},
		{"two spaces", strings.Replace(s, "role pharmacist", "role  pharmacist", 1)},
		{"empty value with a space", strings.Replace(s, "code\n", "code \n", 1)},
		{"fields swapped", strings.Replace(s, "role pharmacist\norg PH-1", "org PH-1\nrole pharmacist", 1)},
		{"time without nanoseconds", strings.Replace(s, "12.123456789Z", "12Z", 1)},
		{"time with an offset", strings.Replace(s, "12.123456789Z", "12.123456789+00:00", 1)},
		{"upper-case pseudonym", strings.Replace(s, "010203", "0A0203", 1)},
		{"short pseudonym", strings.Replace(s, "0102030000", "01020300", 1)},
		{"zero pseudonym", strings.Replace(s, "patient 0102030000000000000000000000000000000000000000000000000000000000", "patient "+strings.Repeat("0", 64), 1)},
		{"missing field", strings.Replace(s, "code\n", "", 1)},
		{"actor without kind", strings.Replace(s, "actor cert:", "actor ", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tlog.Decode([]byte(tc.text)); !errors.Is(err, tlog.ErrInvalidEntry) {
				t.Fatalf("got %v, want ErrInvalidEntry for\n%s", err, tc.text)
			}
		})
	}
}

// FuzzEntry: whatever Decode accepts encodes back to the same bytes, and
// decodes again to the same entry; whatever it refuses, it refuses
// cleanly.
func FuzzEntry(f *testing.F) {
	good, _ := sampleEntry().Encode()
	f.Add(good)
	officer := &tlog.Entry{Time: time.Unix(0, 0), Actor: tlog.Actor{Kind: tlog.ActorOfficer, ID: "officer-a"}, Action: "enrolment.approve", Object: "enrolment:42", Outcome: audit.Refused, Code: "not-allowed"}
	b, _ := officer.Encode()
	f.Add(b)
	f.Add([]byte("nuskha-audit/v1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := tlog.Decode(b)
		if err != nil {
			if !errors.Is(err, tlog.ErrInvalidEntry) {
				t.Fatalf("an untyped refusal: %v", err)
			}
			return
		}
		again, err := e.Encode()
		if err != nil {
			t.Fatalf("a decoded entry does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("encode(decode(b)) != b:\n%q\n%q", again, b)
		}
		e2, err := tlog.Decode(again)
		if err != nil || !equalEntries(e, e2) {
			t.Fatalf("decode(encode(x)) != x: %+v, %+v, %v", e, e2, err)
		}
	})
}

// TestHoldable: what an entry can hold as an id is kept as it is, and
// anything else — too long, characters outside the token set, another
// script's digits, a national id or a part that is one — is left out.
func TestHoldable(t *testing.T) {
	for s, want := range map[string]string{
		"sub_v1":                 "sub_v1",
		"PH-8812":                "PH-8812",
		"rx:4b6f0c1e-2f1a-4d8e":  "rx:4b6f0c1e-2f1a-4d8e",
		"":                       "",
		strings.Repeat("a", 128): strings.Repeat("a", 128),
		strings.Repeat("a", 129): "",
		"sub v1":                 "",
		"۱۲۳":                    "",
		"0499370899":             "",
		"licence:0499370899":     "",
		"a\nb":                   "",
	} {
		if got := tlog.Holdable(s); got != want {
			t.Errorf("Holdable(%q) = %q, want %q", s, got, want)
		}
	}
}
