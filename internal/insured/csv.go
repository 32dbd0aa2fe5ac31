package insured

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/nationalid"
	"github.com/nuskha/nuskha/internal/persian"
)

// Columns is the CSV layout, in order; the first line must name them.
// Dates are YYYY-MM-DD (or YYYY/MM/DD) in the Solar Hijri or Gregorian
// calendar; digits may be Persian or Arabic-Indic.
var Columns = []string{
	"national_id", "insurance_number", "fund", "main_national_id", "relation",
	"coverage_start", "coverage_end", "status", "birth_date", "sex", "contributions",
	"supp_insurer", "supp_plan", "supp_start", "supp_end", "supp_caps",
}

// RowError is one bad row of an import. Reasons never repeat a national
// id: the operator has the file, and the report may be logged or mailed.
type RowError struct {
	Line   int    `json:"line"`
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason"`
}

func (e *RowError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
	}
	return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Reason)
}

// MaxReported bounds the rows an ImportError lists; Total counts them all.
const MaxReported = 1000

// ImportError lists an import's bad rows, by line.
type ImportError struct {
	Rows  []RowError `json:"rows"`
	Total int        `json:"total"`
}

func (e *ImportError) Error() string {
	if len(e.Rows) == 0 {
		return "import rejected"
	}
	return fmt.Sprintf("%d bad row(s), first %s", e.Total, e.Rows[0].Error())
}

// Rejected wraps e as the typed error callers see: code import-rejected,
// with the row list reachable through errors.As.
func (e *ImportError) Rejected() error {
	return errs.Wrap(errs.ImportRejected, e, "%d bad row(s); nothing was imported", e.Total)
}

func (e *ImportError) add(r RowError) {
	e.Total++
	if len(e.Rows) < MaxReported {
		e.Rows = append(e.Rows, r)
	}
}

// reader reads and checks rows one at a time, so that a file of tens of
// millions of persons streams through in constant memory.
type reader struct {
	csv *csv.Reader
	now time.Time
}

func newReader(r io.Reader, now time.Time) (*reader, error) {
	c := csv.NewReader(r)
	c.FieldsPerRecord = -1 // counted per row, so a short row is reported, not fatal
	c.ReuseRecord = true
	header, err := c.Read()
	if err != nil {
		if err == io.EOF {
			return nil, errs.New(errs.ImportRejected, "the file is empty: line 1 must name the columns %s", strings.Join(Columns, ","))
		}
		return nil, errs.New(errs.ImportRejected, "line 1: %v", csvReason(err))
	}
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\uFEFF") // spreadsheets write a BOM
	}
	if !slices.Equal(header, Columns) {
		return nil, errs.New(errs.ImportRejected, "line 1 must name the columns %s", strings.Join(Columns, ","))
	}
	return &reader{csv: c, now: now}, nil
}

// next returns the next row as a Person, a *RowError for a bad row (the
// caller goes on to the next), io.EOF at the end, or another error if the
// input cannot be read at all.
func (r *reader) next() (Person, int, error) {
	rec, err := r.csv.Read()
	if err == io.EOF {
		return Person{}, 0, io.EOF
	}
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return Person{}, pe.StartLine, &RowError{Line: pe.StartLine, Reason: csvReason(err)}
		}
		return Person{}, 0, err
	}
	line, _ := r.csv.FieldPos(0)
	if len(rec) != len(Columns) {
		return Person{}, line, &RowError{Line: line, Reason: fmt.Sprintf("has %d fields, want %d", len(rec), len(Columns))}
	}
	p, rerr := parseRow(rec, r.now)
	if rerr != nil {
		rerr.Line = line
		return Person{}, line, rerr
	}
	return p, line, nil
}

func csvReason(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return "malformed CSV: " + pe.Err.Error()
	}
	return err.Error()
}

// dateReason does not quote the value: a file with its columns in the
// wrong order would otherwise copy national ids into the report.
const dateReason = "not a date (YYYY-MM-DD, Gregorian or Solar Hijri, in the years accepted)"

