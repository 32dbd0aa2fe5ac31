package httpedge_test

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/httpedge"
	"github.com/nuskha/nuskha/internal/problem"
	"github.com/nuskha/nuskha/internal/testutil/logbuf"
)

// serve is a listener's edge in front of a few routes, logging to logs.
func serve(t *testing.T, logs io.Writer) *httptest.Server {
	t.Helper()
	rt := httpedge.NewRoutes()
	rt.HandleFunc("GET /things/{id}", func(w http.ResponseWriter, r *http.Request) {
		httpedge.SetCaller(r.Context(), "vendor-1", "vendor")
		_, _ = w.Write([]byte(r.PathValue("id")))
	})
	rt.HandleFunc("POST /small", func(w http.ResponseWriter, r *http.Request) {
		var v struct{ A string }
		if err := httpedge.Decode(r, &v); err != nil {
			problem.Write(w, r, nil, err)
			return
		}
		problem.JSON(w, http.StatusOK, v)
	})
	rt.HandleLimit("POST /large", 4*problem.MaxBody, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := httpedge.Body(r)
		if err != nil {
			problem.Write(w, r, nil, err)
			return
		}
		problem.JSON(w, http.StatusOK, map[string]int{"bytes": len(b)})
	}))
	rt.HandleFunc("GET /panic", func(w http.ResponseWriter, r *http.Request) {
		var found []string
		_, _ = w.Write([]byte(found[len(r.URL.Path)])) // a bug, not a deliberate panic; nothing written
	})
	rt.HandleFunc("GET /panic-late", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("half an answer"))
		w.(http.Flusher).Flush()
		panic("after the header")
	})
	srv := httptest.NewServer(httpedge.Edge{Log: slog.New(slog.NewJSONHandler(logs, nil)), Listener: "test"}.Handler(rt))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, method, path, requestID, body string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if requestID != "" {
		req.Header.Set(problem.RequestIDHeader, requestID)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// lines are the JSON log lines with message msg.
func lines(t *testing.T, logs string, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("a log line that is not JSON: %s", sc.Text())
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

var fresh = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestRequestIDs(t *testing.T) {
	var logs logbuf.Buffer
	srv := serve(t, &logs)
	for _, tc := range []struct {
		name, client string
		kept         bool
	}{
		{"none", "", false},
		{"a safe token", "vendor-42.req_7", true},
		{"the longest kept", strings.Repeat("a", httpedge.MaxRequestID), true},
		{"too long", strings.Repeat("a", httpedge.MaxRequestID+1), false},
		{"a space", "two words", false},
		{"a quote", `x"y`, false},
		{"a forged log line", "x\\n{\"msg\":\"request\"}", false},
		{"non-ASCII", "درخواست", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// An unknown path: the problem document carries the id too.
			resp, body := get(t, srv, "GET", "/nothing", tc.client, "")
			// The server's id is always its own; the client's is kept
			// beside it.
			got, echoed := resp.Header.Get(problem.RequestIDHeader), resp.Header.Get(httpedge.ClientRequestIDHeader)
			if !fresh.MatchString(got) || tc.kept && echoed != tc.client || !tc.kept && echoed != "" {
				t.Fatalf("client id %q answered with %q and %s %q", tc.client, got, httpedge.ClientRequestIDHeader, echoed)
			}
			var p problem.Problem
			if json.Unmarshal(body, &p) != nil || p.RequestID != got || p.Code != "not-found" {
				t.Fatalf("problem %s, want request_id %q", body, got)
			}
			found := false
			for _, l := range lines(t, logs.String(), "request") {
				client, logged := l["client_request_id"]
				found = found || l["request_id"] == got && (tc.kept && client == tc.client || !tc.kept && !logged)
			}
			if !found {
				t.Fatalf("no access line with request_id %q:\n%s", got, logs.String())
			}
		})
	}
	a, _ := get(t, srv, "GET", "/things/1", "", "")
	b, _ := get(t, srv, "GET", "/things/1", "", "")
	if a.Header.Get(problem.RequestIDHeader) == b.Header.Get(problem.RequestIDHeader) {
		t.Fatal("two requests were given the same id")
	}
}

// TestAccessLog: one line per request, by route pattern, never the path
// or the query; the caller when one was set, else anonymous.
func TestAccessLog(t *testing.T) {
	var logs logbuf.Buffer
	srv := serve(t, &logs)
	get(t, srv, "GET", "/things/0499370899?nid=1234567891", "r1", "")
	get(t, srv, "PUT", "/things/7", "r2", "")
	get(t, srv, "POST", "/small", "r3", `{"A":"x"}`)
	out := logs.String()
	for _, secret := range []string{"0499370899", "1234567891", "nid"} {
		if strings.Contains(out, secret) {
			t.Fatalf("the log holds %q:\n%s", secret, out)
		}
	}
	got := lines(t, out, "request")
	if len(got) != 3 {
		t.Fatalf("%d access lines for 3 requests:\n%s", len(got), out)
	}
	for i, want := range []map[string]any{
		{"listener": "test", "method": "GET", "route": "GET /things/{id}", "status": 200.0, "bytes": 10.0, "caller": "vendor-1", "role": "vendor", "client_request_id": "r1"},
		{"listener": "test", "method": "PUT", "route": "(no route)", "status": 405.0, "caller": "anonymous", "client_request_id": "r2"},
		{"listener": "test", "method": "POST", "route": "POST /small", "status": 200.0, "caller": "anonymous", "client_request_id": "r3"},
	} {
		for k, v := range want {
			if got[i][k] != v {
				t.Errorf("line %d: %s = %v, want %v", i, k, got[i][k], v)
			}
		}
		if _, ok := got[i]["ms"].(float64); !ok {
			t.Errorf("line %d has no duration: %v", i, got[i])
		}
		if r, _ := got[i]["remote"].(string); !strings.HasPrefix(r, "127.0.0.1:") {
			t.Errorf("line %d: remote %q", i, r)
		}
		if _, ok := got[i]["role"]; ok && got[i]["caller"] == "anonymous" {
			t.Errorf("line %d: an anonymous caller with a role", i)
		}
	}
}

func TestPanicRecovered(t *testing.T) {
	var logs logbuf.Buffer
	srv := serve(t, &logs)
	resp, body := get(t, srv, "GET", "/panic", "p1", "")
	var p problem.Problem
	if resp.StatusCode != 500 || resp.Header.Get("Content-Type") != problem.ContentType || json.Unmarshal(body, &p) != nil ||
		p.Code != "internal" || p.RequestID != resp.Header.Get(problem.RequestIDHeader) || strings.Contains(string(body), "index out of range") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	panics := lines(t, logs.String(), "panic serving a request")
	if len(panics) != 1 || panics[0]["route"] != "GET /panic" || panics[0]["request_id"] != p.RequestID || panics[0]["client_request_id"] != "p1" ||
		!strings.Contains(panics[0]["panic"].(string), "index out of range") || !strings.Contains(panics[0]["stack"].(string), "edge_test.go") {
		t.Fatalf("panic log:\n%s", logs.String())
	}
	access := lines(t, logs.String(), "request")
	if len(access) != 1 || access[0]["status"] != 500.0 {
		t.Fatalf("access log:\n%s", logs.String())
	}
	// The server goes on serving.
	if resp, _ := get(t, srv, "GET", "/things/1", "", ""); resp.StatusCode != 200 {
		t.Fatalf("after a panic: %d", resp.StatusCode)
	}
	// After part of an answer has gone, the connection is cut: the client
	// sees a broken answer, never a whole one.
	// (On a connection of its own: Go's client sends a GET again when a
	// connection it reused breaks.)
	req, _ := http.NewRequest("GET", srv.URL+"/panic-late", nil)
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("a panic after the header was sent ended in a whole answer")
	}
	if n := len(lines(t, logs.String(), "panic serving a request")); n != 2 {
		t.Fatalf("%d panics logged, want 2:\n%s", n, logs.String())
	}
}

