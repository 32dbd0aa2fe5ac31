package rx_test

import (
	"slices"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/rx"
)

// TestAlgorithmsIsACopy: changing what Algorithms returns changes nothing
// the verifier accepts: ES256 still verifies with it overwritten in the
// copy, and RS256 is still refused with it written in.
func TestAlgorithmsIsACopy(t *testing.T) {
	want := []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.PS256}
	algs := rx.Algorithms()
	if !slices.Equal(algs, want) {
		t.Fatalf("Algorithms() = %v", algs)
	}
	algs[0] = jose.RS256
	_ = append(algs[:1], jose.HS256)
	if got := rx.Algorithms(); !slices.Equal(got, want) {
		t.Fatalf("Algorithms() after its copy was changed: %v", got)
	}

	f := setup(t)
	good := f.sign(t, f.prescription())
	if _, err := f.v.Verify(ctx, good, rx.KindPrescription); err != nil {
		t.Fatalf("ES256 after the copy was changed: %v", err)
	}
	h := headerOf(good)
	h["alg"] = string(jose.RS256)
	_, err := f.v.Verify(ctx, forge(t, h, payloadOf(good), f.key), rx.KindPrescription)
	wantCode(t, err, errs.UnsupportedAlgorithm)
}
