package trustapi

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/nuskha/nuskha/internal/netcap"
)

// WriteLimits bound the writes anyone may make without a client
// certificate (today: holder revocation requests, POST /v1/revocations),
// per client address (netcap.ClientKey: an IPv4 address or an IPv6 /64)
// and from all addresses together. Zero fields take the defaults in
// brackets. A holder revokes a certificate once; the defaults leave room
// for a clinic behind one address and stop a flood at once.
type WriteLimits struct {
	PerIPPerMinute float64 // [10]
	PerIPBurst     int     // [10]
	PerSecond      float64 // all addresses together [50]
	Burst          int     // [100]
}

// Default write limits.
const (
	DefaultPerIPPerMinute = 10
	DefaultPerIPBurst     = 10
	DefaultPerSecond      = 50
	DefaultBurst          = 100
)

func (l WriteLimits) withDefaults() WriteLimits {
	if l.PerIPPerMinute == 0 {
		l.PerIPPerMinute = DefaultPerIPPerMinute
	}
	if l.PerIPBurst == 0 {
		l.PerIPBurst = DefaultPerIPBurst
	}
	if l.PerSecond == 0 {
		l.PerSecond = DefaultPerSecond
	}
	if l.Burst == 0 {
		l.Burst = DefaultBurst
	}
	return l
}

// maxClients bounds the per-address buckets kept. Beyond it, addresses
// whose bucket is full again are forgotten (they are as good as new); if
// none is, new addresses are refused until some are: a flood from that
// many addresses is one the shared bucket already throttles.
const maxClients = 1 << 16

// writeLimiter is two token buckets per request: the client's and the
// shared one. A request takes a token from both or from neither.
type writeLimiter struct {
	now        func() time.Time
	perIP      rate.Limit
	perIPBurst int
	all        *rate.Limiter

	mu        sync.Mutex
	clients   map[string]*rate.Limiter
	lastSweep time.Time
}

func newWriteLimiter(l WriteLimits, now func() time.Time) *writeLimiter {
	l = l.withDefaults()
	return &writeLimiter{now: now, perIP: rate.Limit(l.PerIPPerMinute / 60), perIPBurst: l.PerIPBurst,
		all: rate.NewLimiter(rate.Limit(l.PerSecond), l.Burst), clients: map[string]*rate.Limiter{}}
}

// allow takes a token for a request from remoteAddr, or says how long to
// wait for one.
func (w *writeLimiter) allow(remoteAddr string) (bool, time.Duration) {
	now := w.now()
	key := netcap.ClientKey(remoteAddr)
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.clients[key]
	if c == nil {
		if len(w.clients) >= maxClients && now.Sub(w.lastSweep) >= time.Second {
			w.lastSweep = now
			for k, l := range w.clients {
				if l.TokensAt(now) >= float64(w.perIPBurst) {
					delete(w.clients, k)
				}
			}
		}
		if len(w.clients) >= maxClients {
			return false, time.Minute
		}
		c = rate.NewLimiter(w.perIP, w.perIPBurst)
		w.clients[key] = c
	}
	mine, shared := c.ReserveN(now, 1), w.all.ReserveN(now, 1)
	if wait := max(mine.DelayFrom(now), shared.DelayFrom(now)); wait > 0 {
		mine.CancelAt(now)
		shared.CancelAt(now)
		return false, wait
	}
	return true, 0
}

// retryAfter is a Retry-After value: whole seconds, at least one.
func retryAfter(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
