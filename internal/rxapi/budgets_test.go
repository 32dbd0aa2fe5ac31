package rxapi_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/rxapi"
	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
)

// budgetsAt are the budgets in the PostgreSQL database at dsn, over a
// pool of their own, as one rxd instance has them.
func budgetsAt(t *testing.T, dsn string) *rxstore.Budgets {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), sqlstore.Postgres, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	b, err := rxstore.NewBudgets(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// get asks url with the fixture's client who.
func (f *fixture) get(t *testing.T, who, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := f.clients[who].Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// TestBudgetsSharedAcrossInstances: two rxd instances (two APIs, each
// with its own pool) over one PostgreSQL database give a caller one daily
// budget, not one each. With 10 lookups a day, 6 through one and 4
// through the other are answered, and the 11th is refused with
// quota-exceeded through either. (Counted in each process, as before, the
// caller had 20.)
func TestBudgetsSharedAcrossInstances(t *testing.T) {
	dsn := pgtest.Schema(t)
	limits := rxapi.Limits{PerSecond: 1000, Burst: 1000, DailyLookups: 10}
	var api *rxapi.API
	f := setup(t, func(a *rxapi.API) { a.Limits, a.Budgets, api = limits, budgetsAt(t, dsn), a })
	second := *api
	second.Budgets = budgetsAt(t, dsn)
	srv2 := httptest.NewUnstartedServer(second.Handler())
	srv2.TLS = f.srv.TLS
	srv2.StartTLS()
	t.Cleanup(srv2.Close)

	path := "/v1/eligibility/" + insuredtest.NationalID(0)
	for i := range 10 {
		base := f.srv.URL
		if i >= 6 {
			base = srv2.URL
		}
		if resp, body := f.get(t, "vendor", base+path); resp.StatusCode != 200 {
			t.Fatalf("lookup %d of 10: %d %s", i+1, resp.StatusCode, body)
		}
	}
	for _, base := range []string{f.srv.URL, srv2.URL} {
		resp, body := f.get(t, "vendor", base+path)
		wantProblem(t, resp, body, 429, "quota-exceeded")
	}
	if resp, body := f.get(t, "vendor-b", srv2.URL+path); resp.StatusCode != 200 {
		t.Fatalf("another vendor: %d %s", resp.StatusCode, body)
	}
}

// TestBudgetsDownIsUnavailable: when the database holding the budgets is
// gone (every connection cut, new ones refused), a lookup cannot be
// counted and is refused 503 unavailable with a Retry-After — never
// answered uncounted. An API without budgets refuses lookups likewise.
func TestBudgetsDownIsUnavailable(t *testing.T) {
	proxy, proxied := pgtest.Through(t, pgtest.Schema(t))
	// A budget under 400 is counted lookup by lookup (a larger one is
	// reserved a lease at a time, and a lease spent in memory needs no
	// database until it is used up).
	f := setup(t, func(a *rxapi.API) { a.Budgets, a.Limits.DailyLookups = budgetsAt(t, proxied), 300 })
	path := "/v1/eligibility/" + insuredtest.NationalID(0)
	if resp, body := f.do(t, "vendor", "GET", path, nil); resp.StatusCode != 200 {
		t.Fatalf("before: %d %s", resp.StatusCode, body)
	}
	proxy.Cut()
	resp, body := f.do(t, "vendor", "GET", path, nil)
	wantProblem(t, resp, body, 503, "unavailable")
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
	}

	f = setup(t, func(a *rxapi.API) { a.Budgets = nil })
	resp, body = f.do(t, "vendor", "GET", path, nil)
	wantProblem(t, resp, body, 503, "unavailable")
}
