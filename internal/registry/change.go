package registry

import (
	"slices"
	"time"
)

// Change is an update of a registry entry waiting for a second officer.
// An update that changes who or what a subject is (any identity field, the
// DNS names) or widens what it may be certified for (a licence made longer
// or active again) would let one officer decide what the next certificate
// says; it takes effect only when a different officer approves it, and
// only if the subject is still at BaseVersion then. An update that only
// restricts (a licence suspended or revoked, or ending sooner) takes effect
// at once: it can only stop certification.
type Change struct {
	ID          string `json:"id"`
	SubjectID   string `json:"subject_id"`
	BaseVersion int    `json:"base_version"`
	// Fields names what changes (JSON names), for the second officer.
	Fields      []string  `json:"fields"`
	Proposed    *Subject  `json:"proposed"`
	RequestedBy string    `json:"requested_by"`
	RequestedAt time.Time `json:"requested_at"`
	// Filled in on read.
	Decided   bool      `json:"decided"`
	Approved  bool      `json:"approved,omitempty"`
	DecidedBy string    `json:"decided_by,omitempty"`
	DecidedAt time.Time `json:"decided_at,omitzero"`
	Comment   string    `json:"decision_comment,omitempty"`
	// State and, while undecided, ExpiresAt are filled in by the Service
	// at the time of reading.
	State     ChangeState `json:"state,omitempty"`
	ExpiresAt time.Time   `json:"expires_at,omitzero"`
}

// ChangeState is where a registry change stands.
type ChangeState string

// Change states.
const (
	ChangePending  ChangeState = "pending"  // awaiting a second officer
	ChangeApproved ChangeState = "approved" // applied
	ChangeRejected ChangeState = "rejected"
	ChangeExpired  ChangeState = "expired" // undecided for ChangeLifetime: it can no longer be approved
)

// ChangeLifetime is how long a registry change may wait for its second
// officer: as long as a certificate hold or release.
const ChangeLifetime = 24 * time.Hour

// changeOpenSince is the earliest request time of a change still open at
// now: one made exactly ChangeLifetime ago may still be approved.
func changeOpenSince(now time.Time) time.Time { return now.Add(-ChangeLifetime) }

// stateAt fills in State and ExpiresAt as they are at now.
func (c *Change) stateAt(now time.Time) {
	c.ExpiresAt = time.Time{}
	switch {
	case c.Decided && c.Approved:
		c.State = ChangeApproved
	case c.Decided:
		c.State = ChangeRejected
	case c.RequestedAt.Before(changeOpenSince(now)):
		c.State, c.ExpiresAt = ChangeExpired, c.RequestedAt.Add(ChangeLifetime)
	default:
		c.State, c.ExpiresAt = ChangePending, c.RequestedAt.Add(ChangeLifetime)
	}
}

// statusRank orders licence statuses from the most to the least permissive.
var statusRank = map[LicenceStatus]int{Active: 0, Suspended: 1, Revoked: 2}

// Diff compares an entry with its proposed next version. restricting names
// the fields whose change only restricts certification (licence status to
// suspended or revoked, a later start, an earlier end); others the rest:
// identity, DNS names, and a licence widened.
func Diff(cur, next *Subject) (restricting, others []string) {
	same := func(name string, equal bool) {
		if !equal {
			others = append(others, name)
		}
	}
	same("kind", cur.Kind == next.Kind)
	same("name", cur.Name == next.Name)
	same("national_id", cur.NationalID == next.NationalID)
	same("council_number", cur.CouncilNumber == next.CouncilNumber)
	same("profession", cur.Profession == next.Profession)
	same("specialty", cur.Specialty == next.Specialty)
	same("licence_number", cur.LicenceNumber == next.LicenceNumber)
	same("centre_type", cur.CentreType == next.CentreType)
	same("province", cur.Province == next.Province)
	same("responsible_name", cur.ResponsibleName == next.ResponsibleName)
	same("responsible_council_number", cur.ResponsibleCouncilNumber == next.ResponsibleCouncilNumber)
	same("organization", cur.Organization == next.Organization)
	same("dns_names", slices.Equal(cur.DNSNames, next.DNSNames))
	licence := func(name string, equal, restricts bool) {
		switch {
		case equal:
		case restricts:
			restricting = append(restricting, name)
		default:
			others = append(others, name)
		}
	}
	cr, nr := statusRank[cur.LicenceStatus], statusRank[next.LicenceStatus]
	licence("licence_status", cur.LicenceStatus == next.LicenceStatus, nr > cr)
	licence("licence_valid_from", cur.LicenceValidFrom.Equal(next.LicenceValidFrom), next.LicenceValidFrom.After(cur.LicenceValidFrom))
	licence("licence_valid_until", cur.LicenceValidUntil.Equal(next.LicenceValidUntil), next.LicenceValidUntil.Before(cur.LicenceValidUntil))
	return restricting, others
}
