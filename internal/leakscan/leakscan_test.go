package leakscan

import (
	"path/filepath"
	"strings"
	"testing"
)

const planted = "0010350829"

func scanner(t *testing.T) *Scanner {
	t.Helper()
	id, err := NationalID("a patient's national id", planted)
	if err != nil {
		t.Fatal(err)
	}
	name, err := Text("the patient's name", "مریم کریمی")
	if err != nil {
		t.Fatal(err)
	}
	dosage, err := Text("a dosage", "هر ۸ ساعت یک عدد")
	if err != nil {
		t.Fatal(err)
	}
	code, err := Code("an item's code", "1000210")
	if err != nil {
		t.Fatal(err)
	}
	return New(id, name, dosage, code)
}

// TestFindsPlantedSecrets: a national id in every encoding it may be
// written in, a name and a dosage however spelt, and a code, planted in a
// log line or binary data, are found and named.
func TestFindsPlantedSecrets(t *testing.T) {
	s := scanner(t)
	for _, tc := range []struct {
		name, data, want string
	}{
		{"ASCII digits", `level=INFO msg=lookup nid=0010350829 ok`, "national id"},
		{"Persian digits", `msg="eligibility" person=۰۰۱۰۳۵۰۸۲۹`, "national id"},
		{"Arabic-Indic digits", `{"who":"٠٠١٠٣٥٠٨٢٩"}`, "national id"},
		{"mixed digits", `id 00103۵۰۸۲۹ end`, "national id"},
		{"inside a longer run of digits", `serial 77700103508299912`, "national id"},
		{"printed with dashes", `patient 001-035082-9`, "national id"},
		{"leading zeros dropped", `row 10350829,INS-9001`, "national id"},
		{"JSON-escaped Persian digits", `{"q":"\u06f0\u06f0\u06f1\u06f0\u06f3\u06f5\u06f0\u06f8\u06f2\u06f9"}`, "national id"},
		{"JSON-escaped, upper case", `{"q":"\u06F0\u06F0\u06F1\u06F0\u06F3\u06F5\u06F0\u06F8\u06F2\u06F9"}`, "national id"},
		{"URL-encoded Persian digits", `GET /v1/x?nid=%DB%B0%DB%B0%DB%B1%DB%B0%DB%B3%DB%B5%DB%B0%DB%B8%DB%B2%DB%B9`, "national id"},
		{"URL-encoded, lower case", `GET /v1/x/%db%b0%db%b0%db%b1%db%b0%db%b3%db%b5%db%b0%db%b8%db%b2%db%b9`, "national id"},
		{"in binary data", "\x00\xff\x10" + planted + "\x80\x01", "national id"},
		{"a name", `patient="مریم کریمی"`, "name"},
		{"a name with Arabic yeh and kaf", "patient=\"مريم كريمي\"", "name"},
		{"a dosage in ASCII digits", `d="هر 8 ساعت یک عدد"`, "dosage"},
		{"a dosage with a zero-width non-joiner", "d=\"هر ۸ ساعت\u200c یک عدد\"", "dosage"},
		{"a code", `item=1000210 qty=20`, "code"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := s.Scan("plant.log:7", []byte(tc.data))
			if h == nil {
				t.Fatalf("not found in %q", tc.data)
			}
			if h.Where != "plant.log:7" || !strings.Contains(h.Label, tc.want) {
				t.Fatalf("hit %v, want %s at plant.log:7", h, tc.want)
			}
		})
	}
}

// TestNoFalsePositives: what is not one of the values is not a hit — other
// national ids, hashes and pseudonyms, a code inside a longer number, the
// id's digits split by other characters.
func TestNoFalsePositives(t *testing.T) {
	s := scanner(t)
	for _, tc := range []struct{ name, data string }{
		{"another national id", `nid=0499370899`},
		{"a pseudonym", `patient 8c1f0a77e2d94b0b5f3c6a1e9d0b2c4f6a8e0d2c4b6a8f0e2d4c6b8a0f2e4d6c`},
		{"a tracking code", `tracking code 4KZ7-QW2M-9XTP`},
		{"a code inside a timestamp", `t=17650010002100123`},
		{"the id's digits apart", `0010 350 829`},
		{"ten other digits", `size 1234567890`},
		{"the name's first word alone", `مریم`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if h := s.Scan("x", []byte(tc.data)); h != nil {
				t.Fatalf("hit %v in %q", h, tc.data)
			}
		})
	}
}

// TestScanLinesNamesTheLine: a hit in a log is reported as file:line, the
// first one.
func TestScanLinesNamesTheLine(t *testing.T) {
	s := scanner(t)
	log := "starting\nlistening\nperson ۰۰۱۰۳۵۰۸۲۹\nagain 0010350829\n"
	h, _, err := s.ScanLines("rxd.log", strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if h == nil || h.Where != "rxd.log:3" {
		t.Fatalf("hit %v, want rxd.log:3", h)
	}
	if h, n, err := s.ScanLines("clean.log", strings.NewReader("a\nb\n")); h != nil || n != 2 || err != nil {
		t.Fatalf("clean log: %v, %d lines, %v", h, n, err)
	}
}

// TestLabelsNeverCarryTheValue: a report may be shown anywhere.
func TestLabelsNeverCarryTheValue(t *testing.T) {
	needles, err := DemoNeedles(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range needles {
		if strings.Contains(n.Label, planted) || strings.Contains(n.Label, "1000210") {
			t.Fatalf("label %q carries the value", n.Label)
		}
	}
}

// TestDemoNeedles: the walkthrough's secrets are all looked for — every
// registry id, the practitioner's id, the patient's name, the dosages,
// the drugs' names, the cancellation's reason — and each is found.
func TestDemoNeedles(t *testing.T) {
	needles, err := DemoNeedles(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	s := New(needles...)
	for _, want := range []string{
		"0010350829", "0499370899", "1000000397", // the registry's first, the child, the last
		"4523187665",                        // Dr Ahmadi (README.md)
		"مریم کریمی", "1981-08-03", "J02.9", // the patient, her birth date, the diagnosis
		"هر ۸ ساعت یک عدد", "در صورت تب، هر ۶ ساعت یک عدد", // dosages
		"Amoxicillin", "آموکسی\u200cسیلین", "Acetaminophen", "Methylphenidate", // drugs of the documents
		"Complete blood count (CBC)", // a service of check.json
		"دوز اشتباه",                 // the cancellation's reason
		"دکتر رضا موسوی",             // a responsible pharmacist
	} {
		if h := s.Scan("x", []byte("<"+want+">")); h == nil {
			t.Errorf("%q is not looked for", want)
		}
	}
	for _, not := range []string{"PH-23-1187", "MC-90210", "Omeprazole", "IR-23"} {
		if h := s.Scan("x", []byte("<"+not+">")); h != nil {
			t.Errorf("%q is looked for (%v): it names who acted, or is not in a document", not, h)
		}
	}
}
