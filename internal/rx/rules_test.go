package rx

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
)

func validPrescription() *Prescription {
	p := &Prescription{V: 1, Type: KindPrescription, ID: "0b0b3c52-8f3e-4a5c-9d8e-1f2a3b4c5d6e", IssuedAt: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
		Patient:    Patient{NationalID: "0499370899", Name: "علی رضایی", BirthDate: "1985-03-21", Sex: "male"},
		Prescriber: Prescriber{CouncilNumber: "MC-1", Profession: "physician", Specialty: "cardiology"},
		Practice:   Practice{Name: "مطب", Province: "IR-23"},
		Diagnoses:  []string{"I10"},
		Items:      []Item{{Kind: "drug", Code: "123", Quantity: 30, Repeats: 1, RepeatIntervalDays: 30}}}
	return p
}

func marshal(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// agree asserts the invariant: whatever the verifier's compiled rules
// accept, the published JSON Schema accepts.
func agree(t *testing.T, k Kind, payload []byte) (goOK, schemaOK bool) {
	t.Helper()
	_, err := decode(k, payload)
	goOK = err == nil
	schemaOK = validateSchema(k, payload) == nil
	if goOK && !schemaOK {
		t.Fatalf("the verifier accepts what the schema refuses: %s\nschema: %v", payload, validateSchema(k, payload))
	}
	return
}

func TestRulesAgreeWithSchema(t *testing.T) {
	base := marshal(t, validPrescription())
	if goOK, schemaOK := agree(t, KindPrescription, base); !goOK || !schemaOK {
		t.Fatalf("a valid prescription: verifier %v, schema %v (%v)", goOK, schemaOK, validateSchema(KindPrescription, base))
	}
	mutations := map[string]func(m map[string]any){
		"v 2":                   func(m map[string]any) { m["v"] = 2 },
		"type dispense":         func(m map[string]any) { m["type"] = "dispense" },
		"id not a uuid":         func(m map[string]any) { m["id"] = "rx-1" },
		"id upper case":         func(m map[string]any) { m["id"] = strings.ToUpper(m["id"].(string)) },
		"no issued_at":          func(m map[string]any) { delete(m, "issued_at") },
		"issued_at with offset": func(m map[string]any) { m["issued_at"] = "2026-11-22T13:30:00+03:30" },
		"national id short":     func(m map[string]any) { sub(m, "patient")["national_id"] = "123" },
		"empty patient name":    func(m map[string]any) { sub(m, "patient")["name"] = "" },
		"long patient name":     func(m map[string]any) { sub(m, "patient")["name"] = strings.Repeat("ب", 129) },
		"sex other":             func(m map[string]any) { sub(m, "patient")["sex"] = "x" },
		"birth date format":     func(m map[string]any) { sub(m, "patient")["birth_date"] = "21/03/1985" },
		"profession nurse":      func(m map[string]any) { sub(m, "prescriber")["profession"] = "nurse" },
		"specialty upper":       func(m map[string]any) { sub(m, "prescriber")["specialty"] = "Cardio" },
		"council number spaces": func(m map[string]any) { sub(m, "prescriber")["council_number"] = "MC 1" },
		"province 31":           func(m map[string]any) { sub(m, "practice")["province"] = "IR-31" },
		"practice id bad":       func(m map[string]any) { sub(m, "practice")["id"] = "-x" },
		"practice without name": func(m map[string]any) { delete(sub(m, "practice"), "name") },
		"no items":              func(m map[string]any) { m["items"] = []any{} },
		"item kind":             func(m map[string]any) { item(m)["kind"] = "herb" },
		"quantity 0":            func(m map[string]any) { item(m)["quantity"] = 0 },
		"quantity 1e9":          func(m map[string]any) { item(m)["quantity"] = 1e9 },
		"quantity fraction":     func(m map[string]any) { item(m)["quantity"] = 1.5 },
		"quantity as string":    func(m map[string]any) { item(m)["quantity"] = "30" },
		"repeats 13":            func(m map[string]any) { item(m)["repeats"] = 13 },
		"interval 366":          func(m map[string]any) { item(m)["repeat_interval_days"] = 366 },
		"diagnosis not ICD-10":  func(m map[string]any) { m["diagnoses"] = []any{"hypertension"} },
		"diagnosis repeated":    func(m map[string]any) { m["diagnoses"] = []any{"I10", "I10"} },
		"21 diagnoses":          func(m map[string]any) { m["diagnoses"] = repeatDistinct(21) },
		"unknown member":        func(m map[string]any) { m["price"] = 1 },
		"unknown nested member": func(m map[string]any) { sub(m, "patient")["insurance"] = "x" },
		"null notes":            func(m map[string]any) { m["notes"] = nil },
		"patient as array":      func(m map[string]any) { m["patient"] = []any{} },
		"long notes":            func(m map[string]any) { m["notes"] = strings.Repeat("a", 1001) },
		"empty optional name":   func(m map[string]any) { sub(m, "prescriber")["name"] = "" },
	}
	for name, mod := range mutations {
		t.Run(name, func(t *testing.T) {
			var m map[string]any
			json.Unmarshal(base, &m)
			mod(m)
			agree(t, KindPrescription, marshal(t, m))
		})
	}
	t.Run("duplicate member", func(t *testing.T) {
		dup := strings.Replace(string(base), `"v":1`, `"v":1,"v":1`, 1)
		if goOK, _ := agree(t, KindPrescription, []byte(dup)); goOK {
			t.Fatal("a repeated member name was accepted")
		}
	})
}

func sub(m map[string]any, k string) map[string]any { return m[k].(map[string]any) }
func item(m map[string]any) map[string]any          { return m["items"].([]any)[0].(map[string]any) }
func repeatDistinct(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = "A" + string(rune('0'+i/10)) + string(rune('0'+i%10))
	}
	return out
}

