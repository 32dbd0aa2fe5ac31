package exchange_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/exchange"
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

// An organisation with nothing of its kind left to do — a pharmacy once
// every drug is dispensed, the lab test still to be done — may not claim
// the prescription: its hold would keep the centre out for hours. The
// centre then claims it.
func TestClaimRefusedWithNothingOfItsKindLeft(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			p, jws, ans := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20), rx.Item{Kind: "lab", Code: catalogtest.CBC, Quantity: 1})
			ph, c := f.pharmacyClaims(t, p, ans)
			f.amoxDispensed(t, ph, c, jws, p.ID, 20)
			if _, err := f.svc.Close(ctx, ph, c.ClaimID, c.Secret); err != nil {
				t.Fatal(err)
			}
			_, rival := f.session(t, f.rival, f.vendor2)
			for _, who := range []*exchange.Actor{ph, rival} {
				_, err := f.svc.Claim(ctx, who, find(ans, p))
				wantCode(t, err, errs.PrescriptionNotDispensable)
				var nd *exchange.NotDispensableError
				if !errors.As(err, &nd) || nd.For != pki.RolePharmacy || nd.State != exchange.PartlyDispensed {
					t.Fatalf("refusal %#v, want one for a pharmacy of a partly dispensed prescription", err)
				}
			}
			_, lab := f.session(t, f.lab, f.vendor)
			if _, err := f.svc.Claim(ctx, lab, find(ans, p)); err != nil {
				t.Fatalf("the centre, with its test still to do: %v", err)
			}
		})
	}
}

// The holder claiming again recovers a lost secret whatever is left: it
// needs the secret to close, and so to have its receipt, after it has
// dispensed everything, or when the prescription expired while it held
// it.
func TestHolderRecoversSecretWithNothingLeft(t *testing.T) {
	for _, driver := range drivers {
		for _, how := range []string{"fully dispensed", "expired while held"} {
			t.Run(driver+"/"+how, func(t *testing.T) {
				f := setup(t, driver)
				p, jws, ans := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20))
				_, ph := f.session(t, f.pharmacy, f.vendor)
				quantity := 20
				if how == "expired while held" {
					quantity = 5
					f.advance(t, ans.Lines[0].ValidUntil.Add(-time.Hour).Sub(f.now))
					_, ph = f.session(t, f.pharmacy, f.vendor)
				}
				lost, err := f.svc.Claim(ctx, ph, find(ans, p))
				if err != nil {
					t.Fatal(err)
				}
				d := f.sign(t, f.pharmacy, f.dispenseDoc(f.pharmacy, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: quantity}))
				if _, _, err := f.svc.Dispense(ctx, ph, lost.ClaimID, lost.Secret, d); err != nil {
					t.Fatal(err)
				}
				if how == "expired while held" {
					f.advance(t, 90*time.Minute)
					_, ph = f.session(t, f.pharmacy, f.vendor)
				}
				got, err := f.svc.Claim(ctx, ph, find(ans, p))
				if err != nil {
					t.Fatalf("the holder claiming again: %v", err)
				}
				if got.ClaimID != lost.ClaimID || got.Secret == lost.Secret {
					t.Fatalf("claim %s with secret changed %v, want claim %s with a new secret", got.ClaimID, got.Secret != lost.Secret, lost.ClaimID)
				}
				_, rival := f.session(t, f.rival, f.vendor2)
				_, err = f.svc.Claim(ctx, rival, find(ans, p))
				wantCode(t, err, errs.PrescriptionNotDispensable)
				_, err = f.svc.Close(ctx, ph, lost.ClaimID, lost.Secret)
				wantCode(t, err, errs.ClaimSecretWrong)
				if r, err := f.svc.Close(ctx, ph, got.ClaimID, got.Secret); err != nil || r.Receipt == "" {
					t.Fatalf("close with the recovered secret: %+v %v", r, err)
				}
			})
		}
	}
}

