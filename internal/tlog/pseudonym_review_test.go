package tlog

import (
	"testing"
	"time"
)

// TestPseudonymCacheForgetsIdle (review): the cache holds patients'
// national ids in the clear for PseudonymCacheTTL — but an id is only
// dropped when it is read again or when another pseudonym is computed.
// On a quiet instance (a night, a standby behind the load balancer) the
// ids of the last patients seen stay in memory indefinitely.
func TestPseudonymCacheForgetsIdle(t *testing.T) {
	now := time.Date(2026, 12, 5, 22, 0, 0, 0, time.UTC)
	p := NewPseudonyms(&countingMAC{})
	p.now = func() time.Time { return now }
	for _, id := range []string{"0499370899", "0013542419"} {
		if _, err := p.Of(id); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(8 * time.Hour) // the night passes with no patient
	if n := p.Cached(); n != 0 {
		t.Fatalf("%d national ids still held %s after they were last used (TTL %s)", n, 8*time.Hour, PseudonymCacheTTL)
	}
}
