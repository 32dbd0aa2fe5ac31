package catalogtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/catalogue"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/persian"
	"github.com/nuskha/nuskha/internal/store"
)

// Opener returns a new, empty store for one test.
type Opener func(t *testing.T) catalogue.Store

// Date returns UTC midnight of a day: the form catalogue dates take.
func Date(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

// SampleItems parses Sample.
func SampleItems(t testing.TB) []catalogue.Item {
	t.Helper()
	d, s := Sample()
	items, err := catalogue.Parse(strings.NewReader(d), strings.NewReader(s))
	if err != nil {
		t.Fatalf("Sample does not parse: %v", err)
	}
	return items
}

// RunStore holds a catalogue.Store to its contract.
func RunStore(t *testing.T, open Opener) {
	ctx := context.Background()
	info := func(id string, from, to time.Time) catalogue.VersionInfo {
		return catalogue.VersionInfo{ID: id, Label: "نسخه " + id, ValidFrom: from, ValidTo: to,
			ImportedAt: time.Date(2026, 3, 1, 9, 30, 15, 123_000_000, time.UTC)}
	}

	t.Run("round trip", func(t *testing.T) {
		s := open(t)
		items := SampleItems(t)
		// A price beyond 32 bits and text with ZWNJ must survive as they are.
		items[0].Price = 9_000_000_000_000
		v1 := info("cat_1", Date(2026, 3, 21), time.Time{})
		v1.Items = len(items)
		v2 := info("cat_2", Date(2026, 9, 23), Date(2027, 3, 21))
		v2.Items = 1
		if err := s.CreateVersion(ctx, v1, items); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateVersion(ctx, v2, items[:1]); err != nil {
			t.Fatal(err)
		}
		got, err := s.ListVersions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(got, func(a, b catalogue.VersionInfo) int { return a.ValidFrom.Compare(b.ValidFrom) })
		if want := []catalogue.VersionInfo{v1, v2}; !reflect.DeepEqual(got, want) {
			t.Fatalf("ListVersions:\n got %+v\nwant %+v", got, want)
		}
		loaded, err := s.LoadItems(ctx, "cat_1")
		if err != nil {
			t.Fatal(err)
		}
		assertSameItems(t, loaded, items)
	})

	t.Run("many items", func(t *testing.T) {
		// More than one insert batch, and not a whole number of them.
		s := open(t)
		d, sv := Generate(1234)
		items, err := catalogue.Parse(strings.NewReader(d), strings.NewReader(sv))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CreateVersion(ctx, info("cat_big", Date(2026, 1, 1), time.Time{}), items); err != nil {
			t.Fatal(err)
		}
		loaded, err := s.LoadItems(ctx, "cat_big")
		if err != nil {
			t.Fatal(err)
		}
		assertSameItems(t, loaded, items)
	})

	t.Run("same valid_from is a duplicate", func(t *testing.T) {
		s := open(t)
		items := SampleItems(t)
		if err := s.CreateVersion(ctx, info("cat_a", Date(2026, 3, 21), time.Time{}), items); err != nil {
			t.Fatal(err)
		}
		err := s.CreateVersion(ctx, info("cat_b", Date(2026, 3, 21), Date(2026, 4, 1)), items)
		if f, ok := store.IsDuplicate(err); !ok || f != "valid_from" {
			t.Fatalf("got %v, want a duplicate valid_from", err)
		}
		assertVersions(t, s, "cat_a")
		if _, err := s.LoadItems(ctx, "cat_b"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("items of the refused version: %v, want ErrNotFound", err)
		}
	})

	t.Run("a failed insert commits nothing", func(t *testing.T) {
		s := open(t)
		items := SampleItems(t)
		// A bad item late in the second batch: the version row and the
		// first batch were written before it fails.
		d, _ := Generate(700)
		many, err := catalogue.Parse(strings.NewReader(d), nil)
		if err != nil {
			t.Fatal(err)
		}
		many = append(many, items[0], items[0])
		if err := s.CreateVersion(ctx, info("cat_bad", Date(2026, 3, 21), time.Time{}), many); err == nil {
			t.Fatal("a version with a repeated code was stored")
		}
		assertVersions(t, s)
		if _, err := s.LoadItems(ctx, "cat_bad"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("LoadItems: %v, want ErrNotFound", err)
		}
	})

	t.Run("unknown version", func(t *testing.T) {
		s := open(t)
		if _, err := s.LoadItems(ctx, "cat_nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
		assertVersions(t, s)
	})
}

func assertVersions(t *testing.T, s catalogue.Store, ids ...string) {
	t.Helper()
	got, err := s.ListVersions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var gotIDs []string
	for _, v := range got {
		gotIDs = append(gotIDs, v.ID)
	}
	slices.Sort(gotIDs)
	slices.Sort(ids)
	if !slices.Equal(gotIDs, ids) {
		t.Fatalf("versions %v, want %v", gotIDs, ids)
	}
}

func assertSameItems(t *testing.T, got, want []catalogue.Item) {
	t.Helper()
	byCode := func(a, b catalogue.Item) int { return strings.Compare(a.Code, b.Code) }
	got, want = slices.Clone(got), slices.Clone(want)
	slices.SortFunc(got, byCode)
	slices.SortFunc(want, byCode)
	if len(got) != len(want) {
		t.Fatalf("%d items, want %d", len(got), len(want))
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("item %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

// Clock is a settable clock for a Catalogue.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now reads the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// RunService runs the catalogue service over a store from open: imports,
// their rejection, and finding the version in force.
func RunService(t *testing.T, open Opener) {
	ctx := context.Background()
	newCatalogue := func(t *testing.T, s catalogue.Store, clock *Clock) *catalogue.Catalogue {
		c, err := catalogue.New(catalogue.Config{Store: s, Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	setUp := func(t *testing.T) (*catalogue.Catalogue, *Clock) {
		clock := NewClock(time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC))
		return newCatalogue(t, open(t), clock), clock
	}
	importSample := func(t *testing.T, c *catalogue.Catalogue, spec catalogue.ImportSpec) catalogue.ImportResult {
		t.Helper()
		d, s := Sample()
		res, err := c.Import(ctx, spec, strings.NewReader(d), strings.NewReader(s))
		if err != nil {
			t.Fatalf("Import(%s): %v", spec.Label, err)
		}
		return res
	}

	t.Run("import the sample, then look up and search", func(t *testing.T) {
		c, _ := setUp(t)
		res := importSample(t, c, catalogue.ImportSpec{Label: "۱۴۰۵ نسخه اول", ValidFrom: Date(2026, 3, 21)})
		if res.Drugs != 13 || res.Services != 6 || res.Version.Items != 19 || res.Version.ID == "" {
			t.Fatalf("result %+v", res)
		}
		v, err := c.At(ctx, Date(2026, 3, 21))
		if err != nil {
			t.Fatal(err)
		}
		if v.ID != res.Version.ID || v.Len() != 19 {
			t.Fatalf("At gave %s with %d items, want %s with 19", v.ID, v.Len(), res.Version.ID)
		}
		mph, ok := v.Lookup(Methylphenidate)
		want := catalogue.Item{Code: Methylphenidate, Kind: "drug", Name: "Methylphenidate", NameFA: "متیل\u200cفنیدیت",
			ATC: "N06BA04", Form: "tablet", Strength: "10 mg", Price: 52000, CoveragePercent: 70, PrescriptionOnly: true,
			MaxQuantity: 60, Professions: []string{"physician"}, Specialties: []string{"psychiatry", "neurology", "pediatrics"},
			MinAgeYears: 6, ControlledClass: "psychotropic"}
		if !ok || !reflect.DeepEqual(mph, want) {
			t.Fatalf("Lookup(methylphenidate) = %+v, %v\nwant %+v", mph, ok, want)
		}
		if it, _ := v.Lookup(Sildenafil); it.NameFA != "سیلدنافیل" || it.Sex != "male" {
			t.Fatalf("sildenafil %+v: want the Persian spelling and male", it)
		}
		if it, _ := v.Lookup(Atorvastatin); it.Price != 45000 {
			t.Fatalf("atorvastatin price %d, want 45000 from Persian digits", it.Price)
		}
		if _, ok := v.Lookup("no-such-code"); ok {
			t.Fatal("found a code that is not there")
		}
		if got := codes(v.Search("سيلدنافيل", "", 0)); !slices.Equal(got, []string{Sildenafil}) {
			t.Fatalf("Arabic-letter query found %v", got)
		}
		if got := codes(v.Search("MRI", "imaging", 0)); !slices.Equal(got, []string{BrainMRI}) {
			t.Fatalf("MRI found %v", got)
		}
	})

	t.Run("bad rows commit nothing", func(t *testing.T) {
		c, _ := setUp(t)
		good := importSample(t, c, catalogue.ImportSpec{Label: "first", ValidFrom: Date(2026, 3, 21)})
		d, s := Sample()
		d += "1009999,Ibuprofen,ایبوپروفن,M01AE01,tablet,400 mg,-5,70,false,0,,,0,0,,,true\n"
		s += "800999,lab,Ferritin,فریتین,300000,170,1,,,0,0,,true\n"
		_, err := c.Import(ctx, catalogue.ImportSpec{Label: "second", ValidFrom: Date(2026, 1, 1)},
			strings.NewReader(d), strings.NewReader(s))
		if !errors.Is(err, errs.Of(errs.ImportRejected)) {
			t.Fatalf("got %v, want import-rejected", err)
		}
		var ie *catalogue.ImportError
		if !errors.As(err, &ie) {
			t.Fatalf("no *ImportError in %v", err)
		}
		want := []catalogue.RowError{
			{File: catalogue.FileDrugs, Line: 15, Field: "price"},
			{File: catalogue.FileServices, Line: 8, Field: "coverage_percent"},
		}
		if ie.Total != 2 || len(ie.Rows) != 2 {
			t.Fatalf("problems %+v, want %+v", ie, want)
		}
		for i, r := range ie.Rows {
			if r.File != want[i].File || r.Line != want[i].Line || r.Field != want[i].Field || r.Reason == "" {
				t.Fatalf("problem %d = %+v, want %+v", i, r, want[i])
			}
		}
		vs, err := c.Versions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) != 1 || vs[0].ID != good.Version.ID {
			t.Fatalf("versions after a rejected import: %+v", vs)
		}
		// The rejected version would have been in force on 2026-02-01.
		if _, err := c.At(ctx, Date(2026, 2, 1)); !errors.Is(err, errs.Of(errs.CatalogueNotInForce)) {
			t.Fatalf("At before the first version: %v", err)
		}
	})

	t.Run("duplicate code across the two files", func(t *testing.T) {
		c, _ := setUp(t)
		d, s := Sample()
		s += Amoxicillin + ",lab,Amoxicillin level,سطح آموکسی\u200cسیلین,300000,70,1,,,0,0,,true\n"
		_, err := c.Import(ctx, catalogue.ImportSpec{Label: "x", ValidFrom: Date(2026, 3, 21)}, strings.NewReader(d), strings.NewReader(s))
		var ie *catalogue.ImportError
		if !errors.As(err, &ie) || ie.Total != 1 {
			t.Fatalf("got %v, want one problem", err)
		}
		if r := ie.Rows[0]; r.File != catalogue.FileServices || r.Line != 8 || r.Field != "code" || !strings.Contains(r.Reason, "drugs line 3") {
			t.Fatalf("problem %+v, want services line 8 naming drugs line 3", r)
		}
		assertNoVersions(t, c)
	})

	t.Run("request errors", func(t *testing.T) {
		c, _ := setUp(t)
		importSample(t, c, catalogue.ImportSpec{Label: "first", ValidFrom: Date(2026, 3, 21)})
		d, s := Sample()
		for _, tc := range []struct {
			name     string
			spec     catalogue.ImportSpec
			drugs    string
			services string
			code     errs.Code
			field    string
		}{
			{"same valid_from as a stored version", catalogue.ImportSpec{Label: "again", ValidFrom: time.Date(2026, 3, 21, 15, 0, 0, 0, time.UTC)}, d, s, errs.Conflict, "valid_from"},
			{"valid_to on valid_from", catalogue.ImportSpec{Label: "x", ValidFrom: Date(2026, 5, 1), ValidTo: Date(2026, 5, 1)}, d, s, errs.Invalid, "valid_to"},
			{"valid_to before valid_from", catalogue.ImportSpec{Label: "x", ValidFrom: Date(2026, 5, 1), ValidTo: Date(2026, 4, 1)}, d, s, errs.Invalid, "valid_to"},
			{"no valid_from", catalogue.ImportSpec{Label: "x"}, d, s, errs.Invalid, "valid_from"},
			{"no label", catalogue.ImportSpec{Label: " \u200c ", ValidFrom: Date(2026, 5, 1)}, d, s, errs.Invalid, "label"},
			{"no files", catalogue.ImportSpec{Label: "x", ValidFrom: Date(2026, 5, 1)}, "", "", errs.Invalid, "files"},
			{"headers only", catalogue.ImportSpec{Label: "x", ValidFrom: Date(2026, 5, 1)}, DrugsHeader + "\n", ServicesHeader, errs.Invalid, "files"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var dr, sr io.Reader // nil unless given: a typed nil would not be
				if tc.drugs != "" {
					dr = strings.NewReader(tc.drugs)
				}
				if tc.services != "" {
					sr = strings.NewReader(tc.services)
				}
				_, err := c.Import(ctx, tc.spec, dr, sr)
				var e *errs.Error
				if !errors.As(err, &e) || e.Code != tc.code || e.Field != tc.field {
					t.Fatalf("got %v, want %s on %s", err, tc.code, tc.field)
				}
				if vs, _ := c.Versions(ctx); len(vs) != 1 {
					t.Fatalf("%d versions, want the first alone", len(vs))
				}
			})
		}
	})

	t.Run("not in force before the first version", func(t *testing.T) {
		c, _ := setUp(t)
		_, err := c.At(ctx, Date(2026, 3, 21))
		if !errors.Is(err, errs.Of(errs.CatalogueNotInForce)) {
			t.Fatalf("got %v, want catalogue-not-in-force", err)
		}
		if vs, err := c.Versions(ctx); err != nil || len(vs) != 0 {
			t.Fatalf("Versions = %v, %v", vs, err)
		}
	})

	t.Run("At picks the version by date", func(t *testing.T) {
		c, _ := setUp(t)
		// v1 open-ended from 1405-01-01; v2 from 1405-07-01; v3 a
		// temporary tariff for ten days inside v2's time.
		v1 := importSample(t, c, catalogue.ImportSpec{Label: "v1", ValidFrom: Date(2026, 3, 21)}).Version
		v2 := importSample(t, c, catalogue.ImportSpec{Label: "v2", ValidFrom: Date(2026, 9, 23)}).Version
		v3 := importSample(t, c, catalogue.ImportSpec{Label: "v3", ValidFrom: Date(2026, 11, 1), ValidTo: Date(2026, 11, 11)}).Version
		for _, tc := range []struct {
			name string
			date time.Time
			want string // version id, "" for none in force
		}{
			{"the day before v1", Date(2026, 3, 20), ""},
			{"v1's first day", Date(2026, 3, 21), v1.ID},
			{"v1's first day, late evening", time.Date(2026, 3, 21, 23, 59, 59, 0, time.UTC), v1.ID},
			{"the day before v2", Date(2026, 9, 22), v1.ID},
			{"v2's first day", Date(2026, 9, 23), v2.ID},
			{"just after midnight in Tehran is that Tehran day", time.Date(2026, 9, 23, 0, 30, 0, 0, persian.Tehran), v2.ID},
			{"v3's first day", Date(2026, 11, 1), v3.ID},
			{"v3's last day", Date(2026, 11, 10), v3.ID},
			{"v3's valid_to is exclusive", Date(2026, 11, 11), v2.ID},
			{"years later", Date(2031, 1, 1), v2.ID},
		} {
			t.Run(tc.name, func(t *testing.T) {
				v, err := c.At(ctx, tc.date)
				if tc.want == "" {
					if !errors.Is(err, errs.Of(errs.CatalogueNotInForce)) {
						t.Fatalf("got %v, want catalogue-not-in-force", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if v.ID != tc.want {
					t.Fatalf("got %s (%s), want %s", v.ID, v.Label, tc.want)
				}
			})
		}
		vs, err := c.Versions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) != 3 || vs[0].ID != v1.ID || vs[1].ID != v2.ID || vs[2].ID != v3.ID || !vs[2].ValidTo.Equal(Date(2026, 11, 11)) {
			t.Fatalf("Versions = %+v", vs)
		}
		got, err := c.Get(ctx, v1.ID)
		if err != nil || got.ID != v1.ID {
			t.Fatalf("Get(v1) = %v, %v", got, err)
		}
		if _, err := c.Get(ctx, "cat_nope"); !errors.Is(err, errs.Of(errs.NotFound)) {
			t.Fatalf("Get(unknown) = %v, want not-found", err)
		}
	})

	t.Run("another process sees an import after the refresh interval", func(t *testing.T) {
		s := open(t)
		clock := NewClock(time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC))
		writer, reader := newCatalogue(t, s, clock), newCatalogue(t, s, clock)
		if _, err := reader.At(ctx, Date(2026, 3, 21)); !errors.Is(err, errs.Of(errs.CatalogueNotInForce)) {
			t.Fatalf("got %v, want catalogue-not-in-force", err)
		}
		res := importSample(t, writer, catalogue.ImportSpec{Label: "v1", ValidFrom: Date(2026, 3, 21)})
		if v, err := writer.At(ctx, Date(2026, 3, 21)); err != nil || v.ID != res.Version.ID {
			t.Fatalf("the importer's At = %v, %v", v, err)
		}
		clock.Advance(catalogue.DefaultRefresh)
		if v, err := reader.At(ctx, Date(2026, 3, 21)); err != nil || v.ID != res.Version.ID {
			t.Fatalf("the other's At after the refresh = %v, %v", v, err)
		}
	})

	t.Run("a small cache still answers for every version", func(t *testing.T) {
		s := open(t)
		c, err := catalogue.New(catalogue.Config{Store: s, CachedVersions: 1})
		if err != nil {
			t.Fatal(err)
		}
		a := importSample(t, c, catalogue.ImportSpec{Label: "a", ValidFrom: Date(2026, 3, 21)}).Version
		b := importSample(t, c, catalogue.ImportSpec{Label: "b", ValidFrom: Date(2026, 9, 23)}).Version
		for i := 0; i < 4; i++ {
			for _, want := range []catalogue.VersionInfo{a, b} {
				v, err := c.At(ctx, want.ValidFrom)
				if err != nil || v.ID != want.ID || v.Len() != 19 {
					t.Fatalf("At(%s) = %v, %v", want.ValidFrom.Format(time.DateOnly), v, err)
				}
			}
		}
	})

	t.Run("concurrent At and Import", func(t *testing.T) {
		s := open(t)
		c, err := catalogue.New(catalogue.Config{Store: s})
		if err != nil {
			t.Fatal(err)
		}
		first := importSample(t, c, catalogue.ImportSpec{Label: "first", ValidFrom: Date(2026, 3, 21)}).Version
		var wg sync.WaitGroup
		var failures atomic.Int32
		var imported atomic.Pointer[catalogue.VersionInfo]
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, s := Sample()
			res, err := c.Import(ctx, catalogue.ImportSpec{Label: "second", ValidFrom: Date(2026, 9, 23)}, strings.NewReader(d), strings.NewReader(s))
			if err != nil {
				t.Error(err)
				return
			}
			imported.Store(&res.Version)
		}()
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 200; i++ {
					v, err := c.At(ctx, Date(2026, 4, 1))
					if err != nil || v.ID != first.ID {
						failures.Add(1)
						continue
					}
					if it, ok := v.Lookup(Amoxicillin); !ok || it.ATC != "J01CA04" {
						failures.Add(1)
					}
					if len(v.Search("amox", "drug", 5)) != 1 {
						failures.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if n := failures.Load(); n > 0 {
			t.Fatalf("%d failed lookups", n)
		}
		second := imported.Load()
		if second == nil {
			t.FailNow()
		}
		if v, err := c.At(ctx, Date(2026, 10, 1)); err != nil || v.ID != second.ID {
			t.Fatalf("At after the concurrent import = %v, %v; want %s", v, err, second.ID)
		}
	})
}

func assertNoVersions(t *testing.T, c *catalogue.Catalogue) {
	t.Helper()
	vs, err := c.Versions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 0 {
		t.Fatalf("versions %+v, want none", vs)
	}
}

func codes(items []catalogue.Item) []string {
	out := make([]string, 0, len(items))
	for _, it := range items {
		out = append(out, it.Code)
	}
	return out
}

// String renders a problem list for test failures.
func String(ie *catalogue.ImportError) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d problems:", ie.Total)
	for _, r := range ie.Rows {
		b.WriteString("\n  " + r.String())
	}
	return b.String()
}

// InForce imports Sample into store as the version in force from
// 2026-01-01 (label "1405") and returns the catalogue over it: the fixture
// of every test that needs real catalogue data rather than the catalogue
// itself.
func InForce(t testing.TB, store catalogue.Store) *catalogue.Catalogue {
	t.Helper()
	c, err := catalogue.New(catalogue.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	drugs, services := Sample()
	spec := catalogue.ImportSpec{Label: "1405", ValidFrom: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := c.Import(context.Background(), spec, strings.NewReader(drugs), strings.NewReader(services)); err != nil {
		t.Fatal(err)
	}
	return c
}
