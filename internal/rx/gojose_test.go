package rx_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/rx"
)

// The go-jose v4 examples of docs/prescription-format.md, exactly as the
// document quotes them (TestFormatDocQuotesTheExamples holds the two
// together), each run in both directions: go-jose verifies what Nuskha
// signs, and Nuskha's verifier accepts what go-jose signs.

// doc:begin go-jose-sign
// signWithGoJose signs a Nuskha document (its JSON, in normal form) with
// go-jose v4. Signing with crit needs nothing special.
func signWithGoJose(payload []byte, typ string, key crypto.Signer, chain []*x509.Certificate, sigT time.Time) (string, error) {
	x5c := make([]string, len(chain))
	for i, c := range chain {
		x5c[i] = base64.StdEncoding.EncodeToString(c.Raw) // standard base64, not base64url
	}
	thumb := sha256.Sum256(chain[0].Raw)
	opts := (&jose.SignerOptions{}).
		WithType(jose.ContentType(typ)).
		WithHeader("x5c", x5c).
		WithHeader("x5t#S256", base64.RawURLEncoding.EncodeToString(thumb[:])).
		WithHeader("sigT", sigT.UTC().Format("2006-01-02T15:04:05Z")).
		WithHeader("crit", []string{"sigT"})
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, opts)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// doc:end

// doc:begin go-jose-verify
// verifyWithGoJose checks a Nuskha signed document with go-jose v4 and the
// standard library, and returns its payload. go-jose parses the token and
// builds the x5c chain, but its Verify refuses every crit name except b64,
// and cannot be told otherwise: so crit is checked here, and the signature
// over the exact signing input with crypto/ecdsa or crypto/rsa. (Never
// UnsafePayloadWithoutVerification without that check.)
func verifyWithGoJose(token, typ string, roots *x509.CertPool) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.PS256})
	if err != nil {
		return nil, err
	}
	sig := jws.Signatures[0]
	h := sig.Protected
	if t, _ := h.ExtraHeaders[jose.HeaderType].(string); t != typ {
		return nil, fmt.Errorf("typ %q, want %q", t, typ)
	}
	// RFC 7515 §4.1.11: crit lists sigT, the one extension understood here.
	crit, _ := h.ExtraHeaders["crit"].([]any)
	if len(crit) != 1 || crit[0] != "sigT" {
		return nil, fmt.Errorf("crit %v: only [\"sigT\"] is understood", h.ExtraHeaders["crit"])
	}
	sigTs, _ := h.ExtraHeaders["sigT"].(string)
	sigT, err := time.Parse("2006-01-02T15:04:05Z", sigTs)
	if err != nil {
		return nil, fmt.Errorf("sigT %q: %w", sigTs, err)
	}
	chains, err := h.Certificates(x509.VerifyOptions{Roots: roots, CurrentTime: sigT,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return nil, err
	}
	leaf := chains[0][0]
	thumb := sha256.Sum256(leaf.Raw)
	if x5t, _ := h.ExtraHeaders["x5t#S256"].(string); x5t != base64.RawURLEncoding.EncodeToString(thumb[:]) {
		return nil, errors.New("x5t#S256 is not the signer certificate's digest")
	}
	input := token[:strings.LastIndexByte(token, '.')] // the JWS signing input
	if !checkJWSSignature(h.Algorithm, leaf.PublicKey, []byte(input), sig.Signature) {
		return nil, errors.New("the signature does not verify")
	}
	return jws.UnsafePayloadWithoutVerification(), nil // verified just above
}

// checkJWSSignature is JWA (RFC 7518 §3.4, §3.5): ECDSA signatures are
// r‖s of fixed length; PS256's salt is as long as the hash.
func checkJWSSignature(alg string, pub crypto.PublicKey, input, sig []byte) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		var digest []byte
		switch {
		case alg == "ES256" && size == 32:
			d := sha256.Sum256(input)
			digest = d[:]
		case alg == "ES384" && size == 48:
			d := sha512.Sum384(input)
			digest = d[:]
		default:
			return false
		}
		return len(sig) == 2*size && ecdsa.Verify(k, digest,
			new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:]))
	case *rsa.PublicKey:
		d := sha256.Sum256(input)
		return alg == "PS256" && rsa.VerifyPSS(k, crypto.SHA256, d[:], sig,
			&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
	}
	return false
}

// doc:end

