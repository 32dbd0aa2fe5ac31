// Package leakscan looks for known secrets in what the daemons keep and say:
// the national ids of a registry, persons' names and the contents of
// prescriptions, in the audit tables, the audit logs' HTTP answers and the
// daemons' logs (issue 13: "no national id, digits of one, or payload text
// appears anywhere"). It looks for the actual values, never for "any ten
// digits": tracking codes, hashes, base64 and pseudonyms are not national
// ids unless they contain one.
//
// deploy/demo.sh runs it (cmd demoscan) after README.md's walkthrough.
package leakscan

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/url"
	"strings"
	"unicode/utf8"
)

// A Needle is one value that MUST NOT appear: Label says what it is (never
// the value itself, so that a report can be shown anywhere).
type Needle struct {
	Label string
	// forms are the value as it may be written, folded (see fold).
	forms [][]byte
	// whole: a form matches only as a whole run of digits, not inside a
	// longer one (a catalogue code, an id with its leading zeros dropped).
	whole []bool
}

const (
	persianZero = '\u06f0'
	arabicZero  = '\u0660'
)

// NationalID is the needle of a canonical ten-digit national id: in ASCII,
// Persian or Arabic-Indic digits (or a mix), bare or inside a longer run of
// digits, printed with dashes (ddd-dddddd-d), with its leading zeros
// dropped (as a spreadsheet does; then only as a whole run), and in Persian
// or Arabic-Indic digits escaped for JSON (\u06f0) or a URL (%DB%B0).
func NationalID(label, id string) (Needle, error) {
	if len(id) != 10 || strings.Trim(id, "0123456789") != "" {
		return Needle{}, fmt.Errorf("leakscan: %s: a national id is ten ASCII digits", label)
	}
	n := Needle{Label: label}
	n.add(id, false)
	n.add(id[:3]+"-"+id[3:9]+"-"+id[9:], false)
	if short := strings.TrimLeft(id, "0"); short != id && len(short) >= 8 {
		n.add(short, true)
	}
	for _, zero := range []rune{persianZero, arabicZero} {
		var native strings.Builder
		for _, d := range id {
			native.WriteRune(zero + d - '0')
		}
		n.addEscaped(native.String())
	}
	return n, nil
}

// Text is the needle of a piece of text (a name, a dosage, a drug's name):
// as written, escaped for JSON, or escaped for a URL. Text shorter than 4
// characters is refused: it would be found everywhere.
func Text(label, s string) (Needle, error) {
	if utf8.RuneCountInString(strings.TrimSpace(s)) < 4 {
		return Needle{}, fmt.Errorf("leakscan: %s: %q is too short to look for", label, s)
	}
	n := Needle{Label: label}
	n.add(s, false)
	n.addEscaped(s)
	return n, nil
}

// Code is the needle of a code of several digits (a catalogue code): only
// as a whole run of digits, so that it is not found inside a timestamp.
func Code(label, code string) (Needle, error) {
	if len(code) < 5 || strings.Trim(code, "0123456789") != "" {
		return Needle{}, fmt.Errorf("leakscan: %s: a code is at least five ASCII digits", label)
	}
	n := Needle{Label: label}
	n.add(code, true)
	return n, nil
}

func (n *Needle) add(s string, whole bool) {
	f := fold([]byte(s))
	for _, have := range n.forms {
		if bytes.Equal(have, f) {
			return
		}
	}
	n.forms = append(n.forms, f)
	n.whole = append(n.whole, whole)
}

// addEscaped adds s's escaped forms, when it has characters to escape.
func (n *Needle) addEscaped(s string) {
	var js strings.Builder
	for _, r := range s {
		if r < 0x80 {
			js.WriteRune(r)
		} else {
			fmt.Fprintf(&js, `\u%04x`, r)
		}
	}
	if js.String() == s {
		return
	}
	n.add(js.String(), false)
	n.add(upperEscapes(js.String()), false)
	n.add(url.QueryEscape(s), false)
	n.add(url.PathEscape(s), false)
	n.add(strings.ToLower(url.PathEscape(s)), false)
}

