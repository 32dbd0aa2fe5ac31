// Package truststore is trustd's store: the registry's subjects and their
// changes, enrolments and their decisions, issuance attempts, certificates,
// their status events and changes, CRLs, service credentials and the audit
// log. Its tables are trustd's alone; rxd never opens this database.
// store/storetest is its conformance suite, run here over SQLite and
// PostgreSQL.
package truststore

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/tlogstore"
)

// Store is trustd's store.
type Store struct {
	*sqlstore.DB
	log *tlogstore.Store
}

//go:embed migrations
var migrations embed.FS

// Schemas are the schemas this package owns, with their migrations (the
// audit log's, tlogstore's, are migrated beside them by Open).
func Schemas() []sqlstore.Schema { return []sqlstore.Schema{{Name: "trust", Files: migrations}} }

// constraintFields maps the trust schema's PostgreSQL unique constraints
// to the field a caller can act on.
var constraintFields = map[string]string{
	"subjects_pkey":                      "id",
	"subjects_council_number_uq":         "council_number",
	"subjects_national_id_uq":            "national_id",
	"subjects_licence_number_uq":         "licence_number",
	"enrolments_pkey":                    "id",
	"public_keys_pkey":                   "spki_sha256",
	"decisions_pkey":                     "enrolment_id",
	"certificates_pkey":                  "serial",
	"certificates_enrolment_id_uq":       "enrolment_id",
	"certificates_fingerprint_sha256_uq": "fingerprint_sha256",
	"status_events_revoked_uq":           "serial",
	"status_changes_pkey":                "id",
	"status_change_decisions_pkey":       "change_id",
	"crls_pkey":                          "number",
	"service_credentials_pkey":           "serial",
	"issuance_attempts_pkey":             "attempt",
	"issuance_attempts_serial_uq":        "serial",
	"issuance_outcomes_pkey":             "attempt",
	"subject_change_requests_pkey":       "id",
	"subject_change_decisions_pkey":      "change_id",
}

// Open opens and migrates trustd's database.
func Open(ctx context.Context, driver, dsn string) (*Store, error) {
	db, err := sqlstore.Open(ctx, driver, dsn)
	if err != nil {
		return nil, err
	}
	db = db.WithConstraintFields(constraintFields)
	for _, sc := range Schemas() {
		if err := db.Migrate(ctx, sc); err != nil {
			db.Close()
			return nil, err
		}
	}
	log, err := tlogstore.New(ctx, db)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Store{DB: db, log: log}, nil
}

const defaultLimit, maxLimit = 100, 1000

func limit(n int) int {
	switch {
	case n <= 0:
		return defaultLimit
	case n > maxLimit:
		return maxLimit
	}
	return n
}

const subjectColumns = `id, kind, name, national_id, council_number, profession, specialty,
	licence_number, centre_type, province, responsible_name, responsible_council_number,
	organization, dns_names, licence_valid_from, licence_valid_until, licence_status,
	created_at, updated_at, version`

