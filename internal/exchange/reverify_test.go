package exchange_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

// A prescriber's certificate revoked after the exchange accepted the
// prescription leaves it good only for affiliationChanged, superseded and
// cessationOfOperation; every other reason (unspecified, a compromise,
// certificateHold, privilegeWithdrawn) refuses it: an allow-list, failing
// closed.
func TestRevokedAfterAcceptanceAllowList(t *testing.T) {
	f := setup(t, sqlstore.SQLite)
	_, ph := f.session(t, f.pharmacy, f.vendor)
	for _, tc := range []struct {
		name   string
		reason int
		good   bool
	}{
		{"unspecified", 0, false},
		{"keyCompromise", 1, false},
		{"affiliationChanged", 3, true},
		{"superseded", 4, true},
		{"cessationOfOperation", 5, true},
		{"certificateHold", 6, false},
		{"privilegeWithdrawn", 9, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := f.card(t, "practitioner-signing", testpki.Subject(pki.RolePractitioner, fmt.Sprintf("sub_reason_%d", tc.reason), start))
			p, _, ans := f.prescribe(t, d, drug(catalogtest.Amoxicillin, 20))
			f.advance(t, time.Minute)
			f.revoke(t, d, f.now, tc.reason)
			f.advance(t, time.Minute)
			_, err := f.svc.Lookup(ctx, ph, find(ans, p))
			if tc.good {
				if err != nil {
					t.Fatalf("revoked (%d) after acceptance: %v", tc.reason, err)
				}
				return
			}
			wantCode(t, err, errs.CertificateRevoked)
		})
	}
}
