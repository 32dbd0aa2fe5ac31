package httpedge

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count what an Edge serves, for every listener of a process that
// shares them. Labels are bounded: the route pattern (never the path,
// which may hold a national id), the method among the known ones, the
// status code, and the problem type's code (never its detail).
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers the edge's metrics with reg (one process's
// registry; tests that run several daemons give each its own).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nuskha_http_requests_total",
			Help: "HTTP requests answered, by listener, route pattern, method, status code and problem type code (empty when the answer was not a problem document).",
		}, []string{"listener", "route", "method", "code", "problem"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nuskha_http_request_duration_seconds",
			Help:    "Time from a request's arrival at the edge to the end of its answer, by listener, route pattern and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"listener", "route", "method"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

func (m *Metrics) observe(listener string, r *http.Request, req *request, status int, took time.Duration) {
	if m == nil {
		return
	}
	route := req.route
	if route == "" {
		route = "(no route)"
	}
	method := knownMethod(r.Method)
	m.requests.WithLabelValues(listener, route, method, strconv.Itoa(status), string(req.problem)).Inc()
	m.duration.WithLabelValues(listener, route, method).Observe(took.Seconds())
}

// knownMethod is the method as a label: a client may send any token as a
// method, and each would be a series of its own.
func knownMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}
