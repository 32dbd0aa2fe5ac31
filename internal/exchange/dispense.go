package exchange

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nuskha/nuskha/internal/adjudicate"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/rules"
	"github.com/nuskha/nuskha/internal/rx"
)

// performs says which item kinds each role hands out or performs.
var performs = map[pki.Role][]string{
	pki.RolePharmacy:   {ItemDrug},
	pki.RoleParaclinic: {ItemLab, ItemImaging, ItemProcedure},
}

// scopeOf is the rules scope of what a role hands out.
func scopeOf(r pki.Role) rules.Scope {
	if r == pki.RoleParaclinic {
		return rules.ScopeParaclinic
	}
	return rules.ScopeDispense
}

// dispensedLines maps what a dispense gives to the prescribed items (as
// itself, or as the substitute for one), each prescribed item once with
// the sum given of it, and refuses an item the role may not hand out.
// of[i] is the prescribed item given[i] is of.
func dispensedLines(role pki.Role, items []rx.Item, given []rx.DispensedItem, list string) (out []DispensedLine, of []int, err error) {
	of = make([]int, len(given))
	for i, g := range given {
		prescribed := g.Code
		if g.SubstituteFor != "" {
			prescribed = g.SubstituteFor
		}
		j := slices.IndexFunc(items, func(it rx.Item) bool { return it.Code == prescribed })
		if j < 0 {
			return nil, nil, errs.FieldError(errs.Invalid, fmt.Sprintf("%s[%d].code", list, i), "%s is not on the prescription (a substitute names the prescribed code in substitute_for)", prescribed)
		}
		if !slices.Contains(performs[role], items[j].Kind) {
			return nil, nil, &errs.Error{Code: errs.RoleNotAllowed, Field: fmt.Sprintf("%s[%d]", list, i),
				Detail: fmt.Sprintf("a %s may not hand out or perform a %s item", role, items[j].Kind)}
		}
		of[i] = j
		if k := slices.IndexFunc(out, func(l DispensedLine) bool { return l.Item == j }); k >= 0 {
			out[k].Quantity += g.Quantity
		} else {
			out = append(out, DispensedLine{Item: j, Quantity: g.Quantity})
		}
	}
	return out, of, nil
}

// fillsJudged is the fill of lines each given item will be counted
// against at t (-1 where none is in force: the store refuses it), as
// adjudicate.Request.Fills wants them.
func fillsJudged(lines []Line, of []int, t time.Time) []int {
	fills := make([]int, len(of))
	for i, item := range of {
		fills[i] = -1
		if k := Counted(lines, item, t); k >= 0 {
			fills[i] = lines[k].Fill
		}
	}
	return fills
}

// sameFills refuses a dispense the store counted against another fill than
// the one it was judged for: another dispense of the prescription finished
// a fill between the reading and the store's lock. Asked again, it is
// judged for the fill it will be counted against.
func sameFills(d *Dispense, of, fills []int) error {
	for _, l := range d.Lines {
		for i, item := range of {
			if item == l.Item && fills[i] != l.Fill {
				return errs.New(errs.Conflict, "item %d was judged for fill %d and is now counted against fill %d (another dispense came first): send the dispense again", l.Item, fills[i], l.Fill)
			}
		}
	}
	return nil
}

// paperPractice names the practice of a paper prescription that names
// none: "paper prescription".
const paperPractice = "نسخه کاغذی"

// prescribed is the prescription a stored document holds, as the rules
// judge it: the prescription itself, or what a paper prescription says
// was written (issued when it was entered).
func prescribed(v *rx.Verified) *rx.Prescription {
	if v.Prescription != nil {
		return v.Prescription
	}
	pp := v.Paper
	p := &rx.Prescription{V: rx.Version, Type: rx.KindPrescription, ID: pp.ID, IssuedAt: pp.EnteredAt, Patient: pp.Patient,
		Prescriber: pp.Prescriber, Diagnoses: pp.Diagnoses, Items: pp.Items}
	if pp.Practice != nil {
		p.Practice = *pp.Practice
	} else {
		// A paper need not say where it was written; a prescription
		// judged by the rules names a practice. No rule reads its name.
		p.Practice.Name = paperPractice
	}
	return p
}

// Dispense records what a pharmacy dispensed or a centre performed under a
// claim (POST /v1/claims/{id}/dispenses): the record is verified and MUST
// be signed on a card of the session's organisation, which MUST hold the
// claim; it MUST reference the stored prescription (id and signing-input
// hash), which is verified again; a pharmacy hands out drugs only, a
// centre lab, imaging and procedure items; the dispense-time rules and
// adjudication run, with every earlier dispense of the patient in the
// history the rules read (patientSeen; judged again if another is
// recorded meanwhile); the store counts it against what remains, under the
// prescription's lock; supplementary caps are then consumed, once per
// dispense id. The same record again answers the first answer with
// replay set (and completes the adjudication should the first attempt have
// stopped after storing).
func (s *Service) Dispense(ctx context.Context, actor *Actor, claimID, claimSecret, jws string) (ans *DispenseAccepted, replay bool, err error) {
	a := s.begin(ActDispense, Caller{})
	a.bySession(actor)
	ans, replay, err = s.dispense(ctx, a, actor, claimID, claimSecret, jws)
	if err = s.end(ctx, a, err); err != nil {
		return nil, false, err
	}
	return ans, replay, nil
}

