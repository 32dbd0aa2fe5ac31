package rxapi

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/persian"
)

// Limits bound what one caller — one client certificate — may ask of rxd,
// so that a vendor's software (or a stolen key) cannot walk the registry.
// A zero field takes its default (DefaultLimits).
//
// The counts live in the process: a restart starts every caller's day
// afresh, and each instance of rxd behind a load balancer counts on its
// own.
type Limits struct {
	// PerSecond and Burst are a token bucket over all of a caller's
	// requests: Burst at once, then PerSecond.
	PerSecond float64
	Burst     int
	// DailyLookups is how many persons' eligibility a caller may ask
	// about in a day (a calendar day in Iran): each GET
	// /v1/eligibility/{nationalId} and each POST /v1/rules/check counts.
	DailyLookups int
}

// DefaultLimits are ample for a practice's or a pharmacy's software (a
// busy pharmacy serves a few hundred patients a day) and stop a loop.
func DefaultLimits() Limits { return Limits{PerSecond: 20, Burst: 40, DailyLookups: 20000} }

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.PerSecond <= 0 {
		l.PerSecond = d.PerSecond
	}
	if l.Burst <= 0 {
		l.Burst = d.Burst
	}
	if l.DailyLookups <= 0 {
		l.DailyLookups = d.DailyLookups
	}
	return l
}

// budgets holds each caller's bucket and the day's lookups. It forgets
// every caller when the day changes, which also bounds it: one entry per
// certificate that called that day.
type budgets struct {
	limits Limits
	// what the daily count counts, for the refusal's detail.
	what string

	mu  sync.Mutex
	day time.Time // the day counted, as persian.Day gives it
	by  map[string]*budget
}

type budget struct {
	bucket  *rate.Limiter
	lookups int
}

func newBudgets(l Limits, what string) *budgets {
	return &budgets{limits: l.withDefaults(), what: what, by: map[string]*budget{}}
}

// refusal is a caller over a limit: the problem, and when to try again.
type refusal struct {
	err        *errs.Error
	retryAfter time.Duration
}

func (b *budgets) of(caller string, now time.Time) *budget {
	// Only a later day starts the counts afresh: requests' clocks, read
	// before they queue for the lock, may arrive a little out of order
	// around midnight.
	if day := persian.Day(now); day.After(b.day) {
		b.day, b.by = day, map[string]*budget{}
	}
	c := b.by[caller]
	if c == nil {
		c = &budget{bucket: rate.NewLimiter(rate.Limit(b.limits.PerSecond), b.limits.Burst)}
		b.by[caller] = c
	}
	return c
}

// request spends a token of caller's bucket, or says how long until one
// is there.
func (b *budgets) request(caller string, now time.Time) *refusal {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.of(caller, now).bucket.ReserveN(now, 1)
	if wait := r.DelayFrom(now); wait > 0 {
		r.CancelAt(now)
		return &refusal{errs.New(errs.RateLimited, "more than %g requests a second (bursts of %d) from %s; slow down",
			b.limits.PerSecond, b.limits.Burst, who(caller)), wait}
	}
	return nil
}

// lookup counts one of caller's lookups for the day, or refuses it until
// the next day begins in Iran.
func (b *budgets) lookup(caller string, now time.Time) *refusal {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.of(caller, now)
	if c.lookups >= b.limits.DailyLookups {
		next := persian.DayStart(b.day.AddDate(0, 0, 1))
		return &refusal{errs.New(errs.QuotaExceeded, "%s has made its %d %s for today; more from %s",
			who(caller), b.limits.DailyLookups, b.what, next.UTC().Format(time.RFC3339)), next.Sub(now)}
	}
	c.lookups++
	return nil
}

// Budgets are kept per client certificate (its SHA-256 in hex) and, for
// the exchange's lookups and claims, per card too: a key cardPrefix+serial.
const cardPrefix = "card:"

// who names the holder of a budget in a refusal.
func who(key string) string {
	if len(key) > len(cardPrefix) && key[:len(cardPrefix)] == cardPrefix {
		return "this card"
	}
	return "this certificate"
}

// refuse writes a refusal with its Retry-After, in whole seconds rounded
// up (RFC 9110 §10.2.3).
func (a *API) refuse(w http.ResponseWriter, r *http.Request, no *refusal) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(no.retryAfter.Seconds())))))
	a.fail(w, r, no.err)
}
