package exchange

import (
	"context"
	"slices"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/nationalid"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/rx/trackcode"
)

// dispensers are the roles that find, claim and dispense.
var dispensers = []pki.Role{pki.RolePharmacy, pki.RoleParaclinic}

// errPaperClosed refuses a claim or a dispense of a paper prescription:
// it was judged by the paper rules and dispensed as it was entered, and
// is closed then. What was written but not dispensed at entry needs a new
// prescription; claimed later it would be dispensed under the dispense
// rules, which a paper's items (controlled drugs among them) were never
// judged for.
var errPaperClosed = errs.New(errs.PrescriptionNotDispensable, "a paper prescription is dispensed as it is entered and closed then: it is never claimed or dispensed again")

// find reads the prescription a tracking code and a national id name
// together, and verifies it again (reverify). A pair that does not belong
// together answers exactly as a code that does not exist. A paper
// prescription is found to be looked at only (forClaim false).
func (s *Service) find(ctx context.Context, a *action, actor *Actor, f Find, act string, forClaim bool) (*Prescription, error) {
	if !slices.Contains(dispensers, pki.Role(actor.Role)) {
		return nil, roleNotAllowed(pki.Role(actor.Role), act)
	}
	code, err := trackcode.Parse(f.TrackingCode)
	if err != nil {
		return nil, err
	}
	nid, err := nationalid.Parse(f.NationalID)
	if err != nil {
		e, _ := err.(*errs.Error)
		if e == nil {
			return nil, err
		}
		return nil, &errs.Error{Code: e.Code, Field: "national_id", Detail: e.Detail}
	}
	p, err := s.cfg.Store.PrescriptionByCode(ctx, code, nid, s.cfg.Now())
	if err != nil {
		return nil, internal(err, "reading a prescription")
	}
	// Named only once found: a code and an id that do not belong together
	// are nobody's prescription.
	a.on("rx", p.ID)
	if err := s.about(a, nid); err != nil {
		return nil, err
	}
	if forClaim && p.Kind == Paper {
		return nil, errPaperClosed
	}
	if _, err := s.reverified(ctx, p); err != nil {
		return nil, err
	}
	return p, nil
}

// Lookup finds a prescription by its tracking code and its patient's
// national id, for a pharmacy or paraclinic centre
// (POST /v1/prescriptions/lookup), verified again.
func (s *Service) Lookup(ctx context.Context, actor *Actor, f Find) (*PrescriptionView, error) {
	a := s.begin(ActView, Caller{})
	a.bySession(actor)
	p, err := s.find(ctx, a, actor, f, "look up prescriptions", false)
	if err = s.end(ctx, a, err); err != nil {
		return nil, err
	}
	return viewOf(p), nil
}

// Claim gives the actor's organisation an exclusive hold on a
// prescription for ClaimTTL, with a new secret (POST /v1/claims). The same
// organisation claiming again gets its claim back with a new secret (the
// old one stops working); the organisation's hold, through renewals and
// new claims alike (Store.Claim), lasts at most 2 × ClaimTTL, then its
// next claim is prescription-claimed for a ClaimTTL; another's unexpired
// claim is prescription-claimed. An organisation whose role hands out or
// performs none of the items (a paraclinic centre, a drugs-only
// prescription) is refused: role-not-allowed; one with nothing of its
// kind left in a fill in force (a pharmacy once every drug is dispensed):
// prescription-not-dispensable. The holder claiming again is let through
// whatever is left and whatever the state: a lost secret is recovered to
// close a prescription fully dispensed, or one expired while held — and so
// is an organisation whose claim lapsed with dispenses under it and was
// never closed: that claim is given back, renewed (Store.Claim), or with
// its secret only and still lapsed while another organisation holds the
// prescription — enough to close the visit, not to dispense.
func (s *Service) Claim(ctx context.Context, actor *Actor, f Find) (*ClaimGranted, error) {
	a := s.begin(ActClaim, Caller{})
	a.bySession(actor)
	g, err := s.claim(ctx, a, actor, f)
	if err = s.end(ctx, a, err); err != nil {
		return nil, err
	}
	return g, nil
}

func (s *Service) claim(ctx context.Context, a *action, actor *Actor, f Find) (*ClaimGranted, error) {
	p, err := s.find(ctx, a, actor, f, "claim prescriptions", true)
	if err != nil {
		return nil, err
	}
	// A claim by an organisation that can hand out or perform none of
	// the items would only keep others (and a cancellation) from it.
	role := pki.Role(actor.Role)
	if !slices.ContainsFunc(p.Lines, func(l Line) bool { return slices.Contains(performs[role], l.Kind) }) {
		return nil, errs.New(errs.RoleNotAllowed, "a %s hands out or performs none of this prescription's items", role)
	}
	// Nor by one with nothing of its kind left to do (Store.Claim decides
	// that under the prescription's lock, knowing the organisation's
	// claims).
	now := s.cfg.Now()
	sec, hash := secret()
	c, err := s.cfg.Store.Claim(ctx, a.entry(), &Claim{ID: rx.NewID(), PrescriptionID: p.ID, Organisation: ClaimHolder(role, actor.Organisation), CertSerial: actor.CertSerial,
		SecretSHA256: hash, CreatedAt: now, ExpiresAt: now.Add(s.cfg.ClaimTTL)})
	a.stored(err)
	if err != nil {
		return nil, internal(err, "claiming")
	}
	// A lapsed claim given back for its secret only (Store.Claim) holds
	// nothing: the view shows the claim that does, if any.
	if c.Holds(now) {
		p.Claim = c
	}
	return &ClaimGranted{ClaimID: c.ID, Secret: sec, ExpiresAt: c.ExpiresAt.UTC(), Prescription: viewOf(p)}, nil
}

// Release ends a claim without closing it (DELETE /v1/claims/{id}).
func (s *Service) Release(ctx context.Context, actor *Actor, claimID, claimSecret string) error {
	a := s.begin(ActRelease, Caller{})
	a.bySession(actor)
	return s.end(ctx, a, s.release(ctx, a, actor, claimID, claimSecret))
}

func (s *Service) release(ctx context.Context, a *action, actor *Actor, claimID, claimSecret string) error {
	if !slices.Contains(dispensers, pki.Role(actor.Role)) {
		return roleNotAllowed(pki.Role(actor.Role), "release claims")
	}
	// Another organisation with the secret (leaked) MUST NOT release the
	// claim: it could then claim the prescription itself.
	if err := s.heldBy(ctx, actor, claimID, claimSecret); err != nil {
		a.on("claim", claimID)
		return err
	}
	if err := s.claimed(ctx, a, claimID); err != nil {
		return err
	}
	err := s.cfg.Store.Release(ctx, a.entry(), claimID, hashSecret(claimSecret), s.cfg.Now())
	a.stored(err)
	return internal(err, "releasing a claim")
}

// claimed names, in the action's record, the prescription a claim is of
// and its patient (a claim that does not exist: the claim's id, and
// not-found).
func (s *Service) claimed(ctx context.Context, a *action, claimID string) error {
	c, err := s.cfg.Store.ClaimByID(ctx, claimID)
	if err != nil {
		a.on("claim", claimID)
		return internal(err, "reading a claim")
	}
	p, err := s.cfg.Store.PrescriptionByID(ctx, c.PrescriptionID, s.cfg.Now())
	if err != nil {
		return internal(err, "reading a prescription")
	}
	a.on("rx", p.ID)
	return s.about(a, p.PatientNationalID)
}
