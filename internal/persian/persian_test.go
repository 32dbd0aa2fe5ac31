package persian

import (
	"fmt"
	"testing"

	"golang.org/x/text/unicode/norm"
)

func TestText(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"arabic yeh and kaf become persian", "علي كريمي", "علی کریمی"},
		{"alef maksura", "مصطفى", "مصطفی"},
		{"zwnj kept inside a word", "می\u200cخواهم", "می\u200cخواهم"},
		{"zwnj dropped next to a space", "علی \u200cرضا\u200c", "علی رضا"},
		{"zwnj before a space and repeated", "می\u200c\u200cخواهم\u200c رفت", "می\u200cخواهم رفت"},
		{"spaces collapse", "  دکتر   سارا\tاحمدی  ", "دکتر سارا احمدی"},
		{"latin untouched", "Dr. Sara Ahmadi", "Dr. Sara Ahmadi"},
		{"digits untouched", "داروخانه ۱۲", "داروخانه ۱۲"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Text(tc.in); got != tc.want {
				t.Fatalf("Text(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if Text(Text(tc.in)) != Text(tc.in) {
				t.Fatal("Text is not idempotent")
			}
		})
	}
}

func TestDigits(t *testing.T) {
	if got := Digits("۱۲۳٤٥٦abc789"); got != "123456abc789" {
		t.Fatalf("Digits = %q", got)
	}
}

// isText is a shortcut of Text: it must never call a string normal that
// Text would change.
func FuzzIsText(f *testing.F) {
	for _, s := range []string{"علی رضایی", "علي", " a", "a  b", "می\u200cخواهم", "a\u200c b", "e\u0301", "\t", "", "\u0627\u0653", "آب"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if isText(s) && Text(s) != s {
			t.Fatalf("isText(%q) but Text gives %q", s, Text(s))
		}
		// Text's output is normal, and recognised as such.
		if n := Text(s); !isText(n) || Text(n) != n {
			t.Fatalf("Text(%q) = %q is not stable", s, n)
		}
	})
}

// TestNFCStableRunes holds nfcStable to Unicode's own tables: each rune is
// NFC on its own and composes with nothing before it, so any string made
// only of them is NFC.
func TestNFCStableRunes(t *testing.T) {
	n := 0
	for r := rune(0); r <= 0xFFFF; r++ {
		if !nfcStable(r) {
			continue
		}
		n++
		s := string(r)
		p := norm.NFC.PropertiesString(s)
		if !norm.NFC.IsNormalString(s) || p.CCC() != 0 || !p.BoundaryBefore() {
			t.Errorf("U+%04X is not NFC-stable (ccc %d, boundary before %v)", r, p.CCC(), p.BoundaryBefore())
		}
	}
	if n < 128+100 {
		t.Fatalf("only %d stable runes: the fast path would rarely apply", n)
	}
	// The letter and a combining maddah compose: not the fast path.
	if isText("\u0627\u0653") {
		t.Fatal("alef + combining maddah taken as NFC")
	}
}

func TestHiddenRune(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{ // want: the rune found, or "" for none
		{"right-to-left override", "Dr Ali\u202Eirahk", "U+202E"},
		{"left-to-right isolate", "\u2066علی\u2069", "U+2066"},
		{"right-to-left mark", "علی\u200F رضایی", "U+200F"},
		{"byte-order mark", "\uFEFFداروخانه", "U+FEFF"},
		{"soft hyphen", "Ahma\u00ADdi", "U+00AD"},
		{"zero-width joiner", "می\u200Dخواهم", "U+200D"},
		{"Arabic letter mark", "علی\u061C", "U+061C"},
		{"NUL", "Ali\x00", "U+0000"},
		{"bell", "Ali\a", "U+0007"},
		{"next line (C1 control)", "Ali\u0085", "U+0085"},
		{"private use", "Ali\uE000", "U+E000"},
		{"replacement character", "Ali\uFFFD", "U+FFFD"},
		{"not UTF-8", "Ali\xff", "U+FFFD"},
		{"zero-width non-joiner", "می\u200Cخواهم", ""},
		{"Persian name with ZWNJ", "زهرا محمدی\u200Cنیا", ""},
		{"Latin name", "Dr. Sara Ahmadi & Sons (Tehran)", ""},
		{"digits and tatweel", "داروخانه ۱۲ ـ شفا", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if r, found := HiddenRune(tc.in); found {
				got = fmt.Sprintf("%U", r)
			}
			if got != tc.want {
				t.Fatalf("HiddenRune(%q) found %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
