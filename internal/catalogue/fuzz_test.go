package catalogue_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nuskha/nuskha/internal/catalogue"
	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
)

// FuzzParse holds the parser to its contract on any input: it either
// returns valid, uniquely coded items or reports problems with a file, a
// line inside the input and a reason — never both, never a panic.
func FuzzParse(f *testing.F) {
	d, s := catalogtest.Sample()
	f.Add(d, s)
	f.Add(d+`1,"a`+"\n", "")
	f.Add(catalogtest.DrugsHeader+"\n"+drugRow(map[string]string{"price": "۱۲٫۵"}), s+"x,lab\n")
	f.Add("", "\uFEFF"+catalogtest.ServicesHeader+"\r\n"+serviceRow(nil))
	f.Fuzz(func(t *testing.T, drugs, services string) {
		items, err := catalogue.Parse(strings.NewReader(drugs), strings.NewReader(services))
		var ie *catalogue.ImportError
		if err != nil {
			if !errors.As(err, &ie) {
				t.Fatalf("unexpected error %v", err)
			}
			if items != nil || ie.Total < len(ie.Rows) || len(ie.Rows) == 0 || len(ie.Rows) > catalogue.MaxReportedProblems {
				t.Fatalf("items %d, problems %+v", len(items), ie)
			}
			for _, r := range ie.Rows {
				in := drugs
				if r.File == catalogue.FileServices {
					in = services
				} else if r.File != catalogue.FileDrugs {
					t.Fatalf("problem in file %q", r.File)
				}
				if r.Line < 1 || r.Line > strings.Count(in, "\n")+1 || r.Reason == "" {
					t.Fatalf("problem %+v for input of %d lines", r, strings.Count(in, "\n")+1)
				}
			}
			return
		}
		seen := map[string]bool{}
		for _, it := range items {
			key := strings.ToLower(it.Code)
			if !catalogue.ValidCode(it.Code) || seen[key] {
				t.Fatalf("bad or repeated code %q", it.Code)
			}
			seen[key] = true
			if it.Price <= 0 || it.CoveragePercent < 0 || it.CoveragePercent > 100 || it.Name == "" ||
				(it.ATC != "" && !catalogue.ValidATC(it.ATC)) || (it.MaxAgeYears > 0 && it.MinAgeYears > it.MaxAgeYears) ||
				!utf8.ValidString(it.Name+it.NameFA+it.Form+it.Strength) {
				t.Fatalf("invalid item accepted: %+v", it)
			}
			if it.Kind == catalogue.KindDrug && (it.Sex != "" && it.Sex != "female" && it.Sex != "male") {
				t.Fatalf("invalid item accepted: %+v", it)
			}
		}
	})
}

// FuzzSearch checks that any query gives at most limit distinct items of
// the kind asked for, the same ones each time.
func FuzzSearch(f *testing.F) {
	items := catalogtest.SampleItems(f)
	v := catalogue.NewVersion(catalogue.VersionInfo{}, items)
	for _, q := range []string{"amox", "سيلدنافيل", "1000", "ام\u200cآر", "", "\x00", "ab\x00cd"} {
		f.Add(q, "", 5)
	}
	f.Fuzz(func(t *testing.T, query, kind string, limit int) {
		got := v.Search(query, kind, limit)
		max := limit
		if limit <= 0 {
			max = catalogue.DefaultSearchLimit
		}
		if len(got) > max {
			t.Fatalf("%d results for limit %d", len(got), limit)
		}
		seen := map[string]bool{}
		for _, it := range got {
			if seen[it.Code] || (kind != "" && it.Kind != kind) {
				t.Fatalf("repeated or wrong-kind result %+v", it)
			}
			seen[it.Code] = true
		}
		again := v.Search(query, kind, limit)
		if len(again) != len(got) {
			t.Fatal("a second search differs")
		}
		for i := range got {
			if got[i].Code != again[i].Code {
				t.Fatal("a second search differs")
			}
		}
	})
}
