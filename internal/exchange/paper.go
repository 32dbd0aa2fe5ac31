package exchange

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nuskha/nuskha/internal/adjudicate"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/rules"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/rx/trackcode"
)

// PaperAccepted answers an entered paper prescription (schema
// PaperAccepted).
type PaperAccepted struct {
	ID           string               `json:"id"`
	TrackingCode string               `json:"tracking_code"`
	Decision     *adjudicate.Decision `json:"decision"`
	Amounts      Amounts              `json:"amounts"`
	// Receipt is the exchange's receipt of what was dispensed.
	Receipt string `json:"receipt"`
}

// Paper enters a paper prescription signed on a pharmacy's card and
// dispenses it in the same transaction (POST /v1/paper-prescriptions):
// eligibility and the paper-scope rules run as for an electronic one; it
// is stored marked paper, with its dispense (the document itself, under
// its id), and answered, once the caps are committed, with the amounts
// paid and a receipt of them. The same document again answers that
// settled answer with replay set.
func (s *Service) Paper(ctx context.Context, caller Caller, jws string) (ans *PaperAccepted, replay bool, err error) {
	a := s.begin(ActPaper, caller)
	ans, replay, err = s.paper(ctx, a, jws)
	if err = s.end(ctx, a, err); err != nil {
		return nil, false, err
	}
	return ans, replay, nil
}

func (s *Service) paper(ctx context.Context, a *action, jws string) (ans *PaperAccepted, replay bool, err error) {
	// Accepted before: its settled answer, whatever has been revoked since.
	if id, hash, ok := stored(jws, rx.KindPaper); ok {
		p, err := s.cfg.Store.PrescriptionByID(ctx, id, s.cfg.Now())
		switch {
		case err == nil && (p.JWSSHA256 != hash || p.Kind != Paper):
			return nil, false, Conflict("paper prescription", id)
		case err == nil:
			a.on("rx", p.ID)
			if err := s.about(a, p.PatientNationalID); err != nil {
				return nil, false, err
			}
			return s.paperReplayed(ctx, p)
		case errs.CodeOf(err) != errs.NotFound:
			return nil, false, internal(err, "reading a prescription")
		}
	}
	v, err := s.verify(ctx, jws, rx.KindPaper, "enter paper prescriptions", pki.RolePharmacy)
	if err != nil {
		return nil, false, err
	}
	pp := v.Paper
	a.byCard(v.Chain[0], v.Signer.Role, v.Signer.RegistrationNumber)
	a.on("rx", pp.ID)
	if err := s.about(a, pp.Patient.NationalID); err != nil {
		return nil, false, err
	}
	rxp := prescribed(v)
	now := s.cfg.Now()
	fills, err := Fills(pp.Items, pp.EnteredAt, s.cfg.WindowDays)
	if err != nil {
		return nil, false, errs.Wrap(errs.InvalidDocument, err, "the items' repeats do not make fills")
	}
	lines, of, err := dispensedLines(pki.RolePharmacy, pp.Items, pp.Dispensed, "dispensed")
	if err != nil {
		return nil, false, err
	}
	req := adjudicate.Request{Scope: rules.ScopePaper, Prescription: rxp, Dispensed: pp.Dispensed, Fills: fillsJudged(fills, of, now)}
	if stored, err := s.cfg.Store.PrescriptionByID(ctx, pp.ID, s.cfg.Now()); err == nil {
		if stored.JWSSHA256 != v.SHA256() {
			return nil, false, Conflict("paper prescription", pp.ID)
		}
		return s.paperReplayed(ctx, stored)
	} else if errs.CodeOf(err) != errs.NotFound {
		return nil, false, internal(err, "reading a prescription")
	}
	// Every item written is judged by the paper rules, not only what is
	// dispensed now: a paper prescription is closed at entry (never
	// claimed or dispensed later), and one carrying an item the paper
	// rules refuse (a controlled drug) is refused whole.
	if _, err := s.judge(ctx, adjudicate.Request{Scope: rules.ScopePaper, Prescription: rxp}); err != nil {
		return nil, false, err
	}
	var (
		dec     *adjudicate.Decision
		amounts Amounts
		p       *Prescription
		d       *Dispense
		stored  *Prescription
		seen    *int
	)
	for attempt := 0; ; attempt++ {
		// Judged with every earlier dispense of the patient in its
		// history, and judged again if another is recorded meanwhile,
		// as a dispense is (patientSeen).
		if seen, err = s.patientSeen(ctx, pp.Patient.NationalID); err != nil {
			return nil, false, err
		}
		if dec, err = s.judge(ctx, req); err != nil {
			return nil, false, err
		}
		amounts = amountsOf(dec)
		p = &Prescription{ID: pp.ID, Kind: Paper, JWS: jws, JWSSHA256: v.SHA256(), PatientNationalID: pp.Patient.NationalID,
			PrescriberCouncil: pp.Prescriber.CouncilNumber, PrescriberSerial: certSerial(v.Chain[0]), IssuedAt: pp.EnteredAt, Lines: fills}
		d = &Dispense{ID: pp.ID, PrescriptionID: pp.ID, JWS: jws, JWSSHA256: v.SHA256(), Lines: lines, At: now, Seen: seen}
		if d.Answer, err = json.Marshal(&DispenseAccepted{ID: d.ID, PrescriptionID: p.ID, Decision: dec, Amounts: amounts}); err != nil {
			return nil, false, err
		}
		// Stored with the amounts estimated; the answer with its
		// receipt is the settled one, once the caps are committed.
		stored, err = s.insert(ctx, a, p, d, func(p *Prescription) ([]byte, error) {
			return json.Marshal(&PaperAccepted{ID: p.ID, TrackingCode: trackcode.Format(p.TrackingCode), Decision: dec, Amounts: amounts})
		})
		if !errors.Is(err, ErrJudgedStale) || attempt == maxSettleRounds {
			break
		}
	}
	if errors.Is(err, ErrReplay) {
		return s.paperReplayed(ctx, stored)
	}
	if err != nil {
		return nil, false, err
	}
	settled, err := s.settle(ctx, stored, d, dec)
	if err != nil {
		return nil, false, err
	}
	var out PaperAccepted
	if err := json.Unmarshal(settled, &out); err != nil {
		return nil, false, fmt.Errorf("exchange: the settled answer of paper prescription %s does not decode: %w", p.ID, err)
	}
	return &out, false, nil
}

// paperReplayed is the settled answer of a paper prescription stored
// before, settled now should the first attempt have stopped after storing
// it.
func (s *Service) paperReplayed(ctx context.Context, p *Prescription) (*PaperAccepted, bool, error) {
	d, err := s.cfg.Store.DispenseByID(ctx, p.ID)
	if err != nil {
		return nil, false, internal(err, "reading a paper prescription's dispense")
	}
	settled, err := s.settle(ctx, p, d, nil)
	if err != nil {
		return nil, false, err
	}
	var out PaperAccepted
	if err := json.Unmarshal(settled, &out); err != nil {
		return nil, false, fmt.Errorf("exchange: the settled answer of paper prescription %s does not decode: %w", p.ID, err)
	}
	return &out, true, nil
}
