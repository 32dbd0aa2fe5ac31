package tlog

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// cosignerAs is a cosignature/v1 signer and verifier for key, under name
// (one key may be given under several names).
func cosignerAs(t *testing.T, key ed25519.PrivateKey, name string) (note.Signer, note.Verifier) {
	t.Helper()
	plain, err := note.NewEd25519VerifierKey(name, key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	hash := strings.Split(plain, "+")[1]
	s, err := fnote.NewSignerForCosignatureV1("PRIVATE+KEY+" + name + "+" + hash + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, key.Seed()...)))
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := fnote.VKeyToCosignatureV1(plain)
	if err != nil {
		t.Fatal(err)
	}
	v, err := WitnessVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// Cosigners counts witnesses toward a quorum: one holder of one key MUST
// count once, however many names the auditor's -witness list gives that
// key (an operator's second name is not a second witness).
func TestCosignersCountsAKeyOnce(t *testing.T) {
	text := "audit.example/log\n5\n" + base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\n"
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s1, v1 := cosignerAs(t, k, "witness.example/w1")
	s2, v2 := cosignerAs(t, k, "witness.example/w2")
	signed, err := note.Sign(&note.Note{Text: text}, s1, s2)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Cosigners(signed, v1, v2)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("one Ed25519 key under two names counted as %d cosigners, want 1:\n%s", n, signed)
	}
}
