// Package observe is what an operator watches a daemon by, apart from its
// logs: a Prometheus registry per process, the operations listener that
// serves it (/metrics) beside liveness (/healthz) and readiness (/readyz),
// readiness checks that mean something, and instrumentation of what both
// daemons share (signing keys, the database pool).
//
// Nothing here may expose personal data: label values are route patterns,
// problem codes, key purposes, province codes and versions — never a
// national id, a name, a path or a detail. The operations listener is
// plain HTTP and meant for loopback (or a management network): it serves
// no credential-bearing route and needs none.
package observe

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nuskha/nuskha/internal/buildinfo"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/httpedge"
	"github.com/nuskha/nuskha/internal/problem"
)

// NewRegistry returns a registry for one daemon process: the Go runtime's
// and the process's collectors, and nuskha_build_info naming the build.
// Each process (and each daemon a test runs) has its own: nothing is
// registered globally.
func NewRegistry(daemon string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	bi := buildinfo.Read()
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "nuskha_build_info",
		Help:        "The build serving: always 1, its version, commit and Go version as labels.",
		ConstLabels: prometheus.Labels{"daemon": daemon, "version": bi.Version, "revision": bi.Commit, "goversion": bi.GoVersion},
	})
	info.Set(1)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), info)
	return reg
}

// DB registers the pool's statistics (database/sql's DBStats: open, in
// use, idle connections, waits) as go_sql_* with db_name set to name.
func DB(reg prometheus.Registerer, db *sql.DB, name string) {
	reg.MustRegister(collectors.NewDBStatsCollector(db, name))
}

// Commits returns a function that records a commit's duration in
// nuskha_db_commit_duration_seconds (for sqlstore.DB.ObserveCommits).
func Commits(reg prometheus.Registerer) func(time.Duration) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "nuskha_db_commit_duration_seconds",
		Help:    "Time each database transaction's commit took: where a durable write waits for the disk (and, with synchronous replication, the standby).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	})
	reg.MustRegister(h)
	return func(d time.Duration) { h.Observe(d.Seconds()) }
}

// Info registers an info gauge: name with help, always 1, whose labels
// are what label returns at each scrape (a rule set's version and digest,
// the catalogue in force): what is in force now, not what was at start.
func Info(reg prometheus.Registerer, name, help string, labels []string, label func() []string) {
	reg.MustRegister(&infoCollector{desc: prometheus.NewDesc(name, help, labels, nil), label: label})
}

type infoCollector struct {
	desc  *prometheus.Desc
	label func() []string
}

func (c *infoCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c *infoCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, c.label()...)
}

// Check is one readiness check. Run returns nil when what it checks can
// be used now. A failure's errs detail is shown in /readyz (write it
// without secrets); its cause goes to the log only.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
}

// CheckTimeout bounds each readiness check: a dependency that takes
// longer is as good as down for the requests that would wait on it.
const CheckTimeout = 2 * time.Second

// Readiness answers /readyz: every check, run concurrently, each within
// CheckTimeout. 200 with each check's "ok" when all pass; else 503, a
// problem document (code unavailable) that lists every check with what
// failed.
//
// On the operations listener (loopback or a management network) every
// request runs the checks. On a daemon's public listener, answered
// without a credential, Public serves them at most once per ReadyFor,
// whoever asks and however often: each run signs with a key in the HSM
// and takes the database's write lock, which nobody on the network may
// make happen at will.
type Readiness struct {
	Checks []Check
	Log    *slog.Logger

	mu      sync.Mutex // held while Public's run runs: one at a time
	ranAt   time.Time
	results []CheckResult
	// Now is Public's clock (time.Now when nil).
	Now func() time.Time
}

// ReadyFor is how long one run of the checks answers Public's /readyz.
const ReadyFor = time.Second

// Public answers /readyz from a run of the checks at most ReadyFor old.
func (rd *Readiness) Public() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rd.answer(w, rd.recent(r.Context())) })
}

// recent is the results of a run at most ReadyFor old, made now if there
// is none; concurrent callers wait for one run.
func (rd *Readiness) recent(ctx context.Context) []CheckResult {
	now := time.Now
	if rd.Now != nil {
		now = rd.Now
	}
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if rd.results != nil && now().Sub(rd.ranAt) < ReadyFor {
		return rd.results
	}
	// The run answers others too: not cut short by this caller leaving.
	rd.results, rd.ranAt = rd.Run(context.WithoutCancel(ctx)), now()
	return rd.results
}

// CheckResult is one check's outcome in /readyz.
type CheckResult struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// NotReady is /readyz's 503 answer: a problem document with the checks.
type NotReady struct {
	problem.Problem
	Checks []CheckResult `json:"checks"`
}