func subjectArgs(s *registry.Subject) ([]any, error) {
	dns := s.DNSNames
	if dns == nil {
		dns = []string{}
	}
	dnsJSON, err := json.Marshal(dns)
	if err != nil {
		return nil, err
	}
	return []any{s.ID, string(s.Kind), s.Name, sqlstore.Nullable(s.NationalID), sqlstore.Nullable(s.CouncilNumber),
		sqlstore.Nullable(string(s.Profession)), sqlstore.Nullable(s.Specialty), sqlstore.Nullable(s.LicenceNumber),
		sqlstore.Nullable(string(s.CentreType)), sqlstore.Nullable(s.Province), sqlstore.Nullable(s.ResponsibleName),
		sqlstore.Nullable(s.ResponsibleCouncilNumber), sqlstore.Nullable(s.Organization), string(dnsJSON),
		s.LicenceValidFrom.UTC(), s.LicenceValidUntil.UTC(), string(s.LicenceStatus),
		s.CreatedAt.UTC(), s.UpdatedAt.UTC(), s.Version}, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanSubject(r scanner) (*registry.Subject, error) {
	var s registry.Subject
	var kind, profession, centre, status string
	var nid, council, spec, lic, prov, rname, rcouncil, org sql.NullString
	var dns string
	err := r.Scan(&s.ID, &kind, &s.Name, &nid, &council, nullStr{&profession}, &spec, &lic, nullStr{&centre},
		&prov, &rname, &rcouncil, &org, &dns, &s.LicenceValidFrom, &s.LicenceValidUntil, &status,
		&s.CreatedAt, &s.UpdatedAt, &s.Version)
	if err != nil {
		return nil, err
	}
	s.Kind, s.Profession, s.CentreType, s.LicenceStatus = registry.Kind(kind), registry.Profession(profession), registry.CentreType(centre), registry.LicenceStatus(status)
	s.NationalID, s.CouncilNumber, s.Specialty, s.LicenceNumber = nid.String, council.String, spec.String, lic.String
	s.Province, s.ResponsibleName, s.ResponsibleCouncilNumber, s.Organization = prov.String, rname.String, rcouncil.String, org.String
	if err := json.Unmarshal([]byte(dns), &s.DNSNames); err != nil {
		return nil, fmt.Errorf("sqlstore: subject %s dns_names: %w", s.ID, err)
	}
	if len(s.DNSNames) == 0 {
		s.DNSNames = nil
	}
	for _, t := range []*time.Time{&s.LicenceValidFrom, &s.LicenceValidUntil, &s.CreatedAt, &s.UpdatedAt} {
		*t = t.UTC()
	}
	return &s, nil
}

// nullStr scans a nullable text column into a string.
type nullStr struct{ p *string }

func (n nullStr) Scan(v any) error {
	var ns sql.NullString
	if err := ns.Scan(v); err != nil {
		return err
	}
	*n.p = ns.String
	return nil
}

func (t *Store) recordChange(ctx context.Context, tx *sql.Tx, s *registry.Subject, by string) error {
	snap, err := json.Marshal(s)
	if err != nil {
		return err
	}
	_, err = t.Exec(ctx, tx, `INSERT INTO subject_changes (subject_id, version, changed_by, changed_at, snapshot)
		VALUES ($1, $2, $3, $4, $5)`, s.ID, s.Version, by, s.UpdatedAt.UTC(), string(snap))
	return err
}

// CreateSubject inserts a new subject at version 1, with the audit events
// that record it.
func (t *Store) CreateSubject(ctx context.Context, s *registry.Subject, by string, events ...audit.Event) error {
	s.Version = 1
	args, err := subjectArgs(s)
	if err != nil {
		return err
	}
	return t.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := t.Exec(ctx, tx, `INSERT INTO subjects (`+subjectColumns+`) VALUES
			($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20)`, args...); err != nil {
			return err
		}
		if err := t.recordChange(ctx, tx, s, by); err != nil {
			return err
		}
		return t.record(ctx, tx, events)
	})
}

// UpdateSubject stores s if the stored version is s.Version-1, with the
// audit events that record it.
func (t *Store) UpdateSubject(ctx context.Context, s *registry.Subject, by string, events ...audit.Event) error {
	return t.Tx(ctx, func(tx *sql.Tx) error {
		if err := t.updateSubject(ctx, tx, s, by); err != nil {
			return err
		}
		return t.record(ctx, tx, events)
	})
}

func (t *Store) updateSubject(ctx context.Context, tx *sql.Tx, s *registry.Subject, by string) error {
	args, err := subjectArgs(s)
	if err != nil {
		return err
	}
	res, err := t.Exec(ctx, tx, `UPDATE subjects SET kind=$2, name=$3, national_id=$4, council_number=$5,
		profession=$6, specialty=$7, licence_number=$8, centre_type=$9, province=$10, responsible_name=$11,
		responsible_council_number=$12, organization=$13, dns_names=$14, licence_valid_from=$15,
		licence_valid_until=$16, licence_status=$17, created_at=$18, updated_at=$19, version=$20
		WHERE id=$1 AND version=$21`, append(args, s.Version-1)...)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		var exists int
		if err := tx.QueryRowContext(ctx, t.Rebind(`SELECT COUNT(*) FROM subjects WHERE id=$1`), s.ID).Scan(&exists); err != nil {
			return err
		}
		if exists == 0 {
			return fmt.Errorf("%w: subject %s", store.ErrNotFound, s.ID)
		}
		return fmt.Errorf("%w: subject %s is no longer at version %d", store.ErrConflict, s.ID, s.Version-1)
	}
	return t.recordChange(ctx, tx, s, by)
}

