package audit

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
)

// OutcomeOf is the outcome of an action that ended with code: Failed when
// the fault was ours (internal, unavailable), Refused otherwise.
func OutcomeOf(code errs.Code) Outcome {
	if code == errs.Internal || code == errs.Unavailable {
		return Failed
	}
	return Refused
}

// TallyObject is the object of summary events: requests that named nothing
// anyone had proved to hold.
const TallyObject = "requests:unauthenticated"

// Tally counts refused requests that identified no one (an unsigned or
// badly signed revocation request, a throttled one) and records, for each
// window that had any, one summary event per actor, action and code, with
// the count and the window in Detail. One event per such request would let
// anyone grow the append-only audit log at the speed of their network;
// what an officer needs to know of them is how many, when and why.
// Requests that proved something (a valid signature by a certificate's
// key) are recorded one by one, by their callers, as before.
type Tally struct {
	rec    Recorder
	log    *slog.Logger
	now    func() time.Time
	window time.Duration

	mu     sync.Mutex
	open   *tallyWindow   // counting now
	closed []*tallyWindow // ended, not yet recorded
}

type tallyKey struct {
	actor, action string
	code          errs.Code
}

type tallyWindow struct {
	from, until time.Time
	counts      map[tallyKey]int
}

// NewTally returns a tally recording to rec in windows of window (aligned
// to the clock: a one-minute window starts on the minute).
func NewTally(rec Recorder, log *slog.Logger, now func() time.Time, window time.Duration) *Tally {
	return &Tally{rec: rec, log: log, now: now, window: window}
}

// Count counts one refusal. It never writes: Flush does.
func (t *Tally) Count(actor, action string, code errs.Code) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.roll(now)
	if t.open == nil {
		from := now.Truncate(t.window)
		t.open = &tallyWindow{from: from, until: from.Add(t.window), counts: map[tallyKey]int{}}
	}
	k := tallyKey{actor, action, code}
	if t.open.counts[k] == 0 {
		// Once per window and reason: the log says at once that refusals
		// are coming, at a rate no caller controls.
		t.log.Warn("refusing unauthenticated requests; counted, and summarised in the audit log when the window ends",
			"actor", actor, "action", action, "code", string(code), "window_until", t.open.until)
	}
	t.open.counts[k]++
}

// roll closes the open window if now is past it.
func (t *Tally) roll(now time.Time) {
	if t.open != nil && !now.Before(t.open.until) {
		t.closed = append(t.closed, t.open)
		t.open = nil
	}
}

// Flush records the summaries of every window that has ended and, with
// all (at shutdown), of the one still open, ending it now. What cannot be
// recorded (the audit log is down) is kept for the next Flush.
func (t *Tally) Flush(ctx context.Context, all bool) error {
	now := t.now()
	t.mu.Lock()
	t.roll(now)
	if all && t.open != nil {
		t.open.until = now
		t.closed = append(t.closed, t.open)
		t.open = nil
	}
	due := t.closed
	t.closed = nil
	t.mu.Unlock()
	for i, w := range due {
		keys := make([]tallyKey, 0, len(w.counts))
		for k := range w.counts {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b tallyKey) int {
			return cmp.Or(cmp.Compare(a.actor, b.actor), cmp.Compare(a.action, b.action), cmp.Compare(a.code, b.code))
		})
		for _, k := range keys {
			err := t.rec.Record(ctx, Event{Actor: k.actor, Action: k.action, Object: TallyObject, Outcome: OutcomeOf(k.code), Code: k.code,
				Detail: map[string]string{"count": strconv.Itoa(w.counts[k]), "from": w.from.UTC().Format(time.RFC3339), "until": w.until.UTC().Format(time.RFC3339)}})
			if err != nil {
				t.mu.Lock()
				t.closed = append(due[i:], t.closed...)
				t.mu.Unlock()
				return err
			}
			delete(w.counts, k)
		}
	}
	return nil
}

// Run flushes at the end of every window until ctx ends. The caller
// flushes what is left with Flush(ctx, true) once nothing counts any more.
func (t *Tally) Run(ctx context.Context) {
	tick := time.NewTicker(t.window)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := t.Flush(ctx, false); err != nil && !errors.Is(err, context.Canceled) {
				t.log.ErrorContext(ctx, "recording refusal summaries failed; kept for the next try", "err", err)
			}
		}
	}
}
