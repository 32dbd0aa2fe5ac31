package rxapi_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/adjudicate"
	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/persian"
	"github.com/nuskha/nuskha/internal/rxapi"
	"github.com/nuskha/nuskha/internal/store/tlogstore"
	"github.com/nuskha/nuskha/internal/testutil/logbuf"
	"github.com/nuskha/nuskha/internal/testutil/rxdtest"
	"github.com/nuskha/nuskha/internal/tlog"
)

// TestEnumerationIsThrottled is issue 10's finding 6 as an attack: one
// vendor's certificate asks about generated national ids in a tight loop.
// Before, all 3,000 were answered in 0.6 s; now the burst is answered and
// the rest refused with 429 rate-limited and a Retry-After, while another
// vendor is served as usual. The clock stands still, so the bucket does
// not refill during the loop.
func TestEnumerationIsThrottled(t *testing.T) {
	f := setup(t)
	const tries = 300
	burst := rxapi.DefaultLimits().Burst
	answered, limited := 0, 0
	for i := range tries {
		resp, body := f.do(t, "vendor", "GET", "/v1/eligibility/"+insuredtest.NationalID(1000+i), nil)
		switch resp.StatusCode {
		case 200:
			answered++
		case 429:
			wantProblem(t, resp, body, 429, "rate-limited")
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
				t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
			}
			limited++
		default:
			t.Fatalf("lookup %d: %d %s", i, resp.StatusCode, body)
		}
		if i == tries/2 {
			// Meanwhile another vendor is served.
			resp, body := f.do(t, "vendor-b", "GET", "/v1/eligibility/"+insuredtest.NationalID(0), nil)
			if resp.StatusCode != 200 {
				t.Fatalf("the other vendor, during the loop: %d %s", resp.StatusCode, body)
			}
		}
	}
	if answered != burst || limited != tries-burst {
		t.Fatalf("%d answered and %d refused of %d; want the burst of %d answered", answered, limited, tries, burst)
	}
	// The bucket refills with time: a second later, 20 more.
	f.clock.Advance(time.Second)
	for i := range 21 {
		resp, _ := f.do(t, "vendor", "GET", "/v1/eligibility/"+insuredtest.NationalID(0), nil)
		if want := map[bool]int{true: 200, false: 429}[i < 20]; resp.StatusCode != want {
			t.Fatalf("a second later, request %d: %d, want %d", i+1, resp.StatusCode, want)
		}
	}
}

// TestDailyQuota: a caller's eligibility lookups — GET /v1/eligibility and
// POST /v1/rules/check alike — are counted per day in Iran; past the
// quota they are refused with 429 quota-exceeded until the next day
// begins, other requests still served, other callers unaffected.
func TestDailyQuota(t *testing.T) {
	f := setup(t, func(a *rxapi.API) { a.Limits = rxapi.Limits{PerSecond: 1000, Burst: 1000, DailyLookups: 5} })
	path := "/v1/eligibility/" + insuredtest.NationalID(0)
	for i := range 4 {
		if resp, body := f.do(t, "vendor", "GET", path, nil); resp.StatusCode != 200 {
			t.Fatalf("lookup %d: %d %s", i+1, resp.StatusCode, body)
		}
	}
	if resp, body := f.do(t, "vendor", "POST", "/v1/rules/check", strings.NewReader(checkBody("prescribe", ""))); resp.StatusCode != 200 {
		t.Fatalf("rules check as the 5th lookup: %d %s", resp.StatusCode, body)
	}
	resp, body := f.do(t, "vendor", "GET", path, nil)
	wantProblem(t, resp, body, 429, "quota-exceeded")
	nextDay := persian.DayStart(persian.Day(f.now).AddDate(0, 0, 1))
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || time.Duration(s)*time.Second < nextDay.Sub(f.now) || time.Duration(s-1)*time.Second > nextDay.Sub(f.now) {
		t.Fatalf("Retry-After %q, want the %s until the next day in Iran", resp.Header.Get("Retry-After"), nextDay.Sub(f.now))
	}
	resp, body = f.do(t, "vendor", "POST", "/v1/rules/check", strings.NewReader(checkBody("prescribe", "")))
	wantProblem(t, resp, body, 429, "quota-exceeded")
	if resp, body := f.do(t, "vendor", "GET", "/v1/catalogue/items/"+catalogtest.Amoxicillin, nil); resp.StatusCode != 200 {
		t.Fatalf("the catalogue is not a lookup: %s", body)
	}
	if resp, body := f.do(t, "vendor-b", "GET", path, nil); resp.StatusCode != 200 {
		t.Fatalf("another vendor: %d %s", resp.StatusCode, body)
	}
	f.clock.Advance(nextDay.Sub(f.now))
	if resp, body := f.do(t, "vendor", "GET", path, nil); resp.StatusCode != 200 {
		t.Fatalf("the next day: %d %s", resp.StatusCode, body)
	}
}

