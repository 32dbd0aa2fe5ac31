package trustapi

import (
	"fmt"
	"testing"
	"time"
)

func TestWriteLimiter(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	l := newWriteLimiter(WriteLimits{PerIPPerMinute: 6, PerIPBurst: 2, PerSecond: 1, Burst: 6}, func() time.Time { return now })
	allowed := func(addr string) bool {
		ok, wait := l.allow(addr)
		if ok != (wait == 0) {
			t.Fatalf("%s: allowed %v with a wait of %s", addr, ok, wait)
		}
		return ok
	}
	t.Run("per address", func(t *testing.T) {
		if !allowed("192.0.2.1:1000") || !allowed("192.0.2.1:1001") {
			t.Fatal("the burst was refused")
		}
		ok, wait := l.allow("192.0.2.1:1002")
		if ok || wait != 10*time.Second || retryAfter(wait) != 10 {
			t.Fatalf("past the burst: %v, wait %s", ok, wait)
		}
		// Another host of the same IPv6 /64 is the same client.
		if !allowed("[2001:db8::1]:1") || !allowed("[2001:db8::2]:1") || allowed("[2001:db8::3]:1") {
			t.Fatal("an IPv6 /64 was not limited as one client")
		}
		if !allowed("[2001:db8:0:1::1]:1") {
			t.Fatal("another /64 was limited with the first")
		}
	})
	t.Run("in total", func(t *testing.T) {
		// 6 tokens shared, 5 taken above: a refused request takes none.
		if !allowed("198.51.100.1:1") {
			t.Fatal("the shared bucket ran out early")
		}
		for i := 2; i < 10; i++ {
			if allowed(fmt.Sprintf("198.51.100.%d:1", i)) {
				t.Fatalf("request %d from a fresh address passed the shared limit", i)
			}
		}
		now = now.Add(time.Second)
		if !allowed("198.51.100.9:1") || allowed("198.51.100.10:1") {
			t.Fatal("the shared bucket did not refill at one a second")
		}
	})
}
