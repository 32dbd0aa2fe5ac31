package rx

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nuskha/nuskha/internal/persian"
	"github.com/nuskha/nuskha/internal/rx/trackcode"
)

func sampleDocuments() []Document {
	at := time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC)
	ref := Reference{ID: "0b6a1f6e-8c1d-4e3b-9a6f-2d1c3b4a5e6f", JWSSHA256: strings.Repeat("ab", 32)}
	pr := Prescriber{CouncilNumber: "12345", Profession: "physician", Specialty: "cardiology", Name: "دکتر سارا احمدی"}
	return []Document{
		&Prescription{V: 1, Type: KindPrescription, ID: ref.ID, IssuedAt: at,
			Patient:    Patient{NationalID: "0499370899", Name: "علی رضایی", BirthDate: "1985-03-21", Sex: "male"},
			Prescriber: pr, Practice: Practice{Name: "درمانگاه شفا", ID: "77", Province: "IR-23"},
			Diagnoses: []string{"I10"}, Items: []Item{{Kind: "drug", Code: "1234567", Quantity: 30, Dosage: "روزی یک عدد", Note: "n"}}, Notes: "x"},
		&Dispense{V: 1, Type: KindDispense, ID: ref.ID, DispensedAt: at, Prescription: ref,
			Dispenser: Dispenser{LicenceNumber: "9", Role: "pharmacy", Name: "داروخانه"},
			Items:     []DispensedItem{{Code: "1", Quantity: 1, SubstituteFor: "2", Note: "n"}}, Notes: "x"},
		&Cancellation{V: 1, Type: KindCancellation, ID: ref.ID, CancelledAt: at, Prescription: ref, Prescriber: pr, Reason: "اشتباه"},
		&Session{V: 1, Type: KindSession, ID: ref.ID, Aud: SessionAudience, IssuedAt: at, Vendor: sampleThumbprint},
		&Paper{V: 1, Type: KindPaper, ID: ref.ID, EnteredAt: at, Prescriber: pr,
			Patient:  Patient{NationalID: "0499370899", Name: "علی رضایی", BirthDate: "1985-03-21", Sex: "male"},
			Practice: &Practice{Name: "درمانگاه شفا", ID: "77", Province: "IR-23"}, Diagnoses: []string{"I10"},
			Items:     []Item{{Kind: "drug", Code: "1234567", Quantity: 30, Dosage: "روزی یک عدد", Note: "n"}},
			Dispensed: []DispensedItem{{Code: "7654321", Quantity: 30, SubstituteFor: "1234567", Note: "n"}},
			Dispenser: Dispenser{LicenceNumber: "9", Role: "pharmacy", Name: "داروخانه"}},
		&Ack{V: 1, Type: KindAck, ID: ref.ID, Prescription: ref, TrackingCode: sampleTrackingCode, AcceptedAt: at},
		&Receipt{V: 1, Type: KindReceipt, ID: ref.ID, TrackingCode: sampleTrackingCode, Prescription: ref,
			Dispenses: []Reference{{ID: "1b6a1f6e-8c1d-4e3b-9a6f-2d1c3b4a5e6f", JWSSHA256: strings.Repeat("cd", 32)}},
			Amounts:   Amounts{Total: 1000, Insurer: 700, Supplementary: 200, Patient: 100},
			Dispenser: Dispenser{LicenceNumber: "9", Role: "pharmacy", Name: "داروخانه"}, ClosedAt: at},
	}
}

// sampleThumbprint is a well-formed x5t#S256; sampleTrackingCode a valid
// tracking code in canonical form.
const sampleThumbprint = "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"

var sampleTrackingCode = "ABCDE12345" + string(trackcode.CheckSymbol("ABCDE12345"))

// stringFields returns pointers to every string in doc, at any depth.
func stringFields(v reflect.Value, out *[]*string) {
	switch v.Kind() {
	case reflect.Pointer:
		stringFields(v.Elem(), out)
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				stringFields(v.Field(i), out)
			}
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			stringFields(v.Index(i), out)
		}
	case reflect.String:
		if v.Type() == reflect.TypeOf("") {
			*out = append(*out, v.Addr().Interface().(*string))
		}
	}
}

