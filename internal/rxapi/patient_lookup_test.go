package rxapi_test

import (
	"slices"
	"testing"

	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/rxapi"
	"github.com/nuskha/nuskha/internal/testutil/rxdtest"
)

// Prescribe, paper and the patient's history look a patient up: each is
// in the audit log by the patient's pseudonym (the exchange records it)
// and counted in the caller's daily lookup budget, as POST
// /v1/rules/check is.
func TestPatientLookupsAuditedAndBudgeted(t *testing.T) {
	f := xsetup(t, func(a *rxapi.API) { a.Limits = rxapi.Limits{DailyLookups: 3} })
	nid := insuredtest.NationalID(0)
	who := rxdtest.Pseudonym(t, nid)
	recorded := func() []string {
		var out []string
		for _, e := range auditEntries(t, f.log) {
			if e.Patient == who {
				out = append(out, e.Action+" "+string(e.Outcome))
			}
		}
		return out
	}

	p := f.prescription(drug(catalogtest.Amoxicillin, 20))
	want(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions", body: f.sign(t, f.doctor, p)}), 201, nil)
	paper := f.sign(t, f.pharmacy, &rx.Paper{V: rx.Version, Type: rx.KindPaper, ID: rx.NewID(), EnteredAt: f.clock.Now(),
		Prescriber: rx.Prescriber{CouncilNumber: "MC-777", Profession: "physician", Specialty: "general", Name: "دکتر کاوه نیک"},
		Patient:    rx.Patient{NationalID: nid, Name: "بیمار آزمایشی", BirthDate: "1951-03-21", Sex: "female"},
		Items:      []rx.Item{drug(catalogtest.Omeprazole, 14)}, Dispensed: []rx.DispensedItem{{Code: catalogtest.Omeprazole, Quantity: 14}},
		Dispenser: rx.Dispenser{LicenceNumber: f.pharmacy.sub.LicenceNumber, Role: "pharmacy"}})
	want(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/paper-prescriptions", body: paper}), 201, nil)
	hq := `{"national_id":"` + nid + `"}`
	want(t, f.do(t, req{client: "service", method: "POST", path: "/v1/patient-history", body: hq}), 200, nil)
	if got, wantLines := recorded(), []string{"prescribe ok", "paper ok", "settle ok", "history ok"}; !slices.Equal(got, wantLines) {
		t.Fatalf("audit entries %q, want %q", got, wantLines)
	}
	// The vendor's budget of 3 is spent by two prescribes and a paper.
	want(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions", body: f.sign(t, f.doctor, f.prescription(drug(catalogtest.Amoxicillin, 20)))}), 201, nil)
	refused(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions", body: f.sign(t, f.doctor, f.prescription(drug(catalogtest.Amoxicillin, 20)))}), 429, "quota-exceeded")
	refused(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/paper-prescriptions", body: paper}), 429, "quota-exceeded")
	for range 2 {
		want(t, f.do(t, req{client: "service", method: "POST", path: "/v1/patient-history", body: hq}), 200, nil)
	}
	refused(t, f.do(t, req{client: "service", method: "POST", path: "/v1/patient-history", body: hq}), 429, "quota-exceeded")
	if n := len(recorded()); n != 7 {
		t.Errorf("%d audit entries, want 7 (a lookup refused by the budget is not made)", n)
	}
}
