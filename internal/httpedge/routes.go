package httpedge

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/problem"
)

// Routes is a ServeMux that answers unknown paths and wrong methods with
// problem documents rather than the mux's plain text, caps every request
// body (problem.MaxBody, or the route's own limit), and tells the edge
// which route it matched, for the access log.
type Routes struct {
	mux    *http.ServeMux
	limits map[string]int64
	serve  http.Handler // dispatch, behind the guard if there is one
}

// NewRoutes returns an empty set of routes.
func NewRoutes() *Routes { return GuardedRoutes(nil) }

// GuardedRoutes returns an empty set of routes that passes every request,
// to a route or not, through guard (a daemon's authentication) once its
// route is known: no route can be added without the guard, and a refusal
// is logged with the route it refused.
func GuardedRoutes(guard func(http.Handler) http.Handler) *Routes {
	rt := &Routes{mux: http.NewServeMux(), limits: map[string]int64{}}
	rt.serve = http.HandlerFunc(rt.dispatch)
	if guard != nil {
		rt.serve = guard(rt.serve)
	}
	return rt
}

// Handle routes pattern (a ServeMux pattern) to h, with bodies of at most
// problem.MaxBody bytes.
func (rt *Routes) Handle(pattern string, h http.Handler) {
	rt.HandleLimit(pattern, problem.MaxBody, h)
}

// HandleFunc is Handle for a function.
func (rt *Routes) HandleFunc(pattern string, h http.HandlerFunc) {
	rt.HandleLimit(pattern, problem.MaxBody, h)
}

// HandleLimit routes pattern to h, with bodies of at most limit bytes.
func (rt *Routes) HandleLimit(pattern string, limit int64, h http.Handler) {
	rt.mux.Handle(pattern, h)
	rt.limits[pattern] = limit
}

// Patterns are the patterns routed ("METHOD /path/{name}"), sorted: for
// tests that hold them to a published contract.
func (rt *Routes) Patterns() []string {
	out := make([]string, 0, len(rt.limits))
	for p := range rt.limits {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

func (rt *Routes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, pattern := rt.mux.Handler(r)
	req := from(r.Context())
	if req == nil {
		// Routes served without an Edge (in tests): the limit is still
		// the route's.
		req = &request{}
		r = r.WithContext(context.WithValue(r.Context(), requestKey{}, req))
	}
	req.route, req.limit = pattern, problem.MaxBody
	if pattern != "" {
		req.limit = rt.limits[pattern]
	}
	// For the guard's own refusals (problem.Write logs a 5xx by it); the
	// mux sets it again.
	r.Pattern = pattern
	// With w, a body over the limit also closes the connection once the
	// answer is sent, rather than read on.
	r.Body = http.MaxBytesReader(w, r.Body, req.limit)
	rt.serve.ServeHTTP(w, r)
}

// dispatch serves a request past the guard: to its route, or with a
// problem document.
func (rt *Routes) dispatch(w http.ResponseWriter, r *http.Request) {
	if r.Pattern != "" {
		if err := checkURL(r.URL); err != nil {
			problem.Write(w, r, nil, err)
			return
		}
		// ServeHTTP, not the route's handler: only the mux sets the path
		// values.
		rt.mux.ServeHTTP(w, r)
		return
	}
	h, _ := rt.mux.Handler(r)
	rec := &statusOnly{header: http.Header{}}
	h.ServeHTTP(rec, r)
	if allow := rec.header.Get("Allow"); allow != "" {
		w.Header().Set("Allow", allow)
	}
	if rec.status == http.StatusMethodNotAllowed {
		problem.Write(w, r, nil, errs.New(errs.MethodNotAllowed, "method %s is not allowed on this resource", r.Method))
		return
	}
	// The path is not repeated: it may hold a national id.
	problem.Write(w, r, nil, errs.New(errs.NotFound, "no such resource"))
}

// checkURL refuses a path or query that no route takes: one whose path
// or query values, unescaped, are not UTF-8 text or hold a NUL — no id,
// code or parameter is written so, and PostgreSQL refuses such text
// outright (invalid byte sequence for encoding UTF8): let through, a
// client's %00 or %FF in a path id would be answered as the server's
// failure — and a query naming a parameter twice, which handlers would
// read as its first value and a proxy in front of them perhaps as its
// last. Pairs that do not parse are left to the handler, as Query leaves
// them. The parameter is not named: the query is the client's text, and
// problem documents repeat none of it.
func checkURL(u *url.URL) error {
	if !text(u.Path) {
		return errs.New(errs.Malformed, "the path and query must be UTF-8 text without NUL characters")
	}
	q, _ := url.ParseQuery(u.RawQuery)
	for k, vs := range q {
		if !text(k) || slices.ContainsFunc(vs, func(v string) bool { return !text(v) }) {
			return errs.New(errs.Malformed, "the path and query must be UTF-8 text without NUL characters")
		}
		if len(vs) > 1 {
			return errs.New(errs.Malformed, "each query parameter may be given once")
		}
	}
	return nil
}

func text(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

type statusOnly struct {
	header http.Header
	status int
}

func (s *statusOnly) Header() http.Header         { return s.header }
func (s *statusOnly) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusOnly) WriteHeader(code int)        { s.status = code }

// Limit is the body limit of the request's route: problem.MaxBody when
// it was not routed by Routes.
func Limit(r *http.Request) int64 {
	if req := from(r.Context()); req != nil && req.limit > 0 {
		return req.limit
	}
	return problem.MaxBody
}

// Decode reads the request's JSON body strictly (problem.Decode) within
// its route's limit.
func Decode(r *http.Request, v any) error {
	return problem.Decode(r, Limit(r), v)
}

// Body reads the request's JSON body within its route's limit, for
// handlers that need the bytes as well (then problem.Unmarshal them).
func Body(r *http.Request) ([]byte, error) {
	return problem.Body(r, Limit(r))
}
