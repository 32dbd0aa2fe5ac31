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
// The daily budgets are counted in the database (Budgets), which every
// instance of rxd over it shares: N instances behind a load balancer give
// a caller one budget, not N. The per-second token bucket is each
// instance's own, in its memory: it protects the instance, and a caller
// spreading its requests over N instances gets N buckets.
type Limits struct {
	// PerSecond and Burst are a token bucket over all of a caller's
	// requests to one instance: Burst at once, then PerSecond.
	PerSecond float64
	Burst     int
	// DailyLookups is how many persons' eligibility a caller may ask
	// about in a day (a calendar day in Iran), across every instance:
	// each GET /v1/eligibility/{nationalId}, each POST /v1/rules/check
	// and each exchange request that looks a patient up counts. It is
	// also the day's budget of prescription lookups and claims, per
	// certificate and per card.
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

// buckets holds each caller's token bucket in this instance. It forgets
// every caller when the day changes, which bounds it: one entry per
// certificate (or card) that called that day.
type buckets struct {
	limits Limits

	mu  sync.Mutex
	day time.Time // the day, as persian.Day gives it
	by  map[string]*rate.Limiter
}

func newBuckets(l Limits) *buckets { return &buckets{limits: l, by: map[string]*rate.Limiter{}} }

// refusal is a caller over a limit: the problem, and when to try again.
type refusal struct {
	err        *errs.Error
	retryAfter time.Duration
}

// request spends a token of caller's bucket, or says how long until one
// is there.
func (b *buckets) request(caller string, now time.Time) *refusal {
	b.mu.Lock()
	defer b.mu.Unlock()
	// Only a later day starts afresh: requests' clocks, read before they
	// queue for the lock, may arrive a little out of order around midnight.
	if day := persian.Day(now); day.After(b.day) {
		b.day, b.by = day, map[string]*rate.Limiter{}
	}
	l := b.by[caller]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(b.limits.PerSecond), b.limits.Burst)
		b.by[caller] = l
	}
	r := l.ReserveN(now, 1)
	if wait := r.DelayFrom(now); wait > 0 {
		r.CancelAt(now)
		return &refusal{errs.New(errs.RateLimited, "more than %g requests a second (bursts of %d) from %s; slow down",
			b.limits.PerSecond, b.limits.Burst, who(caller)), wait}
	}
	return nil
}

// The daily budgets, by kind: the names Budgets stores them under, and
// what a refusal says they count.
const (
	// budgetLookup: eligibility lookups, rules checks and the exchange's
	// patient lookups, per certificate.
	budgetLookup = "lookup"
	// budgetFind: prescription lookups and claims, per certificate and
	// per card.
	budgetFind = "find"
)

var budgetCounts = map[string]string{budgetLookup: "eligibility lookups", budgetFind: "prescription lookups and claims"}

// errNoBudgets refuses a lookup on an API without its Budgets.
var errNoBudgets = errs.New(errs.Unavailable, "lookups cannot be counted against the caller's daily budget, so they are not answered")

// spend counts one lookup of kind against holder's budget for today, and
// reports whether the request may go on; if not, it has written the
// refusal: quota-exceeded until the next day begins in Iran, or — when
// the count cannot be made (the database is down) — unavailable. It fails
// closed: a lookup that was not counted is not answered.
func (a *API) spend(w http.ResponseWriter, r *http.Request, kind, holder string) bool {
	if a.Budgets == nil {
		a.fail(w, r, errNoBudgets)
		return false
	}
	now := a.Now()
	day := persian.Day(now)
	ok, err := a.Budgets.Spend(r.Context(), day, kind, holder, a.Limits.DailyLookups)
	if err != nil {
		a.fail(w, r, err)
		return false
	}
	if !ok {
		next := persian.DayStart(day.AddDate(0, 0, 1))
		a.refuse(w, r, &refusal{errs.New(errs.QuotaExceeded, "%s has made its %d %s for today; more from %s",
			who(holder), a.Limits.DailyLookups, budgetCounts[kind], next.UTC().Format(time.RFC3339)), next.Sub(now)})
		return false
	}
	return true
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
