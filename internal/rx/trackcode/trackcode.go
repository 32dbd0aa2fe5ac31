// Package trackcode makes, prints and reads the exchange's tracking codes:
// what a patient takes from the practitioner to the pharmacy, and what
// vendors' software and pharmacists read out and type.
//
// A code is 10 random symbols of Crockford's base32 alphabet (0-9 and A-Z
// without I, L, O and U: 32 symbols, 5 bits each, 50 bits) and a check
// symbol from the same alphabet, printed XXXXX-XXXXX-C. Its canonical form,
// the one stored and signed (acknowledgements, receipts), is the 11
// symbols without separators.
//
// # Guessing
//
// There are 2^50 ≈ 1.1·10^15 codes. A caller at the exchange's default 20
// lookups a second and 20,000 a day, against 10^7 live prescriptions,
// finds a live code with probability 20,000 · 10^7 / 1.1·10^15 ≈ 2·10^-4 a
// day, and then needs the patient's national id too (a lookup takes both);
// knowing the id, a guess succeeds with probability (live prescriptions of
// that patient) / 1.1·10^15. The check symbol adds nothing against a
// guesser, who computes it, but it rejects 31/32 of random or mistyped
// strings before any lookup, so typing errors cost neither a database
// query nor a lookup from the caller's quota.
//
// # The check symbol
//
// Crockford's own check symbol is a mod-37 remainder that needs five extra
// symbols (* ~ $ = U); pharmacists cannot type those on a Persian keyboard
// and U is easily read as V. So the check symbol here is from the same 32
// symbols, by the Damm construction over the field GF(32): each symbol is
// an element of GF(2^5) (its index in the alphabet as a 5-bit vector),
// x∘y = a·x + y with a the primitive element (the polynomial x^5 + x^2 + 1),
// and the check symbol makes the running value over all 11 symbols zero.
// Equivalently, Σ a^(10-i)·s_i = 0: a linear code whose 11 weights a^10 …
// a^0 are distinct and non-zero (a has order 31). Hence every error that
// changes one symbol, and every error that adds the same non-zero value e
// at two positions i ≠ j (e·(a^i + a^j) ≠ 0), is detected: every single
// substitution, every adjacent transposition (xy → yx: e = x+y at
// neighbouring positions), every jump transposition (xzy → yzx) and every
// twin error (xx → yy) — the check symbol's own position included. The
// tests check the first two exhaustively. ISO/IEC 7064 standardises hybrid
// systems for 10, 26 and 36 symbols, none for 32; this construction's
// guarantees follow from the two lines above, and the tests measure them.
package trackcode

import (
	"crypto/rand"
	"encoding/binary"
	"strings"
	"unicode"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/persian"
)

// Alphabet is Crockford's base32, in the order of the symbols' values.
const Alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// Len is the length of a code in canonical form: 10 random symbols and the
// check symbol.
const Len = 11

// Field is the name Parse's errors give the code (errs.Error.Field).
const Field = "tracking_code"

// maxInput bounds what Parse reads: a code with a separator between every
// two symbols and spaces around is far shorter.
const maxInput = 64

// value is each byte's symbol value, or -1.
var value = func() (v [256]int8) {
	for i := range v {
		v[i] = -1
	}
	for i := 0; i < len(Alphabet); i++ {
		v[Alphabet[i]] = int8(i)
	}
	return v
}()

// mulA multiplies by a, the primitive element, in GF(2^5) modulo
// x^5 + x^2 + 1.
func mulA(v byte) byte {
	v <<= 1
	if v&0x20 != 0 {
		v ^= 0x25
	}
	return v
}

// sum is the Damm running value over symbols (all in the alphabet).
func sum(symbols string) byte {
	var acc byte
	for i := 0; i < len(symbols); i++ {
		acc = mulA(acc) ^ byte(value[symbols[i]])
	}
	return acc
}

// CheckSymbol returns the check symbol of 10 symbols of the alphabet.
func CheckSymbol(body string) byte { return Alphabet[mulA(sum(body))] }

// New draws a code: 10 symbols (50 bits) from crypto/rand, and its check
// symbol, in canonical form.
func New() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	n := binary.BigEndian.Uint64(b[:])
	var code [Len]byte
	for i := 0; i < Len-1; i++ {
		code[i] = Alphabet[n&31]
		n >>= 5
	}
	code[Len-1] = CheckSymbol(string(code[:Len-1]))
	return string(code[:])
}

// Format prints a canonical code as XXXXX-XXXXX-C. Anything else is
// returned as it is.
func Format(code string) string {
	if len(code) != Len {
		return code
	}
	return code[:5] + "-" + code[5:10] + "-" + code[10:]
}

// Valid reports whether code is a code in canonical form with the right
// check symbol.
func Valid(code string) bool {
	if len(code) != Len {
		return false
	}
	for i := 0; i < len(code); i++ {
		if value[code[i]] < 0 {
			return false
		}
	}
	return sum(code) == 0
}

// Normalize returns the canonical form of s if it reads as a code
// (Parse), and s unchanged otherwise.
func Normalize(s string) string {
	if c, err := Parse(s); err == nil {
		return c
	}
	return s
}

// Parse reads a code as people type it and returns its canonical form:
// letters of either case, spaces and hyphens anywhere, I and L read as 1
// and O as 0 (Crockford's rule for the symbols left out), Persian and
// Arabic-Indic digits. A refusal is an *errs.Error (invalid-field, field
// tracking_code) that does not quote the input: with a national id, a code
// opens a prescription.
func Parse(s string) (string, error) {
	if len(s) > maxInput {
		return "", errs.FieldError(errs.Invalid, Field, "is too long: a tracking code has %d symbols", Len)
	}
	var b strings.Builder
	b.Grow(Len)
	for _, r := range persian.Digits(s) {
		switch {
		case r == '-' || unicode.IsSpace(r):
			continue
		case 'a' <= r && r <= 'z':
			r -= 'a' - 'A'
		}
		switch r {
		case 'I', 'L':
			r = '1'
		case 'O':
			r = '0'
		}
		if r >= 0x80 || value[r] < 0 {
			return "", errs.FieldError(errs.Invalid, Field, "%q is not a symbol of a tracking code (digits and letters but U)", r)
		}
		if b.Len() == Len {
			return "", errs.FieldError(errs.Invalid, Field, "has more than %d symbols", Len)
		}
		b.WriteRune(r)
	}
	code := b.String()
	if len(code) != Len {
		return "", errs.FieldError(errs.Invalid, Field, "has %d symbols, not %d", len(code), Len)
	}
	if sum(code) != 0 {
		return "", errs.FieldError(errs.Invalid, Field, "the check symbol does not match: a symbol is mistyped")
	}
	return code, nil
}