// withheld are the members of an eligibility answer that only the
// insurer's own services see.
var withheld = []string{`"insurance_number"`, `"main_national_id"`, `"relation"`, `"dependant"`, `"supplementary"`,
	`"insurer"`, `"plan"`, `"annual_caps_rials"`, `"paid_days_in_window"`, `"status"`}

// TestMinimalAnswers: a vendor's software gets the minimum — eligible or
// not, why, the fund and whether supplementary insurance applies — and may
// not ask for more; the insurer's own services get the full answer when
// they ask for it. The rules check's eligibility is cut the same way.
func TestMinimalAnswers(t *testing.T) {
	f := setup(t)
	// Person 0: a main insured with supplementary insurance; 3: a dependant.
	for _, who := range []string{"vendor", "service"} {
		for _, i := range []int{0, 3} {
			resp, body := f.do(t, who, "GET", "/v1/eligibility/"+insuredtest.NationalID(i)+"?date=1405-06-15", nil)
			var m insured.Minimal
			if resp.StatusCode != 200 || json.Unmarshal(body, &m) != nil || !m.Eligible || m.Coverage == nil || m.Coverage.Fund == "" {
				t.Fatalf("%s, person %d: %d %s", who, i, resp.StatusCode, body)
			}
			if m.Coverage.HasSupplementary != (i == 0) {
				t.Fatalf("%s, person %d: has_supplementary wrong: %s", who, i, body)
			}
			for _, w := range withheld {
				if strings.Contains(string(body), w) {
					t.Fatalf("%s, person %d: the default answer has %s: %s", who, i, w, body)
				}
			}
		}
	}
	resp, body := f.do(t, "vendor", "GET", "/v1/eligibility/"+insuredtest.NationalID(3)+"?detail=full", nil)
	wantProblem(t, resp, body, 403, "forbidden")
	resp, body = f.do(t, "vendor", "GET", "/v1/eligibility/"+insuredtest.NationalID(3)+"?detail=everything", nil)
	wantProblem(t, resp, body, 422, "invalid-field")
	resp, body = f.do(t, "service", "GET", "/v1/eligibility/"+insuredtest.NationalID(0)+"?date=1405-06-15&detail=full", nil)
	var full insured.Result
	if resp.StatusCode != 200 || json.Unmarshal(body, &full) != nil || full.Coverage == nil || full.Coverage.InsuranceNumber == "" ||
		full.Coverage.Supplementary == nil || full.Coverage.Supplementary.Insurer == "" {
		t.Fatalf("full detail for the insurer's service: %d %s", resp.StatusCode, body)
	}

	// The rules check: the same cut, the money the same.
	resp, body = f.do(t, "vendor", "POST", "/v1/rules/check", strings.NewReader(checkBody("prescribe", "")))
	var answer struct {
		Eligibility json.RawMessage `json:"eligibility"`
	}
	var dec adjudicate.Decision
	if resp.StatusCode != 200 || json.Unmarshal(body, &answer) != nil || json.Unmarshal(body, &dec) != nil {
		t.Fatalf("rules check: %d %s", resp.StatusCode, body)
	}
	for _, w := range withheld {
		if strings.Contains(string(answer.Eligibility), w) {
			t.Fatalf("the rules check's eligibility has %s: %s", w, answer.Eligibility)
		}
	}
	var elig struct {
		Coverage struct {
			HasSupplementary bool `json:"has_supplementary"`
		} `json:"coverage"`
	}
	if json.Unmarshal(answer.Eligibility, &elig) != nil || !elig.Coverage.HasSupplementary || dec.Items[0].InsurerPays != 448000 {
		t.Fatalf("rules check: %s", body)
	}
	resp, body = f.do(t, "vendor", "POST", "/v1/rules/check?detail=full", strings.NewReader(checkBody("prescribe", "")))
	wantProblem(t, resp, body, 403, "forbidden")
	resp, body = f.do(t, "service", "POST", "/v1/rules/check?detail=full", strings.NewReader(checkBody("prescribe", "")))
	dec = adjudicate.Decision{}
	if resp.StatusCode != 200 || json.Unmarshal(body, &dec) != nil || dec.Eligibility.Coverage == nil || dec.Eligibility.Coverage.InsuranceNumber == "" {
		t.Fatalf("rules check, full detail for the insurer's service: %d %s", resp.StatusCode, body)
	}
}

