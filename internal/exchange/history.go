package exchange

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/nationalid"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/rx/trackcode"
)

// DefaultHistoryPage is a history page's size when the query gives none.
const DefaultHistoryPage = 20

// History is a page of a patient's prescriptions, newest first, with
// their states, dispenses and cancellations
// (POST /v1/patient-history), for the insurer's own services only (the
// patient portal among them; how it authenticates the patient comes with
// the portal). The cursor is opaque: the next_cursor of the page before.
func (s *Service) History(ctx context.Context, caller Caller, q HistoryQuery) (*HistoryPage, error) {
	a := s.begin(ActHistory, caller)
	page, err := s.history(ctx, a, caller, q)
	if err = s.end(ctx, a, err); err != nil {
		return nil, err
	}
	return page, nil
}

// patientQuery checks a query of a patient's records by the insurer's
// services: the caller's role, and the national id, whose patient the
// action's record names.
func (s *Service) patientQuery(a *action, caller Caller, nationalID, what string) (string, error) {
	if caller.Role != pki.RoleService {
		return "", roleNotAllowed(caller.Role, what)
	}
	nid, err := nationalid.Parse(nationalID)
	if err != nil {
		if e, ok := err.(*errs.Error); ok {
			return "", &errs.Error{Code: e.Code, Field: "national_id", Detail: e.Detail}
		}
		return "", err
	}
	return nid, s.about(a, nid)
}

func (s *Service) history(ctx context.Context, a *action, caller Caller, q HistoryQuery) (*HistoryPage, error) {
	nid, err := s.patientQuery(a, caller, q.NationalID, "read a patient's history")
	if err != nil {
		return nil, err
	}
	limit := q.Limit
	if limit == 0 {
		limit = DefaultHistoryPage
	}
	var after *Cursor
	if q.Cursor != "" {
		if after, err = decodeCursor(q.Cursor); err != nil {
			return nil, err
		}
	}
	entries, next, err := s.cfg.Store.History(ctx, nid, after, limit, s.cfg.Now())
	if err != nil {
		return nil, internal(err, "reading a patient's history")
	}
	page := &HistoryPage{Prescriptions: make([]HistoryItem, 0, len(entries))}
	for _, e := range entries {
		it, err := historyItem(e)
		if err != nil {
			return nil, err
		}
		page.Prescriptions = append(page.Prescriptions, it)
	}
	if next != nil {
		page.NextCursor = encodeCursor(next)
	}
	return page, nil
}

func historyItem(e HistoryEntry) (HistoryItem, error) {
	p := e.Prescription
	it := HistoryItem{ID: p.ID, TrackingCode: trackcode.Format(p.TrackingCode), Kind: p.Kind, State: p.State, IssuedAt: p.IssuedAt.UTC(), Lines: linesView(p.Lines), Dispenses: []HistoryDispense{}}
	// What the stored documents say, verified when they were accepted.
	_, payload, err := rx.Peek(p.JWS)
	if err != nil {
		return HistoryItem{}, fmt.Errorf("exchange: stored prescription %s: %w", p.ID, err)
	}
	var doc struct {
		Prescriber rx.Prescriber `json:"prescriber"`
	}
	if err := json.Unmarshal(payload, &doc); err != nil {
		return HistoryItem{}, fmt.Errorf("exchange: stored prescription %s: %w", p.ID, err)
	}
	it.Prescriber = HistoryPrescriber{CouncilNumber: doc.Prescriber.CouncilNumber, Profession: doc.Prescriber.Profession,
		Specialty: doc.Prescriber.Specialty, Name: doc.Prescriber.Name}
	for _, d := range e.Dispenses {
		_, payload, err := rx.Peek(d.JWS)
		if err != nil {
			return HistoryItem{}, fmt.Errorf("exchange: stored dispense %s: %w", d.ID, err)
		}
		// A dispense record lists items; a paper prescription, its own
		// dispense, lists what was dispensed.
		var rec struct {
			Dispenser rx.Dispenser       `json:"dispenser"`
			Items     []rx.DispensedItem `json:"items"`
			Dispensed []rx.DispensedItem `json:"dispensed"`
		}
		if err := json.Unmarshal(payload, &rec); err != nil {
			return HistoryItem{}, fmt.Errorf("exchange: stored dispense %s: %w", d.ID, err)
		}
		items := rec.Items
		if p.Kind == Paper && d.ID == p.ID {
			items = rec.Dispensed
		}
		it.Dispenses = append(it.Dispenses, HistoryDispense{ID: d.ID, At: d.At.UTC(), Organisation: rec.Dispenser.LicenceNumber, Role: rec.Dispenser.Role, Items: items})
	}
	if n := len(e.Cancellations); n > 0 {
		t := e.Cancellations[n-1].At.UTC()
		it.CancelledAt = &t
	}
	return it, nil
}

// A cursor is base64url of the last prescription's issue time and id: it
// is opaque to callers, who pass back what they were given.
func encodeCursor(c *Cursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(c.IssuedAt.UTC().Format(time.RFC3339Nano) + "|" + c.ID))
}

func decodeCursor(s string) (*Cursor, error) {
	bad := errs.FieldError(errs.Invalid, "cursor", "is not a cursor this exchange gave")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad
	}
	at, id, ok := strings.Cut(string(raw), "|")
	if !ok || id == "" {
		return nil, bad
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return nil, bad
	}
	return &Cursor{IssuedAt: t, ID: id}, nil
}
