package audit

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
)

type memSink struct {
	events []Event
	fail   error
}

func (m *memSink) AppendAudit(_ context.Context, e Event) (int64, error) {
	if m.fail != nil {
		return 0, m.fail
	}
	m.events = append(m.events, e)
	return int64(len(m.events)), nil
}

func TestRecord(t *testing.T) {
	var logs bytes.Buffer
	sink := &memSink{}
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	l := NewLog(sink, slog.New(slog.NewJSONHandler(&logs, nil)), func() time.Time { return now })
	ctx := context.Background()

	if err := l.Record(ctx, Event{Actor: "sub_a", Action: "enrolment.request", Object: "subject:sub_x", Outcome: OK, Detail: map[string]string{"profile": "p"}}); err != nil {
		t.Fatal(err)
	}
	if len(sink.events) != 1 || !sink.events[0].Time.Equal(now) {
		t.Fatalf("not recorded with the clock's time: %+v", sink.events)
	}
	if !strings.Contains(logs.String(), `"action":"enrolment.request"`) {
		t.Fatalf("not mirrored to the log: %s", logs.String())
	}

	t.Run("a national id is refused, not recorded", func(t *testing.T) {
		err := l.Record(ctx, Event{Actor: "sub_a", Action: "x", Object: "y", Outcome: OK, Detail: map[string]string{"oops": "0499370899"}})
		if !errors.Is(err, ErrIdentifying) || len(sink.events) != 1 || strings.Contains(logs.String(), "0499370899") {
			t.Fatalf("got %v; %d events; log has id: %v", err, len(sink.events), strings.Contains(logs.String(), "0499370899"))
		}
	})
	t.Run("an id in any written form is refused, a date is not", func(t *testing.T) {
		for _, v := range []string{"049-937089-9", "۰۴۹۹۳۷۰۸۹۹", "0020291205"} {
			if err := l.Record(ctx, Event{Actor: "sub_a", Action: "x", Object: v, Outcome: OK}); !errors.Is(err, ErrIdentifying) {
				t.Errorf("%q: got %v, want ErrIdentifying", v, err)
			}
		}
		// 2029-12-05 normalises to 0020291205, whose check digit holds.
		if err := l.Record(ctx, Event{Actor: "sub_a", Action: "x", Object: "y", Outcome: OK, Detail: map[string]string{"until": "2029-12-05"}}); err != nil {
			t.Fatalf("a date was refused: %v", err)
		}
	})
	t.Run("incomplete events are refused", func(t *testing.T) {
		if err := l.Record(ctx, Event{Action: "x", Outcome: OK}); err == nil {
			t.Fatal("event without actor recorded")
		}
	})
	t.Run("a failed write fails the operation", func(t *testing.T) {
		sink.fail = errors.New("disk full")
		if err := l.Record(ctx, Event{Actor: "a", Action: "x", Object: "y", Outcome: Intent}); err == nil {
			t.Fatal("a lost audit write was reported as success")
		}
	})
}

// TestRecordFailure: a failure is recorded with its code, and returned;
// when the audit write fails too, both are returned.
func TestRecordFailure(t *testing.T) {
	ctx := context.Background()
	sink := &memSink{}
	l := NewLog(sink, slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)), time.Now)
	opErr := errs.New(errs.LintFailed, "the CRL failed lint")
	err := RecordFailure(ctx, l, Event{Actor: "system", Action: "crl.generate", Object: "crl:7"}, opErr)
	if err != opErr || len(sink.events) != 1 || sink.events[0].Outcome != Failed || sink.events[0].Code != errs.LintFailed {
		t.Fatalf("got %v; recorded %+v", err, sink.events)
	}
	sink.fail = errors.New("disk full")
	err = RecordFailure(ctx, l, Event{Actor: "system", Action: "crl.generate", Object: "crl:8"}, opErr)
	if !errors.Is(err, opErr) || !errors.Is(err, sink.fail) || errs.CodeOf(err) != errs.LintFailed {
		t.Fatalf("got %v; want the failure (its code kept) and the audit log's", err)
	}
}

func TestTally(t *testing.T) {
	var logs bytes.Buffer
	sink := &memSink{}
	now := time.Date(2026, 11, 22, 10, 0, 30, 0, time.UTC)
	clock := func() time.Time { return now }
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	tally := NewTally(NewLog(sink, log, clock), log, clock, time.Minute)
	ctx := context.Background()
	for i := 0; i < 1000; i++ {
		tally.Count("holder", "certificate.revoke", errs.BadRevocationRequest)
	}
	for i := 0; i < 5; i++ {
		tally.Count("holder", "certificate.revoke", errs.RateLimited)
	}
	if err := tally.Flush(ctx, false); err != nil || len(sink.events) != 0 {
		t.Fatalf("a window still open was recorded: %v %+v", err, sink.events)
	}
	if n := strings.Count(logs.String(), "refusing unauthenticated requests"); n != 2 {
		t.Fatalf("%d log lines for 1005 refusals of two kinds; want one per kind and window", n)
	}
	now = now.Add(time.Minute)
	tally.Count("holder", "certificate.revoke", errs.BadRevocationRequest) // the next window
	if err := tally.Flush(ctx, false); err != nil {
		t.Fatal(err)
	}
	want := []Event{
		{Actor: "holder", Action: "certificate.revoke", Object: TallyObject, Outcome: Refused, Code: errs.BadRevocationRequest,
			Detail: map[string]string{"count": "1000", "from": "2026-11-22T10:00:00Z", "until": "2026-11-22T10:01:00Z"}},
		{Actor: "holder", Action: "certificate.revoke", Object: TallyObject, Outcome: Refused, Code: errs.RateLimited,
			Detail: map[string]string{"count": "5", "from": "2026-11-22T10:00:00Z", "until": "2026-11-22T10:01:00Z"}},
	}
	if len(sink.events) != 2 {
		t.Fatalf("%d summary events, want 2: %+v", len(sink.events), sink.events)
	}
	for i, w := range want {
		got := sink.events[i]
		if got.Actor != w.Actor || got.Action != w.Action || got.Object != w.Object || got.Outcome != w.Outcome || got.Code != w.Code || !maps.Equal(got.Detail, w.Detail) {
			t.Fatalf("summary %d: %+v, want %+v", i, got, w)
		}
	}

	t.Run("what the audit log refused is kept for the next flush", func(t *testing.T) {
		sink.fail = errors.New("disk full")
		now = now.Add(time.Minute)
		if err := tally.Flush(ctx, false); err == nil {
			t.Fatal("a failed write was reported as success")
		}
		sink.fail = nil
		tally.Count("holder", "certificate.revoke", errs.Unavailable)
		if err := tally.Flush(ctx, true); err != nil {
			t.Fatal(err)
		}
		if len(sink.events) != 4 || sink.events[2].Detail["count"] != "1" || sink.events[3].Outcome != Failed ||
			sink.events[3].Detail["until"] != now.Format(time.RFC3339) {
			t.Fatalf("after the audit log came back: %+v", sink.events[2:])
		}
	})
}
