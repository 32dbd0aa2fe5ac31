package pki

import (
	"math/big"
	"strings"
	"testing"
)

func TestSerialHex(t *testing.T) {
	twenty := new(big.Int).SetBytes(make([]byte, 20))
	twenty.SetBit(twenty, 159, 1)
	for _, n := range []*big.Int{big.NewInt(1), big.NewInt(0x0badc0de), twenty} {
		s := SerialHex(n)
		got, ok := ParseSerialHex(s)
		if !ok || got.Cmp(n) != 0 {
			t.Errorf("ParseSerialHex(SerialHex(%v)) = %v, %v", n, got, ok)
		}
	}
	for name, s := range map[string]string{
		"empty":       "",
		"not hex":     "0xzz",
		"odd length":  "abc",
		"21 octets":   strings.Repeat("01", 21),
		"with spaces": "ab cd",
	} {
		if _, ok := ParseSerialHex(s); ok {
			t.Errorf("%s: ParseSerialHex(%q) accepted", name, s)
		}
	}
}
