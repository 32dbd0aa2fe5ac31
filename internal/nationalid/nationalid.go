// Package nationalid checks Iranian national identification numbers (کد ملی):
// ten digits whose last is a check digit over the first nine.
package nationalid

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/persian"
)

// Normalize converts Persian and Arabic-Indic digits to ASCII, drops the
// dashes and white space of the printed form (xxx-xxxxxx-x), and restores
// the leading zeros that spreadsheets strip from 8- and 9-digit inputs.
// Normalizing twice changes nothing more.
func Normalize(s string) string {
	s = persian.Digits(s)
	s = strings.Map(func(r rune) rune {
		if r == '-' || r == '\u200C' || unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
	if len(s) == 8 || len(s) == 9 {
		s = strings.Repeat("0", 10-len(s)) + s
	}
	return s
}

// Parse normalises s and checks it, returning the canonical 10-digit form.
// Failures are *errs.Error with code errs.InvalidNID; the detail never repeats
// the number, so that it is safe to log.
func Parse(s string) (string, error) {
	n := Normalize(s)
	if len(n) != 10 {
		return "", errs.New(errs.InvalidNID, "a national id has 10 digits, got %d characters", len([]rune(n)))
	}
	for _, r := range n {
		if r < '0' || r > '9' {
			return "", errs.New(errs.InvalidNID, "a national id has only digits")
		}
	}
	if strings.Count(n, n[:1]) == 10 {
		return "", errs.New(errs.InvalidNID, "a national id cannot be one digit repeated")
	}
	if !checkDigitOK(n) {
		return "", errs.New(errs.InvalidNID, "check digit does not match")
	}
	return n, nil
}

// Valid reports whether s is a well-formed national id.
func Valid(s string) bool {
	_, err := Parse(s)
	return err == nil
}

// checkDigitOK applies the official algorithm: weight the first nine digits
// 10..2, r = sum mod 11; the check digit is r when r < 2, else 11 - r.
func checkDigitOK(n string) bool {
	sum := 0
	for i := 0; i < 9; i++ {
		sum += int(n[i]-'0') * (10 - i)
	}
	r := sum % 11
	want := r
	if r >= 2 {
		want = 11 - r
	}
	return int(n[9]-'0') == want
}

// CheckDigit computes the check digit for nine leading digits; generators of
// test data use it.
func CheckDigit(first9 string) (byte, error) {
	if len(first9) != 9 {
		return 0, fmt.Errorf("nationalid: need 9 digits, got %d", len(first9))
	}
	sum := 0
	for i := 0; i < 9; i++ {
		c := first9[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("nationalid: not a digit at %d", i)
		}
		sum += int(c-'0') * (10 - i)
	}
	r := sum % 11
	if r < 2 {
		return byte('0' + r), nil
	}
	return byte('0' + 11 - r), nil
}

// Mask shows only the last two digits, for the rare screen that must hint
// at whose record it is (never logs: those get no digits at all).
func Mask(n string) string {
	if len(n) < 2 {
		return "**********"
	}
	return strings.Repeat("*", len(n)-2) + n[len(n)-2:]
}
