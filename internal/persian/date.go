package persian

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jalaali/go-jalaali"
)

// Dates arrive in two calendars: the Solar Hijri (هجری شمسی) one that
// people and the insurer's records use, and the Gregorian one of ISO 8601
// and most software. A year below hijriBelow is Solar Hijri; Gregorian
// years this system sees are all far above it and Solar Hijri ones far
// below, so a date is never ambiguous.
const hijriBelow = 1700

// The years ParseDate accepts: from before anyone now insured was born to
// far past any prescription, and well inside the range where the Solar
// Hijri arithmetic is exact (so Hijri never fails on a parsed date).
const (
	minGregorian, maxGregorian = 1900, 2200
	minHijri, maxHijri         = 1279, 1579
)

// InRange reports whether t's day is one ParseDate could have returned:
// the check for instants that arrive some other way (a prescription's
// issued_at) before they are converted.
func InRange(t time.Time) bool {
	y := Day(t).Year()
	return y >= minGregorian && y <= maxGregorian
}

// ParseDate reads YYYY-MM-DD or YYYY/MM/DD in either calendar, with ASCII,
// Persian or Arabic-Indic digits, and returns midnight UTC of that day.
// Conversion uses the arithmetic of jalaali-js (Borkowski's leap-year
// breaks), which agrees with the official calendar from 1178 to 1633 AP.
func ParseDate(s string) (time.Time, error) {
	d := Digits(strings.TrimSpace(s))
	sep := "-"
	if strings.Contains(d, "/") {
		sep = "/"
	}
	parts := strings.Split(d, sep)
	if len(parts) != 3 || len(parts[0]) != 4 || len(parts[1]) < 1 || len(parts[1]) > 2 || len(parts[2]) < 1 || len(parts[2]) > 2 {
		return time.Time{}, fmt.Errorf("date %q is not YYYY-MM-DD (Gregorian or Solar Hijri)", s)
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || !allASCIIDigits(p) {
			return time.Time{}, fmt.Errorf("date %q is not YYYY-MM-DD (Gregorian or Solar Hijri)", s)
		}
		n[i] = v
	}
	y, m, day := n[0], n[1], n[2]
	if (y < hijriBelow && (y < minHijri || y > maxHijri)) || (y >= hijriBelow && (y < minGregorian || y > maxGregorian)) {
		return time.Time{}, fmt.Errorf("date %q is outside the years accepted (%d–%d, or %d–%d Solar Hijri)", s, minGregorian, maxGregorian, minHijri, maxHijri)
	}
	if y < hijriBelow {
		if !jalaali.IsValidDate(y, m, day) {
			return time.Time{}, fmt.Errorf("date %q is not a Solar Hijri date", s)
		}
		gy, gm, gd, err := jalaali.ToGregorian(y, jalaali.Month(m), day)
		if err != nil {
			return time.Time{}, fmt.Errorf("date %q: %v", s, err)
		}
		return time.Date(gy, gm, gd, 0, 0, 0, 0, time.UTC), nil
	}
	t := time.Date(y, time.Month(m), day, 0, 0, 0, 0, time.UTC)
	if t.Year() != y || int(t.Month()) != m || t.Day() != day {
		return time.Time{}, fmt.Errorf("date %q is not a Gregorian date", s)
	}
	return t, nil
}

// HijriDate is a day of the Solar Hijri calendar.
type HijriDate struct{ Year, Month, Day int }

// Hijri converts the UTC calendar day of t.
func Hijri(t time.Time) HijriDate {
	t = t.UTC()
	y, m, d, err := jalaali.ToJalaali(t.Year(), t.Month(), t.Day())
	if err != nil {
		// Far outside the years ParseDate accepts (see InRange): a
		// caller that converts an unchecked instant has a bug.
		panic(fmt.Sprintf("persian: %s is outside the Solar Hijri range", t.Format(time.DateOnly)))
	}
	return HijriDate{y, int(m), d}
}

// String formats as YYYY-MM-DD with ASCII digits.
func (h HijriDate) String() string { return fmt.Sprintf("%04d-%02d-%02d", h.Year, h.Month, h.Day) }

// MonthIndex numbers Solar Hijri months consecutively (year*12 + month-1),
// so that month windows are plain subtraction.
func (h HijriDate) MonthIndex() int { return h.Year*12 + h.Month - 1 }

func allASCIIDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// Tehran is Iran Standard Time. Iran has kept it all year since 2022, so a
// fixed zone is exact for every date this system judges and needs no
// time-zone database on the host.
var Tehran = time.FixedZone("IRST", 3*3600+1800)

// Day is the calendar day in Iran on which the instant t falls, as UTC
// midnight of that date (the form ParseDate returns): a prescription
// written at 01:00 in Tehran belongs to that day, not to the UTC day
// before.
func Day(t time.Time) time.Time {
	t = t.In(Tehran)
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// DayStart is the instant at which day (in the form ParseDate and Day
// return) begins in Iran: Day's inverse, for periods that hold from the
// start of one day to the start of another.
func DayStart(day time.Time) time.Time {
	y, m, d := day.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, Tehran).UTC()
}

// Dates formats day (in the form ParseDate and Day return) in both
// calendars, YYYY-MM-DD with ASCII digits: what answers give as "x" and
// "x_hijri".
func Dates(day time.Time) (gregorian, hijri string) {
	return day.UTC().Format(time.DateOnly), Hijri(day).String()
}
