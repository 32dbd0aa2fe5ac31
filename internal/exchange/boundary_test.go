package exchange_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/persian"
	"github.com/nuskha/nuskha/internal/rx"
)

// A prescription is dispensable up to the last instant of its window's
// last day in Tehran, and not at the first instant of the next: the
// dispense, the claim and the cancellation are judged at the same edge.
func TestExpiryEdgeInTehran(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			f := setup(t, driver)
			p, jws, ans := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20))
			end := persian.DayStart(persian.Day(p.IssuedAt).AddDate(0, 0, exchange.DefaultWindowDays))
			f.advance(t, end.Add(-time.Hour).Sub(f.now))
			_, ph := f.session(t, f.pharmacy, f.vendor)
			c, err := f.svc.Claim(ctx, ph, find(ans, p))
			if err != nil {
				t.Fatal(err)
			}
			f.advance(t, end.Add(-time.Second).Sub(f.now))
			give := func(q int) error {
				_, _, err := f.svc.Dispense(ctx, ph, c.ClaimID, c.Secret, f.sign(t, f.pharmacy, f.dispenseDoc(f.pharmacy, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: q})))
				return err
			}
			if err := give(5); err != nil {
				t.Fatalf("a second before the window ends: %v", err)
			}
			f.now = end
			err = give(5)
			wantCode(t, err, errs.PrescriptionNotDispensable)
			var nd *exchange.NotDispensableError
			if !errors.As(err, &nd) || nd.State != exchange.Expired {
				t.Fatalf("at the window's end: %v", err)
			}
			if _, err := f.svc.Close(ctx, ph, c.ClaimID, c.Secret); err != nil {
				t.Fatalf("closing what was dispensed before the end: %v", err)
			}
			_, err = f.svc.Claim(ctx, ph, find(ans, p))
			wantCode(t, err, errs.PrescriptionNotDispensable)
		})
	}
}
