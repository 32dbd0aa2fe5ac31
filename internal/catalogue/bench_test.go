package catalogue_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/nuskha/nuskha/internal/catalogue"
	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
)

// benchItems is the national catalogue's order of magnitude.
const benchItems = 30_000

func benchVersion(b *testing.B) *catalogue.Version {
	b.Helper()
	d, s := catalogtest.Generate(benchItems)
	items, err := catalogue.Parse(strings.NewReader(d), strings.NewReader(s))
	if err != nil {
		b.Fatal(err)
	}
	return catalogue.NewVersion(catalogue.VersionInfo{ID: "bench"}, items)
}

func BenchmarkLookup(b *testing.B) {
	v := benchVersion(b)
	codes := make([]string, 1024)
	for i := range codes {
		codes[i] = fmt.Sprintf("G%06d", (i*37)%benchItems/5*5) // drugs only: every fifth i is a service
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, ok := v.Lookup(codes[i%len(codes)]); !ok {
			b.Fatal("missing")
		}
	}
}

func BenchmarkSearch(b *testing.B) {
	v := benchVersion(b)
	for _, q := range []struct{ name, query string }{
		{"code prefix", "G0123"},
		{"Latin prefix", "Dorfen"},
		{"Latin substring", "lorni"},
		{"Persian substring", "لور\u200cمو"},
		{"Arabic letters", "كاسه"},
		{"broad: most names match", "ab"},
		{"no match", "qqqq"},
	} {
		b.Run(q.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v.Search(q.query, "", catalogue.DefaultSearchLimit)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	d, s := catalogtest.Generate(benchItems)
	b.SetBytes(int64(len(d) + len(s)))
	for b.Loop() {
		if _, err := catalogue.Parse(strings.NewReader(d), strings.NewReader(s)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkImportSQLite is a whole import of a national-size catalogue:
// parse, validate, commit and index.
func BenchmarkImportSQLite(b *testing.B) {
	d, s := catalogtest.Generate(benchItems)
	c, err := catalogue.New(catalogue.Config{Store: openSQLite(b)})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		spec := catalogue.ImportSpec{Label: "bench", ValidFrom: catalogtest.Date(2026, 1, 1+i)}
		if _, err := c.Import(context.Background(), spec, strings.NewReader(d), strings.NewReader(s)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAt is the rules engine's per-prescription call: the version in
// force, from the cache.
func BenchmarkAt(b *testing.B) {
	c, err := catalogue.New(catalogue.Config{Store: openSQLite(b)})
	if err != nil {
		b.Fatal(err)
	}
	d, s := catalogtest.Sample()
	day := catalogtest.Date(2026, 3, 21)
	if _, err := c.Import(context.Background(), catalogue.ImportSpec{Label: "v", ValidFrom: day}, strings.NewReader(d), strings.NewReader(s)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.At(context.Background(), day); err != nil {
				b.Fatal(err)
			}
		}
	})
}
