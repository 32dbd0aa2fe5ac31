package trustapi

import (
	"context"
	"errors"
	"math/big"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store"
)

// records is the Store as the handlers read it, its failures given codes
// here and nowhere else, as the domain services (registry, enrol, revoke)
// give theirs: the handlers pass every error on to problem.Write, which
// alone turns codes into HTTP statuses.
type records struct{ s Store }

// coded gives a store failure reading what (e.g. "subject sub_x") its
// code: store.ErrNotFound is not-found, naming what was not found; any
// other failure is unavailable (the database is down or slow), its cause
// kept for the log; an error that has a code keeps it.
func coded(err error, what string) error {
	var e *errs.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return errs.New(errs.NotFound, "no %s", what)
	case errors.As(err, &e):
		return err
	}
	return errs.Wrap(errs.Unavailable, err, "reading %s", what)
}

func (r records) GetSubject(ctx context.Context, id string) (*registry.Subject, error) {
	s, err := r.s.GetSubject(ctx, id)
	return s, coded(err, "subject "+id)
}

func (r records) ListSubjects(ctx context.Context, f store.SubjectFilter) ([]*registry.Subject, error) {
	s, err := r.s.ListSubjects(ctx, f)
	return s, coded(err, "the registry")
}

func (r records) GetEnrolment(ctx context.Context, id string) (*enrol.Request, error) {
	e, err := r.s.GetEnrolment(ctx, id)
	return e, coded(err, "enrolment "+id)
}

func (r records) CertificateBySerial(ctx context.Context, serial *big.Int) (*enrol.Certificate, error) {
	c, err := r.s.CertificateBySerial(ctx, serial)
	return c, coded(err, "certificate with serial "+pki.SerialHex(serial))
}

func (r records) CertificateByFingerprint(ctx context.Context, sha256Hex string) (*enrol.Certificate, error) {
	c, err := r.s.CertificateByFingerprint(ctx, sha256Hex)
	return c, coded(err, "certificate with SHA-256 fingerprint "+sha256Hex)
}

func (r records) ListCertificates(ctx context.Context, f store.CertificateFilter) ([]*enrol.Certificate, error) {
	c, err := r.s.ListCertificates(ctx, f)
	return c, coded(err, "certificates")
}

func (r records) ListAudit(ctx context.Context, f store.AuditFilter) ([]audit.Event, error) {
	evs, err := r.s.ListAudit(ctx, f)
	return evs, coded(err, "the audit log")
}

func (r records) CertificateStatus(ctx context.Context, serial *big.Int) (revoke.Record, error) {
	st, err := r.s.CertificateStatus(ctx, serial)
	return st, coded(err, "certificate "+pki.SerialHex(serial))
}

func (r records) Ping(ctx context.Context) error {
	if err := r.s.Ping(ctx); err != nil {
		return errs.Wrap(errs.Unavailable, err, "the database does not answer")
	}
	return nil
}
