package lint

import (
	"testing"

	zl "github.com/zmap/zlint/v3/lint"
)

func TestIgnoredLintsMustExist(t *testing.T) {
	if _, err := New([]string{"e_no_such_lint"}); err == nil {
		t.Fatal("a misspelt ignored lint was accepted")
	}
	if _, err := New([]string{"e_ext_authority_key_identifier_no_key_identifier"}); err != nil {
		t.Fatal(err)
	}
}

func TestCertificateGarbage(t *testing.T) {
	l, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Certificate([]byte("not a certificate")); err == nil {
		t.Fatal("garbage accepted")
	}
}

func TestNotApplicableLintsExist(t *testing.T) {
	// If zlint renames one, the exclusion silently stops working.
	for _, n := range notApplicable {
		if zl.GlobalRegistry().ByName(n) == nil {
			t.Fatalf("excluded lint %q is not in zlint's registry", n)
		}
	}
}

func TestOCSPLintsExist(t *testing.T) {
	// If zlint renames one, it silently stops running.
	for _, n := range append([]string{"e_this_update_not_after_produced_at"}, ocspAlsoApplicable...) {
		if zl.GlobalRegistry().OcspResponseLints().ByName(n) == nil {
			t.Fatalf("OCSP lint %q is not in zlint's registry", n)
		}
	}
	reg, err := ocspRegistry()
	if err != nil {
		t.Fatal(err)
	}
	if got := len(reg.OcspResponseLints().Lints()); got < 3 {
		t.Fatalf("the OCSP registry runs %d lints, want at least 3", got)
	}
}
