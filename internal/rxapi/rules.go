package rxapi

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/nuskha/nuskha/internal/adjudicate"
	"github.com/nuskha/nuskha/internal/catalogue"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/httpedge"
	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/nationalid"
	"github.com/nuskha/nuskha/internal/problem"
	"github.com/nuskha/nuskha/internal/rules"
	"github.com/nuskha/nuskha/internal/rx"
)

// maxCheckBody bounds a rules check (its route's body limit): a
// prescription of fifty items with its dispense is a few kilobytes.
const maxCheckBody = 256 << 10

// decodeStrict reads one JSON value as the signature verifier reads a
// payload (problem.Unmarshal: case-sensitive names, no unknown or repeated
// members, valid UTF-8, nothing after it; and no null), so that a draft the
// rules service accepts is one the verifier would read the same way once
// signed.
func decodeStrict(r *http.Request, v any) error {
	body, err := httpedge.Body(r)
	if err != nil {
		return err
	}
	if err := problem.Unmarshal(body, v); err != nil {
		return err
	}
	if rx.ContainsNull(body) {
		return errs.New(errs.Malformed, "null is not used; leave the member out")
	}
	return nil
}

// minimalDecision is a rules-check answer with its eligibility at its
// least (insured.Minimal), for callers other than the insurer's services.
type minimalDecision struct {
	*adjudicate.Decision
	Eligibility insured.Minimal `json:"eligibility"` // in place of the Decision's
}

// rulesCheck judges a draft. It looks the patient up in the registry, so
// it counts as an eligibility lookup, recorded and limited as one.
func (a *API) rulesCheck(w http.ResponseWriter, r *http.Request) {
	var req adjudicate.Request
	if err := decodeStrict(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	caller := CallerFrom(r.Context())
	full, err := fullDetail(r, caller)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if !a.spend(w, r, budgetLookup, caller.cert) {
		return
	}
	dec, err := a.Adjudicator.Check(r.Context(), req)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	// Check has read and checked the id: the pseudonym is of its parsed
	// form, as for GET /v1/eligibility.
	nid, err := nationalid.Parse(req.Prescription.Patient.NationalID)
	if err == nil {
		err = a.lookedUp(r, actRulesCheck, nid, dec.Eligibility)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if full {
		problem.JSON(w, http.StatusOK, dec)
		return
	}
	problem.JSON(w, http.StatusOK, minimalDecision{Decision: dec, Eligibility: dec.Eligibility.Minimal()})
}

// ruleSet describes the rule set in force.
type ruleSet struct {
	Version      string       `json:"version"`
	Description  string       `json:"description,omitempty"`
	Digest       string       `json:"sha256"`
	EvalFailures uint64       `json:"eval_failures"`
	Rules        []rules.Rule `json:"rules"`
}

func (a *API) ruleSet(w http.ResponseWriter, r *http.Request) {
	s := a.Rules.Current()
	problem.JSON(w, http.StatusOK, ruleSet{Version: s.Version(), Description: s.Description(), Digest: s.Digest(), EvalFailures: s.EvalFailures(), Rules: s.Rules()})
}

// catalogueAt is the version in force on the request's date.
func (a *API) catalogueAt(r *http.Request) (*catalogue.Version, error) {
	day, err := a.day(r)
	if err != nil {
		return nil, err
	}
	return a.Catalogue.At(r.Context(), day)
}

type itemsPage struct {
	Version string           `json:"catalogue_version"`
	Items   []catalogue.Item `json:"items"`
}

func (a *API) catalogueSearch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 0
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > catalogue.MaxSearchLimit {
			a.fail(w, r, errs.FieldError(errs.Invalid, "limit", "must be from 1 to %d", catalogue.MaxSearchLimit))
			return
		}
		limit = n
	}
	kind := q.Get("kind")
	if kind != "" && kind != catalogue.KindDrug && kind != catalogue.KindLab && kind != catalogue.KindImaging && kind != catalogue.KindProcedure {
		a.fail(w, r, errs.FieldError(errs.Invalid, "kind", "must be drug, lab, imaging or procedure"))
		return
	}
	if strings.TrimSpace(q.Get("q")) == "" {
		a.fail(w, r, errs.FieldError(errs.Invalid, "q", "a code or a name to search for is required"))
		return
	}
	v, err := a.catalogueAt(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	items := v.Search(q.Get("q"), kind, limit)
	if items == nil {
		items = []catalogue.Item{}
	}
	problem.JSON(w, http.StatusOK, itemsPage{Version: v.ID, Items: items})
}

type oneItem struct {
	Version string         `json:"catalogue_version"`
	Item    catalogue.Item `json:"item"`
}

func (a *API) catalogueItem(w http.ResponseWriter, r *http.Request) {
	v, err := a.catalogueAt(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	it, ok := v.Lookup(r.PathValue("code"))
	if !ok {
		a.fail(w, r, errs.New(errs.NotFound, "no item %q in the catalogue in force on that date", r.PathValue("code")))
		return
	}
	problem.JSON(w, http.StatusOK, oneItem{Version: v.ID, Item: it})
}
