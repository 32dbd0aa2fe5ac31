package rx_test

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"

	"github.com/nuskha/nuskha/internal/rx"
)

// BenchmarkVerify is the whole verification of a signed prescription with
// the chain cached and revocation answered from a CRL; BenchmarkBareECDSA
// is the bare signature check of the same JWS: SHA-256 of its signing
// input and crypto/ecdsa.Verify. The target: Verify costs at most 1.3
// times the bare check.
func BenchmarkVerify(b *testing.B) {
	f := setup(b)
	tok := f.sign(b, f.prescription())
	if _, err := f.v.Verify(ctx, tok, rx.KindPrescription); err != nil { // warms the chain cache
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.v.Verify(ctx, tok, rx.KindPrescription); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
}

func BenchmarkBareECDSA(b *testing.B) {
	f := setup(b)
	tok := f.sign(b, f.prescription())
	i := strings.LastIndexByte(tok, '.')
	input := []byte(tok[:i])
	sig, _ := base64.RawURLEncoding.DecodeString(tok[i+1:])
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	pub := f.chain[0].PublicKey.(*ecdsa.PublicKey)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		digest := sha256.Sum256(input)
		if !ecdsa.Verify(pub, digest[:], r, s) {
			b.Fatal("does not verify")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
}

// BenchmarkSignAck is what the exchange spends signing one prescription's
// acknowledgement with its key in memory (rxd's -exchange-key softkey:):
// the document's checks, the signer's own checks, the signature.
func BenchmarkSignAck(b *testing.B) {
	f := setupExchange(b)
	ref := rx.Reference{ID: rx.NewID(), JWSSHA256: rx.SHA256("x")}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.v.Sign(ctx, f.ack(ref), f.exchange.key, f.exchange.chain, f.now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "acks/s")
}
