package truststore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
)

// lockSerial serialises status changes of one certificate. SQLite's
// immediate transactions already serialise all writers.
func (t *Store) lockSerial(ctx context.Context, tx *sql.Tx, serial string) error {
	if t.Dialect() != sqlstore.Postgres {
		return nil
	}
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "status:"+serial)
	return err
}

// RecordStatus appends ev and updates the derived current status, with
// the audit events that record it, if the certificate's current status is
// one of from. Otherwise it returns the current status and an error
// wrapping store.ErrConflict; a missing certificate gives
// store.ErrNotFound.
func (t *Store) RecordStatus(ctx context.Context, ev *revoke.Event, from []revoke.Status, events ...audit.Event) (revoke.Status, error) {
	var current revoke.Status
	err := t.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		current, err = t.recordStatus(ctx, tx, ev, from, events)
		return err
	})
	return current, err
}

// ApproveStatusChange records the approval of change id and the status
// event ev it makes, as RecordStatus does, with the audit events, in one
// transaction.
func (t *Store) ApproveStatusChange(ctx context.Context, id, by string, at time.Time, comment string, ev *revoke.Event, from []revoke.Status, events ...audit.Event) (revoke.Status, error) {
	var current revoke.Status
	err := t.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := t.Exec(ctx, tx, `INSERT INTO status_change_decisions (change_id, approved, decided_by, decided_at, comment) VALUES ($1, $2, $3, $4, $5)`,
			id, true, by, at.UTC(), comment); err != nil {
			return err
		}
		var err error
		current, err = t.recordStatus(ctx, tx, ev, from, events)
		return err
	})
	return current, err
}

func (t *Store) recordStatus(ctx context.Context, tx *sql.Tx, ev *revoke.Event, from []revoke.Status, events []audit.Event) (revoke.Status, error) {
	serial := pki.SerialHex(ev.Serial)
	current := revoke.Good
	err := func() error {
		if err := t.lockSerial(ctx, tx, serial); err != nil {
			return err
		}
		var notAfter time.Time
		if err := tx.QueryRowContext(ctx, t.Rebind(`SELECT not_after FROM certificates WHERE serial = $1`), serial).Scan(&notAfter); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: certificate %s", store.ErrNotFound, serial)
			}
			return err
		}
		var st string
		err := tx.QueryRowContext(ctx, t.Rebind(`SELECT status FROM certificate_status WHERE serial = $1`), serial).Scan(&st)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		default:
			current = revoke.Status(st)
		}
		if !slices.Contains(from, current) {
			return fmt.Errorf("%w: certificate %s is %s", store.ErrConflict, serial, current)
		}
		var change any
		if ev.ChangeID != "" {
			change = ev.ChangeID
		}
		if err := tx.QueryRowContext(ctx, t.Rebind(`INSERT INTO status_events (serial, status, reason, effective_at, recorded_at, requested_by, approved_by, change_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq`),
			serial, string(ev.Status), int(ev.Reason), ev.EffectiveAt.UTC(), ev.RecordedAt.UTC(), ev.RequestedBy, ev.ApprovedBy, change).Scan(&ev.Seq); err != nil {
			return t.Classify(err)
		}
		// A release keeps the row (status good) so that its sequence number
		// is known: consumers order status changes by it.
		_, err = t.Exec(ctx, tx, `INSERT INTO certificate_status (serial, status, reason, effective_at, not_after, seq) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (serial) DO UPDATE SET status = excluded.status, reason = excluded.reason, effective_at = excluded.effective_at, seq = excluded.seq`,
			serial, string(ev.Status), int(ev.Reason), ev.EffectiveAt.UTC(), notAfter.UTC(), ev.Seq)
		if err != nil {
			return err
		}
		return t.record(ctx, tx, events)
	}()
	return current, err
}