// Run runs every check, concurrently, and returns their results in order.
func (rd *Readiness) Run(ctx context.Context) []CheckResult {
	out := make([]CheckResult, len(rd.Checks))
	var wg sync.WaitGroup
	for i, c := range rd.Checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, CheckTimeout)
			defer cancel()
			err := c.Run(cctx)
			out[i] = CheckResult{Name: c.Name, OK: err == nil}
			if err != nil {
				out[i].Detail = "failed"
				if errs.CodeOf(err) != errs.Internal {
					out[i].Detail = problem.From(err).Detail
				}
				if rd.Log != nil {
					rd.Log.WarnContext(ctx, "readiness check failed", "check", c.Name, "err", err)
				}
			}
		})
	}
	wg.Wait()
	return out
}

// ServeHTTP answers /readyz on the operations listener: the checks, now.
func (rd *Readiness) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rd.answer(w, rd.Run(r.Context()))
}

func (rd *Readiness) answer(w http.ResponseWriter, results []CheckResult) {
	var failed []string
	for _, c := range results {
		if !c.OK {
			failed = append(failed, c.Name)
		}
	}
	if len(failed) == 0 {
		problem.JSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": results})
		return
	}
	p := problem.From(errs.New(errs.Unavailable, "not ready: %v", failed))
	p.Instance, p.RequestID = "/readyz", w.Header().Get(problem.RequestIDHeader)
	w.Header().Set("Retry-After", problem.RetryAfter)
	w.Header().Set("Content-Type", problem.ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = jsonEncode(w, NotReady{Problem: p, Checks: results})
}

// Handler is the operations listener's: GET /metrics (the registry, in
// the Prometheus text format), GET /healthz (liveness: the process
// serves HTTP; it checks nothing else, so that a dependency being down
// does not get the process restarted) and GET /readyz (ready).
func Handler(reg *prometheus.Registry, ready http.Handler, log *slog.Logger) http.Handler {
	rt := httpedge.NewRoutes()
	rt.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(discardIfNil(log).Handler(), slog.LevelError), Registry: reg}))
	rt.HandleFunc("GET /healthz", Live)
	rt.Handle("GET /readyz", ready)
	// No access log: a scrape every few seconds would drown the requests.
	return httpedge.Edge{Listener: "ops"}.Handler(rt)
}

// Live answers liveness: {"status": "ok"}.
func Live(w http.ResponseWriter, _ *http.Request) {
	problem.JSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func discardIfNil(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// Signers instrument signing keys (in the HSM, or in files): how long each
// signature takes, how many fail, and whether the key's token answered
// its last signature.
type Signers struct {
	latency  *prometheus.HistogramVec
	failures *prometheus.CounterVec
	up       *prometheus.GaugeVec
}

// NewSigners registers the signing metrics with reg.
func NewSigners(reg prometheus.Registerer) *Signers {
	s := &Signers{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nuskha_hsm_sign_duration_seconds",
			Help:    "Time each signature took with a signing key, by the key's purpose.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"key"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nuskha_hsm_sign_failures_total",
			Help: "Signatures that failed, by the key's purpose.",
		}, []string{"key"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "nuskha_hsm_token_up",
			Help: "1 when the key's last signature (or readiness probe) succeeded, 0 when it failed: the token is absent or not answering.",
		}, []string{"key"}),
	}
	reg.MustRegister(s.latency, s.failures, s.up)
	return s
}

// Wrap returns signer measured under the purpose key (a fixed name such
// as "exchange" or "ocsp", never a URI). It signs exactly as signer does.
func (s *Signers) Wrap(key string, signer crypto.Signer) crypto.Signer {
	if s == nil || signer == nil {
		return signer
	}
	s.up.WithLabelValues(key).Set(1)
	return &measured{Signer: signer, latency: s.latency.WithLabelValues(key), failures: s.failures.WithLabelValues(key), up: s.up.WithLabelValues(key)}
}

type measured struct {
	crypto.Signer
	latency  prometheus.Observer
	failures prometheus.Counter
	up       prometheus.Gauge
}

// InProcess passes on what the measured key says of itself: a key that
// signs in this process's memory is not checked for a token's faults
// (rx.Verifier.Sign), and measuring it must not make it look like a token.
func (m *measured) InProcess() bool {
	k, ok := m.Signer.(interface{ InProcess() bool })
	return ok && k.InProcess()
}

func (m *measured) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	start := time.Now()
	sig, err := m.Signer.Sign(r, digest, opts)
	m.latency.Observe(time.Since(start).Seconds())
	if err != nil {
		m.failures.Inc()
		m.up.Set(0)
		return nil, err
	}
	m.up.Set(1)
	return sig, nil
}

// SignerCheck is a readiness check that the key signs now: one signature
// over a random digest (a cheap PKCS#11 call, ~0.1 ms on a token), which
// also reconnects to a token that came back. Give it the wrapped signer,
// so that the probe keeps nuskha_hsm_token_up current when there is no
// traffic.
func SignerCheck(name string, signer crypto.Signer) Check {
	return Check{Name: name, Run: func(context.Context) error {
		msg := make([]byte, 32)
		_, _ = rand.Read(msg)
		d := sha256.Sum256(msg)
		if _, err := signer.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
			return errs.Wrap(errs.Unavailable, err, "%s: the key does not sign: its token is absent or not answering", name)
		}
		return nil
	}}
}

func jsonEncode(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
