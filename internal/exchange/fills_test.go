package exchange

import (
	"errors"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/persian"
	"github.com/nuskha/nuskha/internal/rx"
)

// tehran is a wall-clock time in Iran.
func tehran(y int, m time.Month, d, h, min int) time.Time {
	return time.Date(y, m, d, h, min, 0, 0, persian.Tehran)
}

func TestFills(t *testing.T) {
	type want struct {
		fill, item int
		from       time.Time // start of the day in Tehran
		days       int
	}
	day := func(y int, m time.Month, d int) time.Time { return tehran(y, m, d, 0, 0) }
	for _, tc := range []struct {
		name   string
		items  []rx.Item
		issued time.Time
		window int
		want   []want
	}{
		{
			name:   "no repeats: fill 0 only, 30 days from the issue day",
			items:  []rx.Item{{Kind: "drug", Code: "A", Quantity: 2}, {Kind: "lab", Code: "B", Quantity: 1}},
			issued: tehran(2026, 3, 10, 15, 0),
			want:   []want{{0, 0, day(2026, 3, 10), 30}, {0, 1, day(2026, 3, 10), 30}},
		},
		{
			name:   "issued at 01:00 in Tehran belongs to that day, not the UTC day before",
			items:  []rx.Item{{Kind: "drug", Code: "A", Quantity: 1}},
			issued: tehran(2026, 3, 10, 1, 0),
			want:   []want{{0, 0, day(2026, 3, 10), 30}},
		},
		{
			name: "repeats make fills from issue + k·D, ordered by fill then item",
			items: []rx.Item{
				{Kind: "drug", Code: "A", Quantity: 30, Repeats: 2, RepeatIntervalDays: 28},
				{Kind: "drug", Code: "B", Quantity: 1},
				{Kind: "drug", Code: "C", Quantity: 60, Repeats: 1, RepeatIntervalDays: 60},
			},
			issued: tehran(2026, 1, 1, 23, 59),
			want: []want{
				{0, 0, day(2026, 1, 1), 30}, {0, 1, day(2026, 1, 1), 30}, {0, 2, day(2026, 1, 1), 30},
				{1, 0, day(2026, 1, 29), 30}, {1, 2, day(2026, 3, 2), 30},
				{2, 0, day(2026, 2, 26), 30},
			},
		},
		{
			name:   "the window is configurable",
			items:  []rx.Item{{Kind: "imaging", Code: "X", Quantity: 1, Repeats: 1, RepeatIntervalDays: 7}},
			issued: tehran(2026, 6, 1, 9, 0),
			window: 10,
			want:   []want{{0, 0, day(2026, 6, 1), 10}, {1, 0, day(2026, 6, 8), 10}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines, err := Fills(tc.items, tc.issued.UTC(), tc.window)
			if err != nil {
				t.Fatal(err)
			}
			if len(lines) != len(tc.want) {
				t.Fatalf("%d lines, want %d: %+v", len(lines), len(tc.want), lines)
			}
			for i, w := range tc.want {
				l := lines[i]
				it := tc.items[w.item]
				if l.Fill != w.fill || l.Item != w.item || l.Code != it.Code || l.Kind != it.Kind || l.Quantity != it.Quantity || l.Dispensed != 0 {
					t.Errorf("line %d = %+v, want fill %d item %d", i, l, w.fill, w.item)
				}
				if !l.From.Equal(w.from) || !l.Until.Equal(w.from.AddDate(0, 0, w.days)) {
					t.Errorf("line %d window %s – %s, want %s for %d days", i, l.From.In(persian.Tehran), l.Until.In(persian.Tehran), w.from, w.days)
				}
				if !l.InForce(l.From) || l.InForce(l.Until) || l.InForce(l.From.Add(-time.Nanosecond)) {
					t.Errorf("line %d: InForce does not hold from From to before Until", i)
				}
			}
		})
	}
}

func TestLastUntil(t *testing.T) {
	lines, err := Fills([]rx.Item{
		{Kind: "drug", Code: "A", Quantity: 1, Repeats: 2, RepeatIntervalDays: 28},
		{Kind: "drug", Code: "C", Quantity: 1, Repeats: 1, RepeatIntervalDays: 60},
	}, tehran(2026, 1, 1, 12, 0), 0)
	if err != nil {
		t.Fatal(err)
	}
	// Fill 1 of C (from day 60) ends after fill 2 of A (from day 56).
	if want := tehran(2026, 3, 2, 0, 0).AddDate(0, 0, 30); !LastUntil(lines).Equal(want) {
		t.Errorf("LastUntil %s, want %s", LastUntil(lines), want)
	}
}

func TestFillsRefuses(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for name, items := range map[string][]rx.Item{
		"zero quantity":         {{Kind: "drug", Code: "A"}},
		"repeats, no interval":  {{Kind: "drug", Code: "A", Quantity: 1, Repeats: 2}},
		"interval, no repeats":  {{Kind: "drug", Code: "A", Quantity: 1, RepeatIntervalDays: 2}},
		"negative repeats":      {{Kind: "drug", Code: "A", Quantity: 1, Repeats: -1, RepeatIntervalDays: 2}},
		"negative interval":     {{Kind: "drug", Code: "A", Quantity: 1, Repeats: 1, RepeatIntervalDays: -2}},
		"negative quantity too": {{Kind: "drug", Code: "A", Quantity: -1}},
	} {
		if _, err := Fills(items, now, 0); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := Fills([]rx.Item{{Kind: "drug", Code: "A", Quantity: 1}}, now, -1); err == nil {
		t.Error("negative window: no error")
	}
}

// The typed refusals carry the codes the HTTP edge maps.
func TestErrorCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code errs.Code
	}{
		{&ClaimedError{Until: time.Now()}, errs.PrescriptionClaimed},
		{&NotDispensableError{State: Cancelled, Item: -1}, errs.PrescriptionNotDispensable},
		{&NotDispensableError{State: Active, Item: 2}, errs.PrescriptionNotDispensable},
		{&OverDispenseError{Item: 1, Asked: 3, Remaining: 2}, errs.OverDispense},
		{Conflict("dispense", "x"), errs.DocumentIDConflict},
		{ErrSecretWrong, errs.ClaimSecretWrong},
		{ErrKeyReused, errs.IdempotencyKeyReused},
		{NotFound("prescription"), errs.NotFound},
	} {
		wrapped := errors.Join(errors.New("context"), tc.err)
		if got := errs.CodeOf(wrapped); got != tc.code {
			t.Errorf("%v: code %s, want %s", tc.err, got, tc.code)
		}
		if !errors.Is(wrapped, errs.Of(tc.code)) {
			t.Errorf("%v: errors.Is(errs.Of(%s)) false", tc.err, tc.code)
		}
	}
}
