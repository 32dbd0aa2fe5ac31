// Package audit is the seam every security decision is recorded through.
// Events are written before an HSM signs (intent) and after (outcome); a
// failed write fails the operation. Events name actors and objects by
// opaque ids — never PINs, key material, national ids or prescription
// contents. (The tamper-evident, privacy-preserving log is built behind this
// same interface.)
package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/nationalid"
	"github.com/nuskha/nuskha/internal/persian"
)

// Outcome of an audited action.
type Outcome string

// Outcomes.
const (
	Intent  Outcome = "intent"  // about to act (e.g. the HSM is about to sign)
	OK      Outcome = "ok"      // done
	Refused Outcome = "refused" // a policy said no; nothing changed
	Failed  Outcome = "failed"  // something broke; nothing was released
)

// Event is one audit record.
type Event struct {
	Seq     int64             `json:"seq,omitempty"` // assigned by the store
	Time    time.Time         `json:"time"`
	Actor   string            `json:"actor"`  // officer subject id, "ceremony" or "system"
	Action  string            `json:"action"` // e.g. enrolment.approve, certificate.issue
	Object  string            `json:"object"` // e.g. enrolment:<id>, certificate:<serial>
	Outcome Outcome           `json:"outcome"`
	Code    errs.Code         `json:"code,omitempty"` // for refused and failed
	Detail  map[string]string `json:"detail,omitempty"`
}

// Recorder records events.
type Recorder interface {
	Record(ctx context.Context, e Event) error
}

// Appender is the durable sink of a Log.
type Appender interface {
	AppendAudit(ctx context.Context, e Event) (int64, error)
}

// Log records events durably and mirrors them to the process log.
type Log struct {
	sink Appender
	log  *slog.Logger
	now  func() time.Time
}

// NewLog returns a Recorder writing to sink.
func NewLog(sink Appender, log *slog.Logger, now func() time.Time) *Log {
	return &Log{sink: sink, log: log, now: now}
}

// ErrIdentifying is returned for an event that would record a national id.
var ErrIdentifying = errors.New("audit: event carries a national id")

// Record validates and appends e. It refuses, rather than records, an event
// with a value that is a valid national id: a privacy leak is a bug to fix,
// not something to write down for ever.
func (l *Log) Record(ctx context.Context, e Event) error {
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	if err := e.Check(); err != nil {
		return err
	}
	seq, err := l.sink.AppendAudit(ctx, e)
	if err != nil {
		l.log.ErrorContext(ctx, "audit write failed", "action", e.Action, "object", e.Object, "err", err)
		return fmt.Errorf("audit: %w", err)
	}
	mirror(ctx, l.log, e, seq)
	return nil
}

func mirror(ctx context.Context, log *slog.Logger, e Event, seq int64) {
	attrs := []any{"actor", e.Actor, "action", e.Action, "object", e.Object, "outcome", string(e.Outcome)}
	if seq > 0 {
		attrs = append([]any{"seq", seq}, attrs...)
	}
	if e.Code != "" {
		attrs = append(attrs, "code", string(e.Code))
	}
	keys := make([]string, 0, len(e.Detail))
	for k := range e.Detail {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		attrs = append(attrs, k, e.Detail[k])
	}
	log.InfoContext(ctx, "audit", attrs...)
}

// Check refuses an event without its time, actor, action or outcome, or
// with a value that is a valid national id. A store that appends events in
// the transaction of the change they record checks each with it, as
// Record does.
func (e *Event) Check() error {
	if e.Time.IsZero() || e.Actor == "" || e.Action == "" || e.Outcome == "" {
		return errors.New("audit: event needs time, actor, action and outcome")
	}
	for _, v := range append([]string{e.Actor, e.Object}, values(e.Detail)...) {
		if Identifying(v) {
			return ErrIdentifying
		}
	}
	return nil
}

// Mirror writes an event a store committed to the process log, as Record
// does for the events it appends.
func Mirror(ctx context.Context, log *slog.Logger, e Event) { mirror(ctx, log, e, 0) }

// RecordFailure records e as the failure, with err, of the action it
// names, and returns err: joined with the audit write's own error if that
// failed too, so that a failure the audit log missed is reported with the
// one it was about, never dropped.
func RecordFailure(ctx context.Context, rec Recorder, e Event, err error) error {
	e.Outcome = Failed
	if e.Code == "" {
		e.Code = errs.CodeOf(err)
	}
	if aerr := rec.Record(ctx, e); aerr != nil {
		return errors.Join(err, fmt.Errorf("the audit log did not record this failure of %s %s: %w", e.Action, e.Object, aerr))
	}
	return err
}

// Identifying reports whether v is a national id as one is written: ten
// digits (ASCII, Persian or Arabic-Indic), or the printed ddd-dddddd-d,
// with a valid check digit. Other shapes are not ids even when
// nationalid.Normalize would make one of them: a date such as 2029-12-05
// loses its hyphens, gains two leading zeros and passes the check digit
// about once in eleven, which refused real events on such days.
func Identifying(v string) bool {
	d := []rune(persian.Digits(v))
	switch {
	case len(d) == 10 && allDigits(d):
	case len(d) == 12 && d[3] == '-' && d[10] == '-' && allDigits(d[:3]) && allDigits(d[4:10]) && allDigits(d[11:]):
	default:
		return false
	}
	return nationalid.Valid(string(d))
}

func allDigits(rs []rune) bool {
	for _, r := range rs {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func values(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
