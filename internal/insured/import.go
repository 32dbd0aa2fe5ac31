package insured

import (
	"context"
	"errors"
	"io"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
)

// Mode says what an import does to the registry.
type Mode string

const (
	// Full replaces the whole registry with the file, as one new version.
	Full Mode = "full"
	// Update inserts or replaces the persons in the file and leaves the
	// others as they are.
	Update Mode = "update"
)

// Writer is what a store offers an import: it writes every person Next
// yields, then calls Finish inside the same transaction, and commits only
// if Finish returns nil. Anything else rolls back: nothing is half-loaded.
type Writer interface {
	Load(ctx context.Context, mode Mode, src *Source) (Summary, error)
}

// Summary describes a committed import.
type Summary struct {
	Mode       Mode          `json:"mode"`
	Generation int64         `json:"generation"` // the registry version now in force
	Rows       int           `json:"rows"`
	Main       int           `json:"main"`
	Dependants int           `json:"dependants"`
	ByFund     map[Fund]int  `json:"by_fund"`
	Duration   time.Duration `json:"duration_ns"`
}

// RowsPerSecond is the import's throughput.
func (s Summary) RowsPerSecond() float64 {
	if s.Duration <= 0 {
		return 0
	}
	return float64(s.Rows) / s.Duration.Seconds()
}

// Progress is called now and then with the rows read so far.
type Progress func(rows int)

// Options adjust an import.
type Options struct {
	Progress Progress
	// AllowShrink lets a full import hold more than 10 % fewer persons
	// than the registry in force. Without it such a file is refused: a
	// truncated export must not withdraw cover from millions of people.
	AllowShrink bool
}

// Source streams an import's valid rows to a Writer, remembering the bad
// ones and what the cross-row checks need: each national id once, and each
// dependant's main insured present (in the file, or for an update, in the
// registry). It packs a row into 8 bytes (id<<30 | line<<1 | dependant), so
// that a 45-million-person file needs ~360 MB for these checks, not a map
// of strings.
type Source struct {
	r        *reader
	mode     Mode
	cur      Person
	bad      ImportError
	seen     []uint64
	deps     []uint64 // main id<<30 | line<<1
	summary  Summary
	progress Progress
	shrink   bool
	err      error
}

// lineLimit is the most lines a file may have (the packing's line field).
const lineLimit = 1 << 29

// NewSource reads the header now (refusing a file that is not ours) and
// the rows when the writer asks for them.
func NewSource(r io.Reader, mode Mode, now time.Time, opts Options) (*Source, error) {
	if mode != Full && mode != Update {
		return nil, errors.New("insured: mode must be full or update")
	}
	rd, err := newReader(r, now)
	if err != nil {
		return nil, err
	}
	return &Source{r: rd, mode: mode, progress: opts.Progress, shrink: opts.AllowShrink, summary: Summary{Mode: mode, ByFund: map[Fund]int{}}}, nil
}

// Next advances to the next valid person; bad rows are recorded and
// skipped, so that one import reports all of them.
func (s *Source) Next() bool {
	for s.err == nil {
		p, line, err := s.r.next()
		if err == io.EOF {
			return false
		}
		var re *RowError
		if errors.As(err, &re) {
			s.bad.add(*re)
			continue
		}
		if err != nil {
			s.err = err
			return false
		}
		if line >= lineLimit {
			s.err = errors.New("insured: the file has more lines than one import takes (split it)")
			return false
		}
		id, _ := strconv.ParseUint(p.NationalID, 10, 64)
		var dep uint64
		if p.Dependant() {
			dep = 1
			main, _ := strconv.ParseUint(p.MainNationalID, 10, 64)
			s.deps = append(s.deps, main<<30|uint64(line)<<1)
			s.summary.Dependants++
		} else {
			s.summary.Main++
		}
		s.seen = append(s.seen, id<<30|uint64(line)<<1|dep)
		s.summary.Rows++
		s.summary.ByFund[p.Fund]++
		if s.progress != nil && s.summary.Rows%10000 == 0 {
			s.progress(s.summary.Rows)
		}
		s.cur = p
		return true
	}
	return false
}

// Person is the current row's person.
func (s *Source) Person() *Person { return &s.cur }

