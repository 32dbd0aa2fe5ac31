// Package store defines trustd's persistent store and its errors. The
// implementations live in store/sqlstore (PostgreSQL through pgx, and the
// embedded SQLite default); store/storetest is the conformance suite both
// pass.
package store

import (
	"context"
	"errors"
	"fmt"
	"math/big"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/registry"
)

// Errors every implementation returns (wrapped) for these conditions.
var (
	ErrNotFound = errors.New("store: not found")
	// ErrConflict means the row changed since the caller read it.
	ErrConflict = errors.New("store: changed concurrently")
)

// DuplicateError is returned when a unique rule is hit; Field names it.
type DuplicateError struct {
	Field string // e.g. council_number, spki_sha256, enrolment_id
}

func (e *DuplicateError) Error() string { return fmt.Sprintf("store: duplicate %s", e.Field) }

// IsDuplicate reports whether err is a DuplicateError, and for which field.
func IsDuplicate(err error) (string, bool) {
	var d *DuplicateError
	if errors.As(err, &d) {
		return d.Field, true
	}
	return "", false
}

// SubjectFilter selects subjects. Query matches names and registration
// numbers by substring.
type SubjectFilter struct {
	Kind    registry.Kind
	Query   string
	AfterID string
	Limit   int
}

// EnrolmentFilter selects enrolments, newest first.
type EnrolmentFilter struct {
	Status    enrol.Status
	SubjectID string
	Limit     int
}

// CertificateFilter selects certificates, newest first.
type CertificateFilter struct {
	SubjectID string
	Limit     int
}

// AuditFilter selects audit events in sequence order.
type AuditFilter struct {
	AfterSeq int64
	Object   string
	Limit    int
}

// Trust is trustd's store.
type Trust interface {
	// CreateSubject inserts s (Version 1) and its first change record.
	CreateSubject(ctx context.Context, s *registry.Subject, by string) error
	// UpdateSubject replaces the subject whose stored version is
	// s.Version-1 and records the change; otherwise ErrConflict.
	UpdateSubject(ctx context.Context, s *registry.Subject, by string) error
	GetSubject(ctx context.Context, id string) (*registry.Subject, error)
	ListSubjects(ctx context.Context, f SubjectFilter) ([]*registry.Subject, error)

	// CreateEnrolment inserts r and claims its public key; a key seen before
	// gives a DuplicateError for spki_sha256.
	CreateEnrolment(ctx context.Context, r *enrol.Request) error
	GetEnrolment(ctx context.Context, id string) (*enrol.Request, error)
	ListEnrolments(ctx context.Context, f EnrolmentFilter) ([]*enrol.Request, error)
	// RecordDecision inserts the one decision of an enrolment; a second gives
	// a DuplicateError for enrolment_id.
	RecordDecision(ctx context.Context, d enrol.Decision) error

	// StoreCertificate records an issued certificate. A certificate made
	// without enrolment (at init) also claims its public key.
	StoreCertificate(ctx context.Context, c *enrol.Certificate) error
	CertificateBySerial(ctx context.Context, serial *big.Int) (*enrol.Certificate, error)
	CertificateByFingerprint(ctx context.Context, sha256Hex string) (*enrol.Certificate, error)
	ListCertificates(ctx context.Context, f CertificateFilter) ([]*enrol.Certificate, error)

	AppendAudit(ctx context.Context, e audit.Event) (int64, error)
	ListAudit(ctx context.Context, f AuditFilter) ([]audit.Event, error)

	// Ping checks the database is reachable (for readiness).
	Ping(ctx context.Context) error
	Close() error
}
