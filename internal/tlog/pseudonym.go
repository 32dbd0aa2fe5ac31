package tlog

import (
	"container/list"
	"fmt"
	"sync"
	"time"

	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/nationalid"
)

// pseudonymDomain prefixes what is MACed, so that the pseudonym key, were
// it ever used for anything else, could not be made to yield a pseudonym.
const pseudonymDomain = "nuskha-patient/v1:"

// checkText is what the key's check value is the MAC of: outside
// pseudonymDomain, so the check value is no patient's pseudonym.
const checkText = "nuskha-pseudonym-key-check/v1"

// Pseudonyms turns national ids into patients' pseudonyms: HMAC-SHA256,
// under a key held in custody (a secret key on the HSM token, or an
// encrypted key file for the embedded default), of the id in its canonical
// ten-digit form. The same person has the same pseudonym in every entry,
// so an auditor can follow one patient's records; without the key nobody
// can test the billion or so valid ids against a pseudonym.
//
// One patient's prescription is touched several times within minutes —
// an eligibility check, the prescription, a pharmacy's view, claim,
// dispense and close — and each audited action needs the pseudonym, a
// call to the token that costs SoftHSM2 more than the rest of the entry
// together (docs/BENCHMARKS.md). So the pseudonyms of recently seen
// patients are kept in memory, at most PseudonymCacheSize of them, each
// for PseudonymCacheTTL after it was computed: a timer forgets them then,
// however quiet the process is (a night, a standby instance). The cache
// is in the process only: it holds what
// the process already sees (the national ids of the documents it is
// serving), never goes to disk or to the log, and gives nobody a way to
// compute a pseudonym of an id the process has not been asked about.
type Pseudonyms struct {
	mac hsm.MAC
	now func() time.Time

	// afterFunc is time.AfterFunc (tests drive the sweeps).
	afterFunc func(time.Duration, func())

	mu       sync.Mutex
	byID     map[string]*list.Element
	byAge    list.List // of cachedPseudonym, the newest first
	max      int
	sweeping bool // a sweep is scheduled
}

type cachedPseudonym struct {
	id string
	p  Pseudonym
	at time.Time
}

// The pseudonym cache's bounds: ten minutes of patients at a busy
// exchange's rate, and 100,000 × ~150 bytes of memory at most.
const (
	PseudonymCacheSize = 100_000
	PseudonymCacheTTL  = 10 * time.Minute
)

// NewPseudonyms uses the key mac (hsm.Manager.OpenMAC), with the cache.
func NewPseudonyms(mac hsm.MAC) *Pseudonyms {
	return &Pseudonyms{mac: mac, now: time.Now, afterFunc: afterFunc, byID: map[string]*list.Element{}, max: PseudonymCacheSize}
}

func afterFunc(d time.Duration, f func()) { time.AfterFunc(d, f) }

// NewUncachedPseudonyms uses the key for every pseudonym.
func NewUncachedPseudonyms(mac hsm.MAC) *Pseudonyms {
	return &Pseudonyms{mac: mac, now: time.Now, afterFunc: afterFunc, byID: map[string]*list.Element{}}
}

// Of returns the pseudonym of nationalID, in any form nationalid.Parse
// accepts (Persian digits, dashes, a dropped leading zero): every way of
// writing one id gives one pseudonym. An invalid id is an error
// (errs.InvalidNID), as is a key that cannot be used.
func (p *Pseudonyms) Of(nationalID string) (Pseudonym, error) {
	n, err := nationalid.Parse(nationalID)
	if err != nil {
		return Pseudonym{}, err
	}
	if ps, ok := p.cached(n); ok {
		return ps, nil
	}
	sum, err := p.mac.Sum([]byte(pseudonymDomain + n))
	if err != nil {
		return Pseudonym{}, fmt.Errorf("tlog: pseudonym: %w", err)
	}
	p.keep(n, Pseudonym(sum))
	return Pseudonym(sum), nil
}

// CheckValue is the key's check value: the MAC of a fixed text no
// pseudonym is made from. Recorded beside the log (tlogstore.CheckKey), it
// tells, at every start, whether the key is the one the log's pseudonyms
// were made with — a token swapped for another with a key of the same
// label gives every patient new pseudonyms, silently, without it.
func (p *Pseudonyms) CheckValue() ([32]byte, error) {
	sum, err := p.mac.Sum([]byte(checkText))
	if err != nil {
		return [32]byte{}, fmt.Errorf("tlog: the pseudonym key's check value: %w", err)
	}
	return sum, nil
}

func (p *Pseudonyms) cached(id string) (Pseudonym, bool) {
	if p.max <= 0 {
		return Pseudonym{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.byID[id]
	if !ok {
		return Pseudonym{}, false
	}
	c := e.Value.(cachedPseudonym)
	if p.now().Sub(c.at) >= PseudonymCacheTTL {
		p.byAge.Remove(e)
		delete(p.byID, id)
		return Pseudonym{}, false
	}
	return c.p, true
}

// keep caches a pseudonym just computed, and forgets the oldest ones past
// the bound and all those past their time.
func (p *Pseudonyms) keep(id string, ps Pseudonym) {
	if p.max <= 0 {
		return
	}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.byID[id]; ok { // computed meanwhile by another request
		p.byAge.Remove(e)
	}
	p.byID[id] = p.byAge.PushFront(cachedPseudonym{id, ps, now})
	p.expire(now)
	if !p.sweeping {
		p.sweeping = true
		p.afterFunc(PseudonymCacheTTL, p.sweep)
	}
}

// expire forgets the oldest pseudonyms past the bound and all those past
// their time. p.mu is held.
func (p *Pseudonyms) expire(now time.Time) {
	for last := p.byAge.Back(); last != nil; last = p.byAge.Back() {
		if p.byAge.Len() <= p.max && now.Sub(last.Value.(cachedPseudonym).at) < PseudonymCacheTTL {
			break
		}
		p.byAge.Remove(last)
		delete(p.byID, last.Value.(cachedPseudonym).id)
	}
}

// sweep forgets what is past its time and, while anything is left, comes
// back when the oldest of it will be.
func (p *Pseudonyms) sweep() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	p.expire(now)
	last := p.byAge.Back()
	if last == nil {
		p.sweeping = false
		return
	}
	p.afterFunc(max(time.Second, last.Value.(cachedPseudonym).at.Add(PseudonymCacheTTL).Sub(now)), p.sweep)
}

// Cached is how many pseudonyms are held in memory.
func (p *Pseudonyms) Cached() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byAge.Len()
}
