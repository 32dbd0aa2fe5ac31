package audit

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
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
