package catalogue

import (
	"cmp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/nuskha/nuskha/internal/persian"
)

// VersionInfo describes one imported catalogue version.
type VersionInfo struct {
	ID    string
	Label string // the staff's name for it, e.g. "1405 tariff, first edition"
	// ValidFrom is the first day the version may be in force (UTC
	// midnight).
	ValidFrom time.Time
	// ValidTo is the first day it no longer is (UTC midnight); zero means
	// open-ended.
	ValidTo    time.Time
	Items      int       // how many items it holds
	ImportedAt time.Time // when it was committed
}

// Covers reports whether day falls in [ValidFrom, ValidTo). day MUST be a
// Day.
func (vi VersionInfo) Covers(day time.Time) bool {
	return !vi.ValidFrom.After(day) && (vi.ValidTo.IsZero() || vi.ValidTo.After(day))
}

// Day returns the calendar day of t, read in t's own location, as UTC
// midnight: the form every catalogue date takes. A prescription written at
// 00:30 Tehran time belongs to that Tehran day, not to the previous UTC
// one, so callers pass times in the location whose calendar counts.
func Day(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// Version is an immutable catalogue version with its lookup and search
// indexes. It is safe for concurrent use.
type Version struct {
	VersionInfo
	items []Item // sorted by codeKeys
	// codeKeys are the lower-cased codes, sorted, so that a code prefix is
	// a binary search.
	codeKeys []string
	byCode   map[string]int32 // exact code → index, for Lookup
	names    []foldedNames    // parallel to items
	// hay is every item's folded names in item order, each name preceded
	// by a separator byte that no folded text or query contains. One
	// strings.Index pass over it finds the candidates far faster than a
	// call per name, which is most of the cost when few names match.
	hay    string
	starts []int32 // starts[i] is where item i's part of hay begins
}

// foldedNames are an item's names as Search compares them.
type foldedNames struct{ latin, persian string }

// haySeparator precedes each name in Version.hay; foldName keeps only
// letters and digits, so it never occurs in a name or a query.
const haySeparator = "\x00"

func newVersion(info VersionInfo, items []Item) *Version {
	v := &Version{
		VersionInfo: info,
		items:       make([]Item, len(items)),
		codeKeys:    make([]string, len(items)),
		byCode:      make(map[string]int32, len(items)),
		names:       make([]foldedNames, len(items)),
	}
	v.Items = len(items)
	v.starts = make([]int32, len(items)+1)
	order := make([]int, len(items))
	keys := make([]string, len(items))
	for i := range items {
		order[i], keys[i] = i, strings.ToLower(items[i].Code)
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(strings.Compare(keys[a], keys[b]), strings.Compare(items[a].Code, items[b].Code))
	})
	for i, j := range order {
		it := items[j]
		// Clip the lists so that a caller's append cannot write into a
		// neighbour's backing array.
		it.Professions = slices.Clip(it.Professions)
		it.Specialties = slices.Clip(it.Specialties)
		v.items[i], v.codeKeys[i] = it, keys[j]
		v.byCode[it.Code] = int32(i)
		v.names[i] = foldedNames{foldName(it.Name), foldName(it.NameFA)}
	}
	var hay strings.Builder
	for i, n := range v.names {
		v.starts[i] = int32(hay.Len())
		hay.WriteString(haySeparator + n.latin + haySeparator + n.persian)
	}
	v.starts[len(v.names)] = int32(hay.Len())
	v.hay = hay.String()
	return v
}

// Len is the number of items.
func (v *Version) Len() int { return len(v.items) }

// Lookup returns the item with exactly this code. It neither allocates
// nor locks: the rules engine calls it for every line of every
// prescription. The item's slices MUST NOT be modified.
func (v *Version) Lookup(code string) (Item, bool) {
	i, ok := v.byCode[code]
	if !ok {
		return Item{}, false
	}
	return v.items[i], true
}

// All returns a copy of the items, ordered by code.
func (v *Version) All() []Item { return slices.Clone(v.items) }

// Search limits.
const (
	DefaultSearchLimit = 20
	MaxSearchLimit     = 200
	// minNameQuery is the shortest folded query matched against names:
	// one letter matches a large part of the catalogue and helps no one.
	minNameQuery = 2
)

// Search ranks.
const (
	rankExactCode = iota
	rankCodePrefix
	rankNamePrefix
	rankNameSubstring
	ranks
)

