package nationalid

import (
	"errors"
	"strings"
	"testing"

	"github.com/nuskha/nuskha/internal/errs"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		ok             bool
	}{
		{"valid ascii", "0499370899", "0499370899", true},
		// 0*10+0*9+1*8+0*7+3*6+5*5+0*4+8*3+2*2 = 79, 79 mod 11 = 2, check 11-2 = 9.
		{"valid, check digit 11-r", "0010350829", "0010350829", true},
		{"persian digits", "۰۴۹۹۳۷۰۸۹۹", "0499370899", true},
		{"arabic-indic digits", "٠٤٩٩٣٧٠٨٩٩", "0499370899", true},
		{"printed with dashes", "049-937089-9", "0499370899", true},
		{"leading zero lost by a spreadsheet", "499370899", "0499370899", true},
		{"wrong check digit", "0499370898", "", false},
		{"repeated digit passes checksum but is refused", "1111111111", "", false},
		{"too short", "1234567", "", false},
		{"too long", "04993708991", "", false},
		{"letters", "04993708a9", "", false},
		{"empty", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if tc.ok {
				if err != nil || got != tc.want {
					t.Fatalf("Parse(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse(%q) = %q, want error", tc.in, got)
			}
			if !errors.Is(err, errs.Of(errs.InvalidNID)) {
				t.Fatalf("error %v does not carry code %s", err, errs.InvalidNID)
			}
			if len(tc.in) >= 4 && strings.Contains(err.Error(), tc.in) {
				t.Fatalf("error message repeats the id: %v", err)
			}
		})
	}
}

func TestCheckDigitAgreesWithParse(t *testing.T) {
	for _, first9 := range []string{"049937089", "001035082", "123456789", "987654321", "000000010"} {
		c, err := CheckDigit(first9)
		if err != nil {
			t.Fatal(err)
		}
		if !Valid(first9 + string(c)) {
			t.Fatalf("CheckDigit(%s) = %c but Parse refuses it", first9, c)
		}
		// Every other digit must be refused.
		for d := byte('0'); d <= '9'; d++ {
			if d != c && Valid(first9+string(d)) {
				t.Fatalf("%s%c accepted, check digit is %c", first9, d, c)
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"0499370899", "۰۴۹۹۳۷۰۸۹۹", "049-937089-9", "", "1111111111", "\u200c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err != nil {
			return
		}
		// Invariants of an accepted id: canonical, ten ASCII digits, stable.
		if len(n) != 10 || strings.Trim(n, "0123456789") != "" {
			t.Fatalf("Parse(%q) = %q is not 10 ASCII digits", s, n)
		}
		again, err := Parse(n)
		if err != nil || again != n {
			t.Fatalf("Parse is not idempotent on %q: %q, %v", n, again, err)
		}
	})
}

func FuzzNormalizeIsIdempotent(f *testing.F) {
	for _, s := range []string{"-\r0", " 049-937089-9 ", "۰۴۹۹۳۷۰۸۹۹", "12345678", "\u200c1-2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		once := Normalize(s)
		if twice := Normalize(once); twice != once {
			t.Fatalf("Normalize(%q) = %q, then %q", s, once, twice)
		}
	})
}
