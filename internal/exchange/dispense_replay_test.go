package exchange_test

import (
	"testing"

	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/rx"
)

// A dispense record sent again is answered its settled answer only under
// its own claim, with the claim's secret, by the claim's holder: the
// claim, the secret and the organisation are checked before the replay.
func TestDispenseReplayOnlyToClaimHolder(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			p, jws, ans := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20))
			_, ph := f.session(t, f.pharmacy, f.vendor)
			c, err := f.svc.Claim(ctx, ph, find(ans, p))
			if err != nil {
				t.Fatal(err)
			}
			dj := f.sign(t, f.pharmacy, f.dispenseDoc(f.pharmacy, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 5}))
			if _, _, err := f.svc.Dispense(ctx, ph, c.ClaimID, c.Secret, dj); err != nil {
				t.Fatal(err)
			}
			_, _, err = f.svc.Dispense(ctx, ph, "00000000-0000-4000-8000-000000000000", "wrong", dj)
			wantCode(t, err, errs.NotFound)
			_, _, err = f.svc.Dispense(ctx, ph, c.ClaimID, "wrong", dj)
			wantCode(t, err, errs.ClaimSecretWrong)
			_, rival := f.session(t, f.rival, f.vendor2)
			_, _, err = f.svc.Dispense(ctx, rival, c.ClaimID, c.Secret, dj)
			wantCode(t, err, errs.Forbidden)

			// Under another claim of the same pharmacy, with its secret:
			// not this record's claim.
			q, _, qans := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20))
			other, err := f.svc.Claim(ctx, ph, find(qans, q))
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = f.svc.Dispense(ctx, ph, other.ClaimID, other.Secret, dj)
			wantCode(t, err, errs.DocumentIDConflict)

			if got, replay, err := f.svc.Dispense(ctx, ph, c.ClaimID, c.Secret, dj); err != nil || !replay || got.Amounts.Total == 0 {
				t.Fatalf("the holder's replay: %+v %v %v", got, replay, err)
			}
		})
	}
}