// GetSubject reads one subject.
func (t *Store) GetSubject(ctx context.Context, id string) (*registry.Subject, error) {
	s, err := scanSubject(t.SQL().QueryRowContext(ctx, t.Rebind(`SELECT `+subjectColumns+` FROM subjects WHERE id=$1`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: subject %s", store.ErrNotFound, id)
	}
	return s, err
}

// ListSubjects pages through subjects in id order.
func (t *Store) ListSubjects(ctx context.Context, f store.SubjectFilter) ([]*registry.Subject, error) {
	q := `SELECT ` + subjectColumns + ` FROM subjects WHERE id > $1`
	args := []any{f.AfterID}
	if f.Kind != "" {
		args = append(args, f.Kind)
		q += fmt.Sprintf(" AND kind = $%d", len(args))
	}
	if f.Query != "" {
		args = append(args, "%"+escapeLike(f.Query)+"%")
		n := len(args)
		q += fmt.Sprintf(` AND (name LIKE $%d ESCAPE '\' OR council_number LIKE $%d ESCAPE '\' OR licence_number LIKE $%d ESCAPE '\')`, n, n, n)
	}
	args = append(args, limit(f.Limit))
	q += fmt.Sprintf(" ORDER BY id LIMIT $%d", len(args))
	rows, err := t.SQL().QueryContext(ctx, t.Rebind(q), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*registry.Subject
	for rows.Next() {
		s, err := scanSubject(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// CreateEnrolment inserts the request and claims its key, atomically,
// with the audit events that record it.
func (t *Store) CreateEnrolment(ctx context.Context, r *enrol.Request, events ...audit.Event) error {
	return t.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := t.Exec(ctx, tx, `INSERT INTO public_keys (spki_sha256, first_seen_at, source) VALUES ($1, $2, $3)`,
			r.SPKIHash, r.RequestedAt.UTC(), "enrolment:"+r.ID); err != nil {
			return err
		}
		_, err := t.Exec(ctx, tx, `INSERT INTO enrolments (id, subject_id, profile, csr, key_type, spki_sha256, requested_by, requested_at,
			subject_version, review, review_digest) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			r.ID, r.SubjectID, r.Profile, r.CSR, r.KeyType, r.SPKIHash, r.RequestedBy, r.RequestedAt.UTC(),
			r.SubjectVersion, string(r.Review), r.ReviewDigest)
		if err != nil {
			return err
		}
		return t.record(ctx, tx, events)
	})
}

// An enrolment is stale when it has no certificate, was not rejected, and
// its subject is no longer at the version it was entered against.
const enrolmentSelect = `SELECT e.id, e.subject_id, e.profile, e.csr, e.key_type, e.spki_sha256, e.requested_by, e.requested_at,
	e.subject_version, e.review, e.review_digest, s.version,
	d.approved, d.decided_by, d.decided_at, d.reason, c.serial
	FROM enrolments e
	JOIN subjects s ON s.id = e.subject_id
	LEFT JOIN decisions d ON d.enrolment_id = e.id
	LEFT JOIN certificates c ON c.enrolment_id = e.id`

func scanEnrolment(r scanner) (*enrol.Request, error) {
	var e enrol.Request
	var approved sql.NullBool
	var by, reason, serial sql.NullString
	var at sql.NullTime
	var review string
	var current int
	if err := r.Scan(&e.ID, &e.SubjectID, &e.Profile, &e.CSR, &e.KeyType, &e.SPKIHash, &e.RequestedBy, &e.RequestedAt,
		&e.SubjectVersion, &review, &e.ReviewDigest, &current,
		&approved, &by, &at, &reason, &serial); err != nil {
		return nil, err
	}
	e.RequestedAt = e.RequestedAt.UTC()
	if review != "" {
		e.Review = json.RawMessage(review)
	}
	e.Status = enrol.Pending
	if approved.Valid {
		e.Decision = &enrol.Decision{EnrolmentID: e.ID, Approved: approved.Bool, By: by.String, At: at.Time.UTC(), Reason: reason.String}
		e.Status = enrol.Rejected
		if approved.Bool {
			e.Status = enrol.Approved
		}
	}
	if e.Status != enrol.Rejected && current != e.SubjectVersion {
		e.Status = enrol.Stale
	}
	if serial.Valid {
		e.Status = enrol.Issued
		e.CertificateSerial = serial.String
	}
	return &e, nil
}

// GetEnrolment reads one request with its decision and certificate.
func (t *Store) GetEnrolment(ctx context.Context, id string) (*enrol.Request, error) {
	e, err := scanEnrolment(t.SQL().QueryRowContext(ctx, t.Rebind(enrolmentSelect+` WHERE e.id = $1`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: enrolment %s", store.ErrNotFound, id)
	}
	return e, err
}

// ListEnrolments lists requests, newest first.
func (t *Store) ListEnrolments(ctx context.Context, f store.EnrolmentFilter) ([]*enrol.Request, error) {
	q := enrolmentSelect + ` WHERE 1=1`
	var args []any
	if f.SubjectID != "" {
		args = append(args, f.SubjectID)
		q += fmt.Sprintf(" AND e.subject_id = $%d", len(args))
	}
	const undecided, fresh = " AND d.enrolment_id IS NULL", " AND e.subject_version = s.version"
	switch enrol.Status(f.Status) {
	case "":
	case enrol.Pending:
		q += undecided + fresh
		if !f.OpenSince.IsZero() {
			args = append(args, f.OpenSince.UTC())
			q += fmt.Sprintf(" AND e.requested_at >= $%d", len(args))
		}
	case enrol.Expired:
		if f.OpenSince.IsZero() {
			return nil, nil
		}
		args = append(args, f.OpenSince.UTC())
		q += undecided + fresh + fmt.Sprintf(" AND e.requested_at < $%d", len(args))
	case enrol.Stale:
		q += " AND c.serial IS NULL AND (d.approved IS NULL OR d.approved = TRUE) AND e.subject_version <> s.version"
	case enrol.Rejected:
		q += " AND d.approved = FALSE"
	case enrol.Approved:
		q += " AND d.approved = TRUE AND c.serial IS NULL" + fresh
	case enrol.Issued:
		q += " AND c.serial IS NOT NULL"
	default:
		return nil, errs.FieldError(errs.Invalid, "status", "must be one of %v", enrol.Statuses)
	}
	args = append(args, limit(f.Limit))
	q += fmt.Sprintf(" ORDER BY e.requested_at DESC, e.id LIMIT $%d", len(args))
	rows, err := t.SQL().QueryContext(ctx, t.Rebind(q), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*enrol.Request
	for rows.Next() {
		e, err := scanEnrolment(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// RecordDecision inserts the decision, with the audit events that record
// it; the primary key makes it the only one.
func (t *Store) RecordDecision(ctx context.Context, d enrol.Decision, events ...audit.Event) error {
	return t.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := t.Exec(ctx, tx, `INSERT INTO decisions (enrolment_id, approved, decided_by, decided_at, reason) VALUES ($1, $2, $3, $4, $5)`,
			d.EnrolmentID, d.Approved, d.By, d.At.UTC(), d.Reason); err != nil {
			return err
		}
		return t.record(ctx, tx, events)
	})
}

// StoreCertificate records an issued certificate, with the audit events
// that record it. Without an enrolment, the key is claimed here, in the
// same transaction.
func (t *Store) StoreCertificate(ctx context.Context, c *enrol.Certificate, events ...audit.Event) error {
	return t.Tx(ctx, func(tx *sql.Tx) error {
		if c.EnrolmentID != "" {
			if err := t.lockIssuance(ctx, tx, c.EnrolmentID); err != nil {
				return err
			}
		}
		if c.EnrolmentID == "" {
			if _, err := t.Exec(ctx, tx, `INSERT INTO public_keys (spki_sha256, first_seen_at, source) VALUES ($1, $2, $3)`,
				c.SPKIHash, c.IssuedAt.UTC(), "certificate:"+c.SerialHex()); err != nil {
				return err
			}
		}
		_, err := t.Exec(ctx, tx, `INSERT INTO certificates (serial, subject_id, profile, enrolment_id, der, fingerprint_sha256,
			spki_sha256, not_before, not_after, issued_at, issued_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			c.SerialHex(), c.SubjectID, c.Profile, sqlstore.Nullable(c.EnrolmentID), c.DER, c.Fingerprint, c.SPKIHash,
			c.NotBefore.UTC(), c.NotAfter.UTC(), c.IssuedAt.UTC(), c.IssuedBy)
		if err != nil {
			return err
		}
		return t.record(ctx, tx, events)
	})
}

const certificateSelect = `SELECT serial, subject_id, profile, enrolment_id, der, fingerprint_sha256, spki_sha256,
	not_before, not_after, issued_at, issued_by FROM certificates`

func scanCertificate(r scanner) (*enrol.Certificate, error) {
	var c enrol.Certificate
	var serial string
	var enrolment sql.NullString
	if err := r.Scan(&serial, &c.SubjectID, &c.Profile, &enrolment, &c.DER, &c.Fingerprint, &c.SPKIHash,
		&c.NotBefore, &c.NotAfter, &c.IssuedAt, &c.IssuedBy); err != nil {
		return nil, err
	}
	n, ok := pki.ParseSerialHex(serial)
	if !ok {
		return nil, fmt.Errorf("sqlstore: stored serial %q is not hex", serial)
	}
	c.Serial, c.EnrolmentID = n, enrolment.String
	c.NotBefore, c.NotAfter, c.IssuedAt = c.NotBefore.UTC(), c.NotAfter.UTC(), c.IssuedAt.UTC()
	return &c, nil
}

func (t *Store) oneCertificate(ctx context.Context, where string, arg any) (*enrol.Certificate, error) {
	c, err := scanCertificate(t.SQL().QueryRowContext(ctx, t.Rebind(certificateSelect+` WHERE `+where), arg))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: certificate", store.ErrNotFound)
	}
	return c, err
}

// CertificateBySerial finds a certificate.
func (t *Store) CertificateBySerial(ctx context.Context, serial *big.Int) (*enrol.Certificate, error) {
	return t.oneCertificate(ctx, `serial = $1`, pki.SerialHex(serial))
}

// CertificateByFingerprint finds a certificate by the SHA-256 of its DER.
func (t *Store) CertificateByFingerprint(ctx context.Context, fp string) (*enrol.Certificate, error) {
	return t.oneCertificate(ctx, `fingerprint_sha256 = $1`, strings.ToLower(fp))
}

// ListCertificates lists certificates, newest first.
func (t *Store) ListCertificates(ctx context.Context, f store.CertificateFilter) ([]*enrol.Certificate, error) {
	q := certificateSelect + ` WHERE 1=1`
	var args []any
	if f.SubjectID != "" {
		args = append(args, f.SubjectID)
		q += fmt.Sprintf(" AND subject_id = $%d", len(args))
	}
	args = append(args, limit(f.Limit))
	q += fmt.Sprintf(" ORDER BY issued_at DESC, serial LIMIT $%d", len(args))
	rows, err := t.SQL().QueryContext(ctx, t.Rebind(q), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*enrol.Certificate
	for rows.Next() {
		c, err := scanCertificate(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// ListAudit reads events in order.
func (t *Store) ListAudit(ctx context.Context, f store.AuditFilter) ([]audit.Event, error) {
	q := `SELECT seq, at, actor, action, object, outcome, code, detail FROM audit_events WHERE seq > $1`
	args := []any{f.AfterSeq}
	if f.Object != "" {
		args = append(args, f.Object)
		q += fmt.Sprintf(" AND object = $%d", len(args))
	}
	if f.Action != "" {
		args = append(args, f.Action)
		q += fmt.Sprintf(" AND action = $%d", len(args))
	}
	args = append(args, limit(f.Limit))
	q += fmt.Sprintf(" ORDER BY seq LIMIT $%d", len(args))
	rows, err := t.SQL().QueryContext(ctx, t.Rebind(q), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []audit.Event
	for rows.Next() {
		var e audit.Event
		var outcome, code, detail string
		if err := rows.Scan(&e.Seq, &e.Time, &e.Actor, &e.Action, &e.Object, &outcome, &code, &detail); err != nil {
			return nil, err
		}
		e.Time, e.Outcome, e.Code = e.Time.UTC(), audit.Outcome(outcome), errs.Code(code)
		if err := json.Unmarshal([]byte(detail), &e.Detail); err != nil {
			return nil, err
		}
		if len(e.Detail) == 0 {
			e.Detail = nil
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// GoodCertificates counts the subject's certificates of the profile valid
// at at and neither revoked nor on hold (certificate_status has no row for
// a certificate never changed, and status good for one released).
func (t *Store) GoodCertificates(ctx context.Context, subjectID, profile string, at time.Time) (int, error) {
	var n int
	err := t.SQL().QueryRowContext(ctx, t.Rebind(`SELECT COUNT(*) FROM certificates c LEFT JOIN certificate_status s ON s.serial = c.serial
		WHERE c.subject_id = $1 AND c.profile = $2 AND c.not_before <= $3 AND c.not_after > $3 AND (s.status IS NULL OR s.status = $4)`),
		subjectID, profile, at.UTC(), string(revoke.Good)).Scan(&n)
	return n, err
}
