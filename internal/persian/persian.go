// Package persian normalises the Persian text and digits that users type on
// every kind of keyboard, so that the same name or number always has the same
// bytes: in the registry, in certificates and in signed prescriptions.
package persian

import (
	"strings"
	"unicode"
	"unicode/utf8"

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
// ends are trimmed. The zero-width non-joiner (U+200C, نیم‌فاصله) is kept
// between letters — it is part of correct Persian spelling — and dropped
// where it joins nothing (next to a space, at the ends, repeated). Digits are left as they are, since a
// name may legitimately show them; use Digits for numbers.
func Text(s string) string {
	if isText(s) {
		return s // already normal: the common case, and no allocation
	}
	s = norm.NFC.String(s)
	var b strings.Builder
	b.Grow(len(s))
	space, zwnj := false, false
	for _, r := range s {
		switch r {
		case '\u064A', '\u0649': // Arabic yeh, alef maksura
			r = '\u06CC'
		case '\u0643': // Arabic kaf
			r = '\u06A9'
		case '\u200C':
			// A ZWNJ joins nothing next to a space or at either end, and
			// one is as good as several: keep it only between letters.
			zwnj = !space && b.Len() > 0
			continue
		}
		if unicode.IsSpace(r) {
			space, zwnj = true, false
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		if zwnj {
			b.WriteRune('\u200C')
		}
		space, zwnj = false, false
		b.WriteRune(r)
	}
	return b.String()
}

// isText reports whether Text(s) == s, cheaply.
func isText(s string) bool {
	if s == "" {
		return true
	}
	prevSpace, prevZWNJ := true, false // nothing may start with a space or ZWNJ
	stable := true                     // every rune so far is NFC whatever surrounds it
	for _, r := range s {
		if stable && !nfcStable(r) {
			stable = false
		}
		switch {
		case r == '\u064A' || r == '\u0649' || r == '\u0643':
			return false
		case r == ' ':
			if prevSpace || prevZWNJ {
				return false
			}
			prevSpace = true
			continue
		case r == '\u200C':
			if prevSpace || prevZWNJ {
				return false
			}
			prevZWNJ = true
			continue
		case unicode.IsSpace(r):
			return false
		}
		prevSpace, prevZWNJ = false, false
	}
	last, _ := utf8.DecodeLastRuneInString(s)
	if last == ' ' || last == '\u200C' {
		return false
	}
	return stable || norm.NFC.IsNormalString(s)
}

// nfcStable reports runes that are NFC_Quick_Check=Yes with canonical
// combining class 0: a string made only of them is in NFC, so the common
// case (ASCII, Persian letters and digits, ZWNJ) needs no normalisation
// pass. Arabic harakat and the combining maddah/hamza (U+064B–U+065F) are
// deliberately outside the ranges: they may compose with the letter before.
func nfcStable(r rune) bool {
	switch {
	case r < 0x80,
		r >= 0x0621 && r <= 0x064A, // Arabic letters and tatweel
		r >= 0x0660 && r <= 0x0669, // Arabic-Indic digits
		r >= 0x067E && r <= 0x06BF, // Persian and other letters; none decomposes
		r == 0x06CC,
		r >= 0x06F0 && r <= 0x06F9,            // Persian digits
		r == 0x060C, r == 0x061B, r == 0x061F, // Arabic comma, semicolon, question mark
		r == 0x200C, r == 0x200D:
		return true
	}
	return false
}

// HiddenRune returns the first rune of s that can hide or disguise what the
// text says, and true; or false if there is none. Names go into
// certificates and onto officers' and pharmacists' screens, where
// "Dr Ali\u202Eirahk" shows as another name: refused are control
// characters (Cc), format characters (Cf: bidirectional embeddings,
// overrides, isolates and marks, the zero-width joiner, the byte-order mark,
// the soft hyphen…), private-use characters (Co, which show as whatever a
// font makes of them), and U+FFFD or bytes that are not UTF-8 (text garbled
// on its way here). The zero-width non-joiner (U+200C) is the one format
// character allowed: Persian spelling needs it (می‌خواهم).
func HiddenRune(s string) (rune, bool) {
	for _, r := range s {
		// range yields utf8.RuneError for a byte that is not UTF-8.
		if r != '\u200C' && (r == utf8.RuneError || unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co)) {
			return r, true
		}
	}
	return 0, false
}
