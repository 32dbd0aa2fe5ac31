package rxd

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/observe"
	"github.com/nuskha/nuskha/internal/persian"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/revocation"
	"github.com/nuskha/nuskha/internal/rules"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/rxapi"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
)

// meteredVerifier counts the documents the exchange verifies by kind and
// outcome: ok, or the refusal's code (a bounded set: errs codes).
type meteredVerifier struct {
	exchange.SigningVerifier
	outcomes *prometheus.CounterVec
}

func newVerifications(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nuskha_rx_verifications_total",
		Help: "Signed documents verified by the exchange, by document kind and outcome: ok, or the refusal's problem code.",
	}, []string{"kind", "outcome"})
	reg.MustRegister(c)
	return c
}

func (m meteredVerifier) Verify(ctx context.Context, token string, want rx.Kind) (*rx.Verified, error) {
	v, err := m.SigningVerifier.Verify(ctx, token, want)
	outcome := "ok"
	if err != nil {
		outcome = string(errs.CodeOf(err))
	}
	m.outcomes.WithLabelValues(string(want), outcome).Inc()
	return v, err
}

// meteredExchange counts what the exchange accepted, by kind (electronic
// or paper) and province: the practice's, as the prescription gives it,
// else the signer's (a pharmacy's certificate carries its province). A
// province is an ISO 3166-2:IR code, 32 values at most; anything else is
// counted as "unknown". Replays are not counted again.
type meteredExchange struct {
	rxapi.Exchange
	arc                   pki.Arc
	accepted, dispensesTo *prometheus.CounterVec

	mu        sync.Mutex
	provinces map[[sha256.Size]byte]string // signerProvince's, by SHA-256 of x5c[0]
}

func newMeteredExchange(reg prometheus.Registerer, x rxapi.Exchange, arc pki.Arc) *meteredExchange {
	m := &meteredExchange{Exchange: x, arc: arc, provinces: map[[sha256.Size]byte]string{},
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nuskha_exchange_prescriptions_accepted_total",
			Help: "Prescriptions the exchange accepted (replays not counted), by kind (electronic, or paper entered at a pharmacy) and province.",
		}, []string{"kind", "province"}),
		dispensesTo: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nuskha_exchange_dispenses_total",
			Help: "Dispenses the exchange recorded (replays not counted), by kind of prescription (a paper one is dispensed as it is entered) and the dispenser's province.",
		}, []string{"kind", "province"}),
	}
	reg.MustRegister(m.accepted, m.dispensesTo)
	return m
}

func (m *meteredExchange) Prescribe(ctx context.Context, caller exchange.Caller, jws string) (*exchange.PrescriptionAccepted, bool, error) {
	ans, replay, err := m.Exchange.Prescribe(ctx, caller, jws)
	if err == nil && !replay {
		m.accepted.WithLabelValues("electronic", m.province(jws)).Inc()
	}
	return ans, replay, err
}

func (m *meteredExchange) Paper(ctx context.Context, caller exchange.Caller, jws string) (*exchange.PaperAccepted, bool, error) {
	ans, replay, err := m.Exchange.Paper(ctx, caller, jws)
	if err == nil && !replay {
		p := m.province(jws)
		m.accepted.WithLabelValues("paper", p).Inc()
		m.dispensesTo.WithLabelValues("paper", p).Inc()
	}
	return ans, replay, err
}

func (m *meteredExchange) Dispense(ctx context.Context, actor *exchange.Actor, claimID, claimSecret, jws string) (*exchange.DispenseAccepted, bool, error) {
	ans, replay, err := m.Exchange.Dispense(ctx, actor, claimID, claimSecret, jws)
	if err == nil && !replay {
		m.dispensesTo.WithLabelValues("electronic", m.province(jws)).Inc()
	}
	return ans, replay, err
}

var reProvince = regexp.MustCompile(`^IR-(0[0-9]|[12][0-9]|30)$`)

// province reads, from a document the exchange has just verified and
// accepted, the practice's province or else its signer's.
func (m *meteredExchange) province(jws string) string {
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return "unknown"
	}
	var body struct {
		Practice *struct {
			Province string `json:"province"`
		} `json:"practice"`
	}
	if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil && json.Unmarshal(b, &body) == nil && body.Practice != nil && reProvince.MatchString(body.Practice.Province) {
		return body.Practice.Province
	}
	var header struct {
		X5C []string `json:"x5c"`
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || json.Unmarshal(b, &header) != nil || len(header.X5C) == 0 {
		return "unknown"
	}
	return m.signerProvince(header.X5C[0])
}

// signerProvince is the province a signer's certificate (base64 DER, as
// x5c gives it) names. Each signer's is read once: parsing a certificate
// for every prescription cost more than the rest of the counting.
func (m *meteredExchange) signerProvince(leaf string) string {
	// By the certificate's hash: a country's signers' certificates would
	// hold hundreds of MB.
	key := sha256.Sum256([]byte(leaf))
	m.mu.Lock()
	p, ok := m.provinces[key]
	m.mu.Unlock()
	if ok {
		return p
	}
	p = "unknown"
	if der, err := base64.StdEncoding.DecodeString(leaf); err == nil {
		if cert, err := x509.ParseCertificate(der); err == nil {
			if id, err := m.arc.IdentityOf(cert); err == nil && reProvince.MatchString(id.Province) {
				p = id.Province
			}
		}
	}
	m.mu.Lock()
	if len(m.provinces) >= maxProvinceCache {
		clear(m.provinces) // a new signer's next document parses again
	}
	m.provinces[key] = p
	m.mu.Unlock()
	return p
}

