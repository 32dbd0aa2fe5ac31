package rules

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"cel.dev/cel-go/common/types"
)

// fastExprs exercise every construct the fast evaluator handles, on every
// field of every Input type. Each MUST be taken by the fast evaluator.
var fastExprs = []struct {
	per  Per
	expr string
}{
	// Fields.
	{PerPrescription, `patient.age_years > 17 && patient.age_months % 12 == 0`},
	{PerPrescription, `patient.sex == "female" || patient.eligible || patient.fund != "" || patient.dependant`},
	{PerPrescription, `prescriber.profession == "physician" && prescriber.specialty < "m"`},
	{PerPrescription, `prescription.issued_days_ago <= 3 && prescription.item_count == size(items) && prescription.drug_count >= 1`},
	{PerItem, `item.index == 0 || item.kind == "drug" || item.code.startsWith("1")`},
	{PerItem, `item.quantity * item.repeats <= 100 && item.repeat_interval_days - item.repeats > 0`},
	{PerItem, `item.catalogue.found && item.catalogue.kind == item.kind`},
	{PerItem, `item.catalogue.generic_name.contains("in") || item.catalogue.atc.endsWith("02")`},
	{PerItem, `item.catalogue.form == "tablet" && item.catalogue.strength != ""`},
	{PerItem, `item.catalogue.price * item.quantity > 100000`},
	{PerItem, `item.catalogue.coverage_percent + 10 >= 100 || item.catalogue.prescription_only`},
	{PerItem, `item.catalogue.max_quantity / 2 < item.quantity`},
	{PerItem, `"physician" in item.catalogue.professions || size(item.catalogue.specialties) > 0`},
	{PerItem, `item.catalogue.min_age_years <= patient.age_years && (item.catalogue.max_age_years == 0 || patient.age_years <= item.catalogue.max_age_years)`},
	{PerItem, `item.catalogue.sex in ["", "female"] && item.catalogue.controlled_class == "" && item.catalogue.paper_allowed`},
	{PerItem, `history.exists(h, h.code == item.code && h.atc != "" && h.quantity > 0 && h.days_supply * 4 > h.days_ago * 5)`},
	// Operators.
	{PerItem, `-item.quantity < 0`},
	{PerItem, `item.quantity - 9223372036854775807 < 0`},
	{PerItem, `item.quantity + 9223372036854775807 > 0`},
	{PerItem, `item.catalogue.price * 9223372036854775807 > 0`},
	{PerItem, `item.quantity / item.repeats > 1`},
	{PerItem, `item.quantity % item.repeats == 0`},
	{PerItem, `1 < item.quantity && "a" <= item.code && 10 >= item.quantity && 3 > item.repeats`},
	{PerItem, `item.kind != "drug" ? item.quantity > 0 : item.quantity < 100`},
	{PerItem, `(item.quantity > 5 ? "big" : "small") == "big"`},
	{PerItem, `(item.catalogue.found ? item.quantity : 0) > 3`},
	{PerItem, `item.catalogue.found == item.catalogue.paper_allowed || !item.catalogue.found != true`},
	{PerItem, `item.quantity in [1, 30, 60]`},
	{PerItem, `size(item.code) == 7 || item.catalogue.generic_name.size() > 3`},
	{PerItem, `has(item.catalogue.atc) && has(item.catalogue.professions) && has(item.catalogue) && has(patient.eligible) && has(item.quantity)`},
	{PerItem, `items[0].quantity > 0 && history[1].days_ago > 3`},
	{PerItem, `item.catalogue.professions[0] == "physician" || [1, 2, 3][item.index] > 1`},
	// Macros.
	{PerPrescription, `items.all(i, i.quantity > 0)`},
	{PerPrescription, `items.exists_one(i, i.kind == "drug")`},
	{PerPrescription, `size(items.filter(i, i.catalogue.found)) == prescription.item_count`},
	{PerPrescription, `items.filter(i, i.kind == "drug").size() <= 4`},
	{PerItem, `item.catalogue.professions.exists(p, p.startsWith("ph")) || item.catalogue.specialties.all(s, s != prescriber.specialty)`},
	{PerItem, `[1, 5, 10].exists(n, n == item.quantity) || ["a", "b"].exists_one(s, s == item.code)`},
	{PerPrescription, `items.exists(i, history.exists(h, h.code == i.code && i.quantity >= h.quantity)) && items.all(j, history.all(h, j.quantity >= h.quantity || h.days_ago > 3))`},
	{PerPrescription, `history.all(h, 100 / h.days_ago > 0)`},
	{PerPrescription, `items.all(i, i.catalogue.price * i.quantity <= 1000000) || scope == "dispense"`},
	{PerPrescription, `items.exists(item, item.quantity > 50)`}, // a comprehension variable named like a global
}