// Search finds up to limit items (DefaultSearchLimit when limit <= 0, at
// most MaxSearchLimit) of the given kind ("" for any) matching query. The
// ranking is: the exact code, then codes starting with the query, then
// names (Latin or Persian) starting with it, then names containing it.
// Codes compare without regard to ASCII case; names compare folded (see
// foldName), so an Arabic-keyboard query finds a Persian spelling and
// "amoxi cillin", "آموکسی سیلین" and "آموکسی‌سیلین" are alike. Within a
// rank, codes come in code order and names shortest first (the closest
// match), then in code order: the same query always gives the same list.
func (v *Version) Search(query, kind string, limit int) []Item {
	switch {
	case limit <= 0:
		limit = DefaultSearchLimit
	case limit > MaxSearchLimit:
		limit = MaxSearchLimit
	}
	codeQ := foldCode(query)
	nameQ := foldName(query)
	var hits [ranks][]hit

	// Codes: the keys are sorted, so every code with the prefix follows
	// the first key >= the query.
	if codeQ != "" {
		i, _ := slices.BinarySearch(v.codeKeys, codeQ)
		for ; i < len(v.codeKeys) && strings.HasPrefix(v.codeKeys[i], codeQ); i++ {
			if kind != "" && v.items[i].Kind != kind {
				continue
			}
			r := rankCodePrefix
			if v.codeKeys[i] == codeQ {
				r = rankExactCode
			}
			if len(hits[r]) < limit {
				hits[r] = append(hits[r], hit{index: int32(i)})
			}
		}
	}

	if utf8.RuneCountInString(nameQ) >= minNameQuery && len(hits[rankExactCode])+len(hits[rankCodePrefix]) < limit {
		enough := limit - len(hits[rankExactCode]) - len(hits[rankCodePrefix])
		// Each match in hay is in some item's names; that item is then
		// ranked on its own names, and the scan resumes after it.
		i := 0
		for off := 0; off < len(v.hay); {
			j := strings.Index(v.hay[off:], nameQ)
			if j < 0 {
				break
			}
			for pos := int32(off + j); v.starts[i+1] <= pos; {
				i++ // matches come in order, so the item only moves on
			}
			off = int(v.starts[i+1])
			if kind != "" && v.items[i].Kind != kind {
				continue
			}
			if codeQ != "" && strings.HasPrefix(v.codeKeys[i], codeQ) {
				continue // already listed by its code
			}
			r, length := v.names[i].match(nameQ, len(hits[rankNamePrefix]) < enough)
			if r >= 0 {
				hits[r] = append(hits[r], hit{index: int32(i), length: int32(length)})
			}
		}
		for _, r := range []int{rankNamePrefix, rankNameSubstring} {
			slices.SortFunc(hits[r], func(a, b hit) int {
				return cmp.Or(cmp.Compare(a.length, b.length), cmp.Compare(a.index, b.index))
			})
		}
	}

	out := make([]Item, 0, min(limit, len(hits[0])+len(hits[1])+len(hits[2])+len(hits[3])))
	for _, rank := range hits {
		for _, h := range rank {
			if len(out) == limit {
				return out
			}
			out = append(out, v.items[h.index])
		}
	}
	return out
}

type hit struct {
	index  int32
	length int32 // of the matching folded name, for ordering within a rank
}

// match ranks q against the names: rankNamePrefix, rankNameSubstring (only
// when substrings are still wanted), or -1. length is that of the best
// matching name.
func (n foldedNames) match(q string, substrings bool) (rank, length int) {
	rank, length = -1, 0
	for _, name := range [2]string{n.latin, n.persian} {
		r := -1
		switch {
		case strings.HasPrefix(name, q):
			r = rankNamePrefix
		case substrings && strings.Contains(name, q):
			r = rankNameSubstring
		}
		if r >= 0 && (rank < 0 || r < rank || r == rank && len(name) < length) {
			rank, length = r, len(name)
		}
	}
	return rank, length
}

// foldCode puts a code query in the form of codeKeys.
func foldCode(q string) string {
	return strings.ToLower(persian.Digits(strings.TrimSpace(q)))
}

// foldName reduces a name or query to what a person searching means by it:
// Persian normalisation (persian.Text: Arabic yeh and kaf become Persian),
// ASCII digits, lower case, no diacritics or hamza/madda marks (so آ, أ
// and ا are alike; users rarely type them), teh marbuta and heh-with-yeh as
// heh, and only letters and digits — spaces, ZWNJ, tatweel and punctuation
// go, since users split or join words in any of those ways.
func foldName(s string) string {
	s = persian.Digits(persian.Text(s))
	s = norm.NFD.String(s)
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch r {
		case '\u064A', '\u0649': // Arabic yeh, alef maksura (from a decomposed ئ too)
			r = '\u06CC'
		case '\u0643': // Arabic kaf
			r = '\u06A9'
		case '\u0629', '\u06D5': // teh marbuta, ae (from a decomposed ۀ)
			r = '\u0647'
		}
		switch {
		case unicode.Is(unicode.Mn, r):
			continue
		case unicode.IsLetter(r) && r != '\u0640': // tatweel is a "letter" that only stretches the line
			b.WriteRune(unicode.ToLower(r))
		case unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