// CertificateStatus returns a certificate's current status.
func (t *Store) CertificateStatus(ctx context.Context, serial *big.Int) (revoke.Record, error) {
	s := pki.SerialHex(serial)
	rec := revoke.Record{Serial: serial, Status: revoke.Good}
	var st string
	var reason int
	var seq int
	err := t.SQL().QueryRowContext(ctx, t.Rebind(`SELECT c.not_after, s.status, s.reason, s.effective_at, s.seq FROM certificates c
		LEFT JOIN certificate_status s ON s.serial = c.serial WHERE c.serial = $1`), s).
		Scan(&rec.NotAfter, nullStr{&st}, nullInt{&reason}, nullTime{&rec.EffectiveAt}, nullInt{&seq})
	if errors.Is(err, sql.ErrNoRows) {
		return rec, fmt.Errorf("%w: certificate %s", store.ErrNotFound, s)
	}
	if err != nil {
		return rec, err
	}
	if st != "" {
		rec.Status, rec.Reason, rec.Seq = revoke.Status(st), revoke.Reason(reason), int64(seq)
	}
	if rec.Status == revoke.Good {
		rec.Reason, rec.EffectiveAt = 0, time.Time{}
	}
	rec.NotAfter, rec.EffectiveAt = rec.NotAfter.UTC(), rec.EffectiveAt.UTC()
	return rec, nil
}

