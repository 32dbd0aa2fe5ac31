package catalogue_test

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/nuskha/nuskha/internal/catalogue"
	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/errs"
)

// goodDrug and goodService are valid rows that the bad-row cases spoil one
// field at a time.
var (
	goodDrug = map[string]string{
		"code": "2000001", "name": "Ibuprofen", "name_fa": "ایبوپروفن", "atc": "M01AE01", "form": "tablet",
		"strength": "400 mg", "price": "21000", "coverage_percent": "70", "prescription_only": "false",
		"max_quantity": "30", "professions": "physician|dentist", "specialties": "", "min_age_years": "0",
		"max_age_years": "0", "sex": "", "controlled_class": "", "paper_allowed": "true",
	}
	goodService = map[string]string{
		"code": "810001", "kind": "lab", "name": "Ferritin", "name_fa": "فریتین", "price": "300000",
		"coverage_percent": "70", "max_quantity": "1", "professions": "", "specialties": "",
		"min_age_years": "0", "max_age_years": "0", "sex": "", "paper_allowed": "true",
	}
)

// row renders a record in the file's column order, with changes.
func row(columns []string, base map[string]string, changes map[string]string) string {
	fields := make([]string, len(columns))
	for i, c := range columns {
		v, ok := changes[c]
		if !ok {
			v = base[c]
		}
		if strings.ContainsAny(v, ",\"\n") {
			v = `"` + strings.ReplaceAll(v, `"`, `""`) + `"`
		}
		fields[i] = v
	}
	return strings.Join(fields, ",") + "\n"
}

func drugRow(changes map[string]string) string {
	return row(catalogue.DrugColumns, goodDrug, changes)
}

func serviceRow(changes map[string]string) string {
	return row(catalogue.ServiceColumns, goodService, changes)
}

func parse(t *testing.T, drugs, services string) ([]catalogue.Item, *catalogue.ImportError) {
	t.Helper()
	var d, s io.Reader
	if drugs != "" {
		d = strings.NewReader(drugs)
	}
	if services != "" {
		s = strings.NewReader(services)
	}
	items, err := catalogue.Parse(d, s)
	var ie *catalogue.ImportError
	if err != nil && !errors.As(err, &ie) {
		t.Fatalf("Parse: %v", err)
	}
	return items, ie
}

func TestParseSample(t *testing.T) {
	items := catalogtest.SampleItems(t)
	if len(items) != 19 {
		t.Fatalf("%d items", len(items))
	}
	syrup := items[12]
	if syrup.Code != catalogtest.AcetaminophenSyrup || syrup.Strength != "120 mg/5 ml, 60 ml" || syrup.MaxAgeYears != 12 || syrup.PrescriptionOnly {
		t.Fatalf("syrup %+v", syrup)
	}
	mri := items[17]
	if mri.Kind != catalogue.KindImaging || !slices.Equal(mri.Specialties, []string{"neurology", "neurosurgery"}) || mri.ATC != "" || mri.PaperAllowed {
		t.Fatalf("MRI %+v", mri)
	}
}

func TestParseGoodRows(t *testing.T) {
	for _, tc := range []struct {
		name    string
		changes map[string]string
		check   func(catalogue.Item) bool
	}{
		{"Persian digits in numbers", map[string]string{"price": "۲۱۰۰۰", "coverage_percent": "٧٠", "max_quantity": "۳۰"},
			func(it catalogue.Item) bool {
				return it.Price == 21000 && it.CoveragePercent == 70 && it.MaxQuantity == 30
			}},
		{"Persian digits in the code", map[string]string{"code": "۲۰۰۰۰۰۱"}, func(it catalogue.Item) bool { return it.Code == "2000001" }},
		{"blank numbers mean no limit", map[string]string{"max_quantity": "", "min_age_years": "", "max_age_years": ""},
			func(it catalogue.Item) bool { return it.MaxQuantity == 0 && it.MinAgeYears == 0 && it.MaxAgeYears == 0 }},
		{"case and spaces are forgiven", map[string]string{"atc": " m01ae01 ", "prescription_only": "TRUE", "sex": "Female", "professions": " Physician | physician|midwife "},
			func(it catalogue.Item) bool {
				return it.ATC == "M01AE01" && it.PrescriptionOnly && it.Sex == "female" && slices.Equal(it.Professions, []string{"physician", "midwife"})
			}},
		{"an ATC level", map[string]string{"atc": "M01A"}, func(it catalogue.Item) bool { return it.ATC == "M01A" }},
		{"no ATC", map[string]string{"atc": ""}, func(it catalogue.Item) bool { return it.ATC == "" }},
		{"Persian name normalised", map[string]string{"name_fa": "  ايبو\u200c\u200cپروفن  كودك "},
			func(it catalogue.Item) bool { return it.NameFA == "ایبو\u200cپروفن کودک" }},
		{"equal ages", map[string]string{"min_age_years": "12", "max_age_years": "12"},
			func(it catalogue.Item) bool { return it.MinAgeYears == 12 && it.MaxAgeYears == 12 }},
		{"a minimum age alone", map[string]string{"min_age_years": "65", "max_age_years": "0"},
			func(it catalogue.Item) bool { return it.MinAgeYears == 65 }},
		{"a controlled class", map[string]string{"controlled_class": "Narcotic"},
			func(it catalogue.Item) bool { return it.ControlledClass == "narcotic" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			items, ie := parse(t, catalogtest.DrugsHeader+"\n"+drugRow(tc.changes), "")
			if ie != nil {
				t.Fatal(catalogtest.String(ie))
			}
			if len(items) != 1 || !tc.check(items[0]) {
				t.Fatalf("got %+v", items)
			}
		})
	}
}

