package rx

import (
	"regexp"
	"strings"
)

// pattern is one of the schema's string patterns: the regular expression
// is the published one (and what errors quote); match is the same language
// checked by hand, because the regexp engine cost more than everything
// else in a document's rules together. FuzzPatternsAgreeWithRegexps holds
// each pair to each other.
type pattern struct {
	re    *regexp.Regexp
	match func(string) bool
}

func (p pattern) MatchString(s string) bool { return p.match(s) }
func (p pattern) String() string            { return p.re.String() }

var (
	reUUID = pattern{regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`), func(s string) bool {
		if len(s) != 36 {
			return false
		}
		for i := 0; i < 36; i++ {
			c := s[i]
			switch i {
			case 8, 13, 18, 23:
				if c != '-' {
					return false
				}
			case 14:
				if c < '1' || c > '8' {
					return false
				}
			case 19:
				if c != '8' && c != '9' && c != 'a' && c != 'b' {
					return false
				}
			default:
				if !isLowerHex(c) {
					return false
				}
			}
		}
		return true
	}}
	reCode = pattern{regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,31}$`), func(s string) bool {
		if len(s) < 1 || len(s) > 32 || !isAlnum(s[0]) {
			return false
		}
		for i := 1; i < len(s); i++ {
			if c := s[i]; !isAlnum(c) && c != '.' && c != '_' && c != '/' && c != '-' {
				return false
			}
		}
		return true
	}}
	reSpecialty = pattern{regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,31}$`), func(s string) bool {
		if len(s) < 1 || len(s) > 32 || !isLowerAlnum(s[0]) {
			return false
		}
		for i := 1; i < len(s); i++ {
			if c := s[i]; !isLowerAlnum(c) && c != '.' && c != '_' && c != '-' {
				return false
			}
		}
		return true
	}}
	reNID = pattern{regexp.MustCompile(`^[0-9]{10}$`), func(s string) bool {
		return len(s) == 10 && allDigits(s)
	}}
	reDate = pattern{regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`), func(s string) bool {
		return len(s) == 10 && allDigits(s[:4]) && s[4] == '-' && allDigits(s[5:7]) && s[7] == '-' && allDigits(s[8:])
	}}
	reProvince = pattern{regexp.MustCompile(`^IR-(0[0-9]|[12][0-9]|30)$`), func(s string) bool {
		if len(s) != 5 || s[:3] != "IR-" || !allDigits(s[3:]) {
			return false
		}
		return s[3] <= '2' || s[3:] == "30"
	}}
	reSHA256 = pattern{regexp.MustCompile(`^[0-9a-f]{64}$`), func(s string) bool {
		if len(s) != 64 {
			return false
		}
		for i := 0; i < len(s); i++ {
			if !isLowerHex(s[i]) {
				return false
			}
		}
		return true
	}}
	reICD10 = pattern{regexp.MustCompile(`^[A-TV-Z][0-9][0-9AB](\.[0-9A-TV-Z]{1,4})?$`), func(s string) bool {
		if len(s) < 3 || !isICDLetter(s[0]) || !isDigit(s[1]) || !(isDigit(s[2]) || s[2] == 'A' || s[2] == 'B') {
			return false
		}
		if len(s) == 3 {
			return true
		}
		if s[3] != '.' || len(s) < 5 || len(s) > 8 {
			return false
		}
		for i := 4; i < len(s); i++ {
			if !isDigit(s[i]) && !isICDLetter(s[i]) {
				return false
			}
		}
		return true
	}}
)

var (
	// reTrackingCode is a tracking code in canonical form (trackcode):
	// 11 symbols of Crockford's base32; the check symbol is Check's.
	reTrackingCode = pattern{regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{11}$`), func(s string) bool {
		if len(s) != 11 {
			return false
		}
		for i := 0; i < len(s); i++ {
			if !isCrockford(s[i]) {
				return false
			}
		}
		return true
	}}
	// reThumbprint is an unpadded base64url SHA-256 (x5t#S256) in its one
	// spelling: 43 symbols, the last carrying 4 bits and two zero bits.
	reThumbprint = pattern{regexp.MustCompile(`^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$`), func(s string) bool {
		if len(s) != 43 {
			return false
		}
		for i := 0; i < 42; i++ {
			if c := s[i]; !isAlnum(c) && c != '_' && c != '-' {
				return false
			}
		}
		return strings.IndexByte("AEIMQUYcgkosw048", s[42]) >= 0
	}}
)

// patterns lists every pattern for the tests.
var patterns = []pattern{reUUID, reCode, reSpecialty, reNID, reDate, reProvince, reSHA256, reICD10, reTrackingCode, reThumbprint}

func isCrockford(c byte) bool {
	return isDigit(c) || 'A' <= c && c <= 'Z' && c != 'I' && c != 'L' && c != 'O' && c != 'U'
}

func isDigit(c byte) bool      { return '0' <= c && c <= '9' }
func isLowerHex(c byte) bool   { return isDigit(c) || 'a' <= c && c <= 'f' }
func isLowerAlnum(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'z' }
func isAlnum(c byte) bool      { return isLowerAlnum(c) || 'A' <= c && c <= 'Z' }
func isICDLetter(c byte) bool  { return 'A' <= c && c <= 'Z' && c != 'U' }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}
