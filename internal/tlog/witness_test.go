package tlog

import (
	"strings"
	"testing"
)

// A witness's cosignature/v1 key (type 0x04), and the same key as a plain
// Ed25519 note key (type 0x01).
const (
	testWitnessKey = "witness.example/w1+3fc31fea+BOuLrCoZ7GrLOqUffFcuaoTsE903Lrf1shbNHaw91Ef1"
	testPlainKey   = "witness.example/w1+75ff98fe+AeuLrCoZ7GrLOqUffFcuaoTsE903Lrf1shbNHaw91Ef1"
)

func TestParseWitness(t *testing.T) {
	w, err := ParseWitness(testWitnessKey + " https://witness.example/w1/")
	if err != nil || w.VerifierKey != testWitnessKey || w.URL != "https://witness.example/w1/" {
		t.Fatalf("ParseWitness = %+v, %v", w, err)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"no URL", testWitnessKey, "VKEY URL"},
		{"plain note key", testPlainKey + " https://w.example", "cosignature/v1"},
		{"wrong key hash", strings.Replace(testWitnessKey, "3fc31fea", "3fc31feb", 1) + " https://w.example", "hash"},
		{"not a key", "witness.example/w1 https://w.example", "name+hash+base64"},
		{"not an http URL", testWitnessKey + " ftp://w.example", "URL"},
		{"no host", testWitnessKey + " https:///add", "URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseWitness(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseWitness(%q) = %v, want an error about %s", tc.in, err, tc.want)
			}
		})
	}
	twice := []Witness{{testWitnessKey, "https://a.example"}, {testWitnessKey, "https://b.example"}}
	if err := CheckWitnesses(twice); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("a witness configured twice: %v", err)
	}
}
