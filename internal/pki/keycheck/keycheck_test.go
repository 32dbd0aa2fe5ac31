package keycheck

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"testing"

	"github.com/nuskha/nuskha/internal/errs"
)

func csrFor(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func wantCode(t *testing.T, err error, code errs.Code) {
	t.Helper()
	if !errors.Is(err, errs.Of(code)) {
		t.Fatalf("got %v, want code %s", err, code)
	}
}

func TestParseCSR(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der := csrFor(t, ec)
	t.Run("DER", func(t *testing.T) {
		if _, err := ParseCSR(der); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("PEM", func(t *testing.T) {
		if _, err := ParseCSR(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("tampered signature is no proof of possession", func(t *testing.T) {
		bad := append([]byte(nil), der...)
		bad[len(bad)-3] ^= 0x40
		_, err := ParseCSR(bad)
		wantCode(t, err, errs.BadCSR)
	})
	t.Run("garbage", func(t *testing.T) {
		_, err := ParseCSR([]byte("hello"))
		wantCode(t, err, errs.BadCSR)
	})
	t.Run("wrong PEM type", func(t *testing.T) {
		_, err := ParseCSR(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
		wantCode(t, err, errs.BadCSR)
	})
	t.Run("two PEM blocks", func(t *testing.T) {
		one := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
		_, err := ParseCSR(append(one, one...))
		wantCode(t, err, errs.BadCSR)
	})
	t.Run("too large", func(t *testing.T) {
		_, err := ParseCSR(make([]byte, MaxCSRSize+1))
		wantCode(t, err, errs.BadCSR)
	})
}

func TestCheck(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	r2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	// Invalid points, built on purpose through the deprecated fields.
	//lint:ignore SA1019 an invalid key cannot be made any other way
	infinity := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int), Y: new(big.Int)}
	//lint:ignore SA1019 an invalid key cannot be made any other way
	offCurve := &ecdsa.PublicKey{Curve: elliptic.P256(), X: big.NewInt(1), Y: big.NewInt(1)}

	for _, tc := range []struct {
		name string
		pub  any
		want string
		code errs.Code
	}{
		{"P-256", &p256.PublicKey, "EC-P256", ""},
		{"P-384", &p384.PublicKey, "EC-P384", ""},
		{"RSA-2048", &r2048.PublicKey, "RSA-2048", ""},
		{"P-521 is not a curve we sign with", &p521.PublicKey, "", errs.WrongKeyType},
		{"Ed25519 not accepted", ed.Public(), "", errs.WrongKeyType},
		{"EC point at infinity", infinity, "", errs.WeakKey},
		{"EC point off the curve", offCurve, "", errs.WeakKey},
		{"RSA-1024 too small", &rsa.PublicKey{N: new(big.Int).SetBit(big.NewInt(1), 1023, 1), E: 65537}, "", errs.WeakKey},
		{"RSA exponent 3", &rsa.PublicKey{N: r2048.N, E: 3}, "", errs.WeakKey},
		{"RSA even modulus", &rsa.PublicKey{N: new(big.Int).SetBit(new(big.Int).Lsh(big.NewInt(1), 2047), 1, 1), E: 65537}, "", errs.WeakKey},
		{"RSA modulus with a small factor", &rsa.PublicKey{N: smallFactorModulus(t, r2048.N), E: 65537}, "", errs.WeakKey},
		{"RSA primes too close (Fermat)", &rsa.PublicKey{N: closePrimesModulus(t), E: 65537}, "", errs.WeakKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Check(tc.pub)
			if tc.code != "" {
				wantCode(t, err, tc.code)
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Check = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// smallFactorModulus returns a 2048-bit odd number divisible by 7.
func smallFactorModulus(t *testing.T, n *big.Int) *big.Int {
	m := new(big.Int).Set(n)
	m.Sub(m, new(big.Int).Mod(m, big.NewInt(7)))
	if m.Bit(0) == 0 {
		m.Sub(m, big.NewInt(7))
	}
	if m.BitLen() != 2048 || new(big.Int).Mod(m, big.NewInt(7)).Sign() != 0 {
		t.Fatal("could not build the modulus")
	}
	return m
}

// closePrimesModulus returns p*q for two 1024-bit primes a few thousand apart.
func closePrimesModulus(t *testing.T) *big.Int {
	p, err := rand.Prime(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	q := new(big.Int).Add(p, big.NewInt(2))
	for !q.ProbablyPrime(20) {
		q.Add(q, big.NewInt(2))
	}
	n := new(big.Int).Mul(p, q)
	if n.BitLen() != 2048 {
		return closePrimesModulus(t)
	}
	return n
}

func FuzzParseCSR(f *testing.F) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, ec)
	f.Add(der)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := ParseCSR(data)
		if err != nil {
			if errs.CodeOf(err) != errs.BadCSR {
				t.Fatalf("refusal with code %s, want %s", errs.CodeOf(err), errs.BadCSR)
			}
			return
		}
		// Invariant: anything accepted carries a verifying self-signature.
		if csr.CheckSignature() != nil {
			t.Fatal("accepted a CSR whose signature does not verify")
		}
	})
}
