// Package httpedge is what both daemons put between the network and their
// handlers, so that trustd's three listeners and rxd behave alike at the
// HTTP edge:
//
//   - request ids: always the server's own, fresh, in the response header
//     and, by problem.Write, in every problem document (a client cannot
//     choose the id its request is logged under, nor make two requests
//     share one); a client's own X-Request-Id, when a safe token, is kept
//     beside it as client_request_id and echoed in X-Client-Request-Id;
//   - an access log: one line per request with the route pattern (never
//     the path, which may hold a national id, nor the query), the status,
//     the time taken, the bytes sent, the caller and the request ids;
//   - panic recovery: a 500 problem document, the stack in the log;
//   - routes (Routes): unknown paths and wrong methods answered with
//     problem documents, and every request body capped, at
//     problem.MaxBody unless the route says otherwise;
//   - TLS (KeyPair, ServerTLS): a server certificate and its key (a key
//     URI through internal/hsm, or a PEM file), refused at start when the
//     key is not the certificate's, under the internal/tlsconf policy.
//
// It is a package of its own rather than more of internal/problem because
// problem is also the client's (rxctl reads and prints problem documents
// with it): the client has no use for middleware, and must not link the
// PKCS#11 code that loading a server key needs.
package httpedge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/problem"
)

// MaxRequestID is the longest client-supplied request id kept.
const MaxRequestID = 64

// ClientRequestIDHeader echoes the client's own request id (its
// X-Request-Id, when kept) in the response.
const ClientRequestIDHeader = "X-Client-Request-Id"

// Anonymous is the caller of a request that authenticated no one.
const Anonymous = "anonymous"

// Edge is one listener's edge: wrap its handler with Handler.
type Edge struct {
	// Log receives the access log, at info level, and recovered panics,
	// at error level; nil logs nothing.
	Log *slog.Logger
	// Listener names the listener in each line, when a daemon has more
	// than one (trustd: admin, public, http); empty leaves it out.
	Listener string
	// Metrics count requests and their latency; nil counts nothing.
	Metrics *Metrics
}

// request is what the edge learns of a request while it is served: the
// route (from Routes), the caller (from the daemon's authentication,
// SetCaller). Each request has its own, filled in by the goroutine
// serving it and read by the same goroutine once it is served.
type request struct {
	id, clientID string
	route        string
	limit        int64
	caller, role string
	problem      errs.Code // of the problem document answered, if one was
}

type requestKey struct{}

func from(ctx context.Context) *request {
	r, _ := ctx.Value(requestKey{}).(*request)
	return r
}

// RequestID is the id of the request ctx belongs to, or "".
func RequestID(ctx context.Context) string {
	if r := from(ctx); r != nil {
		return r.id
	}
	return ""
}

// SetCaller says who the caller of the request is, for the access log:
// the subject id and role of its certificate. A daemon's authentication
// calls it once it has read an identity from a certificate that the TLS
// layer verified, whether or not it then admits the caller.
func SetCaller(ctx context.Context, subjectID, role string) {
	if r := from(ctx); r != nil {
		r.caller, r.role = subjectID, role
	}
}

