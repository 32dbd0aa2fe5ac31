// Package insured is the insured-person registry (the online eligibility
// database) and the eligibility check over it. The registry is loaded in
// bulk from the insurer's CSV exports — a full load replaces it as one
// consistent version, an update changes some persons — and every bad row
// is reported with its line; an import with any bad row commits nothing.
package insured

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nuskha/nuskha/internal/persian"
)

// Fund is the scheme a person is insured under.
type Fund string

// Funds.
const (
	Salaried     Fund = "salaried"      // employees: the employer pays contributions
	SelfEmployed Fund = "self-employed" // own-account workers
	Voluntary    Fund = "voluntary"     // voluntary (optional) insurance
	Pensioner    Fund = "pensioner"     // retired; contributions come from the pension
)

// Funds lists every fund.
var Funds = []Fund{Salaried, SelfEmployed, Voluntary, Pensioner}

// Status is the registry's standing of a person's insurance.
type Status string

// Statuses.
const (
	Active    Status = "active"
	Suspended Status = "suspended" // suspended by the insurer (e.g. under investigation)
	Unpaid    Status = "unpaid"    // contributions in arrears: treatment is not covered
)

// Statuses lists every status.
var Statuses = []Status{Active, Suspended, Unpaid}

// Relations a dependant may have to the main insured.
var Relations = []string{"spouse", "child", "parent"}

// Categories of benefit that supplementary insurance caps separately; the
// catalogue's item kinds.
var Categories = []string{"drug", "lab", "imaging", "procedure"}

// Person is one insured person's registry record.
type Person struct {
	NationalID      string
	InsuranceNumber string
	Fund            Fund
	// MainNationalID is the main insured's national id for a dependant,
	// empty for a main insured.
	MainNationalID string
	Relation       string // for a dependant: spouse, child, parent
	CoverageStart  time.Time
	CoverageEnd    time.Time // zero: open-ended; otherwise the last covered day
	Status         Status
	BirthDate      time.Time
	Sex            string // female, male
	Contributions  Contributions
	Supplementary  *Supplementary // nil when none
}

// Dependant reports whether the person is covered through a main insured.
func (p *Person) Dependant() bool { return p.MainNationalID != "" }

// Contributions are paid days per Solar Hijri month, keyed by
// persian.HijriDate.MonthIndex.
type Contributions map[int]int

// PaidDays sums the paid days in months [from, to] (month indexes).
func (c Contributions) PaidDays(from, to int) int {
	n := 0
	for m, d := range c {
		if m >= from && m <= to {
			n += d
		}
	}
	return n
}

// String is the CSV form: YYYY-MM:days entries, oldest first, joined by |.
func (c Contributions) String() string {
	months := make([]int, 0, len(c))
	for m := range c {
		months = append(months, m)
	}
	sort.Ints(months)
	var b strings.Builder
	for i, m := range months {
		if i > 0 {
			b.WriteByte('|')
		}
		fmt.Fprintf(&b, "%04d-%02d:%d", m/12, m%12+1, c[m])
	}
	return b.String()
}

// ParseContributions reads the CSV form (Solar Hijri months).
func ParseContributions(s string) (Contributions, error) {
	c := Contributions{}
	s = strings.TrimSpace(persian.Digits(s))
	if s == "" {
		return c, nil
	}
	for n, e := range strings.Split(s, "|") {
		n++
		month, days, ok := strings.Cut(strings.TrimSpace(e), ":")
		y, m, ok2 := strings.Cut(month, "-")
		if !ok || !ok2 || len(y) != 4 || len(m) != 2 {
			return nil, fmt.Errorf("entry %d is not YYYY-MM:days (a Solar Hijri month)", n)
		}
		yi, err1 := strconv.Atoi(y)
		mi, err2 := strconv.Atoi(m)
		di, err3 := strconv.Atoi(days)
		if err1 != nil || err2 != nil || err3 != nil || yi < 1300 || yi >= 1700 || mi < 1 || mi > 12 {
			return nil, fmt.Errorf("entry %d is not YYYY-MM:days (a Solar Hijri month)", n)
		}
		if di < 0 || di > 31 {
			return nil, fmt.Errorf("entry %d: paid days must be 0 to 31", n)
		}
		k := yi*12 + mi - 1
		if _, dup := c[k]; dup {
			return nil, fmt.Errorf("entry %d: month %04d-%02d appears twice", n, yi, mi)
		}
		c[k] = di
	}
	return c, nil
}

// Supplementary is a person's supplementary (complementary) insurance: it
// pays what the basic insurance leaves to the patient, up to an annual cap
// per benefit category.
type Supplementary struct {
	Insurer string
	Plan    string
	Start   time.Time // enrolment window: first covered day
	End     time.Time // last covered day; zero: open-ended
	Caps    Caps
}

// Covers reports whether day falls in the enrolment window.
func (s *Supplementary) Covers(day time.Time) bool {
	return s != nil && !day.Before(s.Start) && (s.End.IsZero() || !day.After(s.End))
}

// Caps are annual caps in rials per benefit category.
type Caps map[string]int64

// String is the CSV form: category=rials joined by |, in category order.
func (c Caps) String() string {
	var parts []string
	for _, k := range Categories {
		if v, ok := c[k]; ok {
			parts = append(parts, k+"="+strconv.FormatInt(v, 10))
		}
	}
	return strings.Join(parts, "|")
}

// ParseCaps reads the CSV form.
func ParseCaps(s string) (Caps, error) {
	c := Caps{}
	s = strings.TrimSpace(persian.Digits(s))
	if s == "" {
		return c, nil
	}
	for i, e := range strings.Split(s, "|") {
		k, v, ok := strings.Cut(strings.TrimSpace(e), "=")
		if !ok || !slices.Contains(Categories, k) {
			return nil, fmt.Errorf("entry %d is not category=rials with a category among %v", i+1, Categories)
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || !allDigits(v) {
			return nil, fmt.Errorf("entry %d (%s): rials must be a positive whole number", i+1, k)
		}
		if _, dup := c[k]; dup {
			return nil, fmt.Errorf("cap category %s appears twice", k)
		}
		c[k] = n
	}
	return c, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
