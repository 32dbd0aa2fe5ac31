package exchange

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nuskha/nuskha/internal/adjudicate"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/rules"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/rx/trackcode"
)

// RuleViolationError refuses a document to which a rule with severity
// reject applies. Its code is rule-violation; Decision is the per-item
// outcome, for the problem document.
type RuleViolationError struct {
	Decision *adjudicate.Decision
}

func (e *RuleViolationError) Error() string { return e.Unwrap().Error() }

// Unwrap gives the coded error.
func (e *RuleViolationError) Unwrap() error {
	n := len(e.Decision.Violations)
	for _, it := range e.Decision.Items {
		n += len(it.Violations)
	}
	return errs.New(errs.RuleViolation, "the %s is refused: %d rule violation(s), listed per item in the decision", e.Decision.Scope, n)
}

// judge adjudicates a request and refuses it when the patient is not
// eligible (prescribe and paper: eligibility on the day judged) or when a
// rule with severity reject applies.
func (s *Service) judge(ctx context.Context, req adjudicate.Request) (*adjudicate.Decision, error) {
	dec, err := s.cfg.Adjudicator.Check(ctx, req)
	if err != nil {
		return nil, err
	}
	if e := dec.Eligibility; !e.Eligible && req.Scope != rules.ScopeDispense && req.Scope != rules.ScopeParaclinic {
		return nil, errs.New(errs.NotEligible, "the patient is not insured on %s (%s)", dec.Date, e.Reason)
	}
	if !dec.Allowed {
		return nil, &RuleViolationError{Decision: dec}
	}
	return dec, nil
}

// Prescribe accepts a prescription signed on a practitioner's card
// (POST /v1/prescriptions): verified (signature, chain, profile, identity,
// revocation now), the patient eligible on its issue day, no reject rule
// at prescribe time, stored exactly as received under a fresh tracking
// code, with the exchange's signed acknowledgement. The same document
// again (same id and signing input) is answered the first answer with
// replay set and stores nothing — even when it would be refused now (its
// signer revoked since, the rules or the registry changed since): a retry
// never turns into a refusal. Another document under a used id is
// document-id-conflict.
func (s *Service) Prescribe(ctx context.Context, caller Caller, jws string) (ans *PrescriptionAccepted, replay bool, err error) {
	a := s.begin(ActPrescribe, caller)
	ans, replay, err = s.prescribe(ctx, a, jws)
	if err = s.end(ctx, a, err); err != nil {
		return nil, false, err
	}
	return ans, replay, nil
}

func (s *Service) prescribe(ctx context.Context, a *action, jws string) (*PrescriptionAccepted, bool, error) {
	ans, err := s.accept(ctx, a, jws)
	if errors.Is(err, ErrReplay) {
		return ans, true, nil
	}
	if err != nil {
		// Refused: unless it was accepted before, when its first answer
		// stands whatever has been revoked, or changed in the rules or
		// the registry, since. Asked only now, so that a new
		// prescription — nearly all of them — costs no read: a replay
		// that passes is found by the insert itself.
		first, before := s.acceptedBefore(ctx, a, jws)
		switch {
		case errors.Is(before, ErrReplay):
			return first, true, nil
		case before != nil:
			return nil, false, before
		}
		return nil, false, err
	}
	return ans, false, nil
}

// acceptedBefore answers a refused document that names a stored
// prescription: the first answer (found ErrReplay) if it is the same
// document, a conflict if another; nothing (nil, nil) if none is stored
// or the document names none.
func (s *Service) acceptedBefore(ctx context.Context, a *action, jws string) (*PrescriptionAccepted, error) {
	id, hash, ok := stored(jws, rx.KindPrescription)
	if !ok {
		return nil, nil
	}
	p, err := s.cfg.Store.PrescriptionByID(ctx, id, s.cfg.Now())
	switch {
	case errs.CodeOf(err) == errs.NotFound:
		return nil, nil
	case err != nil:
		return nil, internal(err, "reading a prescription")
	case p.JWSSHA256 != hash || p.Kind != Electronic:
		return nil, Conflict("prescription", id)
	}
	a.on("rx", p.ID)
	if err := s.about(a, p.PatientNationalID); err != nil {
		return nil, err
	}
	ans, _, err := s.replayed(p)
	if err != nil {
		return nil, err
	}
	return ans, ErrReplay
}

