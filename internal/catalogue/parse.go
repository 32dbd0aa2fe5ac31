package catalogue

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/persian"
)

// The file names RowError.File uses.
const (
	FileDrugs    = "drugs"
	FileServices = "services"
)

// Limits on an import.
const (
	// MaxReportedProblems caps ImportError.Rows; Total still counts every
	// problem, so the staff know how much is wrong.
	MaxReportedProblems = 1000
	// MaxItems bounds the rows of one import (both files together), so
	// that a wrong file cannot exhaust memory. The national catalogue is
	// tens of thousands of items.
	MaxItems = 200_000
)

// The two files are CSV (RFC 4180, UTF-8, a byte-order mark allowed) with
// a header row naming the columns. Column order is free, names match
// without regard to case, every column MUST be present and no other may
// be. Rows of empty cells are skipped. Values are trimmed; in numeric
// columns Persian and Arabic-Indic digits are accepted, and a minus sign,
// decimal point or thousands separator is refused; booleans are true or
// false; lists are separated by "|".
//
//	code              1–32 of A-Z a-z 0-9 . _ / -, first a letter or digit (Persian digits become ASCII);
//	                  unique across both files, ignoring case
//	kind              services only: lab, imaging or procedure
//	name              Latin (generic) name, required, ≤ 200 characters
//	name_fa           Persian name, optional, ≤ 200; normalised with persian.Text
//	atc               drugs only: a WHO ATC code (N02BE01) or level (N, N02, N02B, N02BE), or empty
//	form, strength    drugs only: free text, optional, ≤ 100 ("tablet", "500 mg")
//	price             rials, a whole number > 0
//	coverage_percent  0–100, required
//	prescription_only drugs only: true or false
//	max_quantity      per prescription, ≥ 0; empty or 0 for no limit
//	professions       physician|dentist|midwife, any of them; empty for any
//	specialties       specialty codes (a-z 0-9 . _ -); empty for any
//	min_age_years     0–150; empty or 0 for no limit
//	max_age_years     0–150; empty or 0 for no limit; not below min_age_years
//	sex               female, male or empty for either
//	controlled_class  drugs only: empty or a class code such as narcotic, psychotropic
//	paper_allowed     true or false
var (
	// DrugColumns are the columns of the drugs file. Every row is a drug.
	DrugColumns = []string{
		"code", "name", "name_fa", "atc", "form", "strength", "price", "coverage_percent",
		"prescription_only", "max_quantity", "professions", "specialties",
		"min_age_years", "max_age_years", "sex", "controlled_class", "paper_allowed",
	}
	// ServiceColumns are the columns of the services file.
	ServiceColumns = []string{
		"code", "kind", "name", "name_fa", "price", "coverage_percent", "max_quantity",
		"professions", "specialties", "min_age_years", "max_age_years", "sex", "paper_allowed",
	}
)

// RowError is one problem in an imported file.
type RowError struct {
	File string `json:"file"` // FileDrugs or FileServices
	// Line is the 1-based line of the record in its file; the header is
	// line 1. A record with a quoted line break is reported at its first
	// line.
	Line   int    `json:"line"`
	Field  string `json:"field,omitempty"` // the column, when one is at fault
	Reason string `json:"reason"`
}

func (e RowError) String() string {
	if e.Field == "" {
		return fmt.Sprintf("%s line %d: %s", e.File, e.Line, e.Reason)
	}
	return fmt.Sprintf("%s line %d: %s: %s", e.File, e.Line, e.Field, e.Reason)
}

// ImportError lists what is wrong with an import. Each problem is one
// RowError, so a row with two bad fields gives two. Rows holds the first
// MaxReportedProblems in file order (drugs first); Total counts them all.
type ImportError struct {
	Rows  []RowError `json:"rows"`
	Total int        `json:"total"`
}

func (e *ImportError) Error() string {
	if len(e.Rows) == 0 {
		return fmt.Sprintf("catalogue import: %d problems", e.Total)
	}
	return fmt.Sprintf("catalogue import: %d problems, the first: %s", e.Total, e.Rows[0])
}

