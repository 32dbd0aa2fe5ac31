package exchange

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/rx"
)

// Close ends a visit with the exchange's signed receipt
// (POST /v1/claims/{id}/close): it binds the prescription's and each
// dispense's signing-input hashes, the amounts, the dispenser and the
// time. The amounts are the dispenses' settled ones (what supplementary
// insurance actually paid); a dispense not yet settled is settled first.
// It is signed inside the store's transaction, under the prescription's
// lock: one close, one receipt, and a retried or racing close answers that
// same receipt.
func (s *Service) Close(ctx context.Context, actor *Actor, claimID, claimSecret string) (*Closed, error) {
	a := s.begin(ActClose, Caller{})
	a.bySession(actor)
	c, err := s.close(ctx, a, actor, claimID, claimSecret)
	if err = s.end(ctx, a, err); err != nil {
		return nil, err
	}
	return c, nil
}

func (s *Service) close(ctx context.Context, a *action, actor *Actor, claimID, claimSecret string) (*Closed, error) {
	role := pki.Role(actor.Role)
	if !slices.Contains(dispensers, role) {
		return nil, roleNotAllowed(role, "close claims")
	}
	// The holder is checked here too, not only when the receipt is
	// signed: a closed claim's receipt is answered again without signing,
	// and MUST NOT be to another organisation that has the secret.
	if err := s.heldBy(ctx, actor, claimID, claimSecret); err != nil {
		a.on("claim", claimID)
		return nil, err
	}
	if err := s.claimed(ctx, a, claimID); err != nil {
		return nil, err
	}
	now := s.cfg.Now().UTC().Truncate(time.Second)
	var r *Receipt
	for attempt := 0; ; attempt++ {
		var held *Prescription
		var unsettled []*Dispense
		var err error
		r, err = s.cfg.Store.Close(ctx, a.entry(), claimID, hashSecret(claimSecret), now, func(c *Claim, p *Prescription, ds []*Dispense) (*Receipt, error) {
			if c.Organisation != ClaimHolder(role, actor.Organisation) {
				return nil, errs.New(errs.Forbidden, "the claim is not %s %s's", role, actor.Organisation)
			}
			if len(ds) == 0 {
				return nil, errs.New(errs.Conflict, "nothing was dispensed under this claim: release it instead of closing it")
			}
			for _, d := range ds {
				if d.Settled == nil {
					unsettled = append(unsettled, d)
				}
			}
			if len(unsettled) > 0 {
				held = p
				return nil, errUnsettled
			}
			return s.receipt(ctx, c, p, ds, now)
		})
		a.stored(err)
		if errors.Is(err, errUnsettled) && attempt < maxSettleRounds {
			// A dispense whose first attempt stopped before it was
			// settled (or one still being settled): settled here, out
			// of the store's transaction, before its amounts are added.
			for _, d := range unsettled {
				if _, err := s.settle(ctx, held, d, nil); err != nil {
					return nil, err
				}
			}
			continue
		}
		if err != nil {
			return nil, internal(err, "closing a claim")
		}
		break
	}
	doc, err := receiptOf(r.JWS)
	if err != nil {
		return nil, err
	}
	am := doc.Amounts
	return &Closed{ReceiptID: r.ID, Receipt: r.JWS, Amounts: Amounts{Total: am.Total, Insurer: am.Insurer, Supplementary: am.Supplementary, Patient: am.Patient}}, nil
}

// maxSettleRounds bounds how often a close settles dispenses that were not
// (each round settles every one it found; a new one appears only if a
// dispense under the claim races the close).
const maxSettleRounds = 3

// errUnsettled stops a close that found a dispense not yet settled.
var errUnsettled = errs.New(errs.Conflict, "a dispense under this claim is still being recorded: close it again")

// receipt signs the receipt closing claim c: the settled amounts of its
// dispenses ds, every one settled. The dispenser is the claim's holder,
// as the claim names it.
func (s *Service) receipt(ctx context.Context, c *Claim, p *Prescription, ds []*Dispense, now time.Time) (*Receipt, error) {
	role, licence, ok := c.holder()
	if !ok {
		return nil, fmt.Errorf("exchange: claim %s names no role and licence (%q)", c.ID, c.Organisation)
	}
	var total Amounts
	refs := make([]rx.Reference, len(ds))
	for i, d := range ds {
		var a DispenseAccepted
		if err := json.Unmarshal(d.Settled, &a); err != nil {
			return nil, fmt.Errorf("exchange: the settled answer of dispense %s does not decode: %w", d.ID, err)
		}
		total = total.plus(a.Amounts)
		refs[i] = rx.Reference{ID: d.ID, JWSSHA256: d.JWSSHA256}
	}
	doc := &rx.Receipt{V: rx.Version, Type: rx.KindReceipt, ID: rx.NewID(), TrackingCode: p.TrackingCode,
		Prescription: rx.Reference{ID: p.ID, JWSSHA256: p.JWSSHA256}, Dispenses: refs,
		Amounts:   rx.Amounts{Total: total.Total, Insurer: total.Insurer, Supplementary: total.Supplementary, Patient: total.Patient},
		Dispenser: rx.Dispenser{LicenceNumber: licence, Role: string(role)}, ClosedAt: now}
	jws, err := s.sign(ctx, doc, now)
	if err != nil {
		return nil, err
	}
	return &Receipt{ID: doc.ID, JWS: jws, At: now}, nil
}