func (s *Service) dispense(ctx context.Context, a *action, actor *Actor, claimID, claimSecret, jws string) (ans *DispenseAccepted, replay bool, err error) {
	role := pki.Role(actor.Role)
	if !slices.Contains(dispensers, role) {
		return nil, false, roleNotAllowed(role, "dispense")
	}
	// The claim, its secret and its holder before anything else: a
	// replay is answered to the claim's holder only.
	if err := s.heldBy(ctx, actor, claimID, claimSecret); err != nil {
		a.on("claim", claimID)
		return nil, false, err
	}
	if err := s.claimed(ctx, a, claimID); err != nil {
		return nil, false, err
	}
	// Accepted before under this claim: its settled answer, whatever has
	// been revoked since.
	if ans, err := s.dispenseReplayed(ctx, claimID, jws); ans != nil || err != nil {
		return ans, ans != nil, err
	}
	v, err := s.verify(ctx, jws, rx.KindDispense, "dispense", dispensers...)
	if err != nil {
		return nil, false, err
	}
	d := v.Dispense
	if v.Signer.RegistrationNumber != actor.Organisation || v.Signer.Role != role {
		return nil, false, errs.FieldError(errs.Forbidden, "dispenser", "the record is signed for %s %s, the session is %s %s's", v.Signer.Role, v.Signer.RegistrationNumber, role, actor.Organisation)
	}
	now := s.cfg.Now()
	p, err := s.cfg.Store.PrescriptionByID(ctx, d.Prescription.ID, now)
	if err != nil {
		return nil, false, internal(err, "reading a prescription")
	}
	if p.Kind == Paper {
		return nil, false, errPaperClosed
	}
	if p.JWSSHA256 != d.Prescription.JWSSHA256 {
		return nil, false, errs.FieldError(errs.Invalid, "prescription.jws_sha256", "is not the signing-input hash of the prescription stored under this id")
	}
	stored, err := s.reverified(ctx, p)
	if err != nil {
		return nil, false, err
	}
	rxp := prescribed(stored)
	lines, of, err := dispensedLines(role, rxp.Items, d.Items, "items")
	if err != nil {
		return nil, false, err
	}
	// Each item is judged for the fill the store will count it against:
	// the earlier parts of that fill are not refills.
	fills := fillsJudged(p.Lines, of, now)
	var (
		dec  *adjudicate.Decision
		got  *Dispense
		seen *int
	)
	for attempt := 0; ; attempt++ {
		// Judged with every earlier dispense of the patient in its
		// history (the refill rules read it). The store refuses the
		// dispense if another of the patient's is recorded meanwhile,
		// having stored nothing: it is judged again, with that one.
		seen, err = s.patientSeen(ctx, p.PatientNationalID)
		if err != nil {
			return nil, false, err
		}
		// Judged, not yet refused: a replay answers its first answer
		// whatever the rules say now (the store finds it before asking
		// for an answer).
		dec, err = s.cfg.Adjudicator.Check(ctx, adjudicate.Request{Scope: scopeOf(role), Prescription: rxp, Dispensed: d.Items, Fills: fills})
		if err != nil {
			return nil, false, err
		}
		rec := &Dispense{ID: d.ID, PrescriptionID: p.ID, ClaimID: claimID, JWS: jws, JWSSHA256: v.SHA256(), Lines: lines, At: now, Seen: seen}
		got, _, err = s.cfg.Store.Dispense(ctx, a.entry(), claimID, hashSecret(claimSecret), rec, func(p *Prescription, d *Dispense) ([]byte, error) {
			if err := sameFills(d, of, fills); err != nil {
				return nil, err
			}
			if !dec.Allowed {
				return nil, &RuleViolationError{Decision: dec}
			}
			return json.Marshal(&DispenseAccepted{ID: d.ID, PrescriptionID: p.ID, State: p.State, Decision: dec, Amounts: amountsOf(dec), Lines: linesView(p.Lines)})
		})
		if !errors.Is(err, ErrJudgedStale) || attempt == maxSettleRounds {
			break
		}
	}
	a.stored(err)
	replay = errors.Is(err, ErrReplay)
	if err != nil && !replay {
		return nil, false, internal(err, "recording a dispense")
	}
	if replay {
		// Settled with the decision of its first attempt, or judged
		// again for the fills it was counted against: not this one's.
		dec = nil
	}
	// The caps consumed once per dispense id, the answer settled with what
	// they paid: a retry after a failure here (or after a crash between
	// the store and here) completes it.
	settled, err := s.settle(ctx, p, got, dec)
	if err != nil {
		return nil, false, err
	}
	var out DispenseAccepted
	if err := json.Unmarshal(settled, &out); err != nil {
		return nil, false, fmt.Errorf("exchange: the settled answer of dispense %s does not decode: %w", got.ID, err)
	}
	return &out, replay, nil
}

