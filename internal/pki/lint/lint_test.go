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
