package persian

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Nowruz dates and leap years as published by the University of Tehran's
// Institute of Geophysics calendar (1399 and 1403 are leap years).
func TestParseDate(t *testing.T) {
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	for _, c := range []struct {
		in   string
		want time.Time
	}{
		{"1403-01-01", day(2024, 3, 20)},
		{"1404/01/01", day(2025, 3, 21)},
		{"۱۴۰۲/۰۱/۰۱", day(2023, 3, 21)},
		{"١٤٠٣-١٢-٣٠", day(2025, 3, 20)}, // Arabic-Indic digits; 30 Esfand exists in a leap year
		{"1399-12-30", day(2021, 3, 20)},
		{"1403-7-1", day(2024, 9, 22)},
		{"2024-02-29", day(2024, 2, 29)},
		{" 2026-11-22 ", day(2026, 11, 22)},
	} {
		got, err := ParseDate(c.in)
		if err != nil || !got.Equal(c.want) {
			t.Errorf("ParseDate(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "1402-12-30", "1403-13-01", "1403-07-31", "2023-02-29", "2024-13-01", "24-01-01", "1403-01", "1403-01-01-01", "1403-0a-01", "+403-01-01", "1403--1-01", "9999-12-31", "4000-01-01", "1899-12-31", "1278-12-29", "1580-01-01", "0001-01-01"} {
		if got, err := ParseDate(bad); err == nil {
			t.Errorf("ParseDate(%q) = %v, want an error", bad, got)
		}
	}
}

func TestHijriRoundTrip(t *testing.T) {
	start := time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)
	for d := start; d.Year() < 2060; d = d.AddDate(0, 0, 1) {
		h := Hijri(d)
		back, err := ParseDate(h.String())
		if err != nil || !back.Equal(d) {
			t.Fatalf("%s → %s → %v, %v", d.Format(time.DateOnly), h, back, err)
		}
	}
	if got := Hijri(time.Date(2024, 3, 20, 23, 0, 0, 0, Tehran)); got.String() != "1403-01-01" {
		t.Fatalf("a Tehran-evening time is judged by its UTC day: got %s", got)
	}
	if a, b := (HijriDate{1403, 1, 1}).MonthIndex(), (HijriDate{1402, 12, 29}).MonthIndex(); a-b != 1 {
		t.Fatalf("month index difference across Nowruz = %d", a-b)
	}
}

func TestDayIsIranian(t *testing.T) {
	// 21:00 UTC on 19 March is 00:30 on 20 March in Tehran: Nowruz 1403.
	d := Day(time.Date(2024, 3, 19, 21, 0, 0, 0, time.UTC))
	if !d.Equal(time.Date(2024, 3, 20, 0, 0, 0, 0, time.UTC)) || Hijri(d).String() != "1403-01-01" {
		t.Fatalf("Day = %v (%s)", d, Hijri(d))
	}
	if d := Day(time.Date(2024, 3, 19, 20, 29, 0, 0, time.UTC)); d.Day() != 19 {
		t.Fatalf("23:59 in Tehran moved to %v", d)
	}
}

func TestInRange(t *testing.T) {
	for y, want := range map[int]bool{1899: false, 1900: true, 2026: true, 2200: true, 2201: false, 4000: false} {
		if got := InRange(time.Date(y, 6, 1, 0, 0, 0, 0, time.UTC)); got != want {
			t.Errorf("InRange(%d) = %v", y, got)
		}
	}
	// Every day ParseDate accepts converts without panicking.
	for _, s := range []string{"1900-01-01", "2200-12-31", "1279-01-01", "1579-12-29"} {
		d, err := ParseDate(s)
		if err != nil {
			t.Fatal(err)
		}
		_ = Hijri(d)
	}
}

func TestDayStart(t *testing.T) {
	nowruz := time.Date(2024, 3, 20, 0, 0, 0, 0, time.UTC)
	start := DayStart(nowruz)
	if want := time.Date(2024, 3, 19, 20, 30, 0, 0, time.UTC); !start.Equal(want) {
		t.Fatalf("DayStart(1403-01-01) = %v, want %v (midnight in Tehran)", start, want)
	}
	if !Day(start).Equal(nowruz) || !Day(start.Add(-time.Nanosecond)).Equal(nowruz.AddDate(0, 0, -1)) {
		t.Fatal("DayStart is not the first instant of its day")
	}
	if g, h := Dates(nowruz); g != "2024-03-20" || h != "1403-01-01" {
		t.Fatalf("Dates = %s, %s", g, h)
	}
}

// TestOneTehranZone: Tehran is the only Iranian time zone in the tree. A
// second one (a copy of the offset, or the IANA zone, which needs a
// time-zone database on the host) could disagree with it on which day an
// instant falls.
func TestOneTehranZone(t *testing.T) {
	other := regexp.MustCompile(`FixedZone\([^)]*(12600|3\s*\*\s*3600\s*\+\s*1800|"IRST")|LoadLocation\(\s*"Asia/Tehran"|"time/tzdata"`)
	root := filepath.Join("..", "..")
	here := filepath.Join(root, "internal", "persian") // holds the one zone
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules" || d.Name() == "testdata"):
			return filepath.SkipDir
		case d.IsDir() || !strings.HasSuffix(path, ".go") || filepath.Dir(path) == here:
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if loc := other.FindIndex(src); loc != nil {
			t.Errorf("%s: %s: use persian.Tehran", path, src[loc[0]:loc[1]])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