// Parse reads and validates a drugs file and a services file (either may
// be nil) without storing anything. It returns the items in file order and
// nil, or nil and an *ImportError listing every problem, or nil and an
// errs.Malformed error when a reader fails.
func Parse(drugs, services io.Reader) ([]Item, error) {
	p := parser{seen: map[string]origin{}}
	if drugs != nil {
		if err := p.file(FileDrugs, drugs, DrugColumns); err != nil {
			return nil, err
		}
	}
	if services != nil {
		if err := p.file(FileServices, services, ServiceColumns); err != nil {
			return nil, err
		}
	}
	if p.problems.Total > 0 {
		return nil, &p.problems
	}
	return p.items, nil
}

// origin is where a code was first seen, to name it in a duplicate's error.
type origin struct {
	file string
	line int
}

type parser struct {
	items    []Item
	seen     map[string]origin // lower-cased code → first row
	rows     int               // data rows read, good or bad
	problems ImportError
}

func (p *parser) report(file string, line int, field, reason string) {
	p.problems.Total++
	if len(p.problems.Rows) < MaxReportedProblems {
		p.problems.Rows = append(p.problems.Rows, RowError{File: file, Line: line, Field: field, Reason: reason})
	}
}

// file parses one CSV file. It returns an error only when the reader
// fails; problems with the content are reported and parsing goes on, so
// that the staff see every bad row at once.
func (p *parser) file(name string, r io.Reader, columns []string) error {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 0 // the header's width, enforced on every row
	cr.ReuseRecord = true

	header, err := cr.Read()
	if err == io.EOF {
		p.report(name, 1, "", "empty file: the header row is missing")
		return nil
	}
	if err != nil {
		return p.readError(name, err)
	}
	index, ok := p.header(name, header, columns)
	if !ok {
		return nil // without a usable header no row can be read
	}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if rerr := p.readError(name, err); rerr != nil {
				return rerr
			}
			p.rows++
			continue
		}
		line, _ := cr.FieldPos(0)
		if blank(rec) {
			continue // spreadsheets export trailing rows of empty cells
		}
		if p.rows++; p.rows > MaxItems {
			p.report(name, line, "", fmt.Sprintf("too many rows: an import holds at most %d items", MaxItems))
			return nil
		}
		p.row(name, line, rec, index)
	}
}

// readError reports a csv.ParseError (quote errors, wrong number of
// fields) at the record's first line and returns nil; any other error is
// the reader's and is returned.
func (p *parser) readError(name string, err error) error {
	var pe *csv.ParseError
	if !errors.As(err, &pe) {
		return errs.Wrap(errs.Malformed, err, "reading the %s file", name)
	}
	var reason string
	switch {
	case errors.Is(pe.Err, csv.ErrFieldCount):
		reason = "wrong number of fields: every row must have as many as the header"
	case errors.Is(pe.Err, csv.ErrBareQuote):
		reason = fmt.Sprintf(`malformed line: a " in an unquoted field (line %d, column %d); quote the field and double the "`, pe.Line, pe.Column)
	case errors.Is(pe.Err, csv.ErrQuote):
		reason = fmt.Sprintf(`malformed line: a quoted field is not closed properly (line %d, column %d)`, pe.Line, pe.Column)
	default:
		reason = "malformed line: " + pe.Err.Error()
	}
	p.report(name, pe.StartLine, "", reason)
	return nil
}

// header maps each wanted column to its position in the file.
func (p *parser) header(name string, header []string, columns []string) ([]int, bool) {
	index := make([]int, len(columns))
	for i := range index {
		index[i] = -1
	}
	ok := true
	for pos, h := range header {
		if pos == 0 {
			h = strings.TrimPrefix(h, "\uFEFF") // the byte-order mark Excel writes
		}
		h = strings.ToLower(strings.TrimSpace(h))
		c := slices.Index(columns, h)
		switch {
		case c < 0:
			p.report(name, 1, h, fmt.Sprintf("unknown column %q (the %s file has: %s)", h, name, strings.Join(columns, ", ")))
			ok = false
		case index[c] >= 0:
			p.report(name, 1, h, "column named twice")
			ok = false
		default:
			index[c] = pos
		}
	}
	for c, pos := range index {
		if pos < 0 {
			p.report(name, 1, columns[c], "column missing from the header")
			ok = false
		}
	}
	return index, ok
}

