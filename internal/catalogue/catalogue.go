package catalogue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/persian"
	"github.com/nuskha/nuskha/internal/store"
)

// Store is what the catalogue needs from a database.
type Store interface {
	// CreateVersion commits a version and its items in one transaction:
	// once it returns nil every reader sees both, and after an error
	// neither. A version whose ValidFrom equals a stored one's MUST fail
	// with an error for which store.IsDuplicate reports "valid_from".
	// Stored versions MUST NOT change.
	CreateVersion(ctx context.Context, info VersionInfo, items []Item) error
	// ListVersions returns every committed version, in any order.
	ListVersions(ctx context.Context) ([]VersionInfo, error)
	// LoadItems returns a committed version's items, in any order; for an
	// unknown id it returns an error wrapping store.ErrNotFound.
	LoadItems(ctx context.Context, versionID string) ([]Item, error)
}

// Defaults for Config.
const (
	// DefaultRefresh is how stale the list of versions may be: a version
	// imported by another process is in force here at most this much
	// later. Imports through this Catalogue are visible at once.
	DefaultRefresh = time.Second
	// DefaultCachedVersions is how many versions keep their items in
	// memory. Prescriptions are judged on recent dates, so the current
	// version and its predecessor do nearly all the work.
	DefaultCachedVersions = 4
)

// Config wires a Catalogue. Store is required; the zero value of every
// other field selects its default.
type Config struct {
	Store          Store
	Now            func() time.Time // the clock; time.Now when nil
	Refresh        time.Duration    // DefaultRefresh when zero
	CachedVersions int              // DefaultCachedVersions when zero
}

// Catalogue imports catalogue versions and finds the one in force on a
// date. It is safe for concurrent use.
type Catalogue struct {
	store     Store
	now       func() time.Time
	refresh   time.Duration
	maxCached int

	// list is the versions, newest ValidFrom first, and when they were
	// read. listMu serialises reading them, so that an import's
	// invalidation cannot be overtaken by a read that began before it
	// committed.
	list   atomic.Pointer[versionList]
	listMu sync.Mutex

	cacheMu sync.Mutex
	cache   map[string]*cached
	tick    atomic.Int64 // orders cache use, for eviction
}

type versionList struct {
	infos []VersionInfo // newest ValidFrom first
	read  time.Time
}

// cached is a version's items, loaded once however many callers ask.
type cached struct {
	ready chan struct{} // closed once v or err is set
	v     *Version
	err   error
	used  atomic.Int64
}

