package pki

import (
	"encoding/hex"
	"math/big"
)

// SerialHex renders a certificate serial as lower-case hex, the form used
// in URLs, logs, audit objects and holder revocation requests: trustd
// writes it and the clients and verifiers on either side read it.
func SerialHex(n *big.Int) string { return hex.EncodeToString(n.Bytes()) }

// ParseSerialHex parses the form SerialHex writes: 1 to 20 octets (RFC
// 5280, 4.1.2.2).
func ParseSerialHex(s string) (*big.Int, bool) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) == 0 || len(b) > 20 {
		return nil, false
	}
	return new(big.Int).SetBytes(b), true
}
