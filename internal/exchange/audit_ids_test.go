package exchange_test

import (
	"strings"
	"testing"

	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/persian"
)

// TestNoNationalIDFromCallerChosenIDs: the ids a caller puts in a URL (a
// prescription id to cancel, a claim id to release) are recorded as the
// entry's object before anything checks they name a stored document; one
// that is not a UUID is left out — one that contains a national id
// ("nid-0012345678", "0012345678.1") would otherwise sit for ever in the
// append-only log (found by review).
func TestNoNationalIDFromCallerChosenIDs(t *testing.T) {
	f := setup(t, drivers[0])
	f.newEntries(t)
	nid := persian.Digits(insuredtest.NationalID(0))
	token, ph := f.session(t, f.pharmacy, f.vendor)
	_ = token
	f.newEntries(t)
	_, _, _ = f.svc.Cancel(ctx, f.vendor, "nid-"+nid, "x.y.z")
	_ = f.svc.Release(ctx, ph, nid+".1", "secret")
	for _, e := range f.newEntries(t) {
		for _, v := range []string{e.Object, e.Actor.Org, e.Code} {
			if strings.Contains(v, nid) {
				t.Errorf("%s entry holds the national id %s: object %q", e.Action, nid, e.Object)
			}
		}
	}
}
