package exchange_test

import (
	"sync"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/rx"
)

// Two prescriptions of the same drug for one patient, dispensed at once
// by two pharmacies, both judged before either is recorded: the one
// recorded second was judged without the first in the patient's history,
// so the store refuses it and it is judged again, with the first: a
// refill too early. Only one of the two is handed out.
func TestRefillRuleUnderConcurrentDispenses(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			racing := f.racing(t, 2)
			type visit struct {
				actor *exchange.Actor
				claim *exchange.ClaimGranted
				doc   string
				err   error
			}
			var visits []*visit
			for _, c := range []card{f.pharmacy, f.rival} {
				p, jws, ans := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20))
				_, actor := f.session(t, c, f.vendor)
				cl, err := f.svc.Claim(ctx, actor, find(ans, p))
				if err != nil {
					t.Fatal(err)
				}
				doc := f.sign(t, c, f.dispenseDoc(c, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 20}))
				visits = append(visits, &visit{actor: actor, claim: cl, doc: doc})
			}
			var wg sync.WaitGroup
			for _, v := range visits {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, _, v.err = racing.Dispense(ctx, v.actor, v.claim.ClaimID, v.claim.Secret, v.doc)
				}()
			}
			wg.Wait()
			ok := 0
			for _, v := range visits {
				if v.err == nil {
					ok++
				} else if errs.CodeOf(v.err) != errs.RuleViolation {
					t.Fatalf("dispense: %v", v.err)
				}
			}
			if ok != 1 {
				t.Fatalf("%d of the two dispenses of amoxicillin were handed out; the second is a refill too early", ok)
			}
		})
	}
}

// A dispense stored but never settled (rxd stopped between the store and
// the commit) is not yet in the patient's dispense history. The next
// dispense of the patient, at any pharmacy, settles it first and is
// judged with it: a second amoxicillin, on another prescription, is a
// refill too early — and so is a paper one.
func TestRefillRuleSeesUnsettledDispense(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			_, _, _, dispenseID := f.unsettledDispense(t)

			f.advance(t, time.Hour)
			q, qjws, qans := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20))
			_, rival := f.session(t, f.rival, f.vendor2)
			rc, err := f.svc.Claim(ctx, rival, find(qans, q))
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = f.svc.Dispense(ctx, rival, rc.ClaimID, rc.Secret, f.sign(t, f.rival, f.dispenseDoc(f.rival, qjws, q.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 20})))
			wantCode(t, err, errs.RuleViolation)
			if d, err := f.store.DispenseByID(ctx, dispenseID); err != nil || d.Settled == nil {
				t.Fatalf("the earlier dispense, not settled: %+v %v", d, err)
			}

			_, _, err = f.svc.Paper(ctx, f.vendor2, f.sign(t, f.rival, f.paper(f.rival, []rx.Item{drug(catalogtest.Amoxicillin, 20)}, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 20})))
			wantCode(t, err, errs.RuleViolation)
		})
	}
}
