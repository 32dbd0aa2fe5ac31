package bundle_test

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/nuskha/nuskha/internal/pki/bundle"
)

// TestAlgorithmsIsACopy: changing what Algorithms returns changes nothing
// Verify accepts: an ES256 bundle still verifies with ES256 overwritten in
// the copy, and a bundle whose header says RS256 is still refused for its
// algorithm with RS256 written in.
func TestAlgorithmsIsACopy(t *testing.T) {
	want := []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.PS256}
	algs := bundle.Algorithms()
	if !slices.Equal(algs, want) {
		t.Fatalf("Algorithms() = %v", algs)
	}
	algs[0] = jose.RS256
	_ = append(algs[:1], jose.HS256)
	if got := bundle.Algorithms(); !slices.Equal(got, want) {
		t.Fatalf("Algorithms() after its copy was changed: %v", got)
	}

	f := setup(t)
	good, err := bundle.Sign(f.payload(), f.signer, f.chain)
	if err != nil {
		t.Fatal(err)
	}
	pinned := []*x509.Certificate{f.p.Root}
	if _, err := bundle.Verify(good, pinned, f.p.Arc, time.Now()); err != nil {
		t.Fatalf("an ES256 bundle after the copy was changed: %v", err)
	}
	parts := strings.Split(string(good), ".")
	raw, _ := base64.RawURLEncoding.DecodeString(parts[0])
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	h["alg"] = string(jose.RS256)
	hb, _ := json.Marshal(h)
	rs256 := base64.RawURLEncoding.EncodeToString(hb) + "." + parts[1] + "." + parts[2]
	if _, err := bundle.Verify([]byte(rs256), pinned, f.p.Arc, time.Now()); err == nil || !strings.Contains(err.Error(), "accepted algorithm") {
		t.Fatalf("a bundle saying RS256: %v; want a refusal of its algorithm", err)
	}
}