// maxProvinceCache bounds the signers whose province is remembered: a
// country's pharmacies and practices, with room to spare.
const maxProvinceCache = 1 << 17

// evidence exports how old the revocation evidence rxd relies on is, and
// how its fetches fare.
type evidence struct {
	checker *revocation.Checker
	now     func() time.Time
	age     *prometheus.Desc
	fetches *prometheus.Desc
}

func registerEvidence(reg prometheus.Registerer, c *revocation.Checker, now func() time.Time) {
	reg.MustRegister(&evidence{checker: c, now: now,
		age: prometheus.NewDesc("nuskha_revocation_evidence_age_seconds",
			"Seconds since rxd last fetched good revocation evidence of this kind (ocsp: an OCSP answer about a caller's or signer's certificate; arl: the root's authority revocation list); absent until the first.",
			[]string{"kind"}, nil),
		fetches: prometheus.NewDesc("nuskha_revocation_fetches_total",
			"Fetches of revocation evidence, by kind and result (ok, error: unreachable, refused, stale or not verifying).",
			[]string{"kind", "result"}, nil),
	})
}

func (e *evidence) Describe(ch chan<- *prometheus.Desc) { ch <- e.age; ch <- e.fetches }

func (e *evidence) Collect(ch chan<- prometheus.Metric) {
	now := e.now()
	for _, f := range e.checker.Fetched() {
		if !f.LastOK.IsZero() {
			ch <- prometheus.MustNewConstMetric(e.age, prometheus.GaugeValue, now.Sub(f.LastOK).Seconds(), f.Kind)
		}
		ch <- prometheus.MustNewConstMetric(e.fetches, prometheus.CounterValue, float64(f.OK), f.Kind, "ok")
		ch <- prometheus.MustNewConstMetric(e.fetches, prometheus.CounterValue, float64(f.Failed), f.Kind, "error")
	}
}

// registerInForce exports the rule set and the catalogue version in force
// as info gauges, read at each scrape.
func registerInForce(reg prometheus.Registerer, engine *rules.Engine, cat rxapi.Catalogue, now func() time.Time) {
	observe.Info(reg, "nuskha_rules_info", "The rule set in force: always 1, its version label and the SHA-256 of its file.",
		[]string{"version", "digest"}, func() []string {
			s := engine.Current()
			return []string{s.Version(), s.Digest()}
		})
	observe.Info(reg, "nuskha_catalogue_info", "The coding catalogue version in force today: always 1, its id and label (none: no version is in force).",
		[]string{"id", "label"}, func() []string {
			ctx, cancel := context.WithTimeout(context.Background(), observe.CheckTimeout)
			defer cancel()
			v, err := cat.At(ctx, persian.Day(now()))
			if err != nil {
				return []string{"none", ""}
			}
			return []string{v.ID, v.Label}
		})
}

// readiness is what /readyz checks in rxd: the database answers and takes
// writes; the rule set is loaded; the exchange's key signs; and the
// revocation evidence about the exchange's own certificate is fresh
// (checked as the exchange checks it before signing: OCSP, and the
// root's ARL, within -status-max-age) — without it no acknowledgement or
// receipt is signed. The last two only when rxd serves the exchange.
func readiness(db *sqlstore.DB, engine *rules.Engine, key crypto.Signer, chain []*x509.Certificate, anchors []*x509.Certificate, status *revocation.Checker) []observe.Check {
	checks := []observe.Check{
		{Name: "database", Run: func(ctx context.Context) error {
			if err := db.Writable(ctx); err != nil {
				return errs.Wrap(errs.Unavailable, err, "the database does not answer, or does not take writes (a read-only standby)")
			}
			return nil
		}},
		{Name: "rules", Run: func(context.Context) error {
			if s := engine.Current(); s == nil || len(s.Rules()) == 0 {
				return errs.New(errs.Unavailable, "no rule set is loaded")
			}
			return nil
		}},
	}
	if key == nil {
		return checks
	}
	checks = append(checks, observe.SignerCheck("exchange-key", key), observe.Check{Name: "revocation", Run: func(ctx context.Context) error {
		full := append(append([]*x509.Certificate{}, chain...), rootOf(chain, anchors)...)
		if _, err := status.CheckChain(ctx, full); err != nil {
			return errs.Wrap(errs.Unavailable, err, "no fresh revocation evidence about the exchange's own certificate: nothing can be signed")
		}
		return nil
	}})
	return checks
}

// rootOf is the anchor that issued chain's last certificate, as a chain
// CheckChain takes ends at its root; none when chain already ends at one.
func rootOf(chain, anchors []*x509.Certificate) []*x509.Certificate {
	last := chain[len(chain)-1]
	if revocation.SelfSigned(last) {
		return nil
	}
	for _, a := range anchors {
		if last.CheckSignatureFrom(a) == nil {
			return []*x509.Certificate{a}
		}
	}
	return nil
}