var (
	someInts    = []int{0, 1, 2, 3, 5, 7, 10, 12, 30, 60, 100, -1, math.MaxInt32}
	someStrings = []string{"", "a", "ab", "drug", "lab", "1111111", "2222222", "A10BA02", "C08CA01", "physician", "psychiatry", "female", "male", "tablet", "ب", "in"}
)

// randomInput makes an Input from small domains, so that equalities and
// edge cases (zero, negative, empty, huge) come up often.
func randomInput(r *rand.Rand) *Input {
	i := func() int { return someInts[r.IntN(len(someInts))] }
	s := func() string { return someStrings[r.IntN(len(someStrings))] }
	ss := func() []string {
		out := make([]string, r.IntN(3))
		for k := range out {
			out[k] = s()
		}
		return out
	}
	in := &Input{
		Scope:        scopes[r.IntN(len(scopes))],
		Patient:      Patient{AgeYears: i(), AgeMonths: i(), Sex: s(), Eligible: r.IntN(2) == 0, Fund: s(), Dependant: r.IntN(2) == 0},
		Prescriber:   Prescriber{Profession: s(), Specialty: s()},
		Prescription: Prescription{IssuedDaysAgo: i(), ItemCount: i(), DrugCount: i()},
	}
	for k := range r.IntN(4) {
		price := int64(i())
		if r.IntN(8) == 0 {
			price = math.MaxInt64 / int64(1+r.IntN(3))
		}
		in.Items = append(in.Items, Item{Index: k, Kind: s(), Code: s(), Quantity: i(), Repeats: i(), RepeatIntervalDays: i(), Catalogue: Entry{
			Found: r.IntN(4) != 0, Kind: s(), GenericName: s(), ATC: s(), Form: s(), Strength: s(), Price: price,
			CoveragePercent: i(), PrescriptionOnly: r.IntN(2) == 0, MaxQuantity: i(), Professions: ss(), Specialties: ss(),
			MinAgeYears: i(), MaxAgeYears: i(), Sex: s(), ControlledClass: s(), PaperAllowed: r.IntN(2) == 0,
		}})
	}
	for range r.IntN(5) {
		in.History = append(in.History, Dispensed{Code: s(), ATC: s(), Quantity: i(), DaysSupply: i(), DaysAgo: i()})
	}
	return in
}

// compareEvaluators runs one program both ways on in (for each item, for
// an item rule) and reports any answer of the fast evaluator that differs
// from cel-go's. It returns how many times the fast evaluator answered.
func compareEvaluators(t testing.TB, set *Set, name string, p program, per Per, in *Input) (answered int) {
	t.Helper()
	st := set.states.New().(*evalState)
	st.fast.in = in
	st.bindCEL(in)
	items := []int{-1}
	if per == PerItem {
		items = items[:0]
		for k := range in.Items {
			items = append(items, k)
		}
	}
	for _, k := range items {
		st.fast.item, st.act.item = nil, nil
		if k >= 0 {
			st.fast.item, st.act.item = &in.Items[k], st.itemVals[k]
		}
		clear(st.fast.slots)
		fast, ok := p.fast.eval(&st.fast)
		out, _, err := p.cel.Eval(&st.act)
		if !ok {
			continue
		}
		answered++
		if err != nil || out != types.Bool(fast) {
			t.Errorf("%s, item %d: fast evaluator says %v, cel-go says %v (err %v)\ninput %+v", name, k, fast, out, err, in)
		}
	}
	return answered
}

func TestFastMatchesCEL(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var inputs []*Input
	for range 400 {
		inputs = append(inputs, randomInput(r))
	}
	for _, fe := range fastExprs {
		t.Run(fe.expr, func(t *testing.T) {
			set := oneRule(t, fe.per, "", fe.expr)
			p := set.rules[0].prg
			if p.fast == nil {
				t.Fatal("not taken by the fast evaluator")
			}
			answered := 0
			for _, in := range inputs {
				answered += compareEvaluators(t, set, fe.expr, p, fe.per, in)
			}
			if answered == 0 {
				t.Error("the fast evaluator never answered")
			}
		})
	}
}

// The starter and benchmark sets run entirely in the fast evaluator, and
// agree with cel-go there.
func TestFastCoversRealSets(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for name, data := range map[string][]byte{"starter": starterYAML, "hundred": hundredRules()} {
		set, err := Load(name, data)
		if err != nil {
			t.Fatal(err)
		}
		for _, rule := range set.rules {
			if rule.prg.fast == nil || (rule.guard >= 0 && set.guards[rule.guard].fast == nil) {
				t.Errorf("%s: rule %s is not taken by the fast evaluator", name, rule.ID)
			}
		}
		for range 100 {
			in := randomInput(r)
			for _, rule := range set.rules {
				compareEvaluators(t, set, name+" "+rule.ID, rule.prg, rule.Per, in)
			}
			for g, p := range set.guards {
				per := PerPrescription
				for _, rule := range set.rules {
					if rule.guard == g {
						per = rule.Per
					}
				}
				compareEvaluators(t, set, fmt.Sprintf("%s guard %d", name, g), p, per, in)
			}
		}
	}
}

