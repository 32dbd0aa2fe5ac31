package exchange

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"strings"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
)

// AccessLogQuery asks for a page of who acted on a patient's
// prescriptions (schema AccessLogQuery).
type AccessLogQuery struct {
	NationalID string `json:"national_id"`
	Cursor     string `json:"cursor,omitempty"`
	Limit      int    `json:"limit,omitempty"`
}

// AccessLogPage is one page of a patient's access log, newest first
// (schema AccessLogPage).
type AccessLogPage struct {
	Accesses   []Access `json:"accesses"`
	NextCursor string   `json:"next_cursor,omitempty"`
}

// Access is one action on a patient's records, as the audit log holds it:
// what was done, when, with what outcome, and by whom — a role and an
// organisation (a licence or council number, or the calling software's
// registry id), never a person's name.
type Access struct {
	At           time.Time `json:"at"`
	Action       string    `json:"action"`
	Outcome      string    `json:"outcome"`
	Code         string    `json:"code,omitempty"`
	Role         string    `json:"role,omitempty"`
	Organisation string    `json:"organisation,omitempty"`
	Prescription string    `json:"prescription_id,omitempty"`
	// Index is the entry's index in rxd's audit log, where an auditor
	// finds it and proves it is in the log.
	Index uint64 `json:"log_index"`
}

// DefaultAccessLogPage and MaxAccessLogPage are an access-log page's
// sizes when the query gives none, and at most.
const (
	DefaultAccessLogPage = 50
	MaxAccessLogPage     = 200
)

// AccessLog is a page of who acted on a patient's prescriptions, newest
// first (POST /v1/patient-access-log), for the insurer's own services
// only, as the history is: the entries of rxd's audit log that name the
// patient's pseudonym, computed here from the national id — and nothing
// of anyone else. Entries reach it once sequenced (within a second or
// so). The query is itself an action on the patient's records, recorded
// before it is answered.
func (s *Service) AccessLog(ctx context.Context, caller Caller, q AccessLogQuery) (*AccessLogPage, error) {
	a := s.begin(ActAccessLog, caller)
	page, err := s.accessLog(ctx, a, caller, q)
	if err = s.end(ctx, a, err); err != nil {
		return nil, err
	}
	return page, nil
}

func (s *Service) accessLog(ctx context.Context, a *action, caller Caller, q AccessLogQuery) (*AccessLogPage, error) {
	if _, err := s.patientQuery(a, caller, q.NationalID, "read a patient's access log"); err != nil {
		return nil, err
	}
	if a.e.Patient.IsZero() {
		return nil, errs.FieldError(errs.InvalidNID, "national_id", "is not a national id")
	}
	limit := q.Limit
	switch {
	case limit == 0:
		limit = DefaultAccessLogPage
	case limit < 1 || limit > MaxAccessLogPage:
		return nil, errs.FieldError(errs.Invalid, "limit", "a page holds 1 to %d accesses", MaxAccessLogPage)
	}
	var before uint64
	if q.Cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(q.Cursor)
		if err != nil || len(raw) != 8 || binary.BigEndian.Uint64(raw) == 0 {
			return nil, errs.FieldError(errs.Invalid, "cursor", "is not a cursor this exchange gave")
		}
		before = binary.BigEndian.Uint64(raw)
	}
	// One more than the page, to know whether another follows.
	entries, err := s.cfg.AuditLog.PatientEntries(ctx, a.e.Patient, before, limit+1)
	if err != nil {
		return nil, internal(err, "reading a patient's access log")
	}
	page := &AccessLogPage{Accesses: make([]Access, 0, min(len(entries), limit))}
	for i, ie := range entries {
		if i == limit {
			var c [8]byte
			binary.BigEndian.PutUint64(c[:], entries[i-1].Index)
			page.NextCursor = base64.RawURLEncoding.EncodeToString(c[:])
			break
		}
		e := ie.Entry
		acc := Access{At: e.Time.UTC(), Action: e.Action, Outcome: string(e.Outcome), Code: e.Code, Role: e.Actor.Role, Organisation: e.Actor.Org, Index: ie.Index}
		if id, ok := strings.CutPrefix(e.Object, "rx:"); ok {
			acc.Prescription = id
		}
		page.Accesses = append(page.Accesses, acc)
	}
	return page, nil
}
