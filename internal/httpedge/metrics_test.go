package httpedge_test

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/httpedge"
	"github.com/nuskha/nuskha/internal/problem"
)

// TestMetrics: requests are counted by route pattern (never the path,
// which holds the id), by a method among the known ones (a client's
// made-up method is OTHER), by status and by problem code; unrouted ones
// under "(no route)".
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	rt := httpedge.NewRoutes()
	rt.HandleFunc("GET /persons/{nationalId}", func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, r, nil, errs.New(errs.InvalidNID, "bad check digit"))
	})
	srv := httptest.NewServer(httpedge.Edge{Listener: "test", Metrics: httpedge.NewMetrics(reg)}.Handler(rt))
	defer srv.Close()
	for _, c := range []struct{ method, path string }{
		{"GET", "/persons/0012345679"}, {"GET", "/persons/1234567890"}, {"BREW", "/persons/0012345679"}, {"GET", "/elsewhere/0012345679"},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	text := rec.Body.String()
	for _, want := range []string{
		`nuskha_http_requests_total{code="404",listener="test",method="GET",problem="not-found",route="(no route)"} 1`,
		`nuskha_http_requests_total{code="405",listener="test",method="OTHER",problem="method-not-allowed",route="(no route)"} 1`,
		`nuskha_http_requests_total{code="422",listener="test",method="GET",problem="invalid-national-id",route="GET /persons/{nationalId}"} 2`,
		`nuskha_http_request_duration_seconds_count{listener="test",method="GET",route="GET /persons/{nationalId}"} 2`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("no %s in:\n%s", want, text)
		}
	}
	for _, id := range []string{"0012345679", "1234567890", "BREW", "elsewhere"} {
		if strings.Contains(text, id) {
			t.Errorf("the metrics hold %q", id)
		}
	}
}

// TestClassify: a failure internal only because a dependency is down is
// unavailable; a refusal keeps its own code; any other internal failure
// stays internal.
func TestClassify(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want errs.Code
	}{
		{"token gone", errs.Wrap(errs.Internal, errors.Join(errors.New("sign"), hsm.ErrTokenUnavailable), "signing"), errs.Unavailable},
		{"connection refused", errs.Wrap(errs.Internal, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, "reading"), errs.Unavailable},
		{"a refusal", errs.New(errs.Conflict, "taken"), errs.Conflict},
		{"a bug", errors.New("nil map"), errs.Internal},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := errs.CodeOf(httpedge.Classify(c.err)); got != c.want {
				t.Fatalf("%s, want %s", got, c.want)
			}
		})
	}
}