// TestRoutes: unknown paths and wrong methods are problem documents;
// bodies are capped at MaxBody unless the route says otherwise.
func TestRoutes(t *testing.T) {
	srv := serve(t, io.Discard)
	big := `{"A":"` + strings.Repeat("x", problem.MaxBody) + `"}`
	for _, tc := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"GET", "/things/42", "", 200, "42"},
		{"GET", "/things/%E2%80%8B", "", 200, "\u200b"},
		{"GET", "/things/%00", "", 400, `"code":"malformed-request"`},
		{"GET", "/things/a%FFb", "", 400, `"code":"malformed-request"`},
		{"GET", "/things/%C0%AF", "", 400, `"code":"malformed-request"`},
		{"GET", "/things/42?q=%00", "", 400, `"code":"malformed-request"`},
		{"GET", "/things/42?%FF=1", "", 400, `"code":"malformed-request"`},
		{"GET", "/nothing/%00", "", 404, `"code":"not-found"`},
		{"GET", "/things/42?q=a&r=b", "", 200, "42"},
		{"GET", "/things/42?q=a&q=b", "", 400, `each query parameter may be given once`},
		{"GET", "/things/42?q=a&q=a", "", 400, `each query parameter may be given once`},
		{"GET", "/nothing", "", 404, `"code":"not-found"`},
		{"POST", "/things/42", "", 405, `"code":"method-not-allowed"`},
		{"POST", "/small", `{"A":"x"}`, 200, `"x"`},
		{"POST", "/small", big, 413, `"code":"request-too-large"`},
		{"POST", "/large", big, 200, `"bytes"`},
		{"POST", "/large", `{"A":"` + strings.Repeat("x", 4*problem.MaxBody) + `"}`, 413, `body larger than 262144 bytes`},
	} {
		resp, body := get(t, srv, tc.method, tc.path, "", tc.body)
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.want) {
			t.Fatalf("%s %s: %d %.200s", tc.method, tc.path, resp.StatusCode, body)
		}
		if tc.status >= 400 && resp.Header.Get("Content-Type") != problem.ContentType {
			t.Fatalf("%s %s: content type %q", tc.method, tc.path, resp.Header.Get("Content-Type"))
		}
		if tc.status == 405 && resp.Header.Get("Allow") == "" {
			t.Fatalf("%s %s: no Allow header", tc.method, tc.path)
		}
	}
}

