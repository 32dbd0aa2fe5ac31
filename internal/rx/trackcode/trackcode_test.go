package trackcode_test

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/rx/trackcode"
)

// fromBits makes the code of 50 bits: ten symbols and their check symbol.
func fromBits(n uint64) string {
	var body [trackcode.Len - 1]byte
	for i := range body {
		body[i] = trackcode.Alphabet[n&31]
		n >>= 5
	}
	return string(body[:]) + string(trackcode.CheckSymbol(string(body[:])))
}

func refused(t *testing.T, s string) {
	t.Helper()
	_, err := trackcode.Parse(s)
	var e *errs.Error
	if !errors.As(err, &e) || e.Code != errs.Invalid || e.Field != trackcode.Field {
		t.Fatalf("Parse(%q) = %v, want invalid-field on %s", s, err, trackcode.Field)
	}
}

func TestNewIsCanonicalAndRandom(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		c := trackcode.New()
		if !trackcode.Valid(c) {
			t.Fatalf("New() = %q is not a valid code", c)
		}
		if got, err := trackcode.Parse(trackcode.Format(c)); err != nil || got != c {
			t.Fatalf("Parse(Format(%q)) = %q, %v", c, got, err)
		}
		if seen[c] {
			t.Fatalf("New() drew %q twice in 1000 draws of 2^50", c)
		}
		seen[c] = true
	}
	// Every symbol turns up in every random position.
	for i := range trackcode.Len - 1 {
		used := map[byte]bool{}
		for c := range seen {
			used[c[i]] = true
		}
		if len(used) != 32 {
			t.Fatalf("position %d drew %d of the 32 symbols in 1000 codes", i, len(used))
		}
	}
}

func TestFormat(t *testing.T) {
	c := fromBits(0x0123456789ab)
	f := trackcode.Format(c)
	if len(f) != 13 || f[5] != '-' || f[11] != '-' || strings.ReplaceAll(f, "-", "") != c {
		t.Fatalf("Format(%q) = %q, want XXXXX-XXXXX-C", c, f)
	}
}

