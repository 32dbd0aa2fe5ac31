package registry

import (
	"context"
	"errors"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/store"
)

// OfficerProfile is the certificate profile security officers sign in to
// trustd's admin API with.
const OfficerProfile = "officer"

// CheckOfficer says whether the entry is an officer's whose registration is
// active at now. An *errs.Error with code NotAnOfficer says why not.
func (s *Subject) CheckOfficer(now time.Time) error {
	if s.Kind != pki.RoleOfficer {
		return errs.New(errs.NotAnOfficer, "the subject is not an officer")
	}
	if err := s.CanBeCertified(now); err != nil {
		return errs.New(errs.NotAnOfficer, "the officer's registration is not active")
	}
	return nil
}

// OfficerRecords is what checking an officer's standing reads.
type OfficerRecords interface {
	GetSubject(ctx context.Context, id string) (*Subject, error)
	// GoodCertificates counts the subject's certificates of the profile
	// that are within their validity at at and neither revoked nor on hold.
	GoodCertificates(ctx context.Context, subjectID, profile string, at time.Time) (int, error)
}

// ActiveOfficer says whether subject id is, at now, an officer who could
// sign in to the admin API: the admin API's own test of the certificate an
// officer presents (an officer's active registration, an officer
// certificate neither revoked nor on hold), applied to every certificate
// the officer holds. A request entered by an officer who has since left
// MUST NOT be approved: nil if active, NotAnOfficer saying why not, or
// Unavailable.
func ActiveOfficer(ctx context.Context, r OfficerRecords, id string, now time.Time) error {
	sub, err := r.GetSubject(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return errs.New(errs.NotAnOfficer, "%s is not in the registry", id)
	}
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "reading the officer's record")
	}
	if err := sub.CheckOfficer(now); err != nil {
		return err
	}
	n, err := r.GoodCertificates(ctx, id, OfficerProfile, now)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "reading the officer's certificates")
	}
	if n == 0 {
		return errs.New(errs.NotAnOfficer, "no officer certificate of theirs is good: revoked, on hold or expired")
	}
	return nil
}