// A claim that lapsed with dispenses under it and was never closed is
// given back, renewed with a new secret, when its organisation claims
// again: the visit's receipt needs it, and a pharmacy whose software lost
// the secret and came back after the claim expired would otherwise never
// have one. The hold stays bounded from where it began; a lapsed claim
// with nothing dispensed under it is not given back (a new claim is made).
func TestLapsedClaimGivenBack(t *testing.T) {
	const ttl = 2 * time.Hour
	for _, driver := range drivers {
		for _, after := range []time.Duration{3 * time.Hour, 5 * time.Hour} {
			t.Run(fmt.Sprintf("%s/%s", driver, after), func(t *testing.T) {
				f := setup(t, driver)
				p, jws, ans := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20))
				first := f.now
				ph, lost := f.pharmacyClaims(t, p, ans)
				f.amoxDispensed(t, ph, lost, jws, p.ID, 5)
				f.advance(t, after)
				_, ph = f.session(t, f.pharmacy, f.vendor)
				got, err := f.svc.Claim(ctx, ph, find(ans, p))
				if err != nil {
					t.Fatalf("claiming again %s after the lapsed claim was made: %v", after, err)
				}
				if got.ClaimID != lost.ClaimID || got.Secret == lost.Secret || !got.ExpiresAt.After(f.now) {
					t.Fatalf("claim %s until %s, want %s given back with a new secret, running", got.ClaimID, got.ExpiresAt, lost.ClaimID)
				}
				// The hold began with the first claim when the claim lapsed
				// less than a time to live ago, else now.
				began := f.now
				if after < ttl+ttl {
					began = first
				}
				if got.ExpiresAt.After(began.Add(2 * ttl)) {
					t.Fatalf("held until %s, past twice a time to live from %s", got.ExpiresAt, began)
				}
				again, err := f.svc.Claim(ctx, ph, find(ans, p))
				if err != nil || again.ClaimID != lost.ClaimID || again.ExpiresAt.After(began.Add(2*ttl)) {
					t.Fatalf("renewing the claim given back: %+v %v", again, err)
				}
				_, rival := f.session(t, f.rival, f.vendor2)
				_, err = f.svc.Claim(ctx, rival, find(ans, p))
				wantCode(t, err, errs.PrescriptionClaimed)
				r, err := f.svc.Close(ctx, ph, again.ClaimID, again.Secret)
				if err != nil || r.Amounts.Total <= 0 {
					t.Fatalf("closing the claim given back: %+v %v", r, err)
				}
			})
		}
		t.Run(driver+"/nothing dispensed", func(t *testing.T) {
			f := setup(t, driver)
			p, _, ans := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20))
			_, ph := f.session(t, f.pharmacy, f.vendor)
			lapsed, err := f.svc.Claim(ctx, ph, find(ans, p))
			if err != nil {
				t.Fatal(err)
			}
			f.advance(t, 5*time.Hour)
			_, ph = f.session(t, f.pharmacy, f.vendor)
			got, err := f.svc.Claim(ctx, ph, find(ans, p))
			if err != nil || got.ClaimID == lapsed.ClaimID {
				t.Fatalf("claim %+v (%v), want a new one", got, err)
			}
		})
	}
}

// A pharmacy whose claim lapsed with a dispense under it, and which lost
// the secret, recovers it by claiming again even while another pharmacy
// holds the prescription: the lapsed claim comes back with a new secret,
// still lapsed — it closes, with its receipt, but dispenses nothing — and
// the rival's hold stands.
func TestLapsedClaimSecretWhileRivalHolds(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			p, jws, ans, lost := f.lapsedWithDispense(t)
			_, rival := f.session(t, f.rival, f.vendor2)
			held, err := f.svc.Claim(ctx, rival, find(ans, p))
			if err != nil {
				t.Fatalf("the rival, the pharmacy's claim lapsed: %v", err)
			}

			_, ph := f.session(t, f.pharmacy, f.vendor)
			back, err := f.svc.Claim(ctx, ph, find(ans, p))
			if err != nil {
				t.Fatalf("recovering the lapsed claim's secret while the rival holds: %v", err)
			}
			if back.ClaimID != lost.ClaimID || back.Secret == lost.Secret || !back.ExpiresAt.Equal(lost.ExpiresAt) {
				t.Fatalf("claim %s until %s, want %s given back with a new secret, still lapsed at %s", back.ClaimID, back.ExpiresAt, lost.ClaimID, lost.ExpiresAt)
			}
			if v := back.Prescription.ClaimedUntil; v == nil || !v.Equal(held.ExpiresAt) {
				t.Errorf("the view shows it claimed until %v, want the rival's %s", v, held.ExpiresAt)
			}
			d := f.sign(t, f.pharmacy, f.dispenseDoc(f.pharmacy, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 5}))
			_, _, err = f.svc.Dispense(ctx, ph, back.ClaimID, back.Secret, d)
			wantCode(t, err, errs.ClaimNotActive)
			_, err = f.svc.Close(ctx, ph, lost.ClaimID, lost.Secret)
			wantCode(t, err, errs.ClaimSecretWrong)
			r, err := f.svc.Close(ctx, ph, back.ClaimID, back.Secret)
			if err != nil || r.Amounts.Total <= 0 {
				t.Fatalf("closing the lapsed claim: %+v %v", r, err)
			}

			// The rival's hold is as it was: it dispenses the rest.
			rd := f.sign(t, f.rival, f.dispenseDoc(f.rival, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 15}))
			if _, _, err := f.svc.Dispense(ctx, rival, held.ClaimID, held.Secret, rd); err != nil {
				t.Fatalf("the rival dispensing under its claim: %v", err)
			}
		})
	}
}

