package catalogue_test

import (
	"slices"
	"testing"

	"github.com/nuskha/nuskha/internal/catalogue"
	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
)

func sampleVersion(t testing.TB) *catalogue.Version {
	return catalogue.NewVersion(catalogue.VersionInfo{ID: "cat_sample"}, catalogtest.SampleItems(t))
}

func codesOf(items []catalogue.Item) []string {
	out := []string{}
	for _, it := range items {
		out = append(out, it.Code)
	}
	return out
}

func TestLookup(t *testing.T) {
	v := sampleVersion(t)
	it, ok := v.Lookup(catalogtest.Isotretinoin)
	if !ok || it.Name != "Isotretinoin" || it.MinAgeYears != 12 || !slices.Equal(it.Specialties, []string{"dermatology"}) {
		t.Fatalf("Lookup = %+v, %v", it, ok)
	}
	for _, code := range []string{"", "1000", "1000105 ", "۱۰۰۰۱۰۵"} {
		if _, ok := v.Lookup(code); ok {
			t.Errorf("Lookup(%q) found an item: codes are exact", code)
		}
	}
	if n := testing.AllocsPerRun(100, func() { v.Lookup(catalogtest.Morphine) }); n != 0 {
		t.Fatalf("Lookup allocates %v times", n)
	}
}

func TestLookupItemsCannotBeGrownIntoEachOther(t *testing.T) {
	v := sampleVersion(t)
	a, _ := v.Lookup(catalogtest.Amoxicillin)
	_ = append(a.Professions, "astrologer")
	again, _ := v.Lookup(catalogtest.Amoxicillin)
	if !slices.Equal(again.Professions, []string{"physician", "dentist", "midwife"}) {
		t.Fatalf("an append changed the version: %v", again.Professions)
	}
}

func TestSearch(t *testing.T) {
	v := sampleVersion(t)
	for _, tc := range []struct {
		name  string
		query string
		kind  string
		limit int
		want  []string
	}{
		{"Persian name", "متفورمین", "", 0, []string{catalogtest.Metformin}},
		{"Arabic yeh finds the Persian spelling", "متفورمين", "", 0, []string{catalogtest.Metformin}},
		{"Arabic kaf finds the Persian spelling", "كلوميفن", "", 0, []string{catalogtest.Clomiphene}},
		{"Persian query finds a name imported in Arabic letters", "سیلدنافیل", "", 0, []string{catalogtest.Sildenafil}},
		{"ZWNJ as typed", "آموکسی\u200cسیلین", "", 0, []string{catalogtest.Amoxicillin}},
		{"ZWNJ typed as a space", "آموکسی سیلین", "", 0, []string{catalogtest.Amoxicillin}},
		{"ZWNJ left out", "آموکسیسیلین", "", 0, []string{catalogtest.Amoxicillin}},
		{"alef without madda", "اموکسی", "", 0, []string{catalogtest.Amoxicillin}},
		{"hamza seat spelt as yeh", "ایزوترتینویین", "", 0, []string{catalogtest.Isotretinoin}},
		{"Persian substring", "گلارژین", "", 0, []string{catalogtest.InsulinGlargine}},
		{"Latin ignores case", "AMOXICILLIN", "", 0, []string{catalogtest.Amoxicillin}},
		{"Latin prefix", "ator", "", 0, []string{catalogtest.Atorvastatin}},
		{"Latin substring across a space", "inglarg", "", 0, []string{catalogtest.InsulinGlargine}},
		{"same name: shorter is the same, so code order", "استامینوفن", "", 0, []string{catalogtest.Acetaminophen, catalogtest.AcetaminophenSyrup}},
		{"exact code", catalogtest.CBC, "", 0, []string{catalogtest.CBC}},
		{"exact code in Persian digits", "۸۰۰۱۰۰", "", 0, []string{catalogtest.CBC}},
		{"code prefix in code order", "1001", "", 0, []string{catalogtest.Letrozole, catalogtest.Clomiphene, catalogtest.Sildenafil, catalogtest.AcetaminophenSyrup}},
		{"code prefix with a limit", "1000", "", 3, []string{catalogtest.Acetaminophen, catalogtest.Amoxicillin, catalogtest.Metformin}},
		{"kind filter keeps", "800", "lab", 0, []string{catalogtest.CBC, catalogtest.FBS, catalogtest.LipidProfile}},
		{"kind filter drops", "CBC", "imaging", 0, []string{}},
		{"Latin name of a service", "blood", "", 0, []string{catalogtest.FBS, catalogtest.CBC}},
		{"Persian name of a service", "خون", "lab", 0, []string{catalogtest.FBS, catalogtest.CBC}},
		{"MRI with ZWNJs", "ام آر آی", "", 0, []string{catalogtest.BrainMRI}},
		{"unknown kind", "amox", "herbal", 0, []string{}},
		{"empty query", "  ", "", 0, []string{}},
		{"one letter matches no name", "a", "", 0, []string{}},
		{"nothing matches", "zzz", "", 0, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := codesOf(v.Search(tc.query, tc.kind, tc.limit))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Search(%q, %q, %d) = %v, want %v", tc.query, tc.kind, tc.limit, got, tc.want)
			}
		})
	}
}

func TestSearchRanking(t *testing.T) {
	items := []catalogue.Item{
		{Code: "Z2", Kind: "drug", Name: "Co-amoxiclav", Price: 1},
		{Code: "Z1", Kind: "drug", Name: "Amoxicillin", Price: 1},
		{Code: "AMO1", Kind: "drug", Name: "Something", Price: 1},
		{Code: "Z3", Kind: "drug", Name: "Amox", Price: 1},
		{Code: "amo", Kind: "drug", Name: "Other", Price: 1},
		{Code: "Z0", Kind: "drug", Name: "Flucloxacillin", NameFA: "آموکسی", Price: 1},
	}
	v := catalogue.NewVersion(catalogue.VersionInfo{}, items)
	want := []string{
		"amo",  // the exact code, whatever its case
		"AMO1", // a code prefix
		"Z3",   // name prefixes, shortest first
		"Z1",
		"Z2", // a name substring
	}
	if got := codesOf(v.Search("AMO", "", 0)); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if got := codesOf(v.Search("AMO", "", 2)); !slices.Equal(got, want[:2]) {
		t.Fatalf("limit 2: got %v", got)
	}
	if got := codesOf(v.Search("آموکس", "", 0)); !slices.Equal(got, []string{"Z0"}) {
		t.Fatalf("Persian: got %v", got)
	}
}

func TestFoldName(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"آموکسی\u200cسیلین", "اموکسی سیلین"},
		{"ايزوترتينوئين", "ایزوترتینویین"},
		{"پائین", "پایین"},
		{"كلوميفن", "کلومیفن"},
		{"مـتـفـورمین", "متفورمین"},
		{"قرص ۵۰۰", "قرص500"},
		{"Ergocalciférol", "ergocalciferol"},
		{"Co-Amoxiclav", "coamoxiclav"},
		{"مرفین\u064e", "مرفین"},
		{"شربت سرماخوردگیۀ", "شربتسرماخوردگیه"},
	} {
		if fa, fb := catalogue.FoldName(tc.a), catalogue.FoldName(tc.b); fa != fb {
			t.Errorf("fold(%q) = %q, fold(%q) = %q", tc.a, fa, tc.b, fb)
		}
	}
}
