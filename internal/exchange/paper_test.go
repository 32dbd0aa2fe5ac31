package exchange_test

import (
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/exchange"
	"testing"

	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
)

// A paper prescription is closed at entry: every item written on it is
// judged by the paper rules (a controlled drug written but not dispensed
// refuses the whole paper), and it is looked up but never claimed or
// dispensed again, by its pharmacy or any other.
func TestPaperClosedAtEntry(t *testing.T) {
	f := setup(t, sqlstore.SQLite)
	doc := f.paper(f.pharmacy, []rx.Item{drug(catalogtest.Amoxicillin, 20), drug(catalogtest.Methylphenidate, 30)},
		rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 20})
	doc.Prescriber.Specialty = "psychiatry"
	_, _, err := f.svc.Paper(ctx, f.vendor, f.sign(t, f.pharmacy, doc))
	wantCode(t, err, errs.RuleViolation)
	if _, err := f.store.PrescriptionByID(ctx, doc.ID, f.now); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("the refused paper prescription was stored: %v", err)
	}

	doc = f.paper(f.pharmacy, []rx.Item{drug(catalogtest.Amoxicillin, 20), drug(catalogtest.Metformin, 60)},
		rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 20})
	ans, _, err := f.svc.Paper(ctx, f.vendor, f.sign(t, f.pharmacy, doc))
	if err != nil {
		t.Fatal(err)
	}
	q := exchange.Find{TrackingCode: ans.TrackingCode, NationalID: doc.Patient.NationalID}
	_, own := f.session(t, f.pharmacy, f.vendor)
	_, rival := f.session(t, f.rival, f.vendor2)
	for name, a := range map[string]*exchange.Actor{"its pharmacy": own, "another pharmacy": rival} {
		if v, err := f.svc.Lookup(ctx, a, q); err != nil || v.ID != doc.ID {
			t.Errorf("%s: lookup of a paper prescription: %+v %v", name, v, err)
		}
		_, err := f.svc.Claim(ctx, a, q)
		wantCode(t, err, errs.PrescriptionNotDispensable)
	}
	// A dispense of the paper's remainder under a claim of another
	// prescription is refused too.
	p, _, pans := f.prescribe(t, f.doctor, drug(catalogtest.Amoxicillin, 20))
	c, err := f.svc.Claim(ctx, rival, find(pans, p))
	if err != nil {
		t.Fatal(err)
	}
	stored, err := f.store.PrescriptionByID(ctx, doc.ID, f.now)
	if err != nil {
		t.Fatal(err)
	}
	d := f.dispenseDoc(f.rival, stored.JWS, doc.ID, rx.DispensedItem{Code: catalogtest.Metformin, Quantity: 60})
	_, _, err = f.svc.Dispense(ctx, rival, c.ClaimID, c.Secret, f.sign(t, f.rival, d))
	wantCode(t, err, errs.PrescriptionNotDispensable)
	if after, _ := f.store.PrescriptionByID(ctx, doc.ID, f.now); after.Lines[1].Dispensed != 0 {
		t.Errorf("the paper's remainder was dispensed: %+v", after.Lines)
	}
}