// New returns a Catalogue over cfg.Store.
func New(cfg Config) (*Catalogue, error) {
	if cfg.Store == nil {
		return nil, errors.New("catalogue: Config.Store is required")
	}
	if cfg.Refresh < 0 || cfg.CachedVersions < 0 {
		return nil, errors.New("catalogue: Config.Refresh and Config.CachedVersions must not be negative")
	}
	c := &Catalogue{
		store:     cfg.Store,
		now:       cfg.Now,
		refresh:   cfg.Refresh,
		maxCached: cfg.CachedVersions,
		cache:     map[string]*cached{},
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.refresh == 0 {
		c.refresh = DefaultRefresh
	}
	if c.maxCached == 0 {
		c.maxCached = DefaultCachedVersions
	}
	return c, nil
}

// ImportSpec names and dates a new version. Times are reduced to their
// calendar day (see Day).
type ImportSpec struct {
	Label     string
	ValidFrom time.Time // required
	ValidTo   time.Time // exclusive; zero for open-ended
}

// ImportResult is what an import committed.
type ImportResult struct {
	Version  VersionInfo
	Drugs    int // items from the drugs file
	Services int // items from the services file
}

// Import validates the files and, if every row is good, commits them as a
// new version. Either reader may be nil, not both. Bad rows give an
// errs.ImportRejected error from which errors.As extracts the
// *ImportError that lists them; a ValidFrom already used by a version
// gives errs.Conflict. Whatever the failure, nothing is stored.
func (c *Catalogue) Import(ctx context.Context, spec ImportSpec, drugs, services io.Reader) (ImportResult, error) {
	info, err := spec.info()
	if err != nil {
		return ImportResult{}, err
	}
	if drugs == nil && services == nil {
		return ImportResult{}, errs.FieldError(errs.Invalid, "files", "give a drugs file, a services file or both")
	}
	items, err := Parse(drugs, services)
	var ie *ImportError
	if errors.As(err, &ie) {
		return ImportResult{}, &errs.Error{Code: errs.ImportRejected,
			Detail: fmt.Sprintf("%d problems in the files; nothing was imported", ie.Total), Err: ie}
	}
	if err != nil {
		return ImportResult{}, err
	}
	if len(items) == 0 {
		return ImportResult{}, errs.FieldError(errs.Invalid, "files", "the files hold no items")
	}

	// Check the date against the stored versions now, for a clear error
	// before the work of a write; the store's unique rule settles races.
	list, err := c.versions(ctx, true)
	if err != nil {
		return ImportResult{}, err
	}
	for _, vi := range list.infos {
		if vi.ValidFrom.Equal(info.ValidFrom) {
			return ImportResult{}, conflict(info.ValidFrom, vi.Label)
		}
	}

	info.ID, err = newID()
	if err != nil {
		return ImportResult{}, errs.Wrap(errs.Internal, err, "generating the version id")
	}
	info.Items = len(items)
	info.ImportedAt = c.now().UTC().Truncate(time.Millisecond)
	if err := c.store.CreateVersion(ctx, info, items); err != nil {
		if field, dup := store.IsDuplicate(err); dup && field == "valid_from" {
			return ImportResult{}, conflict(info.ValidFrom, "")
		}
		return ImportResult{}, errs.Wrap(errs.Unavailable, err, "storing the catalogue version")
	}

	res := ImportResult{Version: info}
	for i := range items {
		if items[i].Kind == KindDrug {
			res.Drugs++
		} else {
			res.Services++
		}
	}
	c.publish(newVersion(info, items))
	return res, nil
}

func conflict(from time.Time, label string) error {
	e := errs.FieldError(errs.Conflict, "valid_from", "a catalogue version already starts on %s", from.Format(time.DateOnly))
	if label != "" {
		e.Detail += fmt.Sprintf(" (%q); import with another date", label)
	}
	return e
}

// info validates the spec into a VersionInfo without id.
func (s ImportSpec) info() (VersionInfo, error) {
	label := persian.Text(s.Label)
	switch {
	case label == "":
		return VersionInfo{}, errs.FieldError(errs.Invalid, "label", "required")
	case utf8.RuneCountInString(label) > 200:
		return VersionInfo{}, errs.FieldError(errs.Invalid, "label", "longer than 200 characters")
	case s.ValidFrom.IsZero():
		return VersionInfo{}, errs.FieldError(errs.Invalid, "valid_from", "required")
	}
	vi := VersionInfo{Label: label, ValidFrom: Day(s.ValidFrom)}
	if !s.ValidTo.IsZero() {
		vi.ValidTo = Day(s.ValidTo)
		if !vi.ValidTo.After(vi.ValidFrom) {
			return VersionInfo{}, errs.FieldError(errs.Invalid, "valid_to", "%s is not after valid_from %s",
				vi.ValidTo.Format(time.DateOnly), vi.ValidFrom.Format(time.DateOnly))
		}
	}
	return vi, nil
}

func newID() (string, error) {
	b := make([]byte, 10)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "cat_" + hex.EncodeToString(b), nil
}

// publish makes a just-committed version visible: its items go straight
// into the cache and the list is dropped, so the next At reads it again.
func (c *Catalogue) publish(v *Version) {
	e := &cached{ready: make(chan struct{}), v: v}
	close(e.ready)
	e.used.Store(c.tick.Add(1))
	c.cacheMu.Lock()
	c.cache[v.ID] = e
	c.evictLocked(v.ID)
	c.cacheMu.Unlock()

	c.listMu.Lock()
	c.list.Store(nil)
	c.listMu.Unlock()
}

// At returns the version in force on date's calendar day (see Day): of the
// versions whose [ValidFrom, ValidTo) holds the day, the one with the
// latest ValidFrom. With none it returns errs.CatalogueNotInForce.
func (c *Catalogue) At(ctx context.Context, date time.Time) (*Version, error) {
	list, err := c.versions(ctx, false)
	if err != nil {
		return nil, err
	}
	day := Day(date)
	for _, vi := range list.infos {
		if vi.Covers(day) {
			return c.load(ctx, vi)
		}
	}
	return nil, errs.New(errs.CatalogueNotInForce, "no catalogue version is in force on %s", day.Format(time.DateOnly))
}

// Get returns the version with this id, in force or not: to re-judge a
// prescription by the very version it was judged by.
func (c *Catalogue) Get(ctx context.Context, id string) (*Version, error) {
	for _, fresh := range []bool{false, true} {
		list, err := c.versions(ctx, fresh)
		if err != nil {
			return nil, err
		}
		for _, vi := range list.infos {
			if vi.ID == id {
				return c.load(ctx, vi)
			}
		}
	}
	return nil, errs.New(errs.NotFound, "no catalogue version %q", id)
}

// Versions lists every version, oldest ValidFrom first, as stored now.
func (c *Catalogue) Versions(ctx context.Context) ([]VersionInfo, error) {
	list, err := c.versions(ctx, true)
	if err != nil {
		return nil, err
	}
	out := slices.Clone(list.infos)
	slices.Reverse(out)
	return out, nil
}

// versions returns the list of versions, read again when fresh is set or
// the cached one is older than the refresh interval.
func (c *Catalogue) versions(ctx context.Context, fresh bool) (*versionList, error) {
	if l := c.list.Load(); !fresh && l != nil && c.now().Sub(l.read) < c.refresh {
		return l, nil
	}
	c.listMu.Lock()
	defer c.listMu.Unlock()
	// Another caller may have read it while this one waited.
	if l := c.list.Load(); !fresh && l != nil && c.now().Sub(l.read) < c.refresh {
		return l, nil
	}
	read := c.now()
	infos, err := c.store.ListVersions(ctx)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "reading the catalogue versions")
	}
	slices.SortFunc(infos, func(a, b VersionInfo) int { return b.ValidFrom.Compare(a.ValidFrom) })
	l := &versionList{infos: infos, read: read}
	c.list.Store(l)
	return l, nil
}

