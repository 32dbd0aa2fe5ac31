package rx_test

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"reflect"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

// FuzzVerifyPayload fuzzes what a signer can put in a document, past the
// signature: each input is a kind and a payload, signed as it is, byte for
// byte, with a key entitled to that kind, and verified. (FuzzVerify and
// FuzzVerifyEveryKind mutate whole tokens, whose signatures then fail
// before the payload is read.) The verifier never panics, refuses with a
// typed problem, and what it accepts is one document to every reader:
//
//   - the published JSON Schema of its kind accepts the payload, so that a
//     verifier built on the schema alone (JavaScript, Python) accepts it too;
//   - encoding/json, which the exchange itself reads verified payloads with
//     later (history, close, settle), reads the same Go document;
//   - the payload is, as a JSON value, the document the verifier returns:
//     re-encoding that document gives the same members, strings and numbers
//     (members omitempty leaves out when zero aside);
//   - no string in it holds a control character, which readers part ways
//     on (a C string ends at a NUL).
//
// The seeds are real signed documents of every kind, and spellings the
// verifier must refuse.
func FuzzVerifyPayload(fz *testing.F) {
	f := setupExchange(fz)
	tokens := f.signedKinds(fz)
	rxTok := tokens[rx.KindPrescription]
	ref := rx.Reference{ID: idOf(rxTok), JWSSHA256: rx.SHA256(rxTok)}
	cancelTok, err := f.v.Sign(ctx, &rx.Cancellation{V: 1, Type: rx.KindCancellation, ID: rx.NewID(), CancelledAt: f.now, Prescription: ref,
		Prescriber: rx.Prescriber{CouncilNumber: f.doctor.CouncilNumber, Profession: "physician", Specialty: "cardiology"}, Reason: "اشتباه در دوز"},
		f.key, f.chain, f.now)
	if err != nil {
		fz.Fatal(err)
	}
	tokens[rx.KindCancellation] = cancelTok
	keys := map[rx.Kind]*ecdsa.PrivateKey{rx.KindPrescription: f.key.(*ecdsa.PrivateKey), rx.KindCancellation: f.key.(*ecdsa.PrivateKey),
		rx.KindDispense: f.pharmacy.key.(*ecdsa.PrivateKey), rx.KindPaper: f.pharmacy.key.(*ecdsa.PrivateKey),
		rx.KindSession: f.lab.key.(*ecdsa.PrivateKey), rx.KindAck: f.exchange.key.(*ecdsa.PrivateKey), rx.KindReceipt: f.exchange.key.(*ecdsa.PrivateKey)}
	kinds := rx.Kinds()
	headers := map[rx.Kind]string{}
	for i, k := range kinds {
		// Each kind's header as its signer made it: only the payload varies.
		headers[k] = strings.Split(tokens[k], ".")[0]
		payload := string(payloadOf(tokens[k]))
		fz.Add(uint8(i), []byte(payload))
		// Other spellings of the same document, each to be refused, for
		// the fuzzer to start from.
		for _, p := range []string{
			strings.Replace(payload, `Z"`, `.000Z"`, 1),
			strings.Replace(payload, `Z"`, `.0000000000009Z"`, 1),
			strings.Replace(payload, `{"v":1,`, `{"v":1,"V":1,`, 1),
			strings.Replace(payload, `{"v":1,`, `{"v":1,"\u0076":1,`, 1),
			strings.Replace(payload, `"type":`, `"Type":`, 1),
			strings.Replace(payload, `"v":1`, `"v":1.0`, 1),
			strings.Replace(payload, `"v":1`, `"v":1e0`, 1),
			strings.Replace(payload, `","`, `\ud800","`, 1),
			strings.Replace(payload, `","`, "\xed\xa0\x80\",\"", 1),
			strings.Replace(payload, `","`, `\u0000","`, 1),
			payload + " {}",
		} {
			fz.Add(uint8(i), []byte(p))
		}
	}
	schemas := publishedSchemas(fz)
	fz.Fuzz(func(t *testing.T, k uint8, payload []byte) {
		kind := kinds[int(k)%len(kinds)]
		input := headers[kind] + "." + base64.RawURLEncoding.EncodeToString(payload)
		v, err := f.v.Verify(ctx, testpki.SignInput(t, input, keys[kind]), kind)
		if err != nil {
			if errs.CodeOf(err) == errs.Internal {
				t.Fatalf("untyped refusal: %v", err)
			}
			return
		}
		doc := verifiedDocument(v)
		if doc == nil || doc.Kind() != kind {
			t.Fatalf("a %s verified as %T", kind, doc)
		}
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
		if err == nil {
			err = schemas[kind].Validate(inst)
		}
		if err != nil {
			t.Fatalf("the verifier accepts a %s the published schema refuses: %s\n%v", kind, payload, err)
		}
		std := reflect.New(reflect.TypeOf(doc).Elem()).Interface()
		if err := json.Unmarshal(payload, std); err != nil || !reflect.DeepEqual(std, doc) {
			t.Fatalf("encoding/json reads another %s from %s: %+v (%v), the verifier %+v", kind, payload, std, err, doc)
		}
		again, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		value := jsonValue(t, payload)
		if !reflect.DeepEqual(value, jsonValue(t, again)) {
			t.Fatalf("the payload %s is not the document the verifier returns, %s", payload, again)
		}
		if s, ok := controlIn(value); ok {
			t.Fatalf("a %s accepted with a control character in %q", kind, s)
		}
	})
}

