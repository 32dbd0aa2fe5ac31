package truststore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/store"
)

// storedSubject is a subject's lossless JSON (registry.Subject's own shows
// the licence period as days).
type storedSubject struct {
	plainSubject
	LicenceValidFrom  time.Time `json:"licence_valid_from_at"`
	LicenceValidUntil time.Time `json:"licence_valid_until_at"`
}

// plainSubject has Subject's fields without its MarshalJSON.
type plainSubject registry.Subject

func marshalSubject(s *registry.Subject) (string, error) {
	b, err := json.Marshal(storedSubject{plainSubject: plainSubject(*s), LicenceValidFrom: s.LicenceValidFrom, LicenceValidUntil: s.LicenceValidUntil})
	return string(b), err
}

func unmarshalSubject(raw string) (*registry.Subject, error) {
	var st storedSubject
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return nil, err
	}
	s := registry.Subject(st.plainSubject)
	s.LicenceValidFrom, s.LicenceValidUntil = st.LicenceValidFrom.UTC(), st.LicenceValidUntil.UTC()
	s.CreatedAt, s.UpdatedAt = s.CreatedAt.UTC(), s.UpdatedAt.UTC()
	return &s, nil
}

// CreateSubjectChange records a registry change awaiting a second officer,
// with the audit events that record it.
func (t *Store) CreateSubjectChange(ctx context.Context, c *registry.Change, events ...audit.Event) error {
	proposed, err := marshalSubject(c.Proposed)
	if err != nil {
		return err
	}
	fields, err := json.Marshal(c.Fields)
	if err != nil {
		return err
	}
	return t.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := t.Exec(ctx, tx, `INSERT INTO subject_change_requests (id, subject_id, base_version, fields, proposed, requested_by, requested_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, c.ID, c.SubjectID, c.BaseVersion, string(fields), proposed, c.RequestedBy, c.RequestedAt.UTC()); err != nil {
			return err
		}
		return t.record(ctx, tx, events)
	})
}

const subjectChangeSelect = `SELECT r.id, r.subject_id, r.base_version, r.fields, r.proposed, r.requested_by, r.requested_at,
	d.approved, d.decided_by, d.decided_at, d.comment
	FROM subject_change_requests r LEFT JOIN subject_change_decisions d ON d.change_id = r.id`

func scanSubjectChange(r scanner) (*registry.Change, error) {
	var c registry.Change
	var fields, proposed string
	var approved sql.NullBool
	var by, comment sql.NullString
	var at sql.NullTime
	if err := r.Scan(&c.ID, &c.SubjectID, &c.BaseVersion, &fields, &proposed, &c.RequestedBy, &c.RequestedAt,
		&approved, &by, &at, &comment); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(fields), &c.Fields); err != nil {
		return nil, fmt.Errorf("sqlstore: registry change %s fields: %w", c.ID, err)
	}
	p, err := unmarshalSubject(proposed)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: registry change %s proposal: %w", c.ID, err)
	}
	c.Proposed, c.RequestedAt = p, c.RequestedAt.UTC()
	if approved.Valid {
		c.Decided, c.Approved, c.DecidedBy, c.DecidedAt, c.Comment = true, approved.Bool, by.String, at.Time.UTC(), comment.String
	}
	return &c, nil
}

// GetSubjectChange reads a registry change with its decision.
func (t *Store) GetSubjectChange(ctx context.Context, id string) (*registry.Change, error) {
	c, err := scanSubjectChange(t.SQL().QueryRowContext(ctx, t.Rebind(subjectChangeSelect+` WHERE r.id = $1`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: registry change %s", store.ErrNotFound, id)
	}
	return c, err
}

// ListSubjectChanges lists registry changes, newest first.
func (t *Store) ListSubjectChanges(ctx context.Context, f store.SubjectChangeFilter) ([]*registry.Change, error) {
	q := subjectChangeSelect + ` WHERE 1=1`
	var args []any
	if f.SubjectID != "" {
		args = append(args, f.SubjectID)
		q += fmt.Sprintf(" AND r.subject_id = $%d", len(args))
	}
	if f.Undecided {
		q += " AND d.change_id IS NULL"
	}
	if !f.RequestedSince.IsZero() {
		args = append(args, f.RequestedSince.UTC())
		q += fmt.Sprintf(" AND r.requested_at >= $%d", len(args))
	}
	args = append(args, limit(f.Limit))
	q += fmt.Sprintf(" ORDER BY r.requested_at DESC, r.id LIMIT $%d", len(args))
	rows, err := t.SQL().QueryContext(ctx, t.Rebind(q), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*registry.Change
	for rows.Next() {
		c, err := scanSubjectChange(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// DecideSubjectChange records the decision and, for an approval, stores
// apply (at the change's base version + 1), with the audit events that
// record it, in the same transaction.
func (t *Store) DecideSubjectChange(ctx context.Context, id string, approved bool, by string, at time.Time, comment string, apply *registry.Subject, events ...audit.Event) error {
	return t.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := t.Exec(ctx, tx, `INSERT INTO subject_change_decisions (change_id, approved, decided_by, decided_at, comment) VALUES ($1, $2, $3, $4, $5)`,
			id, approved, by, at.UTC(), comment); err != nil {
			return err
		}
		if apply == nil {
			return t.record(ctx, tx, events)
		}
		var base int
		if err := tx.QueryRowContext(ctx, t.Rebind(`SELECT base_version FROM subject_change_requests WHERE id = $1`), id).Scan(&base); err != nil {
			return err
		}
		if apply.Version != base+1 {
			return fmt.Errorf("sqlstore: registry change %s is based on version %d, not %d", id, base, apply.Version-1)
		}
		if err := t.updateSubject(ctx, tx, apply, by); err != nil {
			return err
		}
		return t.record(ctx, tx, events)
	})
}