// Err is a failure to read the input at all (not a bad row).
func (s *Source) Err() error { return s.err }

// Mode is what the import does.
func (s *Source) Mode() Mode { return s.mode }

// Registered answers, for an update, which of the given main insureds'
// national ids are in the registry as main insureds (not dependants).
type Registered func(ctx context.Context, ids []string) (map[string]bool, error)

// Finish runs the cross-row checks after the last row: no national id
// twice, every dependant's main insured present and not a dependant
// itself; and for a full import, that it does not empty or shrink the
// registry (current persons) by more than 10 % unless allowed. It returns
// the import-rejected error if anything is wrong.
func (s *Source) Finish(ctx context.Context, registered Registered, current int64) (Summary, error) {
	if s.err != nil {
		return Summary{}, s.err
	}
	if s.progress != nil {
		s.progress(s.summary.Rows)
	}
	slices.Sort(s.seen)
	for i := 1; i < len(s.seen); i++ {
		if s.seen[i]>>30 == s.seen[i-1]>>30 {
			first := int(s.seen[i-1] >> 1 & (lineLimit - 1))
			s.bad.add(RowError{Line: int(s.seen[i] >> 1 & (lineLimit - 1)), Field: "national_id",
				Reason: "the same national id is on line " + strconv.Itoa(first)})
		}
	}
	var missing []uint64
	for _, d := range s.deps {
		main := d >> 30
		j := sort.Search(len(s.seen), func(i int) bool { return s.seen[i]>>30 >= main })
		switch {
		case j < len(s.seen) && s.seen[j]>>30 == main:
			if s.seen[j]&1 == 1 {
				s.bad.add(RowError{Line: int(d >> 1 & (lineLimit - 1)), Field: "main_national_id",
					Reason: "the main insured (line " + strconv.Itoa(int(s.seen[j]>>1&(lineLimit-1))) + ") is a dependant"})
			}
		case s.mode == Full:
			s.bad.add(RowError{Line: int(d >> 1 & (lineLimit - 1)), Field: "main_national_id", Reason: "the main insured is not in the file"})
		default:
			missing = append(missing, d)
		}
	}
	if len(missing) > 0 {
		ids := make([]string, 0, len(missing))
		for _, d := range missing {
			ids = append(ids, format(d>>30))
		}
		ok, err := registered(ctx, ids)
		if err != nil {
			return Summary{}, err
		}
		for _, d := range missing {
			if !ok[format(d>>30)] {
				s.bad.add(RowError{Line: int(d >> 1 & (lineLimit - 1)), Field: "main_national_id", Reason: "the main insured is neither in the file nor registered as a main insured"})
			}
		}
	}
	if s.bad.Total > 0 {
		sort.SliceStable(s.bad.Rows, func(i, j int) bool { return s.bad.Rows[i].Line < s.bad.Rows[j].Line })
		return Summary{}, s.bad.Rejected()
	}
	if s.mode == Full {
		n := int64(s.summary.Rows)
		switch {
		case n == 0:
			return Summary{}, errs.New(errs.ImportRejected, "the file holds no persons: a full import of it would empty the registry")
		case !s.shrink && n*10 < current*9:
			return Summary{}, errs.New(errs.ImportRejected, "the file holds %d persons and the registry %d: more than 10%% fewer (a truncated export?); allow it explicitly if it is meant", n, current)
		}
	}

	return s.summary, nil
}

// format writes a packed national id back with its leading zeros.
func format(id uint64) string {
	s := strconv.FormatUint(id, 10)
	for len(s) < 10 {
		s = "0" + s
	}
	return s
}

// Import reads a registry CSV and loads it through w. It returns the
// summary of a committed import, or an error after which nothing changed:
// import-rejected (with every bad row by line, through errors.As to
// *ImportError) or the failure that stopped it.
func Import(ctx context.Context, w Writer, r io.Reader, mode Mode, now time.Time, opts Options) (Summary, error) {
	start := time.Now()
	src, err := NewSource(r, mode, now, opts)
	if err != nil {
		return Summary{}, err
	}
	sum, err := w.Load(ctx, mode, src)
	if err != nil {
		return Summary{}, err
	}
	sum.Duration = time.Since(start)
	return sum, nil
}