// A claim given back after it lapsed starts where its hold began, before
// claims of that hold made after it: the hold is still walked back through
// all of them. An organisation that released twice and then let a claim
// lapse with a dispense under it, given that claim back, holds the
// prescription at most twice a time to live from its first claim; let it
// lapse at that bound and claim again at once, it is refused for a time to
// live, and the rival (or a cancellation) gets its turn.
func TestHoldBoundedAfterLapsedClaimGivenBack(t *testing.T) {
	const ttl = 2 * time.Hour
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			p, jws, ans := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20))
			_, ph := f.session(t, f.pharmacy, f.vendor)
			first := f.now
			for range 2 {
				c, err := f.svc.Claim(ctx, ph, find(ans, p))
				if err != nil {
					t.Fatal(err)
				}
				f.advance(t, 5*time.Minute)
				if err := f.svc.Release(ctx, ph, c.ClaimID, c.Secret); err != nil {
					t.Fatal(err)
				}
			}
			lost, err := f.svc.Claim(ctx, ph, find(ans, p))
			if err != nil {
				t.Fatal(err)
			}
			f.amoxDispensed(t, ph, lost, jws, p.ID, 5)
			f.advance(t, lost.ExpiresAt.Sub(f.now)+5*time.Minute)
			_, ph = f.session(t, f.pharmacy, f.vendor)
			back, err := f.svc.Claim(ctx, ph, find(ans, p))
			if err != nil || back.ClaimID != lost.ClaimID || back.ExpiresAt.After(first.Add(2*ttl)) {
				t.Fatalf("the lapsed claim given back: %+v %v, want %s until at most %s", back, err, lost.ClaimID, first.Add(2*ttl))
			}
			f.advance(t, back.ExpiresAt.Sub(f.now)+time.Minute)
			_, ph = f.session(t, f.pharmacy, f.vendor)
			again, err := f.svc.Claim(ctx, ph, find(ans, p))
			if err == nil {
				t.Fatalf("claimed again %s after its first claim, a minute after the hold's bound: %s until %s", f.now.Sub(first), again.ClaimID, again.ExpiresAt)
			}
			wantCode(t, err, errs.PrescriptionClaimed)
			_, rival := f.session(t, f.rival, f.vendor2)
			if _, err := f.svc.Claim(ctx, rival, find(ans, p)); err != nil {
				t.Fatalf("the rival, once the hold's bound is reached: %v", err)
			}
		})
	}
}

// The prescriber cancels the remainder while a claim with a dispense
// under it has lapsed: its organisation, claiming again, is given it back
// to close (its receipt) but dispenses nothing more under it.
func TestLapsedClaimGivenBackAfterCancellation(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			p, jws, ans, lost := f.lapsedWithDispense(t)
			cancel := f.sign(t, f.doctor, &rx.Cancellation{V: rx.Version, Type: rx.KindCancellation, ID: rx.NewID(), CancelledAt: f.now,
				Prescription: rx.Reference{ID: p.ID, JWSSHA256: rx.SHA256(jws)}, Prescriber: p.Prescriber, Reason: "تغییر درمان"})
			if got, _, err := f.svc.Cancel(ctx, f.vendor, p.ID, cancel); err != nil || got.State != exchange.RemainderCancelled {
				t.Fatalf("cancelling with the claim lapsed: %+v %v", got, err)
			}
			_, ph := f.session(t, f.pharmacy, f.vendor)
			back, err := f.svc.Claim(ctx, ph, find(ans, p))
			if err != nil || back.ClaimID != lost.ClaimID {
				t.Fatalf("the lapsed claim given back after the cancellation: %+v %v", back, err)
			}
			more := f.sign(t, f.pharmacy, f.dispenseDoc(f.pharmacy, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 1}))
			_, _, err = f.svc.Dispense(ctx, ph, back.ClaimID, back.Secret, more)
			wantCode(t, err, errs.PrescriptionNotDispensable)
			if r, err := f.svc.Close(ctx, ph, back.ClaimID, back.Secret); err != nil || r.Receipt == "" {
				t.Fatalf("closing the claim given back: %+v %v", r, err)
			}
		})
	}
}