// FuzzRulesAgreeWithSchema: for any payload, the verifier's compiled rules
// accept only what the published JSON Schema accepts.
func FuzzRulesAgreeWithSchema(f *testing.F) {
	f.Add(marshal(f, validPrescription()))
	for _, doc := range sampleDocuments() {
		f.Add(marshal(f, doc))
	}
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		for _, k := range Kinds() {
			if _, err := decode(k, payload); err == nil && validateSchema(k, payload) != nil {
				t.Fatalf("%s: verifier accepts what the schema refuses: %s (%v)", k, payload, validateSchema(k, payload))
			}
		}
	})
}

// Names reach pharmacists' and insurers' screens: a control, format or
// private-use character in one (a right-to-left override showing another
// name, a zero-width joiner, a byte-order mark) is refused, naming the
// field, by the verifier and by the published schema. The zero-width
// non-joiner, part of Persian spelling, is not.
func TestNamesRefuseHiddenRunes(t *testing.T) {
	docs := sampleDocuments()
	for _, tc := range []struct {
		kind  Kind
		field string
		set   func(Document, string)
	}{
		{KindPrescription, "patient.name", func(d Document, s string) { d.(*Prescription).Patient.Name = s }},
		{KindPrescription, "prescriber.name", func(d Document, s string) { d.(*Prescription).Prescriber.Name = s }},
		{KindPrescription, "practice.name", func(d Document, s string) { d.(*Prescription).Practice.Name = s }},
		{KindDispense, "dispenser.name", func(d Document, s string) { d.(*Dispense).Dispenser.Name = s }},
		{KindCancellation, "prescriber.name", func(d Document, s string) { d.(*Cancellation).Prescriber.Name = s }},
		{KindPaper, "prescriber.name", func(d Document, s string) { d.(*Paper).Prescriber.Name = s }},
		{KindPaper, "patient.name", func(d Document, s string) { d.(*Paper).Patient.Name = s }},
		{KindPaper, "practice.name", func(d Document, s string) { d.(*Paper).Practice.Name = s }},
		{KindPaper, "dispenser.name", func(d Document, s string) { d.(*Paper).Dispenser.Name = s }},
		{KindReceipt, "dispenser.name", func(d Document, s string) { d.(*Receipt).Dispenser.Name = s }},
	} {
		var doc Document
		for _, d := range docs {
			if d.Kind() == tc.kind {
				doc = d
			}
		}
		for name, s := range map[string]string{
			"right-to-left override": "دکتر علی\u202eیرمحا",
			"zero-width joiner":      "علی\u200dرضا",
			"byte-order mark":        "\ufeffعلی",
			"private use":            "علی\ue000",
			"control character":      "علی\x07",
			"replacement character":  "علی\ufffd",
		} {
			t.Run(string(tc.kind)+"/"+tc.field+"/"+name, func(t *testing.T) {
				d := deepCopy(t, doc)
				tc.set(d, s)
				wantRefusedOn(t, tc.kind, d, tc.field)
			})
		}
		t.Run(string(tc.kind)+"/"+tc.field+"/zero-width non-joiner", func(t *testing.T) {
			d := deepCopy(t, doc)
			tc.set(d, "محمد\u200cعلی")
			payload := marshal(t, d)
			if _, err := decode(tc.kind, payload); err != nil {
				t.Fatal(err)
			}
			if err := validateSchema(tc.kind, payload); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Free text — a dosage, a note, a reason — is read by pharmacists, and by
// software that may be written in C or store documents in PostgreSQL's
// jsonb: a control character in it (a NUL ends a C string and is refused
// by jsonb; an escape redraws a terminal) is refused, naming the field, by
// the verifier and by the published schema. So is a bidirectional
// override, and an embedding or isolate not closed within the field (by
// the verifier; the schema says so in words). Persian text with the
// zero-width non-joiner, the direction marks and closed embeddings and
// isolates is not.
func TestFreeTextRefusesControls(t *testing.T) {
	docs := map[Kind]Document{}
	for _, d := range sampleDocuments() {
		docs[d.Kind()] = d
	}
	for _, tc := range []struct {
		kind  Kind
		field string
		set   func(Document, string)
	}{
		{KindPrescription, "items[0].dosage", func(d Document, s string) { d.(*Prescription).Items[0].Dosage = s }},
		{KindPrescription, "items[0].note", func(d Document, s string) { d.(*Prescription).Items[0].Note = s }},
		{KindPrescription, "notes", func(d Document, s string) { d.(*Prescription).Notes = s }},
		{KindDispense, "items[0].note", func(d Document, s string) { d.(*Dispense).Items[0].Note = s }},
		{KindDispense, "notes", func(d Document, s string) { d.(*Dispense).Notes = s }},
		{KindCancellation, "reason", func(d Document, s string) { d.(*Cancellation).Reason = s }},
		{KindPaper, "items[0].dosage", func(d Document, s string) { d.(*Paper).Items[0].Dosage = s }},
		{KindPaper, "items[0].note", func(d Document, s string) { d.(*Paper).Items[0].Note = s }},
		{KindPaper, "dispensed[0].note", func(d Document, s string) { d.(*Paper).Dispensed[0].Note = s }},
	} {
		for name, s := range map[string]string{
			"NUL":                    "روزی یک عدد\x00روزی ده عدد",
			"bell":                   "روزی\x07یک عدد",
			"escape":                 "\x1b[2Kروزی ده عدد",
			"delete":                 "روزی یک\x7fعدد",
			"C1 control":             "روزی یک عدد\u009b",
			"last C1 one":            "\u009fروزی",
			"left-to-right override": "روزی \u202d2 عدد\u202c",
			"right-to-left override": "\u202e20 tablets",
		} {
			t.Run(string(tc.kind)+"/"+tc.field+"/"+name, func(t *testing.T) {
				d := deepCopy(t, docs[tc.kind])
				tc.set(d, s)
				wantRefusedOn(t, tc.kind, d, tc.field)
			})
		}
		// An embedding or isolate left open, or closed out of turn: no
		// regular expression counts nesting, so the published schema
		// says this in its description, and the verifier refuses it.
		for name, s := range map[string]string{
			"isolate left open":             "روزی \u2067Amoxicillin 500mg",
			"embedding left open":           "\u202bروزی یک عدد",
			"isolate closed twice":          "\u2068روزی\u2069\u2069 یک عدد",
			"embedding closed by a PDI":     "\u202aAmoxicillin\u2069",
			"closed out of turn":            "\u2066\u202bروزی\u2069\u202c",
			"a close with nothing open":     "روزی\u202c یک عدد",
			"isolate in an embedding, open": "\u202bروزی \u2066x\u202c",
		} {
			t.Run(string(tc.kind)+"/"+tc.field+"/"+name, func(t *testing.T) {
				d := deepCopy(t, docs[tc.kind])
				tc.set(d, s)
				wantVerifierRefusesOn(t, tc.kind, marshal(t, d), tc.field)
			})
		}
		t.Run(string(tc.kind)+"/"+tc.field+"/Persian text", func(t *testing.T) {
			d := deepCopy(t, docs[tc.kind])
			tc.set(d, "هر ۸ ساعت یک قرص\u200cها، \u200fAmoxicillin 500mg\u200e (پس از غذا) \u00a0¬ \u2067\u202aCBC\u202c ۲\u2069 \u2068x\u2069\u061c")
			d.Normalize()
			payload := marshal(t, d)
			if _, err := decode(tc.kind, payload); err != nil {
				t.Fatal(err)
			}
			if err := validateSchema(tc.kind, payload); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The exchange's kinds: a valid document of each is accepted by both; each
// mutation is refused by the verifier (naming the field where given) and
// whatever the verifier accepts, the schema accepts.
func TestExchangeKindsAgreeWithSchema(t *testing.T) {
	samples := map[Kind][]byte{}
	for _, doc := range sampleDocuments() {
		samples[doc.Kind()] = marshal(t, doc)
	}
	other := "2b6a1f6e-8c1d-4e3b-9a6f-2d1c3b4a5e6f"
	wrongCheck := sampleTrackingCode[:10] + map[bool]string{true: "1", false: "0"}[sampleTrackingCode[10] == '0']
	for _, tc := range []struct {
		kind  Kind
		name  string
		field string // "" when only the schema's wording names it
		mod   func(m map[string]any)
	}{
		{KindSession, "aud of another service", "aud", func(m map[string]any) { m["aud"] = "nuskha-trust" }},
		{KindSession, "no aud", "aud", func(m map[string]any) { delete(m, "aud") }},
		{KindSession, "vendor in hex", "vendor", func(m map[string]any) { m["vendor"] = strings.Repeat("ab", 32) }},
		{KindSession, "vendor padded", "vendor", func(m map[string]any) { m["vendor"] = sampleThumbprint + "=" }},
		{KindSession, "vendor in standard base64", "vendor", func(m map[string]any) { m["vendor"] = "+" + sampleThumbprint[1:] }},
		{KindSession, "vendor with non-zero trailing bits", "vendor", func(m map[string]any) { m["vendor"] = sampleThumbprint[:42] + "V" }},
		{KindSession, "no issued_at", "issued_at", func(m map[string]any) { delete(m, "issued_at") }},
		{KindSession, "unknown member", "", func(m map[string]any) { m["exp"] = 1 }},
		{KindPaper, "no dispensed", "dispensed", func(m map[string]any) { m["dispensed"] = []any{} }},
		{KindPaper, "dispenser a centre", "dispenser.role", func(m map[string]any) { sub(m, "dispenser")["role"] = "paraclinic" }},
		{KindPaper, "dispensed what was not written", "dispensed[0].substitute_for", func(m map[string]any) {
			m["dispensed"].([]any)[0].(map[string]any)["substitute_for"] = "999"
		}},
		{KindPaper, "dispensed a lab test", "dispensed[0].substitute_for", func(m map[string]any) { item(m)["kind"] = "lab" }},
		{KindPaper, "dispensed twice", "dispensed[1].code", func(m map[string]any) {
			m["dispensed"] = append(m["dispensed"].([]any), m["dispensed"].([]any)[0])
		}},
		{KindPaper, "repeats without interval", "items[0].repeat_interval_days", func(m map[string]any) { item(m)["repeats"] = 2 }},
		{KindPaper, "practice without name", "practice.name", func(m map[string]any) { delete(sub(m, "practice"), "name") }},
		{KindPaper, "invalid national id", "patient.national_id", func(m map[string]any) { sub(m, "patient")["national_id"] = "0499370898" }},
		{KindPaper, "born after entry", "patient.birth_date", func(m map[string]any) { sub(m, "patient")["birth_date"] = "2030-01-01" }},
		{KindPaper, "prescriber a nurse", "prescriber.profession", func(m map[string]any) { sub(m, "prescriber")["profession"] = "nurse" }},
		{KindAck, "tracking code with a wrong check symbol", "tracking_code", func(m map[string]any) { m["tracking_code"] = wrongCheck }},
		{KindAck, "tracking code formatted", "tracking_code", func(m map[string]any) { m["tracking_code"] = "ABCDE-12345-" + sampleTrackingCode[10:] }},
		{KindAck, "tracking code with U", "tracking_code", func(m map[string]any) { m["tracking_code"] = "U" + sampleTrackingCode[1:] }},
		{KindAck, "no accepted_at", "accepted_at", func(m map[string]any) { delete(m, "accepted_at") }},
		{KindAck, "reference without digest", "prescription.jws_sha256", func(m map[string]any) { delete(sub(m, "prescription"), "jws_sha256") }},
		{KindReceipt, "amounts that do not add up", "amounts.total", func(m map[string]any) { sub(m, "amounts")["total"] = 1001 }},
		{KindReceipt, "a negative amount", "amounts.patient", func(m map[string]any) { sub(m, "amounts")["patient"] = -100; sub(m, "amounts")["insurer"] = 900 }},
		{KindReceipt, "an amount past 2^53", "amounts.total", func(m map[string]any) { sub(m, "amounts")["total"] = 1 << 53 }},
		{KindReceipt, "a fractional amount", "", func(m map[string]any) { sub(m, "amounts")["patient"] = 99.5 }},
		{KindReceipt, "no dispenses", "dispenses", func(m map[string]any) { m["dispenses"] = []any{} }},
		{KindReceipt, "51 dispenses", "dispenses", func(m map[string]any) {
			var ds []any
			for i := range 51 {
				ds = append(ds, map[string]any{"id": fmt.Sprintf("1b6a1f6e-8c1d-4e3b-9a6f-2d1c3b4a%04x", i), "jws_sha256": strings.Repeat("cd", 32)})
			}
			m["dispenses"] = ds
		}},
		{KindReceipt, "a dispense listed twice", "dispenses[1].id", func(m map[string]any) {
			m["dispenses"] = append(m["dispenses"].([]any), m["dispenses"].([]any)[0])
		}},
		{KindReceipt, "a dispense not a uuid", "dispenses[0].id", func(m map[string]any) { m["dispenses"].([]any)[0].(map[string]any)["id"] = "d-1" }},
		{KindReceipt, "dispenser role other", "dispenser.role", func(m map[string]any) { sub(m, "dispenser")["role"] = "insurer" }},
		{KindReceipt, "no closed_at", "closed_at", func(m map[string]any) { delete(m, "closed_at") }},
		{KindReceipt, "another prescription's id is fine", "-", func(m map[string]any) { sub(m, "prescription")["id"] = other }},
	} {
		t.Run(string(tc.kind)+"/"+tc.name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal(samples[tc.kind], &m); err != nil {
				t.Fatal(err)
			}
			tc.mod(m)
			payload := marshal(t, m)
			goOK, _ := agree(t, tc.kind, payload)
			if tc.field == "-" {
				if !goOK {
					t.Fatalf("refused: %v", validateSchema(tc.kind, payload))
				}
				return
			}
			_, err := decode(tc.kind, payload)
			var e *errs.Error
			if !errors.As(err, &e) {
				t.Fatalf("accepted %s", payload)
			}
			if tc.field != "" && e.Field != tc.field {
				t.Fatalf("refused on %q (%v), want %q", e.Field, err, tc.field)
			}
		})
	}
	for k, payload := range samples {
		if goOK, schemaOK := agree(t, k, payload); !goOK || !schemaOK {
			t.Fatalf("%s sample: verifier %v, schema %v (%v)", k, goOK, schemaOK, validateSchema(k, payload))
		}
	}
}

// wantRefusedOn checks that d, as a document of kind, is refused as
// invalid-document naming field, and that the published schema refuses it
// too: the verifier and a vendor's schema agree.
func wantRefusedOn(t *testing.T, kind Kind, d Document, field string) {
	t.Helper()
	payload := marshal(t, d)
	wantVerifierRefusesOn(t, kind, payload, field)
	if validateSchema(kind, payload) == nil {
		t.Fatal("the published schema accepts it")
	}
}

// wantVerifierRefusesOn: the verifier refuses payload as an
// invalid-document naming field.
func wantVerifierRefusesOn(t *testing.T, kind Kind, payload []byte, field string) {
	t.Helper()
	_, err := decode(kind, payload)
	var e *errs.Error
	if !errors.As(err, &e) || e.Code != errs.InvalidDocument || e.Field != field {
		t.Fatalf("decode: %v, want invalid-document on %s", err, field)
	}
}