// accept verifies, judges and stores a prescription; one stored before
// (by this call's first try, or a concurrent one) is its first answer
// with ErrReplay, or a conflict.
func (s *Service) accept(ctx context.Context, a *action, jws string) (*PrescriptionAccepted, error) {
	v, err := s.verify(ctx, jws, rx.KindPrescription, "prescribe", pki.RolePractitioner)
	if err != nil {
		return nil, err
	}
	rxp := v.Prescription
	a.byCard(v.Chain[0], v.Signer.Role, v.Signer.RegistrationNumber)
	a.on("rx", rxp.ID)
	if err := s.about(a, rxp.Patient.NationalID); err != nil {
		return nil, err
	}
	dec, err := s.judge(ctx, adjudicate.Request{Scope: rules.ScopePrescribe, Prescription: rxp})
	if err != nil {
		return nil, err
	}
	lines, err := Fills(rxp.Items, rxp.IssuedAt, s.cfg.WindowDays)
	if err != nil {
		return nil, errs.Wrap(errs.InvalidDocument, err, "the items' repeats do not make fills")
	}
	p := &Prescription{
		ID: rxp.ID, Kind: Electronic, JWS: jws, JWSSHA256: v.SHA256(), PatientNationalID: rxp.Patient.NationalID,
		PrescriberCouncil: rxp.Prescriber.CouncilNumber, PrescriberSerial: certSerial(v.Chain[0]), IssuedAt: rxp.IssuedAt, Lines: lines,
	}
	// The answer of the last draw of a tracking code is the one stored.
	var out *PrescriptionAccepted
	stored, err := s.insert(ctx, a, p, nil, func(p *Prescription) ([]byte, error) {
		ack, err := s.sign(ctx, &rx.Ack{V: rx.Version, Type: rx.KindAck, ID: rx.NewID(), Prescription: rx.Reference{ID: p.ID, JWSSHA256: p.JWSSHA256},
			TrackingCode: p.TrackingCode, AcceptedAt: p.AcceptedAt}, p.AcceptedAt)
		if err != nil {
			return nil, err
		}
		out = &PrescriptionAccepted{ID: p.ID, TrackingCode: trackcode.Format(p.TrackingCode), State: Active, AcceptedAt: p.AcceptedAt,
			Lines: linesView(p.Lines), Decision: dec, Ack: ack}
		return json.Marshal(out)
	})
	if errors.Is(err, ErrReplay) {
		ans, _, err := s.replayed(stored)
		if err != nil {
			return nil, err
		}
		return ans, ErrReplay
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// replayed is the first answer of a prescription stored before.
func (s *Service) replayed(p *Prescription) (*PrescriptionAccepted, bool, error) {
	var out PrescriptionAccepted
	if err := json.Unmarshal(p.Answer, &out); err != nil {
		return nil, false, fmt.Errorf("exchange: the stored answer of prescription %s does not decode: %w", p.ID, err)
	}
	return &out, true, nil
}

// maxCodeDraws bounds the tracking-code draws of one insert: with 2^50
// codes a second collision is already a sign of a broken random source.
const maxCodeDraws = 5

// insert stores p (with d for a paper prescription) under a fresh tracking
// code, accepted now, its answer made by answer for that code and time:
// a code already taken is drawn again. The stored prescription is returned
// with ErrReplay or a conflict as the Store gives them.
func (s *Service) insert(ctx context.Context, a *action, p *Prescription, d *Dispense, answer func(*Prescription) ([]byte, error)) (*Prescription, error) {
	// Acceptance is a trusted time that documents refer to: to the
	// second, as documents show times.
	p.AcceptedAt = s.cfg.Now().UTC().Truncate(time.Second)
	for range maxCodeDraws {
		p.TrackingCode = trackcode.New()
		var err error
		if p.Answer, err = answer(p); err != nil {
			return nil, err
		}
		stored, err := s.cfg.Store.InsertPrescription(ctx, a.entry(), p, d)
		a.stored(err)
		if errors.Is(err, ErrTrackingCodeTaken) {
			continue
		}
		if err != nil && !errors.Is(err, ErrReplay) {
			return stored, internal(err, "storing a prescription")
		}
		return stored, err
	}
	return nil, fmt.Errorf("exchange: %d tracking codes drawn were all taken", maxCodeDraws)
}

// sign signs one of the exchange's own documents (an acknowledgement or a
// receipt) with its key, at t — only once the verifier's own checks of the
// signer pass (rx.Verifier.Sign): the exchange-receipt-signing profile, a
// chain to a root, and the certificate in good standing. What the
// exchange signs is what a pharmacy's verifier accepts.
func (s *Service) sign(ctx context.Context, doc rx.Document, t time.Time) (string, error) {
	jws, err := s.cfg.Verifier.Sign(ctx, doc, s.cfg.Key.Signer, s.cfg.Key.Chain, t)
	if err != nil {
		// Whatever the cause, it is ours, not the caller's: internal.
		return "", errs.Wrap(errs.Internal, err, "exchange: signing a %s", doc.Kind())
	}
	return jws, nil
}
