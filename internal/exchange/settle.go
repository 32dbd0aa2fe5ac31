package exchange

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/nuskha/nuskha/internal/adjudicate"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/rules"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/rx/trackcode"
	"github.com/nuskha/nuskha/internal/tlog"
)

// settle completes a stored dispense d of p: its adjudication committed
// (supplementary caps consumed, once per dispense id) and its answer
// settled with the amounts actually paid — what replays answer and
// receipts add up. A dispense settled already is answered as settled. dec
// is the decision judged before the dispense was stored; nil (a replay, or
// a dispense whose first attempt stopped between the store and here), the
// stored documents are judged again for the fills they were counted
// against: the caps commit once by dispense id, so a retried commit pays
// what the first paid.
func (s *Service) settle(ctx context.Context, p *Prescription, d *Dispense, dec *adjudicate.Decision) ([]byte, error) {
	if d.Settled != nil {
		return d.Settled, nil
	}
	if dec == nil {
		var err error
		if dec, err = s.rejudge(ctx, p, d); err != nil {
			return nil, err
		}
	}
	// The entry first: a pseudonym key that cannot be used stops the
	// settlement before the caps are consumed, not between the two.
	e, err := s.settlement(p, d)
	if err != nil {
		return nil, err
	}
	if err := s.cfg.Adjudicator.Commit(ctx, dec, d.ID, d.At); err != nil {
		return nil, internal(err, "committing a dispense's adjudication")
	}
	answer, err := s.settledAnswer(ctx, p, d, dec)
	if err != nil {
		return nil, err
	}
	settled, err := s.cfg.Store.Settle(ctx, e, d.ID, answer, s.cfg.Now())
	if err != nil {
		return nil, internal(err, "settling a dispense")
	}
	return settled, nil
}

// settlement is the audit entry of d's settlement: the exchange's own
// action (whichever request completes it), on d's prescription, about p's
// patient (the pseudonym computed for the request that dispensed is
// still in tlog.Pseudonyms' cache). A key that cannot be used stops the
// settlement like a store that cannot be written: the dispense is kept,
// and its next replay, or the close, settles it.
func (s *Service) settlement(p *Prescription, d *Dispense) (*tlog.Entry, error) {
	a := &action{e: tlog.Entry{Time: s.cfg.Now().UTC(), Action: ActSettle, Actor: tlog.Actor{Kind: tlog.ActorSystem, ID: settlerID}}}
	a.on("rx", p.ID)
	if err := s.about(a, p.PatientNationalID); err != nil {
		return nil, err
	}
	return a.entry(), nil
}

// settlerID names the exchange as the actor of what it does itself.
const settlerID = "rxd.exchange"

// settledAnswer is d's answer with the committed decision and amounts: for
// a paper prescription the whole answer with its receipt, signed only now
// that the amounts are known.
func (s *Service) settledAnswer(ctx context.Context, p *Prescription, d *Dispense, dec *adjudicate.Decision) ([]byte, error) {
	amounts := amountsOf(dec)
	if p.Kind != Paper {
		var a DispenseAccepted
		if err := json.Unmarshal(d.Answer, &a); err != nil {
			return nil, fmt.Errorf("exchange: the stored answer of dispense %s does not decode: %w", d.ID, err)
		}
		a.Decision, a.Amounts = dec, amounts
		return json.Marshal(&a)
	}
	var pp rx.Paper
	if err := peek(p.JWS, &pp); err != nil {
		return nil, err
	}
	ref := rx.Reference{ID: p.ID, JWSSHA256: p.JWSSHA256}
	receipt, err := s.sign(ctx, &rx.Receipt{V: rx.Version, Type: rx.KindReceipt, ID: rx.NewID(), TrackingCode: p.TrackingCode, Prescription: ref,
		Dispenses: []rx.Reference{ref}, Amounts: rx.Amounts{Total: amounts.Total, Insurer: amounts.Insurer, Supplementary: amounts.Supplementary, Patient: amounts.Patient},
		Dispenser: pp.Dispenser, ClosedAt: p.AcceptedAt}, p.AcceptedAt)
	if err != nil {
		return nil, err
	}
	return json.Marshal(&PaperAccepted{ID: p.ID, TrackingCode: trackcode.Format(p.TrackingCode), Decision: dec, Amounts: amounts, Receipt: receipt})
}

// rejudge judges a stored dispense again, from the stored documents (which
// were verified when they were accepted), for the fills the store counted
// it against.
func (s *Service) rejudge(ctx context.Context, p *Prescription, d *Dispense) (*adjudicate.Decision, error) {
	var (
		rxp   *rx.Prescription
		given []rx.DispensedItem
		role  = pki.RolePharmacy
		scope = rules.ScopePaper
	)
	if p.Kind == Paper {
		var pp rx.Paper
		if err := peek(p.JWS, &pp); err != nil {
			return nil, err
		}
		rxp, given = prescribed(&rx.Verified{Paper: &pp}), pp.Dispensed
	} else {
		var doc rx.Dispense
		rxp = new(rx.Prescription)
		if err := peek(p.JWS, rxp); err != nil {
			return nil, err
		}
		if err := peek(d.JWS, &doc); err != nil {
			return nil, err
		}
		role, given = pki.Role(doc.Dispenser.Role), doc.Items
		scope = scopeOf(role)
	}
	_, of, err := dispensedLines(role, rxp.Items, given, "items")
	if err != nil {
		return nil, fmt.Errorf("exchange: stored dispense %s: %w", d.ID, err)
	}
	fills := make([]int, len(of))
	for i, item := range of {
		k := slices.IndexFunc(d.Lines, func(l DispensedLine) bool { return l.Item == item })
		if k < 0 {
			return nil, fmt.Errorf("exchange: stored dispense %s has no line of item %d", d.ID, item)
		}
		fills[i] = d.Lines[k].Fill
	}
	return s.cfg.Adjudicator.Check(ctx, adjudicate.Request{Scope: scope, Prescription: rxp, Dispensed: given, Fills: fills, HandedOutAt: d.At})
}

// peek decodes the payload of a document the exchange verified and stored.
func peek(jws string, into any) error {
	_, payload, err := rx.Peek(jws)
	if err == nil {
		err = json.Unmarshal(payload, into)
	}
	if err != nil {
		return fmt.Errorf("exchange: a stored document does not decode: %w", err)
	}
	return nil
}