func blank(rec []string) bool {
	for _, f := range rec {
		if strings.TrimSpace(f) != "" {
			return false
		}
	}
	return true
}

// row validates one record and keeps it if it has no problem.
func (p *parser) row(name string, line int, rec []string, index []int) {
	before := p.problems.Total
	it := Item{Kind: KindDrug}
	columns := DrugColumns
	if name == FileServices {
		columns = ServiceColumns
	}
	for c, col := range columns {
		v := rec[index[c]]
		if !utf8.ValidString(v) {
			p.report(name, line, col, "not valid UTF-8: save the file as CSV UTF-8")
			continue
		}
		if reason := setters[col](&it, strings.TrimSpace(v)); reason != "" {
			p.report(name, line, col, reason)
		}
	}
	if it.MaxAgeYears > 0 && it.MinAgeYears > it.MaxAgeYears {
		p.report(name, line, "min_age_years", fmt.Sprintf("%d is greater than max_age_years %d", it.MinAgeYears, it.MaxAgeYears))
	}
	if it.Code != "" {
		key := strings.ToLower(it.Code)
		if first, dup := p.seen[key]; dup {
			p.report(name, line, "code", fmt.Sprintf("duplicate code %s: already on %s line %d", it.Code, first.file, first.line))
		} else {
			p.seen[key] = origin{name, line}
		}
	}
	if p.problems.Total == before {
		p.items = append(p.items, it)
	}
}

// setters parse one column into an Item and return the reason it is bad,
// or "". A setter leaves its field zero when the value is bad.
var setters = map[string]func(it *Item, v string) string{
	"code": func(it *Item, v string) string {
		v = persian.Digits(v)
		if v == "" {
			return "required"
		}
		if !ValidCode(v) {
			return fmt.Sprintf("bad code %q: 1 to 32 of A-Z a-z 0-9 . _ / -, starting with a letter or digit", v)
		}
		it.Code = v
		return ""
	},
	"kind": func(it *Item, v string) string {
		v = strings.ToLower(v)
		switch {
		case slices.Contains(ServiceKinds, v):
			it.Kind = v
			return ""
		case v == KindDrug:
			return "drugs belong in the drugs file"
		case v == "":
			return "required"
		}
		return fmt.Sprintf("unknown kind %q (want %s)", v, strings.Join(ServiceKinds, ", "))
	},
	"name": func(it *Item, v string) (reason string) {
		it.Name, reason = text(v, 200, true)
		return reason
	},
	"name_fa": func(it *Item, v string) (reason string) {
		it.NameFA, reason = text(v, 200, false)
		return reason
	},
	"form": func(it *Item, v string) (reason string) {
		it.Form, reason = text(v, 100, false)
		return reason
	},
	"strength": func(it *Item, v string) (reason string) {
		it.Strength, reason = text(v, 100, false)
		return reason
	},
	"atc": func(it *Item, v string) string {
		v = strings.ToUpper(v)
		if v != "" && !ValidATC(v) {
			return fmt.Sprintf("bad ATC code %q: want a WHO ATC code such as N02BE01, or one of its levels (N, N02, N02B, N02BE)", v)
		}
		it.ATC = v
		return ""
	},
	"price": func(it *Item, v string) string {
		// MaxPrice keeps any quantity of any item (at most 10 000 on a
		// line, 50 lines) far inside int64 rials.
		n, reason := whole(v, true)
		switch {
		case reason != "":
			return reason
		case n <= 0:
			return "must be greater than zero"
		case n > MaxPrice:
			return fmt.Sprintf("is over %d rials: a typo, not a price", int64(MaxPrice))
		}
		it.Price = n
		return ""
	},
	"coverage_percent": func(it *Item, v string) string {
		n, reason := whole(v, true)
		switch {
		case reason != "":
			return reason
		case n > 100:
			return fmt.Sprintf("%d is out of range 0 to 100", n)
		}
		it.CoveragePercent = int(n)
		return ""
	},
	"max_quantity": func(it *Item, v string) string {
		n, reason := whole(v, false)
		switch {
		case reason != "":
			return reason
		case n > 1_000_000:
			return fmt.Sprintf("%d is implausibly large (0 means no limit)", n)
		}
		it.MaxQuantity = int(n)
		return ""
	},
	"min_age_years": func(it *Item, v string) (reason string) {
		it.MinAgeYears, reason = age(v)
		return reason
	},
	"max_age_years": func(it *Item, v string) (reason string) {
		it.MaxAgeYears, reason = age(v)
		return reason
	},
	"prescription_only": func(it *Item, v string) (reason string) {
		it.PrescriptionOnly, reason = boolean(v)
		return reason
	},
	"paper_allowed": func(it *Item, v string) (reason string) {
		it.PaperAllowed, reason = boolean(v)
		return reason
	},
	"professions": func(it *Item, v string) (reason string) {
		it.Professions, reason = list(v, func(s string) string {
			if slices.Contains(Professions, s) {
				return ""
			}
			return fmt.Sprintf("unknown profession %q (want %s)", s, strings.Join(Professions, ", "))
		})
		return reason
	},
	"specialties": func(it *Item, v string) (reason string) {
		it.Specialties, reason = list(v, func(s string) string {
			if reSpecialty.MatchString(s) {
				return ""
			}
			return fmt.Sprintf("bad specialty code %q: a-z 0-9 . _ -, at most 32", s)
		})
		return reason
	},
	"sex": func(it *Item, v string) string {
		v = strings.ToLower(v)
		if v != "" && v != SexFemale && v != SexMale {
			return fmt.Sprintf("unknown sex %q (want female, male or empty)", v)
		}
		it.Sex = v
		return ""
	},
	"controlled_class": func(it *Item, v string) string {
		v = strings.ToLower(v)
		if v != "" && !reClass.MatchString(v) {
			return fmt.Sprintf("bad class code %q: a lower-case word such as narcotic or psychotropic", v)
		}
		it.ControlledClass = v
		return ""
	},
}

