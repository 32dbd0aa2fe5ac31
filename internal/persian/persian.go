// Package persian normalises the Persian text and digits that users type on
// every kind of keyboard, so that the same name or number always has the same
// bytes: in the registry, in certificates and in signed prescriptions.
package persian

import (
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// Digits replaces Persian (U+06F0–U+06F9) and Arabic-Indic (U+0660–U+0669)
// digits with ASCII digits and leaves everything else alone.
func Digits(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= '\u06F0' && r <= '\u06F9':
			return '0' + (r - '\u06F0')
		case r >= '\u0660' && r <= '\u0669':
			return '0' + (r - '\u0660')
		}
		return r
	}, s)
}

// Text normalises Persian text: Arabic yeh and kaf (ي ك, common from Arabic
// keyboard layouts) become Persian ی and ک, alef maksura becomes ی, the text
// is put in Unicode NFC, runs of white space collapse to one space and the
// ends are trimmed. The zero-width non-joiner (U+200C, نیم‌فاصله) is kept: it
// is part of correct Persian spelling. Digits are left as they are, since a
// name may legitimately show them; use Digits for numbers.
func Text(s string) string {
	s = norm.NFC.String(s)
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		switch r {
		case '\u064A', '\u0649': // Arabic yeh, alef maksura
			r = '\u06CC'
		case '\u0643': // Arabic kaf
			r = '\u06A9'
		case '\u200C':
			// ZWNJ next to a space is meaningless; drop it there.
			if space || b.Len() == 0 {
				continue
			}
		}
		if unicode.IsSpace(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return strings.TrimSuffix(b.String(), "\u200C")
}