// ForEachStatus calls fn for every certificate that is not good and has not
// expired before notAfter, in serial order.
func (t *Store) ForEachStatus(ctx context.Context, notAfter time.Time, fn func(revoke.Record) error) error {
	rows, err := t.SQL().QueryContext(ctx, t.Rebind(`SELECT serial, status, reason, effective_at, not_after, seq FROM certificate_status
		WHERE not_after > $1 AND status <> 'good' ORDER BY serial`), notAfter.UTC())
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var s, st string
		var reason int
		var r revoke.Record
		if err := rows.Scan(&s, &st, &reason, &r.EffectiveAt, &r.NotAfter, &r.Seq); err != nil {
			return err
		}
		n, ok := pki.ParseSerialHex(s)
		if !ok {
			return fmt.Errorf("sqlstore: stored serial %q is not hex", s)
		}
		r.Serial, r.Status, r.Reason = n, revoke.Status(st), revoke.Reason(reason)
		r.EffectiveAt, r.NotAfter = r.EffectiveAt.UTC(), r.NotAfter.UTC()
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ForEachCertificate calls fn for every certificate (with its current
// status) that has not expired before notAfter.
func (t *Store) ForEachCertificate(ctx context.Context, notAfter time.Time, fn func(revoke.Record) error) error {
	rows, err := t.SQL().QueryContext(ctx, t.Rebind(`SELECT c.serial, c.not_after, s.status, s.reason, s.effective_at, s.seq FROM certificates c
		LEFT JOIN certificate_status s ON s.serial = c.serial WHERE c.not_after > $1 ORDER BY c.serial`), notAfter.UTC())
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var s, st string
		var reason int
		r := revoke.Record{Status: revoke.Good}
		var seq int
		if err := rows.Scan(&s, &r.NotAfter, nullStr{&st}, nullInt{&reason}, nullTime{&r.EffectiveAt}, nullInt{&seq}); err != nil {
			return err
		}
		n, ok := pki.ParseSerialHex(s)
		if !ok {
			return fmt.Errorf("sqlstore: stored serial %q is not hex", s)
		}
		r.Serial = n
		if st != "" {
			r.Status, r.Reason, r.Seq = revoke.Status(st), revoke.Reason(reason), int64(seq)
		}
		if r.Status == revoke.Good {
			r.Reason, r.EffectiveAt = 0, time.Time{}
		}
		r.EffectiveAt, r.NotAfter = r.EffectiveAt.UTC(), r.NotAfter.UTC()
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// StatusEvents lists a certificate's history in order.
func (t *Store) StatusEvents(ctx context.Context, serial *big.Int) ([]revoke.Event, error) {
	rows, err := t.SQL().QueryContext(ctx, t.Rebind(`SELECT seq, status, reason, effective_at, recorded_at, requested_by, approved_by, change_id
		FROM status_events WHERE serial = $1 ORDER BY seq`), pki.SerialHex(serial))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []revoke.Event
	for rows.Next() {
		e := revoke.Event{Serial: serial}
		var st string
		var reason int
		if err := rows.Scan(&e.Seq, &st, &reason, &e.EffectiveAt, &e.RecordedAt, &e.RequestedBy, &e.ApprovedBy, nullStr{&e.ChangeID}); err != nil {
			return nil, err
		}
		e.Status, e.Reason = revoke.Status(st), revoke.Reason(reason)
		e.EffectiveAt, e.RecordedAt = e.EffectiveAt.UTC(), e.RecordedAt.UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// CreateStatusChange records a hold, release or revocation request, with
// the audit events that record it.
func (t *Store) CreateStatusChange(ctx context.Context, c *revoke.Change, events ...audit.Event) error {
	return t.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := t.Exec(ctx, tx, `INSERT INTO status_changes (id, serial, action, reason, comment, requested_by, requested_at, base_seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			c.ID, c.Serial, string(c.Action), c.Reason, c.Comment, c.RequestedBy, c.RequestedAt.UTC(), c.BaseSeq); err != nil {
			return err
		}
		return t.record(ctx, tx, events)
	})
}

const changeSelect = `SELECT c.id, c.serial, c.action, c.reason, c.comment, c.requested_by, c.requested_at, c.base_seq, d.approved, d.decided_by, d.decided_at, d.comment
	FROM status_changes c LEFT JOIN status_change_decisions d ON d.change_id = c.id`

func scanChange(r scanner) (*revoke.Change, error) {
	var c revoke.Change
	var action string
	var approved sql.NullBool
	var by, comment sql.NullString
	var at sql.NullTime
	if err := r.Scan(&c.ID, &c.Serial, &action, &c.Reason, &c.Comment, &c.RequestedBy, &c.RequestedAt, &c.BaseSeq, &approved, &by, &at, &comment); err != nil {
		return nil, err
	}
	c.Action, c.RequestedAt = revoke.Action(action), c.RequestedAt.UTC()
	if approved.Valid {
		c.Decided, c.Approved, c.DecidedBy, c.DecidedAt, c.DecisionOn = true, approved.Bool, by.String, at.Time.UTC(), comment.String
	}
	return &c, nil
}

// GetStatusChange reads a request with its decision.
func (t *Store) GetStatusChange(ctx context.Context, id string) (*revoke.Change, error) {
	c, err := scanChange(t.SQL().QueryRowContext(ctx, t.Rebind(changeSelect+` WHERE c.id = $1`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: status change %s", store.ErrNotFound, id)
	}
	return c, err
}

// ListStatusChanges lists requests, newest first.
func (t *Store) ListStatusChanges(ctx context.Context, f store.StatusChangeFilter) ([]*revoke.Change, error) {
	q := changeSelect + ` WHERE 1=1`
	var args []any
	if f.Serial != "" {
		args = append(args, f.Serial)
		q += fmt.Sprintf(" AND c.serial = $%d", len(args))
	}
	if f.Undecided {
		q += ` AND d.change_id IS NULL`
	}
	if !f.RequestedSince.IsZero() {
		args = append(args, f.RequestedSince.UTC())
		q += fmt.Sprintf(" AND c.requested_at >= $%d", len(args))
	}
	args = append(args, limit(f.Limit))
	q += fmt.Sprintf(" ORDER BY c.requested_at DESC, c.id LIMIT $%d", len(args))
	rows, err := t.SQL().QueryContext(ctx, t.Rebind(q), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*revoke.Change
	for rows.Next() {
		c, err := scanChange(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// DecideStatusChange records the one decision on a request, with the
// audit events that record it.
func (t *Store) DecideStatusChange(ctx context.Context, id string, approved bool, by string, at time.Time, comment string, events ...audit.Event) error {
	return t.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := t.Exec(ctx, tx, `INSERT INTO status_change_decisions (change_id, approved, decided_by, decided_at, comment) VALUES ($1, $2, $3, $4, $5)`,
			id, approved, by, at.UTC(), comment); err != nil {
			return err
		}
		return t.record(ctx, tx, events)
	})
}

// StoreCRL records a CRL; its number must be new.
func (t *Store) StoreCRL(ctx context.Context, c revoke.CRL, generatedAt time.Time) error {
	_, err := t.Exec(ctx, t.SQL(), `INSERT INTO crls (number, this_update, next_update, entries, der, generated_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		c.Number, c.ThisUpdate.UTC(), c.NextUpdate.UTC(), c.Entries, c.DER, generatedAt.UTC())
	return err
}

// ReserveCRLNumber takes the next CRL number, durably, before a CRL is
// signed with it: atLeast, or one more than every number reserved or
// stored before, whichever is larger. A number is reserved once; one that
// goes unused (the signature or StoreCRL failed) is never given again.
func (t *Store) ReserveCRLNumber(ctx context.Context, atLeast int64, at time.Time) (int64, error) {
	var n int64
	err := t.Tx(ctx, func(tx *sql.Tx) error {
		if t.Dialect() == sqlstore.Postgres {
			// Serialises reservations (SQLite's immediate transactions
			// already serialise all writers).
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('crl_numbers'))`); err != nil {
				return err
			}
		}
		var hi int64
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(n), 0) FROM
			(SELECT MAX(number) AS n FROM crl_numbers UNION ALL SELECT MAX(number) AS n FROM crls) m`).Scan(&hi); err != nil {
			return err
		}
		n = max(atLeast, hi+1)
		_, err := t.Exec(ctx, tx, `INSERT INTO crl_numbers (number, reserved_at) VALUES ($1, $2)`, n, at.UTC())
		return err
	})
	return n, err
}

// LatestCRL returns the CRL with the highest number, or store.ErrNotFound.
func (t *Store) LatestCRL(ctx context.Context) (revoke.CRL, error) {
	var c revoke.CRL
	err := t.SQL().QueryRowContext(ctx, `SELECT number, this_update, next_update, entries, der FROM crls ORDER BY number DESC LIMIT 1`).
		Scan(&c.Number, &c.ThisUpdate, &c.NextUpdate, &c.Entries, &c.DER)
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("%w: no CRL yet", store.ErrNotFound)
	}
	c.ThisUpdate, c.NextUpdate = c.ThisUpdate.UTC(), c.NextUpdate.UTC()
	return c, err
}

// CRLState is the highest CRL number recorded and the highest status
// event sequence number (0 for none): what a publisher compares with the
// CRL it serves, to notice what other trustd on the database did.
func (t *Store) CRLState(ctx context.Context) (crlNumber, statusSeq int64, err error) {
	err = t.SQL().QueryRowContext(ctx, `SELECT (SELECT COALESCE(MAX(number), 0) FROM crls), (SELECT COALESCE(MAX(seq), 0) FROM status_events)`).
		Scan(&crlNumber, &statusSeq)
	return crlNumber, statusSeq, err
}

// AddServiceCredential records a new credential (its certificate is
// stored), with the audit events that record it.
func (t *Store) AddServiceCredential(ctx context.Context, c enrol.ServiceCredential, at time.Time, events ...audit.Event) error {
	return t.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := t.Exec(ctx, tx, `INSERT INTO service_credentials (serial, purpose, key_uri, not_after, created_at) VALUES ($1, $2, $3, $4, $5)`,
			pki.SerialHex(c.Serial), c.Purpose, c.KeyURI, c.NotAfter.UTC(), at.UTC()); err != nil {
			return err
		}
		return t.record(ctx, tx, events)
	})
}

// LatestServiceCredential returns the credential of purpose that expires last.
func (t *Store) LatestServiceCredential(ctx context.Context, purpose string) (enrol.ServiceCredential, error) {
	c := enrol.ServiceCredential{Purpose: purpose}
	var s string
	err := t.SQL().QueryRowContext(ctx, t.Rebind(`SELECT serial, key_uri, not_after FROM service_credentials WHERE purpose = $1
		ORDER BY not_after DESC LIMIT 1`), purpose).Scan(&s, &c.KeyURI, &c.NotAfter)
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("%w: no %s credential", store.ErrNotFound, purpose)
	}
	if err != nil {
		return c, err
	}
	n, ok := pki.ParseSerialHex(s)
	if !ok {
		return c, fmt.Errorf("sqlstore: stored serial %q is not hex", s)
	}
	c.Serial, c.NotAfter = n, c.NotAfter.UTC()
	return c, nil
}

type nullInt struct{ p *int }

func (n nullInt) Scan(v any) error {
	var ni sql.NullInt64
	if err := ni.Scan(v); err != nil {
		return err
	}
	*n.p = int(ni.Int64)
	return nil
}

type nullTime struct{ p *time.Time }

func (n nullTime) Scan(v any) error {
	var nt sql.NullTime
	if err := nt.Scan(v); err != nil {
		return err
	}
	*n.p = nt.Time
	return nil
}
