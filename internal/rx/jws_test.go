package rx

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nuskha/nuskha/internal/errs"
)

func TestJSONObject(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		code errs.Code
	}{
		{`{"alg":"ES256","x5c":["a","b"],"n":{"k":1}}`, true, ""},
		{`{"alg":"ES256","n":{"alg":1,"alg":2}}`, false, errs.BadSignatureHeader}, // nor nested
		{"{\"alg\":\"ES256\xff\"}", false, errs.MalformedSignature},               // invalid UTF-8
		{` { "a" : "x\"y" , "b" : [ {"c":"}"} ] } `, true, ""},
		{`{}`, true, ""},
		{`{"alg":"ES256","alg":"none"}`, false, errs.BadSignatureHeader},
		{`{"a\u006cg":"ES256","alg":"none"}`, false, errs.BadSignatureHeader}, // the same name, escaped
		{`{"a":1,}`, false, errs.MalformedSignature},
		{`{"a" 1}`, false, errs.MalformedSignature},
		{`{"a":[1,2 x]}`, false, errs.MalformedSignature},
		{`{"a":1} {}`, false, errs.MalformedSignature},
		{`["a"]`, false, errs.MalformedSignature},
		{`{"a":"unterminated}`, false, errs.MalformedSignature},
	} {
		_, err := jsonObject([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("%s: error %v, want ok=%v", tc.in, err, tc.ok)
		}
		if err != nil && !errors.Is(err, errs.Of(tc.code)) {
			t.Errorf("%s: code %s, want %s", tc.in, errs.CodeOf(err), tc.code)
		}
	}
}

// FuzzJSONObject holds the header reader to encoding/json: it accepts only
// JSON objects encoding/json reads the same way, and refuses as malformed
// only what encoding/json refuses too, or what is not valid UTF-8 (which
// encoding/json replaces with U+FFFD rather than refusing).
func FuzzJSONObject(f *testing.F) {
	for _, s := range []string{`{"alg":"ES256"}`, `{"a":{"b":[1,"]"]},"c":null}`, `{"a":1,"a":2}`, `{}`, `{"\u0061":1,"a":2}`, ` {"a" : true } `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := jsonObject(raw)
		var want map[string]json.RawMessage
		stdErr := json.Unmarshal(raw, &want)
		if err == nil {
			if stdErr != nil || want == nil || len(want) != len(got) {
				t.Fatalf("accepted %q, which encoding/json reads as %v (%v)", raw, want, stdErr)
			}
			for k, v := range got {
				if string(want[k]) != string(v) {
					t.Fatalf("member %q: %s, encoding/json %s", k, v, want[k])
				}
			}
			return
		}
		if errs.CodeOf(err) == errs.MalformedSignature && stdErr == nil && want != nil && utf8.Valid(raw) {
			t.Fatalf("refused %q as malformed, encoding/json reads it", raw)
		}
	})
}

// FuzzParseCompact holds the parser to one spelling per token: whatever it
// accepts is three parts of nothing but the base64url alphabet, each the
// unpadded encoding of exactly what it decoded to.
func FuzzParseCompact(f *testing.F) {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","crit":["sigT"],"sigT":"2026-11-22T10:30:00Z"}`))
	p := base64.RawURLEncoding.EncodeToString([]byte(`{"v":1}`))
	s := base64.RawURLEncoding.EncodeToString(make([]byte, 64))
	for _, tok := range []string{
		h + "." + p + "." + s,
		h + "." + p + "." + s[:40] + "\n" + s[40:],
		h + "\r\n." + p + "." + s,
		h + "." + p[:3] + "\r" + p[3:] + "." + s,
		h + "." + p + "=." + s,
		h + "." + p + "." + s[:len(s)-1] + "B", // non-zero trailing bits
		h + ".." + s,
		"e30.e30.",
	} {
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, token string) {
		if _, err := parseCompact(token); err != nil {
			return
		}
		parts := strings.Split(token, ".")
		if len(parts) != 3 {
			t.Fatalf("accepted %d parts", len(parts))
		}
		for i, part := range parts {
			for j := 0; j < len(part); j++ {
				if c := part[j]; !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
					t.Fatalf("part %d holds %q, outside the base64url alphabet: %q", i, c, token)
				}
			}
			raw, err := base64.RawURLEncoding.DecodeString(part)
			if err != nil || base64.RawURLEncoding.EncodeToString(raw) != part {
				t.Fatalf("part %d is not the one spelling of its bytes: %q", i, part)
			}
		}
	})
}
