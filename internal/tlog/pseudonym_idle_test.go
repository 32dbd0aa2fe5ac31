package tlog

import (
	"testing"
	"time"
)

// TestPseudonymCacheForgetsIdle: the cache holds patients' national ids
// for PseudonymCacheTTL, and a sweep forgets them then even when no
// pseudonym is asked for again — on a quiet instance (a night, a standby
// behind the load balancer) the ids of the last patients seen do not stay
// in memory. (Found by review: they were dropped only when read again or
// when another pseudonym was computed.)
func TestPseudonymCacheForgetsIdle(t *testing.T) {
	now := time.Date(2026, 12, 5, 22, 0, 0, 0, time.UTC)
	var scheduled []time.Duration
	var sweeps []func()
	p := NewPseudonyms(&countingMAC{})
	p.now = func() time.Time { return now }
	p.afterFunc = func(d time.Duration, f func()) { scheduled, sweeps = append(scheduled, d), append(sweeps, f) }
	if _, err := p.Of("0499370899"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(4 * time.Minute)
	if _, err := p.Of("0013542419"); err != nil {
		t.Fatal(err)
	}
	if len(sweeps) != 1 || scheduled[0] != PseudonymCacheTTL {
		t.Fatalf("sweeps scheduled: %v", scheduled)
	}
	// The first sweep, at the first id's time: it goes, the second stays
	// and the next sweep is at its time.
	now = now.Add(6 * time.Minute)
	sweeps[0]()
	if n := p.Cached(); n != 1 {
		t.Fatalf("%d held after the first id's time, want 1", n)
	}
	if len(sweeps) != 2 || scheduled[1] != 4*time.Minute {
		t.Fatalf("sweeps scheduled: %v", scheduled)
	}
	now = now.Add(8 * time.Hour) // the night passes with no patient
	sweeps[1]()
	if n := p.Cached(); n != 0 {
		t.Fatalf("%d national ids still held after their time", n)
	}
	if len(sweeps) != 2 {
		t.Fatal("an empty cache scheduled another sweep")
	}
	// The next pseudonym schedules a sweep again.
	if _, err := p.Of("0499370899"); err != nil || len(sweeps) != 3 {
		t.Fatalf("after a new pseudonym: %d sweeps, %v", len(sweeps), err)
	}
}
