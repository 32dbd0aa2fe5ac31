// Package keycheck decides whether a subject's public key is fit to be
// certified, and parses enrolment CSRs. Smart cards have shipped broken key
// generators (ROCA, CVE-2017-15361, in Infineon chips used by national
// identity cards), so RSA keys get the checks Boulder's goodkey applies:
// size and exponent, small factors, ROCA and Fermat factorisation.
package keycheck

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"sync"

	"github.com/titanous/rocacheck"

	"github.com/nuskha/nuskha/internal/errs"
)

// MaxCSRSize bounds what ParseCSR reads; a CSR with a 4096-bit RSA key is
// under 2 KB.
const MaxCSRSize = 16 << 10

// ParseCSR accepts a PEM or DER PKCS#10 request and checks its signature,
// which proves the requester holds the private key. Everything else in the
// CSR (subject, extensions) is ignored by issuance: identity comes from the
// registry.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if len(data) == 0 {
		return nil, errs.FieldError(errs.BadCSR, "csr", "empty")
	}
	if len(data) > MaxCSRSize {
		return nil, errs.FieldError(errs.BadCSR, "csr", "larger than %d bytes", MaxCSRSize)
	}
	der := data
	if block, rest := pem.Decode(data); block != nil {
		if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
			return nil, errs.FieldError(errs.BadCSR, "csr", "PEM block is %q, want CERTIFICATE REQUEST", block.Type)
		}
		if len(trimSpace(rest)) > 0 {
			return nil, errs.FieldError(errs.BadCSR, "csr", "more than one PEM block")
		}
		der = block.Bytes
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, &errs.Error{Code: errs.BadCSR, Field: "csr", Detail: "not a PKCS#10 certificate request", Err: err}
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, &errs.Error{Code: errs.BadCSR, Field: "csr", Detail: "the CSR's signature does not verify (no proof of possession of the key)", Err: err}
	}
	return csr, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

// Type names a key: EC-P256, EC-P384, RSA-2048, RSA-3072 or RSA-4096. These
// are the keys our signature formats (ES256, ES384, PS256) and smart cards
// support.
func Type(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "EC-P256", nil
		case elliptic.P384():
			return "EC-P384", nil
		}
		return "", errs.New(errs.WrongKeyType, "elliptic curve %s is not accepted (use P-256 or P-384)", k.Curve.Params().Name)
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 2048, 3072, 4096:
			return "RSA-" + itoa(k.N.BitLen()), nil
		}
		if k.N.BitLen() < 2048 {
			return "", errs.New(errs.WeakKey, "RSA key of %d bits is too small (at least 2048)", k.N.BitLen())
		}
		return "", errs.New(errs.WrongKeyType, "RSA key of %d bits is not accepted (2048, 3072 or 4096)", k.N.BitLen())
	}
	return "", errs.New(errs.WrongKeyType, "key type %T is not accepted (EC P-256/P-384 or RSA)", pub)
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }

// Check returns the key's type if the key is safe to certify.
func Check(pub crypto.PublicKey) (string, error) {
	t, err := Type(pub)
	if err != nil {
		return "", err
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		// A parsed key is already a point on its curve, and the identity
		// cannot be encoded; a key built some other way is held to the
		// same (Bytes refuses anything but a valid point).
		if _, err := k.Bytes(); err != nil {
			return "", errs.New(errs.WeakKey, "EC public key is not a valid point on its curve")
		}
	case *rsa.PublicKey:
		if err := checkRSA(k); err != nil {
			return "", err
		}
	}
	return t, nil
}

func checkRSA(k *rsa.PublicKey) error {
	if k.E != 65537 {
		return errs.New(errs.WeakKey, "RSA public exponent must be 65537")
	}
	if k.N.Bit(0) == 0 {
		return errs.New(errs.WeakKey, "RSA modulus is even")
	}
	if g := new(big.Int).GCD(nil, nil, k.N, smallPrimesProduct()); g.Cmp(big.NewInt(1)) != 0 {
		return errs.New(errs.WeakKey, "RSA modulus has a small prime factor")
	}
	if rocacheck.IsWeak(k) {
		return errs.New(errs.WeakKey, "RSA key is vulnerable to ROCA (CVE-2017-15361): the token's key generator is broken")
	}
	if fermatFactorable(k.N, 100) {
		return errs.New(errs.WeakKey, "RSA modulus factors by Fermat's method: its primes are too close")
	}
	return nil
}

var (
	smallPrimesOnce sync.Once
	smallPrimesProd *big.Int
)

// smallPrimesProduct is the product of the primes below 1000.
func smallPrimesProduct() *big.Int {
	smallPrimesOnce.Do(func() {
		smallPrimesProd = big.NewInt(1)
		for p := int64(2); p < 1000; p++ {
			if big.NewInt(p).ProbablyPrime(0) {
				smallPrimesProd.Mul(smallPrimesProd, big.NewInt(p))
			}
		}
	})
	return smallPrimesProd
}

// fermatFactorable tries Fermat's method for rounds steps from ⌈√n⌉: it
// finds n = a² − b² quickly when n's two primes are close, as some broken
// generators make them.
func fermatFactorable(n *big.Int, rounds int) bool {
	a := new(big.Int).Sqrt(n)
	if new(big.Int).Mul(a, a).Cmp(n) < 0 {
		a.Add(a, big.NewInt(1))
	}
	b2 := new(big.Int)
	b := new(big.Int)
	one := big.NewInt(1)
	for i := 0; i < rounds; i++ {
		b2.Mul(a, a)
		b2.Sub(b2, n)
		b.Sqrt(b2)
		if new(big.Int).Mul(b, b).Cmp(b2) == 0 {
			// n = (a-b)(a+b); a trivial factorisation (a-b == 1) is impossible for an odd semiprime with primes > 2.
			return new(big.Int).Sub(a, b).Cmp(one) > 0
		}
		a.Add(a, one)
	}
	return false
}
