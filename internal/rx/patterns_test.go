package rx

import "testing"

var patternSeeds = []string{
	"", "0", "a", "A", "-", "IR-00", "IR-09", "IR-10", "IR-29", "IR-30", "IR-31", "IR-3", "ir-01",
	"0123456789", "012345678", "01234567890", "۰۱۲۳۴۵۶۷۸۹", "2024-01-31", "2024-1-31",
	"123e4567-e89b-42d3-a456-426614174000", "123e4567-e89b-92d3-a456-426614174000", "123E4567-e89b-42d3-a456-426614174000",
	"123e4567-e89b-42d3-c456-426614174000", "J45", "J45.9", "U07.1", "E11.65", "K0A", "K0C", "J45.", "J45.12345", "J45.U",
	"cardiology", "Cardiology", "x.y_z-1", "ABC/12.3", "/x", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeF",
	"J45\n", "0123456789\n",
	"0123456789A", "ABCDEFGHJKM", "ABCDEFGHIJK", "abcdefghjkm", "0123456789U", "0123456789AB", "NPQRSTVWXYZ",
	"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU", "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFV", "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuF",
	"47DEQpj8HBSa+/TImW-5JCeuQeRkm5NMpJWZG3hSuFU", "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=",
}

func TestPatternsAgreeWithRegexps(t *testing.T) {
	for _, p := range patterns {
		for _, s := range patternSeeds {
			if got, want := p.MatchString(s), p.re.MatchString(s); got != want {
				t.Errorf("%s: %q matched %v, the regexp says %v", p, s, got, want)
			}
		}
	}
}

func FuzzPatternsAgreeWithRegexps(f *testing.F) {
	for _, s := range patternSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range patterns {
			if got, want := p.MatchString(s), p.re.MatchString(s); got != want {
				t.Fatalf("%s: %q matched %v, the regexp says %v", p, s, got, want)
			}
		}
	})
}