func TestParseBadRows(t *testing.T) {
	type want struct {
		file   string
		line   int
		field  string
		reason string // a part of it
	}
	drugs := func(rows ...string) string { return catalogtest.DrugsHeader + "\n" + strings.Join(rows, "") }
	services := func(rows ...string) string { return catalogtest.ServicesHeader + "\n" + strings.Join(rows, "") }
	ok := drugRow(nil)
	okService := serviceRow(nil)
	for _, tc := range []struct {
		name     string
		drugs    string
		services string
		want     []want
	}{
		{"bad code", drugs(ok, drugRow(map[string]string{"code": "20 01"})), "", []want{{"drugs", 3, "code", "bad code"}}},
		{"code starting with punctuation", drugs(drugRow(map[string]string{"code": "-2001"})), "", []want{{"drugs", 2, "code", "bad code"}}},
		{"code too long", drugs(drugRow(map[string]string{"code": strings.Repeat("1", 33)})), "", []want{{"drugs", 2, "code", "bad code"}}},
		{"no code", drugs(drugRow(map[string]string{"code": ""})), "", []want{{"drugs", 2, "code", "required"}}},
		{"duplicate code in a file", drugs(ok, drugRow(map[string]string{"name": "Other"})), "", []want{{"drugs", 3, "code", "already on drugs line 2"}}},
		{"duplicate code differing in case", drugs(drugRow(map[string]string{"code": "AB-1"}), drugRow(map[string]string{"code": "ab-1"})), "", []want{{"drugs", 3, "code", "duplicate"}}},
		{"duplicate code across files", drugs(ok), services(okService, serviceRow(map[string]string{"code": goodDrug["code"]})), []want{{"services", 3, "code", "already on drugs line 2"}}},
		{"unknown kind", "", services(serviceRow(map[string]string{"kind": "radiology"})), []want{{"services", 2, "kind", "unknown kind"}}},
		{"drug in the services file", "", services(serviceRow(map[string]string{"kind": "drug"})), []want{{"services", 2, "kind", "drugs file"}}},
		{"negative price", drugs(drugRow(map[string]string{"price": "-25000"})), "", []want{{"drugs", 2, "price", "negative"}}},
		{"float price", drugs(drugRow(map[string]string{"price": "25000.50"})), "", []want{{"drugs", 2, "price", "not a whole number"}}},
		{"price with a Persian decimal separator", drugs(drugRow(map[string]string{"price": "۲۵۰۰۰٫۵"})), "", []want{{"drugs", 2, "price", "not a whole number"}}},
		{"price with thousands separators", drugs(drugRow(map[string]string{"price": "25,000"})), "", []want{{"drugs", 2, "price", "no separators"}}},
		{"zero price", "", services(serviceRow(map[string]string{"price": "0"})), []want{{"services", 2, "price", "greater than zero"}}},
		{"price beyond int64", drugs(drugRow(map[string]string{"price": "99999999999999999999"})), "", []want{{"drugs", 2, "price", "too large"}}},
		{"price over a trillion rials", drugs(drugRow(map[string]string{"price": "1000000000001"})), "", []want{{"drugs", 2, "price", "a typo, not a price"}}},
		{"coverage over 100", drugs(drugRow(map[string]string{"coverage_percent": "101"})), "", []want{{"drugs", 2, "coverage_percent", "out of range"}}},
		{"negative coverage", drugs(drugRow(map[string]string{"coverage_percent": "-1"})), "", []want{{"drugs", 2, "coverage_percent", "negative"}}},
		{"bad ATC", drugs(drugRow(map[string]string{"atc": "N2BE01"})), "", []want{{"drugs", 2, "atc", "bad ATC"}}},
		{"ATC of a group that does not exist", drugs(drugRow(map[string]string{"atc": "X02BE01"})), "", []want{{"drugs", 2, "atc", "bad ATC"}}},
		{"ATC of six characters", drugs(drugRow(map[string]string{"atc": "N02BE0"})), "", []want{{"drugs", 2, "atc", "bad ATC"}}},
		{"unknown profession", drugs(drugRow(map[string]string{"professions": "physician|nurse"})), "", []want{{"drugs", 2, "professions", "unknown profession"}}},
		{"empty list entry", drugs(drugRow(map[string]string{"professions": "physician||dentist"})), "", []want{{"drugs", 2, "professions", "empty entry"}}},
		{"bad specialty", drugs(drugRow(map[string]string{"specialties": "Cardiology Dept"})), "", []want{{"drugs", 2, "specialties", "bad specialty"}}},
		{"unknown sex", "", services(serviceRow(map[string]string{"sex": "f"})), []want{{"services", 2, "sex", "unknown sex"}}},
		{"bad boolean", drugs(drugRow(map[string]string{"paper_allowed": "yes"})), "", []want{{"drugs", 2, "paper_allowed", "not true or false"}}},
		{"missing boolean", drugs(drugRow(map[string]string{"prescription_only": ""})), "", []want{{"drugs", 2, "prescription_only", "required"}}},
		{"min age over max age", drugs(drugRow(map[string]string{"min_age_years": "18", "max_age_years": "12"})), "", []want{{"drugs", 2, "min_age_years", "greater than max_age_years"}}},
		{"implausible age", drugs(drugRow(map[string]string{"max_age_years": "200"})), "", []want{{"drugs", 2, "max_age_years", "plausible"}}},
		{"bad controlled class", drugs(drugRow(map[string]string{"controlled_class": "class 2"})), "", []want{{"drugs", 2, "controlled_class", "bad class"}}},
		{"no name", drugs(drugRow(map[string]string{"name": "  "})), "", []want{{"drugs", 2, "name", "required"}}},
		{"name too long", drugs(drugRow(map[string]string{"name": strings.Repeat("a", 201)})), "", []want{{"drugs", 2, "name", "longer than"}}},
		{"not UTF-8", drugs(drugRow(map[string]string{"name_fa": "\xc7\xed\xc8\xe6"})), "", []want{{"drugs", 2, "name_fa", "UTF-8"}}},
		{"too few fields", drugs(ok, "2000002,Naproxen,ناپروکسن\n"), "", []want{{"drugs", 3, "", "wrong number of fields"}}},
		{"too many fields", "", services(strings.TrimSuffix(okService, "\n") + ",extra\n"), []want{{"services", 2, "", "wrong number of fields"}}},
		{"bare quote", drugs(ok, strings.Replace(drugRow(map[string]string{"code": "2000002"}), "Ibuprofen", `Ibu"profen`, 1)), "", []want{{"drugs", 3, "", "malformed line"}}},
		{"quote not closed properly", drugs(ok, strings.Replace(drugRow(map[string]string{"code": "2000002"}), "Ibuprofen", `"Ibu"profen"`, 1), drugRow(map[string]string{"code": "2000003"})), "",
			[]want{{"drugs", 3, "", "malformed line"}}},
		{"two bad fields in one row", drugs(drugRow(map[string]string{"price": "-1", "sex": "x"})), "",
			[]want{{"drugs", 2, "price", "negative"}, {"drugs", 2, "sex", "unknown sex"}}},
		{"bad rows in both files", drugs(ok, drugRow(map[string]string{"code": "2000002", "atc": "bad"})), services(serviceRow(map[string]string{"kind": "x"})),
			[]want{{"drugs", 3, "atc", "bad ATC"}, {"services", 2, "kind", "unknown kind"}}},
		{"a quoted line break keeps later lines right", drugs(drugRow(map[string]string{"strength": "400 mg\n(film-coated)"}), drugRow(map[string]string{"code": "2000002", "price": "x"})), "",
			[]want{{"drugs", 4, "price", "not a whole number"}}},
		{"blank lines keep later lines right", drugs(ok, "\n", ",,,,,,,,,,,,,,,,\n", drugRow(map[string]string{"code": "2000002", "price": "x"})), "",
			[]want{{"drugs", 5, "price", "not a whole number"}}},
		{"empty file", "", "\n", []want{{"services", 1, "", "header row is missing"}}},
		{"unknown column", strings.Replace(catalogtest.DrugsHeader, "form", "dosage_form", 1) + "\n" + ok, "",
			[]want{{"drugs", 1, "dosage_form", "unknown column"}, {"drugs", 1, "form", "missing"}}},
		{"column twice", catalogtest.DrugsHeader + ",Name\n", "", []want{{"drugs", 1, "name", "named twice"}}},
		{"services header on the drugs file", catalogtest.ServicesHeader + "\n" + okService, "", nil}, // checked below by count
	} {
		t.Run(tc.name, func(t *testing.T) {
			items, ie := parse(t, tc.drugs, tc.services)
			if ie == nil {
				t.Fatalf("accepted: %+v", items)
			}
			if items != nil {
				t.Fatalf("items returned with problems: %+v", items)
			}
			if tc.want == nil {
				return
			}
			if ie.Total != len(tc.want) || len(ie.Rows) != len(tc.want) {
				t.Fatalf("%s\nwant %d", catalogtest.String(ie), len(tc.want))
			}
			for i, w := range tc.want {
				r := ie.Rows[i]
				if r.File != w.file || r.Line != w.line || r.Field != w.field || !strings.Contains(r.Reason, w.reason) {
					t.Errorf("problem %d: %s\nwant %s line %d %s: …%s…", i, r, w.file, w.line, w.field, w.reason)
				}
			}
		})
	}
}