// text normalises free text with persian.Text (which also collapses white
// space) and bounds its length in characters.
func text(v string, max int, required bool) (string, string) {
	v = persian.Text(v)
	switch {
	case v == "" && required:
		return "", "required"
	case utf8.RuneCountInString(v) > max:
		return "", fmt.Sprintf("longer than %d characters", max)
	}
	return v, ""
}

// whole parses a non-negative whole number. An empty value is 0 unless
// required. The reasons distinguish the mistakes staff make: a minus
// sign, a decimal point or thousands separators.
func whole(v string, required bool) (int64, string) {
	v = persian.Digits(v)
	if v == "" {
		if required {
			return 0, "required"
		}
		return 0, ""
	}
	digits := strings.TrimPrefix(v, "-")
	if digits != "" && strings.Trim(digits, "0123456789") == "" {
		if digits != v {
			return 0, fmt.Sprintf("%s is negative", v)
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Sprintf("%s is too large", v)
		}
		return n, ""
	}
	if _, err := strconv.ParseFloat(strings.ReplaceAll(v, "\u066B", "."), 64); err == nil {
		return 0, fmt.Sprintf("%s is not a whole number", v)
	}
	return 0, fmt.Sprintf("%q is not a whole number (digits only, no separators)", v)
}

func age(v string) (int, string) {
	n, reason := whole(v, false)
	switch {
	case reason != "":
		return 0, reason
	case n > 150:
		return 0, fmt.Sprintf("%d is not a plausible age in years", n)
	}
	return int(n), ""
}

func boolean(v string) (bool, string) {
	switch strings.ToLower(v) {
	case "true":
		return true, ""
	case "false":
		return false, ""
	case "":
		return false, "required (true or false)"
	}
	return false, fmt.Sprintf("%q is not true or false", v)
}

// list splits a "|"-separated list, lower-cases its entries, drops
// repeats and checks each. An empty value is an empty (nil) list.
func list(v string, check func(string) string) ([]string, string) {
	if v == "" {
		return nil, ""
	}
	var out []string
	for _, s := range strings.Split(v, "|") {
		s = strings.ToLower(strings.TrimSpace(s))
		if s == "" {
			return nil, "empty entry in the list (entries are separated by |)"
		}
		if reason := check(s); reason != "" {
			return nil, reason
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, ""
}
