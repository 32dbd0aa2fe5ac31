package tlog

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingMAC is HMAC-SHA256 under a fixed key that counts its uses, and
// fails while failing is set.
type countingMAC struct {
	calls   atomic.Int64
	failing atomic.Bool
}

func (*countingMAC) URI() string { return "test:counting" }

func (m *countingMAC) Sum(msg []byte) ([sha256.Size]byte, error) {
	m.calls.Add(1)
	if m.failing.Load() {
		return [sha256.Size]byte{}, errors.New("token removed")
	}
	h := hmac.New(sha256.New, []byte("pseudonym cache test key"))
	h.Write(msg)
	return [sha256.Size]byte(h.Sum(nil)), nil
}

// TestPseudonymCache: a patient seen again within the cache's time costs
// no call to the key and gets the same pseudonym as without the cache;
// after that time, or once pushed out by newer ones, the key is asked
// again; a failure is never cached.
func TestPseudonymCache(t *testing.T) {
	mac := &countingMAC{}
	now := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	p := NewPseudonyms(mac)
	p.now = func() time.Time { return now }
	p.max = 2
	want, err := NewUncachedPseudonyms(mac).Of("0499370899")
	if err != nil {
		t.Fatal(err)
	}
	mac.calls.Store(0)

	of := func(id string) Pseudonym {
		t.Helper()
		ps, err := p.Of(id)
		if err != nil {
			t.Fatal(err)
		}
		return ps
	}
	if got := of("0499370899"); got != want {
		t.Fatalf("cached pseudonym %x, uncached %x", got, want)
	}
	// Another way of writing the same id is the same patient.
	if got := of("۰۴۹۹۳۷۰۸۹۹"); got != want || mac.calls.Load() != 1 {
		t.Fatalf("second look: %x after %d calls; want %x after 1", got, mac.calls.Load(), want)
	}

	now = now.Add(PseudonymCacheTTL)
	if got := of("0499370899"); got != want || mac.calls.Load() != 2 {
		t.Fatalf("after the cache's time: %x after %d calls; want a second call", got, mac.calls.Load())
	}

	of("0013542419")
	of("0068795416") // the first is now the oldest of three: gone
	if n := p.Cached(); n != 2 {
		t.Fatalf("%d cached, bound 2", n)
	}
	before := mac.calls.Load()
	of("0499370899")
	if mac.calls.Load() != before+1 {
		t.Fatal("the pseudonym pushed out of the cache was not computed again")
	}

	mac.failing.Store(true)
	if _, err := p.Of("0086251376"); err == nil {
		t.Fatal("a failing key gave a pseudonym")
	}
	mac.failing.Store(false)
	before = mac.calls.Load()
	of("0086251376")
	if mac.calls.Load() != before+1 {
		t.Fatal("a failure was cached")
	}
}

// TestPseudonymCacheConcurrent: many requests for a few patients at once
// all get each patient's one pseudonym, and the bound holds.
func TestPseudonymCacheConcurrent(t *testing.T) {
	mac := &countingMAC{}
	p := NewPseudonyms(mac)
	p.max = 3
	ids := []string{"0499370899", "0013542419", "0068795416", "0086251376", "0010350829"}
	want := map[string]Pseudonym{}
	for _, id := range ids {
		w, err := NewUncachedPseudonyms(mac).Of(id)
		if err != nil {
			t.Fatal(err)
		}
		want[id] = w
	}
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				id := ids[(g+i)%len(ids)]
				got, err := p.Of(id)
				if err == nil && got != want[id] {
					err = errors.New("pseudonym of " + id + " changed")
				}
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if n := p.Cached(); n > 3 {
		t.Fatalf("%d cached, bound 3", n)
	}
}