// Whole evaluations give the same violations with and without the fast
// evaluator.
func TestFastEvaluateMatchesCEL(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	fast, slow := Starter(), celOnly(Starter())
	for range 500 {
		in := randomInput(r)
		a, errA := fast.Evaluate(in)
		b, errB := slow.Evaluate(in)
		if fmt.Sprint(a, errA) != fmt.Sprint(b, errB) {
			t.Fatalf("fast %v %v\ncel-go %v %v\ninput %+v", a, errA, b, errB, in)
		}
	}
}

// FuzzFastMatchesCEL looks for an input on which the fast evaluator's
// answer differs from cel-go's, for every expression in fastExprs.
func FuzzFastMatchesCEL(f *testing.F) {
	f.Add(uint64(1), int64(0), int64(0), "", "")
	f.Add(uint64(2), int64(math.MaxInt64), int64(-1), "A10BA02", "ب")
	f.Add(uint64(3), int64(math.MinInt64), int64(30), "1111111", "physician")
	sets := make([]*Set, len(fastExprs))
	for k, fe := range fastExprs {
		sets[k] = oneRule(f, fe.per, "", fe.expr)
	}
	f.Fuzz(func(t *testing.T, seed uint64, n1, n2 int64, s1, s2 string) {
		in := randomInput(rand.New(rand.NewPCG(seed, seed)))
		in.Patient.AgeYears = int(n1)
		in.Prescriber.Specialty = s1
		for k := range in.Items {
			in.Items[k].Quantity, in.Items[k].Catalogue.Price = int(n2), n1
			in.Items[k].Code = s2
			in.Items[k].Catalogue.Professions = append(in.Items[k].Catalogue.Professions, s1)
		}
		for k := range in.History {
			in.History[k].DaysAgo, in.History[k].Code = int(n2), s2
		}
		for k, fe := range fastExprs {
			compareEvaluators(t, sets[k], fe.expr, sets[k].rules[0].prg, fe.per, in)
		}
	})
}

// The arithmetic gives up exactly where CEL reports overflow.
func TestArithmeticOverflow(t *testing.T) {
	edges := []int64{0, 1, -1, 2, -2, 3, math.MaxInt64, math.MinInt64, math.MaxInt64 - 1, math.MinInt64 + 1, math.MaxInt32, math.MinInt32, 1 << 32, -(1 << 32)}
	for _, op := range []string{"+", "-", "*", "/", "%"} {
		expr := fmt.Sprintf("item.catalogue.price %s patient.age_years >= 0", op)
		set := oneRule(t, PerItem, "", expr)
		for _, x := range edges {
			for _, y := range edges {
				in := cleanInput(ScopeDispense)
				in.Items = in.Items[:1]
				in.Items[0].Catalogue.Price, in.Patient.AgeYears = x, int(y)
				st := set.states.New().(*evalState)
				st.fast.in, st.fast.item = in, &in.Items[0]
				st.bindCEL(in)
				st.act.item = st.itemVals[0]
				fast, ok := set.rules[0].prg.fast.eval(&st.fast)
				out, _, err := set.rules[0].prg.cel.Eval(&st.act)
				if ok != (err == nil) || (ok && out != types.Bool(fast)) {
					t.Errorf("%d %s %d: fast (%v, answered %v), cel-go (%v, %v)", x, op, y, fast, ok, out, err)
				}
			}
		}
	}
}

// Expressions outside the fast evaluator's part of CEL are left to cel-go.
func TestFastDeclines(t *testing.T) {
	for _, expr := range []string{
		`item.code.matches("^1")`,
		`items.map(i, i.quantity).exists(q, q > 50)`,
		`double(item.quantity) > 1.5`,
		`item == items[0]`,
		`item.code + "x" == "1x"`,
		`[item.code] == ["1"]`,
		`item.catalogue.professions == ["physician"]`,
		`items.filter(i, i.quantity > 1).exists(i, i.kind == "drug")`,
		`item.catalogue.atc.substring(0, 3) == "A10"`,
		`uint(item.quantity) > 1u`,
	} {
		if oneRule(t, PerItem, "", expr).rules[0].prg.fast != nil {
			t.Errorf("%s: taken by the fast evaluator", expr)
		}
	}
}