// TestLookupsArePseudonymous: every lookup is logged with its caller and
// a keyed pseudonym of the national id — the same for the same person
// however the id is typed, different for different persons — and no log
// line holds an id or a run of its digits.
func TestLookupsArePseudonymous(t *testing.T) {
	var logs logbuf.Buffer
	f := setup(t, func(a *rxapi.API) { a.Log = slog.New(slog.NewJSONHandler(&logs, nil)) })
	ids := []string{insuredtest.NationalID(0), insuredtest.NationalID(3), insuredtest.NationalID(1234)}
	persianDigits := func(s string) string { return strings.Map(func(r rune) rune { return '۰' + (r - '0') }, s) }
	for _, id := range ids {
		f.do(t, "vendor", "GET", "/v1/eligibility/"+id, nil)
		f.do(t, "vendor-b", "GET", "/v1/eligibility/"+url.PathEscape(persianDigits(id))+"?date=1405-06-15", nil)
	}
	f.do(t, "service", "POST", "/v1/rules/check?detail=full", strings.NewReader(checkBody("prescribe", "")))
	f.do(t, "vendor", "GET", "/v1/eligibility/"+ids[0][:9]+"x", nil) // invalid: refused, not looked up

	type line struct {
		Msg, Caller, Role, Person, Outcome string
	}
	var lookups []line
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var e line
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if e.Msg == "eligibility lookup" {
			lookups = append(lookups, e)
		}
	}
	// The audit log's pseudonyms (tlog.Pseudonyms), one per person.
	pseudonym := func(id string) string {
		p := rxdtest.Pseudonym(t, id)
		return hex.EncodeToString(p[:])
	}
	want := []line{
		{"eligibility lookup", "vendor-1", "vendor", pseudonym(ids[0]), "eligible"},
		{"eligibility lookup", "vendor-3", "vendor", pseudonym(ids[0]), "eligible"},
		{"eligibility lookup", "vendor-1", "vendor", pseudonym(ids[1]), "eligible"},
		{"eligibility lookup", "vendor-3", "vendor", pseudonym(ids[1]), "eligible"},
		{"eligibility lookup", "vendor-1", "vendor", pseudonym(ids[2]), "no-record"},
		{"eligibility lookup", "vendor-3", "vendor", pseudonym(ids[2]), "no-record"},
		{"eligibility lookup", "insurer-claims", "service", pseudonym(insuredtest.NationalID(0)), "eligible"},
	}
	if len(lookups) != len(want) {
		t.Fatalf("%d lookups logged, want %d:\n%s", len(lookups), len(want), logs.String())
	}
	for i := range want {
		if lookups[i] != want[i] {
			t.Fatalf("lookup %d logged as %+v, want %+v", i+1, lookups[i], want[i])
		}
	}
	// And each in the audit log, under the same pseudonym, by the
	// caller's certificate.
	entries := auditEntries(t, f.log)
	if len(entries) != len(want) {
		t.Fatalf("%d audit entries, want %d", len(entries), len(want))
	}
	for i, e := range entries {
		action := map[bool]string{true: "rules-check", false: "eligibility"}[i == len(want)-1]
		if e.Action != action || hex.EncodeToString(e.Patient[:]) != want[i].Person || e.Actor.Org != want[i].Caller || e.Actor.Role != want[i].Role ||
			e.Outcome != audit.OK || e.Actor.Kind != tlog.ActorCert || len(e.Actor.ID) != 64 {
			t.Fatalf("audit entry %d: %+v, want %+v", i+1, e, want[i])
		}
	}
	out := logs.String()
	for _, id := range append(ids, ids[0][:9]+"x") {
		for _, leak := range append(windows(id, 8), persianDigits(id), "**"+id[8:]) {
			if strings.Contains(out, leak) {
				t.Fatalf("the log holds %q of the national id %s:\n%s", leak, id, out)
			}
		}
	}
}

// windows are the runs of n characters of s.
func windows(s string, n int) []string {
	var w []string
	for i := 0; i+n <= len(s); i++ {
		w = append(w, s[i:i+n])
	}
	return w
}

// auditEntries are the entries appended to the audit log, in order.
func auditEntries(t *testing.T, log *tlogstore.Store) []*tlog.Entry {
	t.Helper()
	rows, err := log.DB().SQL().QueryContext(context.Background(), "SELECT entry FROM tlog_pending ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []*tlog.Entry
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		e, err := tlog.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