// deepCopy goes through JSON, which every document survives unchanged.
func deepCopy(t testing.TB, doc Document) Document {
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	c := reflect.New(reflect.TypeOf(doc).Elem()).Interface().(Document)
	if err := json.Unmarshal(b, c); err != nil {
		t.Fatal(err)
	}
	return c
}

// FuzzNormalAgreesWithNormalize holds the verifier's normal-form check to
// the plain definition: a document is normal exactly when Normalize would
// leave it unchanged. Each fuzzed string is put in each field in turn.
func FuzzNormalAgreesWithNormalize(f *testing.F) {
	for _, s := range []string{"", " ", "a ", "علي", "۱۲۳", "A", "x\u200c", "x\u200cy", "e\u0301", "I10", "ir-23", "a\tb", "abcde-12345-" + sampleTrackingCode[10:]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			t.Skip("documents are valid UTF-8: the decoder refuses anything else")
		}
		for _, doc := range sampleDocuments() {
			var fields []*string
			stringFields(reflect.ValueOf(doc), &fields)
			for i := range fields {
				d := deepCopy(t, doc)
				var fs []*string
				stringFields(reflect.ValueOf(d), &fs)
				*fs[i] = s
				n := deepCopy(t, d)
				n.Normalize()
				if want := reflect.DeepEqual(n, d); normal(d) != want {
					t.Fatalf("%T field %d = %q: normal() says %v, Normalize changes it: %v", doc, i, s, normal(d), !want)
				}
				if !normal(n) {
					t.Fatalf("%T field %d = %q: not normal after Normalize", doc, i, s)
				}
			}
		}
	})
}

func TestNormalTimes(t *testing.T) {
	for _, tc := range []struct {
		at   time.Time
		want bool
	}{
		{time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), true},
		{time.Date(2026, 1, 2, 3, 4, 5, 1, time.UTC), false},
		{time.Date(2026, 1, 2, 3, 4, 5, 0, persian.Tehran), false},
		{time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("", 0)), false},
	} {
		for _, doc := range sampleDocuments() {
			switch d := doc.(type) {
			case *Prescription:
				d.IssuedAt = tc.at
			case *Dispense:
				d.DispensedAt = tc.at
			case *Cancellation:
				d.CancelledAt = tc.at
			case *Session:
				d.IssuedAt = tc.at
			case *Paper:
				d.EnteredAt = tc.at
			case *Ack:
				d.AcceptedAt = tc.at
			case *Receipt:
				d.ClosedAt = tc.at
			default:
				t.Fatalf("%T has no time here", doc)
			}
			if normal(doc) != tc.want {
				t.Errorf("%T at %v: normal=%v, want %v", doc, tc.at, !tc.want, tc.want)
			}
		}
	}
}

// Every sample is a valid document of its kind, and there is one of each.
func TestSampleDocumentsAreValid(t *testing.T) {
	seen := map[Kind]bool{}
	for _, doc := range sampleDocuments() {
		if _, err := decode(doc.Kind(), marshal(t, doc)); err != nil {
			t.Errorf("%s: %v", doc.Kind(), err)
		}
		seen[doc.Kind()] = true
	}
	if len(seen) != len(Kinds()) {
		t.Fatalf("samples of %d kinds, %d kinds", len(seen), len(Kinds()))
	}
}

// A tracking code typed in lower case, with hyphens or Persian digits is
// put in canonical form by Normalize, and only the canonical form is
// normal.
func TestTrackingCodeNormalForm(t *testing.T) {
	typed := strings.ToLower(trackcode.Format(sampleTrackingCode))
	for _, doc := range []Document{&Ack{TrackingCode: typed}, &Receipt{TrackingCode: typed}} {
		if normal(doc) {
			t.Fatalf("%T: %q taken as normal", doc, typed)
		}
		doc.Normalize()
		if !normal(doc) || reflect.ValueOf(doc).Elem().FieldByName("TrackingCode").String() != sampleTrackingCode {
			t.Fatalf("%T: normalised to %+v", doc, doc)
		}
	}
}
