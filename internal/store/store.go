// Package store holds what every store implementation and its callers
// share: the errors and the query filters. The implementations live in
// store/truststore (trustd's tables) and store/rxstore (rxd's), both over
// store/sqlstore (PostgreSQL through pgx, and the embedded SQLite default);
// store/storetest is the conformance suite of trustd's store, and states
// its contract. Callers declare the narrow interfaces they need.
package store

import (
	"errors"
	"fmt"
	"time"
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
	Kind    string
	Query   string
	AfterID string
	Limit   int
}

// EnrolmentFilter selects enrolments, newest first.
type EnrolmentFilter struct {
	// Status is pending, approved, issued, rejected, stale or expired.
	// Requests entered before OpenSince are expired rather than pending
	// (none are, when it is zero).
	Status    string
	OpenSince time.Time
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
	Action   string
	Limit    int
}

// StatusChangeFilter selects hold and release requests, newest first.
type StatusChangeFilter struct {
	Serial string // the certificate's, in hex; empty for every certificate's
	// Undecided keeps only requests without a decision, RequestedSince
	// only those made at or after it: together, the requests still open.
	Undecided      bool
	RequestedSince time.Time
	Limit          int
}

// SubjectChangeFilter selects registry changes awaiting (or given) a second
// officer's decision, newest first.
type SubjectChangeFilter struct {
	SubjectID string
	// Undecided keeps only changes without a decision, RequestedSince
	// only those made at or after it: together, the changes still open.
	Undecided      bool
	RequestedSince time.Time
	Limit          int
}