// TestGuardedRoutes: the guard sees every request, to a route or not,
// once its route is known: a refusal is logged with the route it refused,
// and an unknown path is not answered before the guard has run.
func TestGuardedRoutes(t *testing.T) {
	guard := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Test-Officer") == "" {
				problem.Write(w, r, nil, errs.New(errs.Unauthorized, "no officer"))
				return
			}
			httpedge.SetCaller(r.Context(), r.Header.Get("X-Test-Officer"), "officer")
			next.ServeHTTP(w, r)
		})
	}
	rt := httpedge.GuardedRoutes(guard)
	rt.HandleFunc("GET /things/{id}", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(r.PathValue("id"))) })
	var logs logbuf.Buffer
	srv := httptest.NewServer(httpedge.Edge{Log: slog.New(slog.NewJSONHandler(&logs, nil))}.Handler(rt))
	defer srv.Close()
	for _, tc := range []struct {
		path, officer string
		status        int
		line          string
	}{
		{"/things/7", "", 401, `"route":"GET /things/{id}","status":401,"ms":`},
		{"/things/7", "off-1", 200, `"route":"GET /things/{id}","status":200,"ms":`},
		{"/nothing", "", 401, `"route":"(no route)","status":401,"ms":`},
		{"/nothing", "off-1", 404, `"route":"(no route)","status":404,"ms":`},
	} {
		req, _ := http.NewRequest("GET", srv.URL+tc.path, nil)
		if tc.officer != "" {
			req.Header.Set("X-Test-Officer", tc.officer)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Fatalf("%s as %q: %d %s", tc.path, tc.officer, resp.StatusCode, body)
		}
		last := lines(t, logs.String(), "request")
		got, _ := json.Marshal(last[len(last)-1])
		if !strings.Contains(logs.String(), tc.line) || tc.officer != "" && last[len(last)-1]["caller"] != tc.officer {
			t.Fatalf("%s as %q: access line %s", tc.path, tc.officer, got)
		}
	}
}

// TestProblemsHoldNoPath: the problem documents the edge writes itself (a
// panic, an unknown path, a wrong method) and those a handler writes have
// the route as their instance, or none, never the path: it may hold a
// national id.
func TestProblemsHoldNoPath(t *testing.T) {
	const nid = "1000000036"
	rt := httpedge.NewRoutes()
	rt.HandleFunc("GET /v1/eligibility/{nationalId}", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("fail") != "" {
			problem.Write(w, r, nil, errs.New(errs.NotFound, "not insured"))
			return
		}
		panic("a bug")
	})
	srv := httptest.NewServer(httpedge.Edge{}.Handler(rt))
	defer srv.Close()
	for _, tc := range []struct {
		method, path string
		status       int
		instance     string
	}{
		{"GET", "/v1/eligibility/" + nid, 500, "/v1/eligibility/{nationalId}"},
		{"GET", "/v1/eligibility/" + nid + "?fail=1", 404, "/v1/eligibility/{nationalId}"},
		{"POST", "/v1/eligibility/" + nid, 405, ""},
		{"GET", "/v1/eligibility/" + nid + "/more", 404, ""},
	} {
		resp, body := get(t, srv, tc.method, tc.path, "", "")
		var p problem.Problem
		if resp.StatusCode != tc.status || json.Unmarshal(body, &p) != nil || p.Instance != tc.instance || strings.Contains(string(body), nid) {
			t.Errorf("%s %s: %d %s; want %d with instance %q and no national id", tc.method, tc.path, resp.StatusCode, body, tc.status, tc.instance)
		}
	}
}
