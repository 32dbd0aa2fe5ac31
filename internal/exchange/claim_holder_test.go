package exchange_test

import (
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

// A claim is held by a role and a licence: a paraclinic centre whose
// licence number is a pharmacy's (the registry allows it, licence numbers
// being unique per role) neither takes over nor closes the pharmacy's
// claim, and the receipt names the pharmacy, as the claim does.
func TestClaimHolderIsRoleAndLicence(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			sub := testpki.Subject(pki.RoleParaclinic, "sub_lab_same", start)
			sub.LicenceNumber = f.pharmacy.sub.LicenceNumber
			lab := f.card(t, "paraclinic-signing", sub)

			p, jws, ans := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20), rx.Item{Kind: "lab", Code: catalogtest.CBC, Quantity: 1})
			_, ph := f.session(t, f.pharmacy, f.vendor)
			c, err := f.svc.Claim(ctx, ph, find(ans, p))
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := f.svc.Dispense(ctx, ph, c.ClaimID, c.Secret, f.sign(t, f.pharmacy, f.dispenseDoc(f.pharmacy, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 20}))); err != nil {
				t.Fatal(err)
			}
			_, la := f.session(t, lab, f.vendor2)
			_, err = f.svc.Claim(ctx, la, find(ans, p))
			wantCode(t, err, errs.PrescriptionClaimed)
			_, err = f.svc.Close(ctx, la, c.ClaimID, c.Secret)
			wantCode(t, err, errs.Forbidden)

			closed, err := f.svc.Close(ctx, ph, c.ClaimID, c.Secret)
			if err != nil {
				t.Fatalf("the pharmacy closing its own claim: %v", err)
			}
			r, err := f.verifier.Verify(ctx, closed.Receipt, rx.KindReceipt)
			if err != nil {
				t.Fatal(err)
			}
			if d := r.Receipt.Dispenser; d.Role != string(pki.RolePharmacy) || d.LicenceNumber != f.pharmacy.sub.LicenceNumber {
				t.Errorf("the receipt names dispenser %+v, not the pharmacy holding the claim", d)
			}
		})
	}
}

// A claim's secret in another organisation's hands (a leak, a shared
// vendor's log) is no use to it: it neither releases the claim (and so
// takes the prescription over) nor is answered the receipt of a claim
// already closed. Only the holder's own cards act on a claim.
func TestClaimSecretUselessToAnotherOrganisation(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			p, jws, ans := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20))
			_, ph := f.session(t, f.pharmacy, f.vendor)
			_, rival := f.session(t, f.rival, f.vendor2)
			c, err := f.svc.Claim(ctx, ph, find(ans, p))
			if err != nil {
				t.Fatal(err)
			}
			err = f.svc.Release(ctx, rival, c.ClaimID, c.Secret)
			wantCode(t, err, errs.Forbidden)
			_, err = f.svc.Claim(ctx, rival, find(ans, p))
			wantCode(t, err, errs.PrescriptionClaimed)

			if _, _, err := f.svc.Dispense(ctx, ph, c.ClaimID, c.Secret, f.sign(t, f.pharmacy, f.dispenseDoc(f.pharmacy, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 5}))); err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.Close(ctx, ph, c.ClaimID, c.Secret); err != nil {
				t.Fatal(err)
			}
			_, err = f.svc.Close(ctx, rival, c.ClaimID, c.Secret)
			wantCode(t, err, errs.Forbidden)
			err = f.svc.Release(ctx, rival, c.ClaimID, c.Secret)
			wantCode(t, err, errs.Forbidden)
		})
	}
}

// An organisation holds a prescription at most twice a claim's time to
// live without closing a visit, however it claims again: renewing its
// claim, releasing it and claiming at once, or letting it expire and
// claiming at once. Then others (and the prescriber's cancellation) get
// their turn: its next claim is refused for a time to live.
func TestHoldBoundedAcrossNewClaims(t *testing.T) {
	const ttl = 2 * time.Hour
	for _, driver := range drivers {
		for _, how := range []string{"release and claim", "expire and claim"} {
			t.Run(driver+"/"+how, func(t *testing.T) {
				f := setup(t, driver)
				p, _, ans := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20))
				_, ph := f.session(t, f.pharmacy, f.vendor)
				_, rival := f.session(t, f.rival, f.vendor2)
				first := f.now
				c, err := f.svc.Claim(ctx, ph, find(ans, p))
				if err != nil {
					t.Fatal(err)
				}
				for step := 0; ; step++ {
					if how == "release and claim" {
						f.advance(t, ttl/2)
						if err := f.svc.Release(ctx, ph, c.ClaimID, c.Secret); err != nil {
							t.Fatal(err)
						}
					} else {
						f.advance(t, c.ExpiresAt.Sub(f.now))
					}
					c, err = f.svc.Claim(ctx, ph, find(ans, p))
					if err != nil {
						if f.now.Before(first.Add(2 * ttl)) {
							t.Fatalf("claiming again at %s, within the bound: %v", f.now.Sub(first), err)
						}
						wantCode(t, err, errs.PrescriptionClaimed)
						break
					}
					if c.ExpiresAt.After(first.Add(2 * ttl)) {
						t.Fatalf("step %d: held until %s after the first claim, more than twice its time to live", step, c.ExpiresAt.Sub(first))
					}
					if step > 10 {
						t.Fatalf("still claiming again %s after the first claim", f.now.Sub(first))
					}
				}
				if _, err := f.svc.Claim(ctx, rival, find(ans, p)); err != nil {
					t.Fatalf("the rival, once the hold's bound is reached: %v", err)
				}
			})
		}
	}
}
