package truststore

import (
	"context"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/store"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
)

// lockIssuance serialises the issuance records of one enrolment: the
// reservation of an attempt, its outcome and the certificate. SQLite's
// immediate transactions already serialise all writers.
func (t *Store) lockIssuance(ctx context.Context, tx *sql.Tx, enrolmentID string) error {
	if t.Dialect() != sqlstore.Postgres {
		return nil
	}
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "issuance:"+enrolmentID)
	return err
}

// LatestIssuance returns the enrolment's latest issuance attempt with its
// outcome, if it has one; store.ErrNotFound if no attempt was made.
func (t *Store) LatestIssuance(ctx context.Context, enrolmentID string) (*enrol.Issuance, error) {
	var a enrol.Issuance
	var serial string
	var end, code sql.NullString
	var der []byte
	var at sql.NullTime
	err := t.SQL().QueryRowContext(ctx, t.Rebind(`SELECT a.enrolment_id, a.attempt, a.serial, a.not_before, a.not_after, a.claimed_by, a.claimed_at,
		o.outcome, o.der, o.code, o.recorded_at
		FROM issuance_attempts a LEFT JOIN issuance_outcomes o ON o.enrolment_id = a.enrolment_id AND o.attempt = a.attempt
		WHERE a.enrolment_id = $1 ORDER BY a.attempt DESC LIMIT 1`), enrolmentID).
		Scan(&a.EnrolmentID, &a.Attempt, &serial, &a.NotBefore, &a.NotAfter, &a.ClaimedBy, &a.ClaimedAt, &end, &der, &code, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: no issuance of enrolment %s", store.ErrNotFound, enrolmentID)
	}
	if err != nil {
		return nil, err
	}
	n, ok := pki.ParseSerialHex(serial)
	if !ok {
		return nil, fmt.Errorf("sqlstore: stored serial %q is not hex", serial)
	}
	a.Serial = n
	a.NotBefore, a.NotAfter, a.ClaimedAt = a.NotBefore.UTC(), a.NotAfter.UTC(), a.ClaimedAt.UTC()
	if end.Valid {
		a.Outcome = &enrol.IssuanceOutcome{EnrolmentID: a.EnrolmentID, Attempt: a.Attempt, End: enrol.IssuanceEnd(end.String),
			DER: der, Code: errs.Code(code.String), At: at.Time.UTC()}
	}
	return &a, nil
}

// ReserveIssuance records attempt a and commits it. An attempt number
// another caller took gives a DuplicateError for attempt; an enrolment that
// already has a certificate, or one signed and awaiting its record, gives
// store.ErrConflict: nothing more may be signed for it.
func (t *Store) ReserveIssuance(ctx context.Context, a *enrol.Issuance) error {
	return t.Tx(ctx, func(tx *sql.Tx) error {
		if err := t.lockIssuance(ctx, tx, a.EnrolmentID); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, t.Rebind(`SELECT
			(SELECT COUNT(*) FROM certificates WHERE enrolment_id = $1) +
			(SELECT COUNT(*) FROM issuance_outcomes WHERE enrolment_id = $1 AND outcome = $2)`),
			a.EnrolmentID, string(enrol.IssuanceSigned)).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w: enrolment %s already has a signed certificate", store.ErrConflict, a.EnrolmentID)
		}
		_, err := t.Exec(ctx, tx, `INSERT INTO issuance_attempts (enrolment_id, attempt, serial, not_before, not_after, claimed_by, claimed_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, a.EnrolmentID, a.Attempt, pki.SerialHex(a.Serial), a.NotBefore.UTC(), a.NotAfter.UTC(),
			a.ClaimedBy, a.ClaimedAt.UTC())
		return err
	})
}

// ConfirmIssuance is enrol.Store's fence before the issuing key signs.
func (t *Store) ConfirmIssuance(ctx context.Context, a *enrol.Issuance, now time.Time, lease time.Duration) error {
	return t.Tx(ctx, func(tx *sql.Tx) error {
		if err := t.lockIssuance(ctx, tx, a.EnrolmentID); err != nil {
			return err
		}
		var latest sql.NullInt64
		var ended, certs, moved int
		var claimed sql.NullTime
		err := tx.QueryRowContext(ctx, t.Rebind(`SELECT
			(SELECT MAX(attempt) FROM issuance_attempts WHERE enrolment_id = $1),
			(SELECT COUNT(*) FROM issuance_outcomes WHERE enrolment_id = $1 AND attempt = $2),
			(SELECT COUNT(*) FROM certificates WHERE enrolment_id = $1),
			(SELECT claimed_at FROM issuance_attempts WHERE enrolment_id = $1 AND attempt = $2),
			(SELECT COUNT(*) FROM enrolments e JOIN subjects s ON s.id = e.subject_id WHERE e.id = $1 AND s.version <> e.subject_version)`),
			a.EnrolmentID, a.Attempt).
			Scan(&latest, &ended, &certs, &claimed, &moved)
		switch {
		case err != nil:
			return err
		case moved > 0:
			// The subject changed (a suspension, say) after approval
			// checked it: the enrolment is stale, nothing is signed.
			return fmt.Errorf("%w: the subject of enrolment %s changed since it was approved", store.ErrConflict, a.EnrolmentID)
		case !claimed.Valid || !latest.Valid || latest.Int64 != int64(a.Attempt) || ended > 0 || certs > 0:
			return fmt.Errorf("%w: attempt %d of enrolment %s is no longer the one to sign", store.ErrConflict, a.Attempt, a.EnrolmentID)
		case !now.Before(claimed.Time.Add(lease)):
			return fmt.Errorf("%w: attempt %d of enrolment %s outlived its lease", store.ErrConflict, a.Attempt, a.EnrolmentID)
		}
		return nil
	})
}

// EndIssuance records how an attempt ended without a recorded certificate.
func (t *Store) EndIssuance(ctx context.Context, o enrol.IssuanceOutcome) error {
	return t.Tx(ctx, func(tx *sql.Tx) error {
		if err := t.lockIssuance(ctx, tx, o.EnrolmentID); err != nil {
			return err
		}
		_, err := t.Exec(ctx, tx, `INSERT INTO issuance_outcomes (enrolment_id, attempt, outcome, der, code, recorded_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			o.EnrolmentID, o.Attempt, string(o.End), o.DER, string(o.Code), o.At.UTC())
		return err
	})
}

