package rxapi_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/rxapi"
)

// recordedAudit keeps the audit lines written.
type recordedAudit struct {
	mu    sync.Mutex
	lines []string // outcome, then pseudonym
}

func (a *recordedAudit) Lookup(_ context.Context, _ rxapi.Caller, pseudonym, outcome string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lines = append(a.lines, outcome+" "+pseudonym)
	return nil
}

func (a *recordedAudit) outcomes() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.lines)
}

// Prescribe, paper and the patient's history look a patient up: each is
// audited by the patient's pseudonym and counted in the caller's daily
// lookup budget, as POST /v1/rules/check is.
func TestPatientLookupsAuditedAndBudgeted(t *testing.T) {
	audit := &recordedAudit{}
	pseudonyms, err := rxapi.NewPseudonyms([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	f := xsetup(t, func(a *rxapi.API) {
		a.Limits = rxapi.Limits{DailyLookups: 3}
		a.Audit, a.Pseudonyms = audit, pseudonyms
	})
	nid := insuredtest.NationalID(0)
	who := pseudonyms.Of(nid)

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
	if got, wantLines := audit.outcomes(), []string{"prescribe " + who, "paper " + who, "history " + who}; !slices.Equal(got, wantLines) {
		t.Fatalf("audit lines %q, want %q", got, wantLines)
	}
	// The vendor's budget of 3 is spent by two prescribes and a paper.
	want(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions", body: f.sign(t, f.doctor, f.prescription(drug(catalogtest.Amoxicillin, 20)))}), 201, nil)
	refused(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions", body: f.sign(t, f.doctor, f.prescription(drug(catalogtest.Amoxicillin, 20)))}), 429, "quota-exceeded")
	refused(t, f.do(t, req{client: "vendor", method: "POST", path: "/v1/paper-prescriptions", body: paper}), 429, "quota-exceeded")
	for range 2 {
		want(t, f.do(t, req{client: "service", method: "POST", path: "/v1/patient-history", body: hq}), 200, nil)
	}
	refused(t, f.do(t, req{client: "service", method: "POST", path: "/v1/patient-history", body: hq}), 429, "quota-exceeded")
	if n := len(audit.outcomes()); n != 6 {
		t.Errorf("%d audit lines, want 6 (a refused lookup is not made)", n)
	}
}
