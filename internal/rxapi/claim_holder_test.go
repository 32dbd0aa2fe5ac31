package rxapi_test

import (
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
)

// TestClaimHolderOverHTTP holds the API to what the exchange refuses
// since cb7cf75 and 8495eee, as a vendor sees it: another pharmacy with
// a claim's secret is 403 forbidden on release, close and dispense (with
// or without an Idempotency-Key), and the claim stays the holder's; an
// organisation whose hold has lasted twice a claim's time to live is 409
// prescription-claimed with claimed_until when it may claim again, while
// another pharmacy may claim the prescription at once.
func TestClaimHolderOverHTTP(t *testing.T) {
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		t.Run(driver, func(t *testing.T) {
			f := xsetupOn(t, driver)
			p := f.prescription(drug(catalogtest.Amoxicillin, 20))
			jws := f.sign(t, f.doctor, p)
			var acc exchange.PrescriptionAccepted
			want(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions", body: jws}), 201, &acc)
			find := findBody(acc.TrackingCode, p.Patient.NationalID)

			ph := f.session(t, f.pharmacy, "vendor")
			rival := f.session(t, f.rival, "vendor2")
			var claim exchange.ClaimGranted
			want(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/claims", body: find, token: ph}), 201, &claim)
			claimPath := "/v1/claims/" + claim.ClaimID

			// The rival has the secret (leaked): refused everything.
			refused(t, f.do(t, req{client: "vendor2", method: "DELETE", path: claimPath, token: rival, secret: claim.Secret}), 403, "forbidden")
			refused(t, f.do(t, req{client: "vendor2", method: "DELETE", path: claimPath, token: rival, secret: claim.Secret, key: "rival-release"}), 403, "forbidden")
			refused(t, f.do(t, req{client: "vendor2", method: "POST", path: claimPath + "/close", token: rival, secret: claim.Secret}), 403, "forbidden")
			rd := f.sign(t, f.rival, f.dispenseDoc(f.rival, jws, p.ID, rx.DispensedItem{Code: catalogtest.Amoxicillin, Quantity: 10}))
			refused(t, f.do(t, req{client: "vendor2", method: "POST", path: claimPath + "/dispenses", body: rd, token: rival, secret: claim.Secret}), 403, "forbidden")
			// The claim is still held: the rival cannot claim it.
			p409 := refused(t, f.do(t, req{client: "vendor2", method: "POST", path: "/v1/claims", body: find, token: rival}), 409, "prescription-claimed")
			if until, _ := time.Parse(time.RFC3339, p409["claimed_until"].(string)); !until.Equal(claim.ExpiresAt) {
				t.Fatalf("claimed_until %v, want %v", p409["claimed_until"], claim.ExpiresAt)
			}

			// The holder's release under a key: 204; the rival's try
			// with the same key and secret is not answered that 204.
			if rel := f.do(t, req{client: "vendor", method: "DELETE", path: claimPath, token: ph, secret: claim.Secret, key: "release-1"}); rel.status != 204 {
				t.Fatalf("release: %d %s", rel.status, rel.body)
			}
			refused(t, f.do(t, req{client: "vendor2", method: "DELETE", path: claimPath, token: rival, secret: claim.Secret, key: "release-1"}), 403, "forbidden")

			// The holder claims again at once, lets that claim expire and
			// claims again: its hold goes on from the first claim.
			start := claim.ExpiresAt.Add(-2 * time.Hour)
			want(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/claims", body: find, token: ph}), 201, &claim)
			f.clock.Advance(130 * time.Minute)
			want(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/claims", body: find, token: ph}), 201, &claim)
			if !claim.ExpiresAt.Equal(start.Add(4 * time.Hour)) {
				t.Fatalf("renewed to %v, want the hold's bound %v", claim.ExpiresAt, start.Add(4*time.Hour))
			}
			// At the bound: its own hold refuses it, until a time to
			// live after the bound.
			f.clock.Advance(claim.ExpiresAt.Sub(f.clock.Now()))
			own := refused(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/claims", body: find, token: ph}), 409, "prescription-claimed")
			if until, _ := time.Parse(time.RFC3339, own["claimed_until"].(string)); !until.Equal(start.Add(6 * time.Hour)) {
				t.Fatalf("own hold: claimed_until %v, want %v", own["claimed_until"], start.Add(6*time.Hour))
			}
			// Another pharmacy is not held off by it.
			var rivals exchange.ClaimGranted
			want(t, f.do(t, req{client: "vendor2", method: "POST", path: "/v1/claims", body: find, token: rival}), 201, &rivals)
			if !rivals.ExpiresAt.Equal(f.clock.Now().Add(2 * time.Hour)) {
				t.Fatalf("the rival's first claim expires %v, want a full time to live", rivals.ExpiresAt)
			}
		})
	}
}
