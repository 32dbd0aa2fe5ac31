package exchange

import (
	"fmt"
	"time"

	"github.com/nuskha/nuskha/internal/persian"
	"github.com/nuskha/nuskha/internal/rx"
)

// DefaultWindowDays is how long a fill may be dispensed from its first day.
const DefaultWindowDays = 30

// Fills expands a prescription's items into its lines. Fill 0 holds every
// item and begins on the day of issue in Iran; an item with repeats N and
// repeat_interval_days D also has fills 1..N, fill k beginning on the
// k·D-th day after the issue day. Each fill may be dispensed for
// windowDays days (DefaultWindowDays when 0) from the start of its first
// day, Tehran time, to the start of the day after its last. Lines are
// ordered by fill, then item.
func Fills(items []rx.Item, issuedAt time.Time, windowDays int) ([]Line, error) {
	if windowDays == 0 {
		windowDays = DefaultWindowDays
	}
	if windowDays < 0 {
		return nil, fmt.Errorf("exchange: a fill window of %d days", windowDays)
	}
	day := persian.Day(issuedAt)
	window := func(k, interval int) (time.Time, time.Time) {
		start := day.AddDate(0, 0, k*interval)
		return persian.DayStart(start), persian.DayStart(start.AddDate(0, 0, windowDays))
	}
	var lines []Line
	most := 0
	for i, it := range items {
		if it.Quantity <= 0 {
			return nil, fmt.Errorf("exchange: item %d has quantity %d", i, it.Quantity)
		}
		if it.Repeats < 0 || (it.Repeats > 0) != (it.RepeatIntervalDays > 0) || it.RepeatIntervalDays < 0 {
			return nil, fmt.Errorf("exchange: item %d has repeats %d every %d days", i, it.Repeats, it.RepeatIntervalDays)
		}
		from, until := window(0, 0)
		lines = append(lines, Line{Fill: 0, Item: i, Code: it.Code, Kind: it.Kind, Quantity: it.Quantity, From: from, Until: until})
		most = max(most, it.Repeats)
	}
	for k := 1; k <= most; k++ {
		for i, it := range items {
			if k > it.Repeats {
				continue
			}
			from, until := window(k, it.RepeatIntervalDays)
			lines = append(lines, Line{Fill: k, Item: i, Code: it.Code, Kind: it.Kind, Quantity: it.Quantity, From: from, Until: until})
		}
	}
	return lines, nil
}

// LastUntil is when the last of lines' windows ends: when a prescription
// not fully dispensed expires.
func LastUntil(lines []Line) time.Time {
	var t time.Time
	for _, l := range lines {
		if l.Until.After(t) {
			t = l.Until
		}
	}
	return t
}

// Counted is the index in lines of the line a dispense of item at t is
// counted against — the earliest fill of the item in force at t with
// something left, or the earliest in force when none has — and -1 when no
// fill of the item is in force. The Store counts by it, and the service
// judges the same fill by it.
func Counted(lines []Line, item int, t time.Time) int {
	at := -1
	for j, l := range lines {
		if l.Item != item || !l.InForce(t) {
			continue
		}
		if at < 0 || (lines[at].Remaining() == 0 && l.Remaining() > 0) {
			at = j
		}
	}
	return at
}
