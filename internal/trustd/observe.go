package trustd

import (
	"context"
	"crypto"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/observe"
	"github.com/nuskha/nuskha/internal/publish"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store/truststore"
)

// metrics are trustd's own, beside the edge's, the signing keys' and the
// pool's.
type metrics struct {
	ocsp    *prometheus.CounterVec
	issued  *prometheus.CounterVec
	changes *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		ocsp: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nuskha_ocsp_responses_total",
			Help: "OCSP answers given, by status: good, revoked (on hold included), unknown (a serial this CA did not issue), error (malformed, unauthorized, tryLater).",
		}, []string{"status"}),
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nuskha_certificates_issued_total",
			Help: "Certificates issued, by certificate profile.",
		}, []string{"profile"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nuskha_certificate_status_changes_total",
			Help: "Certificate status changes recorded and published, by the status moved to: revoked, on-hold, good (a hold released).",
		}, []string{"status"}),
	}
	reg.MustRegister(m.ocsp, m.issued, m.changes)
	return m
}

// countIssued counts each certificate enrolment tells the responder of.
type countIssued struct {
	enrol.Notifier
	issued *prometheus.CounterVec
}

func (c countIssued) Issued(ctx context.Context, cert *enrol.Certificate) error {
	c.issued.WithLabelValues(cert.Profile).Inc()
	return c.Notifier.Issued(ctx, cert)
}

// countChanges counts each status change handed to the publisher.
type countChanges struct {
	revoke.Publisher
	changes *prometheus.CounterVec
}

func (c countChanges) StatusChanged(ctx context.Context, rec revoke.Record) error {
	c.changes.WithLabelValues(string(rec.Status)).Inc()
	return c.Publisher.StatusChanged(ctx, rec)
}

// registerCRL exports the CRL being served: its age and when it expires.
func registerCRL(reg prometheus.Registerer, pub *publish.Publisher, now func() time.Time) {
	reg.MustRegister(&crlCollector{pub: pub, now: now,
		age:  prometheus.NewDesc("nuskha_crl_age_seconds", "Seconds since the thisUpdate of the CRL trustd serves (made anew every crl_refresh and after every status change); absent before the first.", nil, nil),
		next: prometheus.NewDesc("nuskha_crl_next_update_timestamp_seconds", "The nextUpdate of the CRL trustd serves, as a Unix time: relying parties refuse it after.", nil, nil),
	})
}

type crlCollector struct {
	pub       *publish.Publisher
	now       func() time.Time
	age, next *prometheus.Desc
}

func (c *crlCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.age; ch <- c.next }

func (c *crlCollector) Collect(ch chan<- prometheus.Metric) {
	crl, ok := c.pub.Served()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, c.now().Sub(crl.ThisUpdate).Seconds())
	ch <- prometheus.MustNewConstMetric(c.next, prometheus.GaugeValue, float64(crl.NextUpdate.Unix()))
}

// readiness is what trustd's /readyz checks: the database answers and
// takes writes; the issuing key and the OCSP responder's key sign; and
// the CRL served is within its nextUpdate (OCSP answers are signed in
// advance from the same statuses, by the publisher that makes it).
func readiness(db *truststore.Store, issuing crypto.Signer, ocspKey *atomic.Pointer[crypto.Signer], pub *publish.Publisher, now func() time.Time) []observe.Check {
	return []observe.Check{
		{Name: "database", Run: func(ctx context.Context) error {
			if err := db.Writable(ctx); err != nil {
				return errs.Wrap(errs.Unavailable, err, "the database does not answer, or does not take writes (a read-only standby)")
			}
			return nil
		}},
		observe.SignerCheck("issuing-key", issuing),
		{Name: "ocsp-key", Run: func(ctx context.Context) error {
			return observe.SignerCheck("ocsp-key", *ocspKey.Load()).Run(ctx)
		}},
		{Name: "crl", Run: func(context.Context) error {
			crl, ok := pub.Served()
			switch {
			case !ok:
				return errs.New(errs.Unavailable, "no CRL has been made yet")
			case !now().Before(crl.NextUpdate):
				return errs.New(errs.Unavailable, "the CRL served expired at %s: making a new one fails", crl.NextUpdate.UTC().Format(time.RFC3339))
			}
			return nil
		}},
	}
}
