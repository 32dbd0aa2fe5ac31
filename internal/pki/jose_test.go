package pki

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestCanonicalCompact(t *testing.T) {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256"}`))
	p := base64.RawURLEncoding.EncodeToString([]byte(`{"v":1}`))
	s := base64.RawURLEncoding.EncodeToString(make([]byte, 64))
	if !CanonicalCompact(h + "." + p + "." + s) {
		t.Fatal("refused a canonical token")
	}
	if !CanonicalCompact(h + ".." + s) {
		t.Fatal("refused an empty payload")
	}
	for name, tok := range map[string]string{
		"two parts":           h + "." + p,
		"four parts":          h + "." + p + "." + s + ".",
		"LF in the signature": h + "." + p + "." + s[:10] + "\n" + s[10:],
		"CR in the header":    h[:4] + "\r" + h[4:] + "." + p + "." + s,
		"CRLF at the end":     h + "." + p + "." + s + "\r\n",
		"space":               h + "." + p + " ." + s,
		"tab":                 h + "." + p + "." + "\t" + s,
		"padding":             h + "." + p + "=." + s,
		"standard alphabet":   h + "." + p + "." + strings.Replace(s, "A", "+", 1),
		"slash":               h + "." + p + "." + strings.Replace(s, "A", "/", 1),
		"stray trailing bits": h + "." + p + "." + s[:len(s)-1] + "B",
	} {
		if CanonicalCompact(tok) {
			t.Errorf("%s: accepted %q", name, tok)
		}
	}
}