// SignedUnrecorded returns the certificate with this serial that was
// signed but could not be recorded, as its record would be (store.ErrNotFound:
// there is none, or it has been recorded since).
func (t *Store) SignedUnrecorded(ctx context.Context, serial *big.Int) (*enrol.Certificate, error) {
	var enrolmentID, subjectID, profile, by string
	var der []byte
	var at sql.NullTime
	err := t.SQL().QueryRowContext(ctx, t.Rebind(`SELECT e.id, e.subject_id, e.profile, a.claimed_by, o.der, o.recorded_at
		FROM issuance_outcomes o
		JOIN issuance_attempts a ON a.enrolment_id = o.enrolment_id AND a.attempt = o.attempt
		JOIN enrolments e ON e.id = a.enrolment_id
		WHERE a.serial = $1 AND o.outcome = $2 AND NOT EXISTS (SELECT 1 FROM certificates c WHERE c.serial = a.serial)
		ORDER BY a.attempt DESC LIMIT 1`), pki.SerialHex(serial), string(enrol.IssuanceSigned)).
		Scan(&enrolmentID, &subjectID, &profile, &by, &der, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: no unrecorded certificate %s", store.ErrNotFound, pki.SerialHex(serial))
	}
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: unrecorded certificate %s does not parse: %w", pki.SerialHex(serial), err)
	}
	return enrol.NewCertificateRecord(cert, subjectID, profile, enrolmentID, by, at.Time.UTC()), nil
}

// UnrecordedAttempt returns the latest issuance attempt with this serial
// whose enrolment has no recorded certificate, with the enrolment's
// subject and profile: a serial the issuing key may have signed for
// without the certificate reaching the database (store.ErrNotFound: none).
func (t *Store) UnrecordedAttempt(ctx context.Context, serial *big.Int) (a *enrol.Issuance, subjectID, profile string, err error) {
	a = &enrol.Issuance{Serial: serial}
	err = t.SQL().QueryRowContext(ctx, t.Rebind(`SELECT a.enrolment_id, a.attempt, a.not_before, a.not_after, a.claimed_by, a.claimed_at, e.subject_id, e.profile
		FROM issuance_attempts a JOIN enrolments e ON e.id = a.enrolment_id
		WHERE a.serial = $1 AND NOT EXISTS (SELECT 1 FROM certificates c WHERE c.enrolment_id = a.enrolment_id OR c.serial = a.serial)
		ORDER BY a.attempt DESC LIMIT 1`), pki.SerialHex(serial)).
		Scan(&a.EnrolmentID, &a.Attempt, &a.NotBefore, &a.NotAfter, &a.ClaimedBy, &a.ClaimedAt, &subjectID, &profile)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", "", fmt.Errorf("%w: no unrecorded issuance of serial %s", store.ErrNotFound, pki.SerialHex(serial))
	}
	if err != nil {
		return nil, "", "", err
	}
	a.NotBefore, a.NotAfter, a.ClaimedAt = a.NotBefore.UTC(), a.NotAfter.UTC(), a.ClaimedAt.UTC()
	return a, subjectID, profile, nil
}