func TestParseColumnOrderIsFree(t *testing.T) {
	cols := slices.Clone(catalogue.ServiceColumns)
	slices.Reverse(cols)
	header := "\uFEFF" + strings.ToUpper(strings.Join(cols, ","))
	items, ie := parse(t, "", header+"\n"+row(cols, goodService, nil))
	if ie != nil {
		t.Fatal(catalogtest.String(ie))
	}
	if len(items) != 1 || items[0].Code != "810001" || items[0].Kind != "lab" || items[0].Price != 300000 {
		t.Fatalf("got %+v", items)
	}
}

func TestParseCapsTheReport(t *testing.T) {
	var b strings.Builder
	b.WriteString(catalogtest.DrugsHeader + "\n")
	for i := 0; i < 1500; i++ {
		b.WriteString(drugRow(map[string]string{"code": fmt.Sprint(3000000 + i), "price": "-1"}))
	}
	_, ie := parse(t, b.String(), "")
	if ie == nil || ie.Total != 1500 || len(ie.Rows) != catalogue.MaxReportedProblems {
		t.Fatalf("got %v", ie)
	}
	if last := ie.Rows[len(ie.Rows)-1]; last.Line != catalogue.MaxReportedProblems+1 {
		t.Fatalf("last reported %s, want line %d", last, catalogue.MaxReportedProblems+1)
	}
}

func TestParseReaderFailure(t *testing.T) {
	boom := errors.New("connection reset")
	d, _ := catalogtest.Sample()
	_, err := catalogue.Parse(io.MultiReader(strings.NewReader(d), iotest.ErrReader(boom)), nil)
	if !errors.Is(err, boom) || errs.CodeOf(err) != errs.Malformed {
		t.Fatalf("got %v, want malformed-request wrapping the reader's error", err)
	}
}

func TestValidATC(t *testing.T) {
	for s, want := range map[string]bool{
		"N": true, "N02": true, "N02B": true, "N02BE": true, "N02BE01": true, "A10AE04": true, "V03AB15": true,
		"": false, "n02be01": false, "N0": false, "N02BE0": false, "N02BE011": false, "N2BE01": false,
		"X02BE01": false, "N0BBE01": false, "N02B1": false, "N02BEA1": false,
	} {
		if got := catalogue.ValidATC(s); got != want {
			t.Errorf("ValidATC(%q) = %v, want %v", s, got, want)
		}
	}
}
