package holder_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki/holder"
)

func newKey(t testing.TB) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var request = holder.Request{V: 1, Type: holder.Type, Serial: "0badc0de", Reason: "keyCompromise",
	IssuedAt: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}

func sign(t testing.TB, key crypto.Signer, req holder.Request) string {
	t.Helper()
	tok, err := holder.Sign(key, req)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func wantBad(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, errs.Of(errs.BadRevocationRequest)) {
		t.Fatalf("got %v, want %s", err, errs.BadRevocationRequest)
	}
}

func TestSignParseVerify(t *testing.T) {
	key := newKey(t)
	s, err := holder.Parse(sign(t, key, request))
	if err != nil {
		t.Fatal(err)
	}
	if s.Request != request {
		t.Fatalf("parsed %+v, signed %+v", s.Request, request)
	}
	if err := s.Verify(key.Public()); err != nil {
		t.Fatal(err)
	}
	if err := s.Request.CheckVersion(); err != nil {
		t.Fatal(err)
	}
}

func TestParseRefuses(t *testing.T) {
	key := newKey(t)
	good := sign(t, key, request)
	parts := strings.Split(good, ".")
	for _, tc := range []struct{ name, token string }{
		{"empty", ""},
		{"not a JWS", "hello"},
		{"too large", strings.Repeat("a", holder.MaxSize+1)},
		{"alg none", "eyJhbGciOiJub25lIn0.eyJ2IjoxfQ."},
		{"line break in the signature", parts[0] + "." + parts[1] + "." + parts[2][:10] + "\n" + parts[2][10:]},
		{"padded payload", parts[0] + "." + parts[1] + "=." + parts[2]},
		{"unknown field", parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"v":1,"extra":true}`)) + "." + parts[2]},
		{"duplicate member", parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"v":1,"serial":"01","serial":"02"}`)) + "." + parts[2]},
		{"member spelled otherwise", parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"v":1,"Serial":"01"}`)) + "." + parts[2]},
		{"data after the value", parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"v":1} {"v":2}`)) + "." + parts[2]},
		// go-jose's JSON reader refuses a header parameter given twice,
		// escaped or not, as the payload's reader does a member.
		{"duplicate header parameter", base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","alg":"ES384"}`)) + "." + parts[1] + "." + parts[2]},
		{"escaped duplicate header parameter", base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","a\u006cg":"ES384"}`)) + "." + parts[1] + "." + parts[2]},
		{"data after the header", base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256"} {}`)) + "." + parts[1] + "." + parts[2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := holder.Parse(tc.token)
			wantBad(t, err)
		})
	}
}

func TestVerifyRefuses(t *testing.T) {
	key := newKey(t)
	good := sign(t, key, request)
	parts := strings.Split(good, ".")
	other := request
	other.Reason = "superseded"
	tampered := parts[0] + "." + strings.Split(sign(t, key, other), ".")[1] + "." + parts[2]
	for _, tc := range []struct {
		name  string
		token string
		pub   crypto.PublicKey
	}{
		{"another certificate's key", good, newKey(t).Public()},
		{"tampered payload", tampered, key.Public()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := holder.Parse(tc.token)
			if err != nil {
				t.Fatal(err)
			}
			wantBad(t, s.Verify(tc.pub))
		})
	}
}

func TestCheckVersion(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*holder.Request)
	}{
		{"wrong version", func(r *holder.Request) { r.V = 2 }},
		{"wrong typ", func(r *holder.Request) { r.Type = "login" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := request
			tc.mod(&r)
			wantBad(t, r.CheckVersion())
		})
	}
}

// FuzzParse: whatever arrives, Parse either refuses it with
// bad-revocation-request or returns a request that its signer's key alone
// verifies.
func FuzzParse(f *testing.F) {
	key := newKey(f)
	f.Add(sign(f, key, request))
	f.Add("eyJhbGciOiJub25lIn0.eyJ2IjoxfQ.")
	f.Add("a.b.c")
	stranger := newKey(f).Public()
	f.Fuzz(func(t *testing.T, token string) {
		s, err := holder.Parse(token)
		if err != nil {
			wantBad(t, err)
			return
		}
		if len(strings.TrimSpace(token)) > holder.MaxSize {
			t.Fatalf("accepted %d bytes", len(token))
		}
		if s.Verify(stranger) == nil {
			t.Fatal("verified with a key that signed nothing")
		}
	})
}