func TestParseReadsWhatPeopleType(t *testing.T) {
	c := fromBits(0x3fedcba98765) // has digits and letters
	f := trackcode.Format(c)
	persianDigits := strings.NewReplacer("0", "۰", "1", "۱", "2", "۲", "3", "۳", "4", "۴", "5", "۵", "6", "۶", "7", "۷", "8", "۸", "9", "۹")
	arabicDigits := strings.NewReplacer("0", "٠", "1", "١", "2", "٢", "3", "٣", "4", "٤", "5", "٥", "6", "٦", "7", "٧", "8", "٨", "9", "٩")
	for name, s := range map[string]string{
		"canonical":           c,
		"formatted":           f,
		"lower case":          strings.ToLower(f),
		"spaces":              " " + c[:3] + " " + c[3:7] + "\t" + c[7:] + " ",
		"hyphens anywhere":    "-" + c[:2] + "--" + c[2:] + "-",
		"Persian digits":      persianDigits.Replace(f),
		"Arabic-Indic digits": arabicDigits.Replace(f),
	} {
		if got, err := trackcode.Parse(s); err != nil || got != c {
			t.Errorf("%s: Parse(%q) = %q, %v; want %q", name, s, got, err, c)
		}
	}
	// I and L are read as 1, O as 0 (Crockford).
	one := fromBits(1) // 1000000000 + check
	if one[0] != '1' {
		t.Fatalf("fromBits(1) = %q", one)
	}
	for _, s := range []string{"I" + one[1:], "l" + one[1:], "L" + one[1:], "i" + one[1:]} {
		if got, err := trackcode.Parse(s); err != nil || got != one {
			t.Errorf("Parse(%q) = %q, %v; want %q", s, got, err, one)
		}
	}
	zero := fromBits(0)
	for _, s := range []string{"O" + zero[1:], "o" + zero[1:] + "", strings.Repeat("O", 10) + zero[10:]} {
		if got, err := trackcode.Parse(s); err != nil || got != zero {
			t.Errorf("Parse(%q) = %q, %v; want %q", s, got, err, zero)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	c := fromBits(0x2a5a5a5a5a5)
	wrongCheck := c[:10] + string(trackcode.Alphabet[(strings.IndexByte(trackcode.Alphabet, c[10])+1)%32])
	for name, s := range map[string]string{
		"empty":                  "",
		"only separators":        " - - ",
		"ten symbols":            c[:10],
		"twelve symbols":         c + "0",
		"wrong check symbol":     wrongCheck,
		"U":                      "U" + c[1:],
		"Crockford's check *":    c[:10] + "*",
		"other punctuation":      c[:5] + "." + c[5:],
		"a Persian letter":       "ب" + c[1:],
		"a fullwidth digit":      "１" + c[1:],
		"a NUL":                  c[:5] + "\x00" + c[5:],
		"invalid UTF-8":          c[:5] + "\xff" + c[5:],
		"very long":              strings.Repeat("-", 1000) + c,
		"a ZWNJ is no separator": c[:5] + "\u200c" + c[5:],
	} {
		t.Run(name, func(t *testing.T) { refused(t, s) })
	}
}

// The input is a secret's half: refusals never repeat it.
func TestRefusalsDoNotQuoteTheCode(t *testing.T) {
	c := fromBits(0x155555555555)
	_, err := trackcode.Parse(c[:10] + string(trackcode.Alphabet[(strings.IndexByte(trackcode.Alphabet, c[10])+7)%32]))
	if err == nil || strings.Contains(err.Error(), c[:10]) {
		t.Fatalf("refusal %v", err)
	}
}

// samples are codes spread over the space, the extremes included.
func samples() []string {
	out := []string{fromBits(0), fromBits(1<<50 - 1)}
	x := uint64(0x9e3779b97f4a7c15)
	for range 2000 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		out = append(out, fromBits(x&(1<<50-1)))
	}
	return out
}

// Every single substitution, at every position (the check symbol's
// included), by every other symbol, is refused.
func TestEverySubstitutionIsDetected(t *testing.T) {
	n := 0
	for _, c := range samples() {
		for i := range trackcode.Len {
			for j := range 32 {
				if trackcode.Alphabet[j] == c[i] {
					continue
				}
				bad := c[:i] + string(trackcode.Alphabet[j]) + c[i+1:]
				if _, err := trackcode.Parse(bad); err == nil {
					t.Fatalf("%q → %q (position %d) passes the check", c, bad, i)
				}
				n++
			}
		}
	}
	if n != len(samples())*trackcode.Len*31 {
		t.Fatalf("checked %d substitutions", n)
	}
}

// Adjacent transpositions: exhaustively, every pair of distinct symbols at
// every pair of neighbouring data positions (the code is linear, so the
// rest of the code does not matter: the zero code is the base), and on
// the samples every transposition, the check symbol's with its neighbour
// included. The share detected is 1.
func TestEveryAdjacentTranspositionIsDetected(t *testing.T) {
	var total, detected int
	try := func(c string, i int) {
		if c[i] == c[i+1] {
			return
		}
		total++
		swapped := c[:i] + string(c[i+1]) + string(c[i]) + c[i+2:]
		if _, err := trackcode.Parse(swapped); err != nil {
			detected++
		} else {
			t.Errorf("%q → %q (positions %d, %d) passes the check", c, swapped, i, i+1)
		}
	}
	zero := strings.Repeat("0", trackcode.Len-1)
	for i := 0; i+1 < trackcode.Len-1; i++ {
		for x := range 32 {
			for y := range 32 {
				body := zero[:i] + string(trackcode.Alphabet[x]) + string(trackcode.Alphabet[y]) + zero[i+2:]
				try(body+string(trackcode.CheckSymbol(body)), i)
			}
		}
	}
	for x := range 32 { // the last data symbol and the check symbol
		body := zero[:trackcode.Len-2] + string(trackcode.Alphabet[x])
		try(body+string(trackcode.CheckSymbol(body)), trackcode.Len-2)
	}
	for _, c := range samples() {
		for i := 0; i+1 < trackcode.Len; i++ {
			try(c, i)
		}
	}
	t.Logf("adjacent transpositions detected: %d of %d (%.4f)", detected, total, float64(detected)/float64(total))
	if total < 9*32*31 || detected != total {
		t.Fatalf("detected %d of %d adjacent transpositions", detected, total)
	}
}

// A random string of 11 symbols passes the check one time in 32.
func TestCheckRejectsMostRandomStrings(t *testing.T) {
	var b [8]byte
	pass := 0
	const n = 32 * 4000
	for k := range n {
		binary.LittleEndian.PutUint64(b[:], uint64(k)*0x9e3779b97f4a7c15)
		x := binary.LittleEndian.Uint64(b[:])
		var s [trackcode.Len]byte
		for i := range s {
			s[i] = trackcode.Alphabet[x&31]
			x >>= 5
		}
		if trackcode.Valid(string(s[:])) {
			pass++
		}
	}
	if pass < n/32*9/10 || pass > n/32*11/10 {
		t.Fatalf("%d of %d random strings pass; want about 1/32", pass, n)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"", fromBits(0), trackcode.Format(fromBits(12345)), "iloU", "۱۲۳۴۵-ABCDE-0", "\xff", strings.Repeat("-", 70)} {
		f.Add(s, uint64(0))
	}
	f.Fuzz(func(t *testing.T, s string, bits uint64) {
		c := fromBits(bits & (1<<50 - 1))
		if got, err := trackcode.Parse(trackcode.Format(c)); err != nil || got != c {
			t.Fatalf("Parse(Format(%q)) = %q, %v", c, got, err)
		}
		got, err := trackcode.Parse(s)
		if err != nil {
			var e *errs.Error
			if !errors.As(err, &e) || e.Code != errs.Invalid || e.Field != trackcode.Field {
				t.Fatalf("Parse(%q): untyped refusal %v", s, err)
			}
			return
		}
		// What is accepted is a canonical, valid code that reads as itself.
		if !trackcode.Valid(got) {
			t.Fatalf("Parse(%q) = %q, not a valid canonical code", s, got)
		}
		if again, err := trackcode.Parse(got); err != nil || again != got {
			t.Fatalf("Parse(%q) = %q, %v", got, again, err)
		}
	})
}
