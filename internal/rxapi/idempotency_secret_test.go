package rxapi_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/rx"
)

// The Claim-Secret header is part of what an Idempotency-Key binds: a
// close sent again under the key with a wrong secret is refused, not
// answered the receipt; with the right one it is replayed.
func TestIdempotencyKeyBindsClaimSecret(t *testing.T) {
	f := xsetup(t)
	p := f.prescription(drug(catalogtest.Amoxicillin, 20))
	jws := f.sign(t, f.doctor, p)
	var acc exchange.PrescriptionAccepted
	want(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions", body: jws}), 201, &acc)
	ph := f.session(t, f.pharmacy, "vendor")
	var claim exchange.ClaimGranted
	want(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/claims", body: findBody(acc.TrackingCode, p.Patient.NationalID), token: ph}), 201, &claim)
	dj := f.sign(t, f.pharmacy, f.dispenseDoc(f.pharmacy, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 5}))
	want(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/claims/" + claim.ClaimID + "/dispenses", body: dj, token: ph, secret: claim.Secret}), 201, nil)
	first := f.do(t, req{client: "vendor", method: "POST", path: "/v1/claims/" + claim.ClaimID + "/close", token: ph, secret: claim.Secret, key: "k1"})
	want(t, first, 200, nil)
	again := f.do(t, req{client: "vendor", method: "POST", path: "/v1/claims/" + claim.ClaimID + "/close", token: ph, secret: strings.Repeat("x", 43), key: "k1"})
	refused(t, again, 422, "idempotency-key-reused")
	same := f.do(t, req{client: "vendor", method: "POST", path: "/v1/claims/" + claim.ClaimID + "/close", token: ph, secret: claim.Secret, key: "k1"})
	if want(t, same, 200, nil); !bytes.Equal(same.body, first.body) || same.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("the same close under the key: %q replayed %q", same.body, same.header.Get("Idempotent-Replayed"))
	}
}
