// Package revoke changes the status of issued certificates: permanent
// revocation by a security officer or by the certificate's holder (a request
// signed with the certified key), and suspension (certificateHold) and its
// release under dual control. Every change is an append-only event; the
// current status is derived from them. Publishing (CRL, OCSP) follows every
// change through the Publisher seam.
package revoke

import (
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Status of a certificate.
type Status string

// Statuses. Revoked is final.
const (
	Good    Status = "good"
	OnHold  Status = "on-hold"
	Revoked Status = "revoked"
)

// Reason is an RFC 5280 CRLReason.
type Reason int

// Reasons (RFC 5280 §5.3.1; 7 is unused).
const (
	Unspecified          Reason = 0
	KeyCompromise        Reason = 1
	CACompromise         Reason = 2
	AffiliationChanged   Reason = 3
	Superseded           Reason = 4
	CessationOfOperation Reason = 5
	CertificateHold      Reason = 6
	RemoveFromCRL        Reason = 8
	PrivilegeWithdrawn   Reason = 9
	AACompromise         Reason = 10
)

var reasonNames = map[Reason]string{
	Unspecified: "unspecified", KeyCompromise: "keyCompromise", CACompromise: "cACompromise",
	AffiliationChanged: "affiliationChanged", Superseded: "superseded", CessationOfOperation: "cessationOfOperation",
	CertificateHold: "certificateHold", RemoveFromCRL: "removeFromCRL", PrivilegeWithdrawn: "privilegeWithdrawn",
	AACompromise: "aACompromise",
}

func (r Reason) String() string {
	if n, ok := reasonNames[r]; ok {
		return n
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// ParseReason accepts the RFC 5280 names (case-insensitive) or numbers.
func ParseReason(s string) (Reason, bool) {
	for r, n := range reasonNames {
		if strings.EqualFold(n, s) || fmt.Sprint(int(r)) == s {
			return r, true
		}
	}
	return 0, false
}

// Permanent reasons an officer may give for a revocation.
var officerReasons = []Reason{Unspecified, KeyCompromise, AffiliationChanged, Superseded, CessationOfOperation, PrivilegeWithdrawn}

// Reasons a holder may give: what a holder can know about their own key.
var holderReasons = []Reason{Unspecified, KeyCompromise, AffiliationChanged, Superseded, CessationOfOperation}

// Event is one status change, as recorded.
type Event struct {
	Seq         int64
	Serial      *big.Int
	Status      Status // the status it moves to
	Reason      Reason
	EffectiveAt time.Time // revocation time in CRL and OCSP
	RecordedAt  time.Time
	RequestedBy string // officer id, or "holder"
	ApprovedBy  string // second officer, for holds and releases
	ChangeID    string // the dual-control request, for holds and releases
}

// Record is a certificate's current status.
type Record struct {
	Serial      *big.Int
	Status      Status
	Reason      Reason
	EffectiveAt time.Time
	NotAfter    time.Time // of the certificate, so that expired entries can leave the CRL
	// Seq is the sequence number of the status event that set this status
	// (0: never changed). Status only ever moves to higher Seq; consumers
	// that may see records out of order keep the highest.
	Seq int64
}

// Action is what a dual-control status change does.
type Action string

// Actions that need two officers. Revocation is the revocation of a
// security officer's certificate (or any certificate two officers choose to
// revoke together): one officer alone could otherwise remove the others.
const (
	Hold       Action = "hold"
	Release    Action = "release"
	Revocation Action = "revoke"
)

// Change is a hold, release or revocation awaiting a second officer.
type Change struct {
	ID     string `json:"id"`
	Serial string `json:"serial"`
	Action Action `json:"action"`
	// Reason is a revocation's CRLReason (its RFC 5280 name); empty for
	// holds and releases.
	Reason      string    `json:"reason,omitempty"`
	Comment     string    `json:"comment"`
	RequestedBy string    `json:"requested_by"`
	RequestedAt time.Time `json:"requested_at"`
	// BaseSeq is the certificate's latest status event when the change
	// was requested; approval needs it unchanged.
	BaseSeq int64 `json:"base_seq"`
	// Filled in on read.
	Decided    bool      `json:"decided"`
	Approved   bool      `json:"approved,omitempty"`
	DecidedBy  string    `json:"decided_by,omitempty"`
	DecidedAt  time.Time `json:"decided_at,omitzero"` // absent until decided
	DecisionOn string    `json:"decision_comment,omitempty"`
	// State and, while undecided, ExpiresAt are filled in by the Service
	// at the time of reading.
	State     ChangeState `json:"state,omitempty"`
	ExpiresAt time.Time   `json:"expires_at,omitzero"`
}

// ChangeState is where a hold or release request stands.
type ChangeState string

// Change states.
const (
	ChangePending  ChangeState = "pending"  // awaiting a second officer
	ChangeApproved ChangeState = "approved" // applied
	ChangeRejected ChangeState = "rejected"
	ChangeExpired  ChangeState = "expired" // undecided for ChangeLifetime: it can no longer be approved
)

// ChangeLifetime is how long a hold or release request may wait for its
// second officer.
const ChangeLifetime = 24 * time.Hour

// openSince is the earliest request time of a request still open at now:
// one made exactly ChangeLifetime ago may still be approved.
func openSince(now time.Time) time.Time { return now.Add(-ChangeLifetime) }

// stateAt fills in State and ExpiresAt as they are at now.
func (c *Change) stateAt(now time.Time) {
	c.ExpiresAt = time.Time{}
	switch {
	case c.Decided && c.Approved:
		c.State = ChangeApproved
	case c.Decided:
		c.State = ChangeRejected
	case c.RequestedAt.Before(openSince(now)):
		c.State, c.ExpiresAt = ChangeExpired, c.RequestedAt.Add(ChangeLifetime)
	default:
		c.State, c.ExpiresAt = ChangePending, c.RequestedAt.Add(ChangeLifetime)
	}
}

// CRL is a published certificate revocation list.
type CRL struct {
	Number     int64
	ThisUpdate time.Time
	NextUpdate time.Time
	Entries    int
	DER        []byte
}