func TestGoJoseExamples(t *testing.T) {
	f := setup(t)
	roots := x509.NewCertPool()
	roots.AddCert(f.p.Root)
	p := f.prescription()
	tok := f.sign(t, p)

	t.Run("go-jose verifies what Nuskha signs", func(t *testing.T) {
		payload, err := verifyWithGoJose(tok, rx.KindPrescription.Typ(), roots)
		if err != nil {
			t.Fatal(err)
		}
		if string(payload) != string(payloadOf(tok)) {
			t.Fatal("payload differs")
		}
		// The example is a check, not a pass-through.
		i := strings.LastIndexByte(tok, '.')
		sig, _ := base64.RawURLEncoding.DecodeString(tok[i+1:])
		sig[5] ^= 1
		for name, bad := range map[string]string{
			"tampered signature": tok[:i+1] + base64.RawURLEncoding.EncodeToString(sig),
			"unknown crit": forge(t, func() map[string]any {
				h := headerOf(tok)
				h["crit"], h["exp"] = []string{"sigT", "exp"}, 1
				return h
			}(), payloadOf(tok), f.key),
			"no crit":           forge(t, func() map[string]any { h := headerOf(tok); delete(h, "crit"); return h }(), payloadOf(tok), f.key),
			"other x5t#S256":    forge(t, func() map[string]any { h := headerOf(tok); h["x5t#S256"] = "AAAA"; return h }(), payloadOf(tok), f.key),
			"signed by another": forge(t, headerOf(tok), payloadOf(tok), newKey()),
			"a dispense's typ":  forge(t, func() map[string]any { h := headerOf(tok); h["typ"] = rx.KindDispense.Typ(); return h }(), payloadOf(tok), f.key),
		} {
			if _, err := verifyWithGoJose(bad, rx.KindPrescription.Typ(), roots); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
		// go-jose's own Verify refuses the format, which is why the example exists.
		jws, _ := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256})
		if _, err := jws.Verify(f.chain[0].PublicKey); err == nil {
			t.Fatal("go-jose's Verify now accepts crit sigT: the document's advice is out of date")
		}
	})

	t.Run("Nuskha verifies what go-jose signs", func(t *testing.T) {
		q := f.prescription()
		q.Normalize()
		body := payloadOf(f.sign(t, q)) // the normal-form JSON
		jws, err := signWithGoJose(body, rx.KindPrescription.Typ(), f.key, f.chain, f.now)
		if err != nil {
			t.Fatal(err)
		}
		v, err := f.v.Verify(ctx, jws, rx.KindPrescription)
		if err != nil {
			t.Fatal(err)
		}
		if v.Prescription.ID != q.ID {
			t.Fatalf("verified %s, want %s", v.Prescription.ID, q.ID)
		}
		if _, err := verifyWithGoJose(jws, rx.KindPrescription.Typ(), roots); err != nil {
			t.Fatalf("go-jose does not verify its own: %v", err)
		}
		// And what go-jose signs without crit, Nuskha refuses.
		bare, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: f.key}, (&jose.SignerOptions{}).WithType(jose.ContentType(rx.KindPrescription.Typ())))
		obj, _ := bare.Sign(body)
		compact, _ := obj.CompactSerialize()
		_, err = f.v.Verify(ctx, compact, rx.KindPrescription)
		if errs.CodeOf(err) == errs.Internal || err == nil {
			t.Fatalf("a JWS without the JAdES header: %v", err)
		}
	})
}

// TestFormatDocQuotesTheExamples holds docs/prescription-format.md to the
// code that is run: each example there is a region of this file or of
// test/interop's scripts, verbatim.
func TestFormatDocQuotesTheExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/prescription-format.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []struct{ file, region string }{
		{"gojose_test.go", "go-jose-sign"},
		{"gojose_test.go", "go-jose-verify"},
		{"../../test/interop/sign.mjs", "panva-sign"},
		{"../../test/interop/verify.mjs", "panva-verify"},
	} {
		raw, err := os.ReadFile(src.file)
		if err != nil {
			t.Fatal(err)
		}
		_, rest, ok := strings.Cut(string(raw), "// doc:begin "+src.region+"\n")
		region, _, ok2 := strings.Cut(rest, "// doc:end")
		if !ok || !ok2 {
			t.Fatalf("%s has no region %s", src.file, src.region)
		}
		if !strings.Contains(string(doc), "\n"+region+"```") {
			t.Errorf("docs/prescription-format.md does not quote %s's region %s as it is:\n%s", src.file, src.region, region)
		}
	}
}