// loadTimeout bounds a shared load: it runs detached from the caller that
// started it, so that one cancelled request does not fail the others
// waiting for the same version.
const loadTimeout = 30 * time.Second

// load returns a version's items from the cache, reading them from the
// store once.
func (c *Catalogue) load(ctx context.Context, vi VersionInfo) (*Version, error) {
	c.cacheMu.Lock()
	e, ok := c.cache[vi.ID]
	if !ok {
		e = &cached{ready: make(chan struct{})}
		c.cache[vi.ID] = e
		c.evictLocked(vi.ID)
		go c.fill(context.WithoutCancel(ctx), vi, e)
	}
	c.cacheMu.Unlock()
	e.used.Store(c.tick.Add(1))

	select {
	case <-e.ready:
	case <-ctx.Done():
		return nil, errs.Wrap(errs.Unavailable, ctx.Err(), "loading catalogue version %s", vi.ID)
	}
	if e.err != nil {
		return nil, e.err
	}
	return e.v, nil
}

func (c *Catalogue) fill(ctx context.Context, vi VersionInfo, e *cached) {
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	items, err := c.store.LoadItems(ctx, vi.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		e.err = errs.Wrap(errs.NotFound, err, "no catalogue version %q", vi.ID)
	case err != nil:
		e.err = errs.Wrap(errs.Unavailable, err, "loading catalogue version %s", vi.ID)
	default:
		e.v = newVersion(vi, items)
	}
	if e.err != nil {
		// Forget the failure, so that the next caller tries again.
		c.cacheMu.Lock()
		if c.cache[vi.ID] == e {
			delete(c.cache, vi.ID)
		}
		c.cacheMu.Unlock()
	}
	close(e.ready)
}

// evictLocked drops the least recently used loaded versions beyond the
// limit, never keep. Callers hold cacheMu.
func (c *Catalogue) evictLocked(keep string) {
	for len(c.cache) > c.maxCached {
		var victim string
		var oldest int64
		for id, e := range c.cache {
			if id == keep || !isReady(e) {
				continue
			}
			if u := e.used.Load(); victim == "" || u < oldest {
				victim, oldest = id, u
			}
		}
		if victim == "" {
			return // everything else is still loading
		}
		delete(c.cache, victim)
	}
}

func isReady(e *cached) bool {
	select {
	case <-e.ready:
		return true
	default:
		return false
	}
}