// publishedSchemas compiles internal/rx/schema as a vendor would, from the
// published files alone.
func publishedSchemas(t testing.TB) map[rx.Kind]*jsonschema.Schema {
	c := jsonschema.NewCompiler()
	out := map[rx.Kind]*jsonschema.Schema{}
	for _, k := range rx.Kinds() {
		raw, err := rx.Schemas.ReadFile("schema/" + string(k) + "-v1.json")
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		id := "urn:test:" + string(k)
		if err := c.AddResource(id, doc); err != nil {
			t.Fatal(err)
		}
		if out[k], err = c.Compile(id); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func verifiedDocument(v *rx.Verified) rx.Document {
	for _, d := range []rx.Document{v.Prescription, v.Dispense, v.Cancellation, v.Session, v.Paper, v.Ack, v.Receipt} {
		if !reflect.ValueOf(d).IsNil() {
			return d
		}
	}
	return nil
}

// jsonValue is the JSON value b holds, as a generic reader sees it: numbers
// compared by value (-0 is 0), and members whose value is the zero of its
// kind left out, as omitempty leaves them out of an encoding.
func jsonValue(t *testing.T, b []byte) any {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return canonical(v)
}

// number is a JSON number by its exact value: big.Rat's lowest terms.
type number string

func canonical(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, m := range v {
			m = canonical(m)
			if m == "" || m == number("0") {
				continue
			}
			if a, ok := m.([]any); ok && len(a) == 0 {
				continue
			}
			out[k] = m
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = canonical(e)
		}
		return out
	case json.Number:
		r, ok := new(big.Rat).SetString(string(v))
		if !ok {
			panic(fmt.Sprintf("encoding/json decoded %q as a number", v))
		}
		return number(r.RatString())
	}
	return v
}

// controlIn finds a string of v, a member name or a value, holding a
// control character (Unicode's Cc).
func controlIn(v any) (string, bool) {
	has := func(s string) bool {
		return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || 0x7f <= r && r <= 0x9f })
	}
	switch v := v.(type) {
	case string:
		return v, has(v)
	case map[string]any:
		for k, m := range v {
			if has(k) {
				return k, true
			}
			if s, ok := controlIn(m); ok {
				return s, true
			}
		}
	case []any:
		for _, e := range v {
			if s, ok := controlIn(e); ok {
				return s, true
			}
		}
	}
	return "", false
}
