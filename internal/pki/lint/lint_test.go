package lint

import "testing"

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