// receiptOf reads a receipt the exchange signed and stored.
func receiptOf(jws string) (*rx.Receipt, error) {
	_, payload, err := rx.Peek(jws)
	var doc rx.Receipt
	if err == nil {
		err = json.Unmarshal(payload, &doc)
	}
	if err != nil {
		return nil, fmt.Errorf("exchange: a stored receipt does not decode: %w", err)
	}
	return &doc, nil
}

// Cancel records a prescription's cancellation signed by its prescriber
// (POST /v1/prescriptions/{id}/cancellations): refused while a claim is
// held; nothing dispensed makes it cancelled, something dispensed
// remainder-cancelled (what was dispensed stands). The same cancellation
// again answers as the first time, with replay set.
func (s *Service) Cancel(ctx context.Context, caller Caller, prescriptionID, jws string) (ans *CancellationAccepted, replay bool, err error) {
	a := s.begin(ActCancel, caller)
	a.on("rx", prescriptionID)
	ans, replay, err = s.cancel(ctx, a, prescriptionID, jws)
	if err = s.end(ctx, a, err); err != nil {
		return nil, false, err
	}
	return ans, replay, nil
}

func (s *Service) cancel(ctx context.Context, a *action, prescriptionID, jws string) (ans *CancellationAccepted, replay bool, err error) {
	// Accepted before: answered as then, whatever has been revoked since.
	if id, hash, ok := stored(jws, rx.KindCancellation); ok {
		c, err := s.cfg.Store.CancellationByID(ctx, id)
		switch {
		case err == nil && c.JWSSHA256 != hash:
			return nil, false, Conflict("cancellation", id)
		case err == nil && c.PrescriptionID == prescriptionID:
			p, err := s.cfg.Store.PrescriptionByID(ctx, prescriptionID, s.cfg.Now())
			if err != nil {
				return nil, false, internal(err, "reading a prescription")
			}
			if err := s.about(a, p.PatientNationalID); err != nil {
				return nil, false, err
			}
			return &CancellationAccepted{PrescriptionID: p.ID, State: p.State, CancelledAt: c.At.UTC()}, true, nil
		case err != nil && errs.CodeOf(err) != errs.NotFound:
			return nil, false, internal(err, "reading a cancellation")
		}
	}
	v, err := s.verify(ctx, jws, rx.KindCancellation, "cancel prescriptions", pki.RolePractitioner)
	if err != nil {
		return nil, false, err
	}
	c := v.Cancellation
	a.byCard(v.Chain[0], v.Signer.Role, v.Signer.RegistrationNumber)
	if c.Prescription.ID != prescriptionID {
		return nil, false, errs.FieldError(errs.Invalid, "prescription.id", "the cancellation is of another prescription than the one in the path")
	}
	p, err := s.cfg.Store.PrescriptionByID(ctx, prescriptionID, s.cfg.Now())
	if err != nil {
		return nil, false, internal(err, "reading a prescription")
	}
	if err := s.about(a, p.PatientNationalID); err != nil {
		return nil, false, err
	}
	switch {
	case p.Kind == Paper:
		return nil, false, errs.New(errs.RoleNotAllowed, "a paper prescription was dispensed as it was entered; its prescriber has no card at the exchange to cancel it with")
	case p.PrescriberCouncil != v.Signer.RegistrationNumber:
		return nil, false, errs.New(errs.RoleNotAllowed, "only the prescription's prescriber may cancel it")
	case p.JWSSHA256 != c.Prescription.JWSSHA256:
		return nil, false, errs.FieldError(errs.Invalid, "prescription.jws_sha256", "is not the signing-input hash of the prescription stored under this id")
	}
	got, after, err := s.cfg.Store.Cancel(ctx, a.entry(), &Cancellation{ID: c.ID, PrescriptionID: p.ID, JWS: jws, JWSSHA256: v.SHA256(), At: s.cfg.Now()})
	a.stored(err)
	replay = errors.Is(err, ErrReplay)
	if err != nil && !replay {
		return nil, false, internal(err, "cancelling")
	}
	return &CancellationAccepted{PrescriptionID: p.ID, State: after.State, CancelledAt: got.At.UTC()}, replay, nil
}