func bad(field, format string, args ...any) *RowError {
	return &RowError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// parseRow checks one record. The national id is never echoed.
func parseRow(f []string, now time.Time) (Person, *RowError) {
	var p Person
	var err error
	if p.NationalID, err = nationalid.Parse(f[0]); err != nil {
		return p, bad("national_id", "not a valid national id (10 digits with a correct check digit)")
	}
	p.InsuranceNumber = strings.TrimSpace(persian.Digits(f[1]))
	if !validInsuranceNumber(p.InsuranceNumber) {
		return p, bad("insurance_number", "must be 1 to 20 letters, digits or dashes")
	}
	p.Fund = Fund(strings.TrimSpace(f[2]))
	if !slices.Contains(Funds, p.Fund) {
		return p, bad("fund", "must be one of %v", Funds)
	}
	if main := strings.TrimSpace(f[3]); main != "" {
		if p.MainNationalID, err = nationalid.Parse(main); err != nil {
			return p, bad("main_national_id", "not a valid national id")
		}
		if p.MainNationalID == p.NationalID {
			return p, bad("main_national_id", "a person cannot be their own main insured")
		}
	}
	p.Relation = strings.TrimSpace(f[4])
	switch {
	case p.MainNationalID != "" && !slices.Contains(Relations, p.Relation):
		return p, bad("relation", "a dependant's relation must be one of %v", Relations)
	case p.MainNationalID == "" && p.Relation != "":
		return p, bad("relation", "only a dependant (with main_national_id) has a relation")
	}
	if p.CoverageStart, err = persian.ParseDate(f[5]); err != nil {
		return p, bad("coverage_start", dateReason)
	}
	if s := strings.TrimSpace(f[6]); s != "" {
		if p.CoverageEnd, err = persian.ParseDate(s); err != nil {
			return p, bad("coverage_end", dateReason)
		}
		if p.CoverageEnd.Before(p.CoverageStart) {
			return p, bad("coverage_end", "is before coverage_start")
		}
	}
	p.Status = Status(strings.TrimSpace(f[7]))
	if !slices.Contains(Statuses, p.Status) {
		return p, bad("status", "must be one of %v", Statuses)
	}
	if p.BirthDate, err = persian.ParseDate(f[8]); err != nil {
		return p, bad("birth_date", dateReason)
	}
	if p.BirthDate.After(persian.Day(now)) {
		return p, bad("birth_date", "is not a plausible birth date")
	}
	p.Sex = strings.TrimSpace(f[9])
	if p.Sex != "female" && p.Sex != "male" {
		return p, bad("sex", "must be female or male")
	}
	if p.Contributions, err = ParseContributions(f[10]); err != nil {
		return p, bad("contributions", "%v", err)
	}
	insurer, plan := persian.Text(f[11]), strings.TrimSpace(f[12])
	if insurer == "" && plan == "" && strings.TrimSpace(f[13]+f[14]+f[15]) == "" {
		return p, nil
	}
	s := &Supplementary{Insurer: insurer, Plan: plan}
	if s.Insurer == "" || len([]rune(s.Insurer)) > 64 {
		return p, bad("supp_insurer", "supplementary insurance needs its insurer (up to 64 characters)")
	}
	if s.Plan == "" || len(s.Plan) > 32 {
		return p, bad("supp_plan", "supplementary insurance needs its plan (up to 32 characters)")
	}
	if s.Start, err = persian.ParseDate(f[13]); err != nil {
		return p, bad("supp_start", dateReason)
	}
	if e := strings.TrimSpace(f[14]); e != "" {
		if s.End, err = persian.ParseDate(e); err != nil {
			return p, bad("supp_end", dateReason)
		}
		if s.End.Before(s.Start) {
			return p, bad("supp_end", "is before supp_start")
		}
	}
	if s.Caps, err = ParseCaps(f[15]); err != nil {
		return p, bad("supp_caps", "%v", err)
	}
	if len(s.Caps) == 0 {
		return p, bad("supp_caps", "supplementary insurance needs at least one annual cap")
	}
	p.Supplementary = s
	return p, nil
}

func validInsuranceNumber(s string) bool {
	if len(s) < 1 || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '-') {
			return false
		}
	}
	return true
}