// Handler wraps h: it gives the request its id, recovers a panic and
// writes the access line.
func (e Edge) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		req := &request{id: newRequestID(), caller: Anonymous}
		// Set before any handler runs: problem.Write copies it into the
		// document, so the two always agree.
		w.Header().Set(problem.RequestIDHeader, req.id)
		if c := r.Header.Get(problem.RequestIDHeader); SafeRequestID(c) {
			req.clientID = c
			w.Header().Set(ClientRequestIDHeader, c)
		}
		ctx := context.WithValue(r.Context(), requestKey{}, req)
		if e.Metrics != nil {
			ctx = problem.WithNote(ctx, func(c errs.Code) { req.problem = c })
		}
		r = r.WithContext(ctx)
		rec := &recorder{ResponseWriter: w}
		defer func() {
			p := recover()
			if p != nil && p != http.ErrAbortHandler {
				e.panicked(r, req, p)
				if !rec.wroteHeader {
					// The document's instance is the route, as the
					// access log has it (a guard's copy of the request
					// may have had it set, not this one).
					routed := r.WithContext(r.Context())
					routed.Pattern = req.route
					problem.Write(rec, routed, nil, errs.New(errs.Internal, "panic"))
					p = nil
				} else {
					// Part of an answer has gone: cut the connection
					// rather than let it pass for a whole one.
					p = http.ErrAbortHandler
				}
			}
			took := time.Since(start)
			e.access(r, req, rec, took)
			listener := e.Listener
			if listener == "" {
				listener = "main"
			}
			e.Metrics.observe(listener, r, req, rec.status(), took)
			if p != nil {
				panic(p)
			}
		}()
		h.ServeHTTP(rec, r)
	})
}

func (e Edge) access(r *http.Request, req *request, rec *recorder, took time.Duration) {
	if e.Log == nil {
		return
	}
	route := req.route
	if route == "" {
		route = "(no route)"
	}
	attrs := make([]slog.Attr, 0, 10)
	if e.Listener != "" {
		attrs = append(attrs, slog.String("listener", e.Listener))
	}
	attrs = append(attrs, slog.String("method", r.Method), slog.String("route", route), slog.Int("status", rec.status()),
		slog.Float64("ms", float64(took.Microseconds())/1000), slog.Int64("bytes", rec.bytes), slog.String("caller", req.caller))
	if req.role != "" {
		attrs = append(attrs, slog.String("role", req.role))
	}
	attrs = append(attrs, slog.String("remote", r.RemoteAddr), slog.String("request_id", req.id))
	if req.clientID != "" {
		attrs = append(attrs, slog.String("client_request_id", req.clientID))
	}
	e.Log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
}

// panicked logs a recovered panic with its stack: the route and the
// request id, never the path, the query or the body.
func (e Edge) panicked(r *http.Request, req *request, p any) {
	if e.Log == nil {
		return
	}
	var attrs []slog.Attr
	if e.Listener != "" {
		attrs = append(attrs, slog.String("listener", e.Listener))
	}
	attrs = append(attrs, slog.String("method", r.Method), slog.String("route", req.route), slog.String("request_id", req.id))
	if req.clientID != "" {
		attrs = append(attrs, slog.String("client_request_id", req.clientID))
	}
	attrs = append(attrs, slog.String("panic", fmt.Sprint(p)), slog.String("stack", string(debug.Stack())))
	e.Log.LogAttrs(r.Context(), slog.LevelError, "panic serving a request", attrs...)
}

// newRequestID is a fresh random request id.
func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail (Go 1.24)
	return hex.EncodeToString(b)
}

// SafeRequestID says whether a client's request id is kept (as
// client_request_id): 1 to MaxRequestID of A-Z a-z 0-9 . _ -, nothing that
// could forge a log line or smuggle a header.
func SafeRequestID(s string) bool {
	if s == "" || len(s) > MaxRequestID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// recorder notes the status and the bytes of the answer.
type recorder struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
	bytes       int64
}

func (w *recorder) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 {
		w.code, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.code, w.wroteHeader = http.StatusOK, true
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *recorder) status() int {
	if !w.wroteHeader {
		// A handler that wrote nothing: net/http sends 200.
		return http.StatusOK
	}
	return w.code
}

// Unwrap lets http.ResponseController reach the connection's writer
// (flushing, deadlines).
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// MaxHeaderBytes bounds a request's header on every listener of rxd and
// trustd. Their clients send a bearer token, a claim secret, an
// Idempotency-Key and a request id, each under a hundred bytes, or an OCSP
// request in the URL; net/http's default (a megabyte) would let each
// connection the caps admit hold that much for ReadHeaderTimeout. Larger
// is refused 431.
const MaxHeaderBytes = 16 << 10