// A claim given back to recover its secret when nothing of its kind is
// left (a pharmacy after every drug, the lab test still to do) gets the
// secret only: its expiry stays, so the centre is not kept out by a
// pharmacy that never closes, and the secret still closes the claim.
func TestClaimGivenBackWithNothingLeftHoldsNothing(t *testing.T) {
	for _, driver := range drivers {
		for _, lapse := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/lapsed=%v", driver, lapse), func(t *testing.T) {
				f := setup(t, driver)
				p, jws, ans := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20), rx.Item{Kind: "lab", Code: catalogtest.CBC, Quantity: 1})
				ph, lost := f.pharmacyClaims(t, p, ans)
				f.amoxDispensed(t, ph, lost, jws, p.ID, 20)
				if lapse {
					f.advance(t, 3*time.Hour)
				} else {
					f.advance(t, time.Hour)
				}
				_, ph = f.session(t, f.pharmacy, f.vendor)
				got, err := f.svc.Claim(ctx, ph, find(ans, p))
				if err != nil {
					t.Fatal(err)
				}
				if got.ClaimID != lost.ClaimID || got.Secret == lost.Secret || !got.ExpiresAt.Equal(lost.ExpiresAt) {
					t.Fatalf("claim %s until %s, want %s back with a new secret and its expiry %s", got.ClaimID, got.ExpiresAt, lost.ClaimID, lost.ExpiresAt)
				}
				_, lab := f.session(t, f.lab, f.vendor)
				_, err = f.svc.Claim(ctx, lab, find(ans, p))
				if lapse && err != nil {
					t.Fatalf("the centre, after the pharmacy's claim was given back lapsed: %v", err)
				}
				if !lapse {
					wantCode(t, err, errs.PrescriptionClaimed) // until the claim's first expiry, no later
				}
				if r, err := f.svc.Close(ctx, ph, got.ClaimID, got.Secret); err != nil || r.Receipt == "" {
					t.Fatalf("close with the secret given back: %+v %v", r, err)
				}
			})
		}
	}
}

// pharmacyClaims claims p (accepted as ans) for the pharmacy, on a session
// of its own.
func (f *fixture) pharmacyClaims(t *testing.T, p *rx.Prescription, ans *exchange.PrescriptionAccepted) (*exchange.Actor, *exchange.ClaimGranted) {
	t.Helper()
	_, ph := f.session(t, f.pharmacy, f.vendor)
	c, err := f.svc.Claim(ctx, ph, find(ans, p))
	if err != nil {
		t.Fatal(err)
	}
	return ph, c
}

// lapsedWithDispense prescribes 20 amoxicillin, has the pharmacy claim
// it and dispense 5, and lets the claim lapse: a minute past its expiry.
func (f *fixture) lapsedWithDispense(t *testing.T) (p *rx.Prescription, jws string, ans *exchange.PrescriptionAccepted, lost *exchange.ClaimGranted) {
	t.Helper()
	p, jws, ans = f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20))
	ph, lost := f.pharmacyClaims(t, p, ans)
	f.amoxDispensed(t, ph, lost, jws, p.ID, 5)
	f.advance(t, lost.ExpiresAt.Sub(f.now)+time.Minute)
	return p, jws, ans, lost
}

// amoxDispensed dispenses quantity of amoxicillin of the prescription id
// (signed as jws) under the pharmacy's claim c.
func (f *fixture) amoxDispensed(t *testing.T, ph *exchange.Actor, c *exchange.ClaimGranted, jws, id string, quantity int) {
	t.Helper()
	d := f.sign(t, f.pharmacy, f.dispenseDoc(f.pharmacy, jws, id, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: quantity}))
	if _, _, err := f.svc.Dispense(ctx, ph, c.ClaimID, c.Secret, d); err != nil {
		t.Fatal(err)
	}
}
