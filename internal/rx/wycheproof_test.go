package rx

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// Wycheproof (C2SP) vectors: the verifier accepts every valid and rejects
// every invalid case, in CI.

type p1363File struct {
	TestGroups []struct {
		PublicKey struct {
			Wx, Wy string
		} `json:"publicKey"`
		Tests []struct {
			TcID    int    `json:"tcId"`
			Comment string `json:"comment"`
			Msg     string `json:"msg"`
			Sig     string `json:"sig"`
			Result  string `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

// The P1363 file goes through the low-level ES256 check the verifier uses.
func TestWycheproofECDSAP256P1363(t *testing.T) {
	raw, err := os.ReadFile("testdata/wycheproof/ecdsa_secp256r1_sha256_p1363_test.json")
	if err != nil {
		t.Fatal(err)
	}
	var f p1363File
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range f.TestGroups {
		x, _ := new(big.Int).SetString(g.PublicKey.Wx, 16)
		y, _ := new(big.Int).SetString(g.PublicKey.Wy, 16)
		point := make([]byte, 65)
		point[0] = 4 // uncompressed: 04 ‖ X ‖ Y
		x.FillBytes(point[1:33])
		y.FillBytes(point[33:])
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
		if err != nil {
			t.Fatalf("public key %s, %s: %v", g.PublicKey.Wx, g.PublicKey.Wy, err)
		}
		for _, tc := range g.Tests {
			msg, _ := hex.DecodeString(tc.Msg)
			sig, _ := hex.DecodeString(tc.Sig)
			h := sha256.Sum256(msg)
			got := verifyP1363(pub, h[:], sig, 32)
			if tc.Result == "acceptable" {
				continue
			}
			if got != (tc.Result == "valid") {
				t.Errorf("tcId %d (%s): accepted=%v, want %s", tc.TcID, tc.Comment, got, tc.Result)
			}
			n++
		}
	}
	if n < 250 {
		t.Fatalf("only %d cases ran", n)
	}
}

type jwsFile struct {
	TestGroups []struct {
		Public json.RawMessage `json:"public"`
		Tests  []struct {
			TcID    int             `json:"tcId"`
			Comment string          `json:"comment"`
			JWS     json.RawMessage `json:"jws"`
			Result  string          `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

// The whole-JWS file goes through parseCompact and verify, the verifier's
// own path. A case in an algorithm we allow (ES256, ES384, PS256) must get
// Wycheproof's answer; every other case must be refused, whatever
// Wycheproof says, because we never accept other algorithms.
func TestWycheproofJWS(t *testing.T) {
	raw, err := os.ReadFile("testdata/wycheproof/json_web_signature_test.json")
	if err != nil {
		t.Fatal(err)
	}
	var f jwsFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	accepted, refused := 0, 0
	for _, g := range f.TestGroups {
		var jwk jose.JSONWebKey
		keyOK := len(g.Public) > 0 && jwk.UnmarshalJSON(g.Public) == nil
		for _, tc := range g.Tests {
			var token string
			if json.Unmarshal(tc.JWS, &token) != nil {
				token = string(tc.JWS) // JSON serialisation: must be refused
			}
			ok := false
			if c, err := parseCompact(token); err == nil && keyOK && keyAllows(g.Public, jwk, string(c.alg)) {
				ok = c.verify(jwk.Key) == nil
			}
			allowed := keyOK && slices.Contains(algorithms, jose.SignatureAlgorithm(jwk.Algorithm)) && headerAlg(token) == jwk.Algorithm
			want := allowed && tc.Result == "valid"
			if tc.Result == "acceptable" && allowed {
				continue
			}
			if ok != want {
				t.Errorf("tcId %d (%s, key %s, header %s): accepted=%v, want %v", tc.TcID, tc.Comment, jwk.Algorithm, headerAlg(token), ok, want)
			}
			if ok {
				accepted++
			} else {
				refused++
			}
		}
	}
	if accepted < 8 || refused < 300 {
		t.Fatalf("%d accepted and %d refused: the file was not all used", accepted, refused)
	}
}

// keyAllows applies a JWK's own restrictions (alg, use, key_ops), as the
// verifier applies a certificate's key usage to the keys it takes from x5c.
func keyAllows(raw json.RawMessage, jwk jose.JSONWebKey, alg string) bool {
	var k struct {
		KeyOps []string `json:"key_ops"`
	}
	_ = json.Unmarshal(raw, &k)
	switch {
	case jwk.Algorithm != "" && jwk.Algorithm != alg:
		return false
	case jwk.Use != "" && jwk.Use != "sig":
		return false
	case k.KeyOps != nil && !slices.Contains(k.KeyOps, "verify"):
		return false
	}
	return true
}

func headerAlg(token string) string {
	h, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return ""
	}
	var v struct {
		Alg string `json:"alg"`
	}
	_ = json.Unmarshal(raw, &v)
	return v.Alg
}