// patientSeen settles every dispense of the patient not settled yet (one
// whose first attempt stopped between the store and its settlement, or
// one being settled now) and returns how many the patient has
// (Dispense.Seen): a dispense joins the patient's dispense history, which
// the refill rules read, when it is settled, so one judged next sees them
// all.
func (s *Service) patientSeen(ctx context.Context, nationalID string) (*int, error) {
	for round := 0; ; round++ {
		n, unsettled, err := s.cfg.Store.PatientDispenses(ctx, nationalID)
		if err != nil {
			return nil, internal(err, "counting a patient's dispenses")
		}
		if len(unsettled) == 0 {
			return &n, nil
		}
		if round == maxSettleRounds {
			return nil, errPatientUnsettled
		}
		for _, d := range unsettled {
			p, err := s.cfg.Store.PrescriptionByID(ctx, d.PrescriptionID, s.cfg.Now())
			if err != nil {
				return nil, internal(err, "reading a prescription")
			}
			if _, err := s.settle(ctx, p, d, nil); err != nil {
				return nil, err
			}
		}
	}
}

// errPatientUnsettled stops a dispense while others of the patient keep
// arriving unsettled.
var errPatientUnsettled = errs.New(errs.Conflict, "other dispenses of this patient are still being recorded: send it again")

// heldBy refuses a claim that does not exist, a secret that is not its
// current one, and a claim of another organisation than the actor's (a
// claim's organisation never changes; the store checks the secret again
// under the prescription's lock).
func (s *Service) heldBy(ctx context.Context, actor *Actor, claimID, claimSecret string) error {
	c, err := s.cfg.Store.ClaimByID(ctx, claimID)
	if err != nil {
		return internal(err, "reading a claim")
	}
	if subtle.ConstantTimeCompare(c.SecretSHA256, hashSecret(claimSecret)) != 1 {
		return ErrSecretWrong
	}
	if c.Organisation != ClaimHolder(pki.Role(actor.Role), actor.Organisation) {
		return errs.New(errs.Forbidden, "the claim is not held by %s %s", actor.Role, actor.Organisation)
	}
	return nil
}

// dispenseReplayed is the settled answer of a dispense record stored before
// under claimID (nil if there is none), settled now should its first
// attempt have stopped after storing it. Another record under its id is a
// conflict.
func (s *Service) dispenseReplayed(ctx context.Context, claimID, jws string) (*DispenseAccepted, error) {
	id, hash, ok := stored(jws, rx.KindDispense)
	if !ok {
		return nil, nil
	}
	d, err := s.cfg.Store.DispenseByID(ctx, id)
	switch {
	case errs.CodeOf(err) == errs.NotFound:
		return nil, nil
	case err != nil:
		return nil, internal(err, "reading a dispense")
	case d.JWSSHA256 != hash:
		return nil, Conflict("dispense", id)
	case d.ClaimID != claimID:
		return nil, nil // judged as new, and refused by the store as the record it is
	}
	p, err := s.cfg.Store.PrescriptionByID(ctx, d.PrescriptionID, s.cfg.Now())
	if err != nil {
		return nil, internal(err, "reading a prescription")
	}
	settled, err := s.settle(ctx, p, d, nil)
	if err != nil {
		return nil, err
	}
	var out DispenseAccepted
	if err := json.Unmarshal(settled, &out); err != nil {
		return nil, fmt.Errorf("exchange: the settled answer of dispense %s does not decode: %w", d.ID, err)
	}
	return &out, nil
}

// reverified verifies a stored prescription again, as the signer
// re-checks policy at every use, and returns what it holds: its signature
// and chain, and its signer's revocation judged against the time the
// exchange accepted it (AtAcceptance).
func (s *Service) reverified(ctx context.Context, p *Prescription) (*rx.Verified, error) {
	kind := rx.KindPrescription
	if p.Kind == Paper {
		kind = rx.KindPaper
	}
	v, err := s.cfg.Reverifier.Verify(withAcceptedAt(ctx, p.AcceptedAt), p.JWS, kind)
	if err != nil {
		s.cfg.Log.WarnContext(ctx, "a stored prescription no longer verifies", "prescription", p.ID, "code", string(errs.CodeOf(err)), "err", err)
		return nil, err
	}
	return v, nil
}
