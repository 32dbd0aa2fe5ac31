package revoke

import (
	"context"
	"math/big"
	"time"

	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/store"
)

// OfficerProfile is the profile of security officers' certificates: the
// ones the admin API accepts.
const OfficerProfile = "officer"

// Quorum is how many officers must be able to act: every change to the
// registry's certificates needs one officer to request it and another to
// approve it.
const Quorum = 2

// OfficerStore is what counting the officers who can act reads.
type OfficerStore interface {
	ListSubjects(ctx context.Context, f store.SubjectFilter) ([]*registry.Subject, error)
	ListCertificates(ctx context.Context, f store.CertificateFilter) ([]*enrol.Certificate, error)
	CertificateStatus(ctx context.Context, serial *big.Int) (Record, error)
}

// ActiveOfficers returns the subject ids of the officers who can act at
// now, as the admin API would let them: an officer whose registration
// allows certification, holding an officer certificate within its validity
// whose status is good. Certificates for which skip (if not nil) is true do
// not count: the ones a change would take away.
func ActiveOfficers(ctx context.Context, st OfficerStore, now time.Time, skip func(*registry.Subject, *enrol.Certificate) bool) ([]string, error) {
	var active []string
	after := ""
	for {
		subs, err := st.ListSubjects(ctx, store.SubjectFilter{Kind: string(pki.RoleOfficer), AfterID: after, Limit: 1000})
		if err != nil || len(subs) == 0 {
			return active, err
		}
		for _, sub := range subs {
			after = sub.ID
			if sub.CanBeCertified(now) != nil {
				continue
			}
			ok, err := canAct(ctx, st, sub, now, skip)
			if err != nil {
				return nil, err
			}
			if ok {
				active = append(active, sub.ID)
			}
		}
	}
}

// canAct reports whether one of the officer's certificates (the newest
// thousand: an officer has a few) is in force.
func canAct(ctx context.Context, st OfficerStore, sub *registry.Subject, now time.Time, skip func(*registry.Subject, *enrol.Certificate) bool) (bool, error) {
	certs, err := st.ListCertificates(ctx, store.CertificateFilter{SubjectID: sub.ID, Limit: 1000})
	if err != nil {
		return false, err
	}
	for _, c := range certs {
		if c.Profile != OfficerProfile || now.Before(c.NotBefore) || !now.Before(c.NotAfter) || (skip != nil && skip(sub, c)) {
			continue
		}
		rec, err := st.CertificateStatus(ctx, c.Serial)
		if err != nil {
			return false, err
		}
		if rec.Status == Good {
			return true, nil
		}
	}
	return false, nil
}