// upperEscapes writes \u06F0 for \u06f0.
func upperEscapes(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.HasPrefix(s[i:], `\u`) && i+6 <= len(s) {
			b.WriteString(`\u` + strings.ToUpper(s[i+2:i+6]))
			i += 5
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// fold makes the spellings of one value the same bytes: Persian and
// Arabic-Indic digits become ASCII, Arabic yeh and kaf the Persian letters,
// and zero-width non-joiners go. It works on bytes, so binary data (tiles,
// entry bundles) is scanned as it is.
func fold(b []byte) []byte {
	if !hasFoldable(b) {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		switch {
		case i+1 < len(b) && b[i] == 0xdb && b[i+1] >= 0xb0 && b[i+1] <= 0xb9: // U+06F0..06F9
			out = append(out, '0'+b[i+1]-0xb0)
			i += 2
		case i+1 < len(b) && b[i] == 0xd9 && b[i+1] >= 0xa0 && b[i+1] <= 0xa9: // U+0660..0669
			out = append(out, '0'+b[i+1]-0xa0)
			i += 2
		case i+1 < len(b) && b[i] == 0xd9 && b[i+1] == 0x8a: // ي U+064A
			out = append(out, 0xdb, 0x8c)
			i += 2
		case i+1 < len(b) && b[i] == 0xd9 && b[i+1] == 0x83: // ك U+0643
			out = append(out, 0xda, 0xa9)
			i += 2
		case i+2 < len(b) && b[i] == 0xe2 && b[i+1] == 0x80 && b[i+2] == 0x8c: // ZWNJ
			i += 3
		case b[i] == '\\' && zwnjEscape(b[i:]) > 0: // ZWNJ quoted between raw letters
			i += zwnjEscape(b[i:])
		default:
			out = append(out, b[i])
			i++
		}
	}
	return out
}

func hasFoldable(b []byte) bool {
	return bytes.IndexByte(b, 0xdb) >= 0 || bytes.IndexByte(b, 0xd9) >= 0 || bytes.IndexByte(b, 0xe2) >= 0 ||
		bytes.Contains(b, []byte(`u200c`)) || bytes.Contains(b, []byte(`u200C`))
}

// zwnjEscape is the length of the ZWNJ escape b starts with — \u200c as
// Go's quoting writes it (slog's text handler, %q) between letters it
// leaves raw, in either case, and \\u200c quoted twice — or 0.
func zwnjEscape(b []byte) int {
	for _, e := range []string{`\u200c`, `\u200C`, `\\u200c`, `\\u200C`} {
		if bytes.HasPrefix(b, []byte(e)) {
			return len(e)
		}
	}
	return 0
}

// A Hit is a needle found: where (a table, column and row; a URL; a file
// and line) and what.
type Hit struct {
	Where   string
	Label   string
	Context string // the folded bytes around the hit, quoted
}

func (h *Hit) String() string { return fmt.Sprintf("%s: %s (%s)", h.Where, h.Label, h.Context) }

// Scanner holds the needles.
type Scanner struct {
	needles []Needle
	// Scanned counts the bytes looked through, so that a caller can tell
	// an empty scan from a clean one.
	Scanned int64
}

// New is a scanner of needles.
func New(needles ...Needle) *Scanner { return &Scanner{needles: needles} }

// Len is the number of needles.
func (s *Scanner) Len() int { return len(s.needles) }

// Scan looks through b, found at where, and returns the first needle found
// (by position in b), or nil.
func (s *Scanner) Scan(where string, b []byte) *Hit {
	s.Scanned += int64(len(b))
	f := fold(b)
	best, bestAt := (*Hit)(nil), len(f)
	for _, n := range s.needles {
		for i, form := range n.forms {
			if at := find(f, form, n.whole[i]); at >= 0 && at < bestAt {
				best, bestAt = &Hit{Where: where, Label: n.Label, Context: around(f, at, len(form))}, at
			}
		}
	}
	return best
}

// ScanLines scans r line by line; a hit's place is name:line.
func (s *Scanner) ScanLines(name string, r io.Reader) (*Hit, int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	line := 0
	for sc.Scan() {
		line++
		if h := s.Scan(fmt.Sprintf("%s:%d", name, line), sc.Bytes()); h != nil {
			return h, line, nil
		}
	}
	return nil, line, sc.Err()
}

// find is the first index of form in b; with whole, only where no digit
// comes just before or after it.
func find(b, form []byte, whole bool) int {
	for off := 0; ; {
		i := bytes.Index(b[off:], form)
		if i < 0 {
			return -1
		}
		at := off + i
		if !whole || ((at == 0 || !isDigit(b[at-1])) && (at+len(form) == len(b) || !isDigit(b[at+len(form)]))) {
			return at
		}
		off = at + 1
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func around(b []byte, at, n int) string {
	from, to := max(0, at-24), min(len(b), at+n+24)
	return fmt.Sprintf("%q", b[from:to])
}
