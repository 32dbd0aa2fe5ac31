// Package rxapi is rxd's HTTP API: eligibility, the coding catalogue and
// the rules service that vendors' software calls before a practitioner
// signs and that the submit and dispense paths call again, and the
// prescription exchange (api/openapi.yaml; docs/exchange.md).
package rxapi

import (
	"context"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/nuskha/nuskha/internal/adjudicate"
	"github.com/nuskha/nuskha/internal/catalogue"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/httpedge"
	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/nationalid"
	"github.com/nuskha/nuskha/internal/persian"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/revocation"
	"github.com/nuskha/nuskha/internal/problem"
	"github.com/nuskha/nuskha/internal/rules"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/tlog"
)

// The API's dependencies, each as narrow as the API uses it.
type (
	// Eligibility says whether a person is covered on a day
	// (insured.Checker).
	Eligibility interface {
		Check(ctx context.Context, nationalID string, day time.Time) (insured.Result, error)
	}
	// Adjudicator judges a draft prescription or dispense
	// (adjudicate.Adjudicator).
	Adjudicator interface {
		Check(ctx context.Context, req adjudicate.Request) (*adjudicate.Decision, error)
	}
	// Catalogue is the coding catalogue version in force on a day
	// (catalogue.Catalogue).
	Catalogue interface {
		At(ctx context.Context, day time.Time) (*catalogue.Version, error)
	}
	// Rules is the rule set in force (rules.Engine).
	Rules interface {
		Current() *rules.Set
	}
	// Status answers whether a caller's certificate, or its CA, is revoked
	// (revocation.Checker).
	Status interface {
		CheckChain(ctx context.Context, chain []*x509.Certificate) (revocation.Result, error)
	}
	// Budgets counts callers' daily lookups (rxstore.Budgets).
	Budgets interface {
		// Spend counts one lookup against holder's budget of kind for
		// day (persian.Day) and reports true, unless limit are counted
		// already: then it counts nothing and reports false. It MUST be
		// atomic across every instance sharing the budgets.
		Spend(ctx context.Context, day time.Time, kind, holder string, limit int) (bool, error)
	}
	// Pinger is the database as health sees it.
	Pinger interface {
		Ping(ctx context.Context) error
	}
)

// API serves rxd's endpoints. Its dependencies return errs codes; the
// edge (problem.Write) alone turns them into HTTP statuses.
type API struct {
	Eligibility Eligibility
	Adjudicator Adjudicator
	Catalogue   Catalogue
	Rules       Rules
	// Arc reads the identity extension of callers' certificates.
	Arc pki.Arc
	// Status: a caller whose status cannot be established is refused.
	Status Status
	// DB is pinged by /healthz; nil skips the check.
	DB Pinger
	// Ready answers /readyz (observe.Readiness); nil answers it as
	// /healthz.
	Ready http.Handler
	// Metrics count requests at the edge; nil counts nothing.
	Metrics *httpedge.Metrics
	Log     *slog.Logger
	Now     func() time.Time
	// Limits bound each caller's requests and lookups; zero fields take
	// DefaultLimits'.
	Limits Limits
	// Pseudonyms name patients in the audit log, and AuditLog records
	// every eligibility lookup and rules check before it is answered:
	// without them lookups are refused (unavailable), never answered
	// unrecorded.
	Pseudonyms Pseudonyms
	AuditLog   AuditLog
	// AuditStore is the audit log served read-only under /audit/ to the
	// insurer's services and auditors; nil answers unavailable there.
	AuditStore tlog.Store
	// Exchange is the prescription exchange; nil answers its routes
	// unavailable (an rxd started without the exchange's signing key).
	Exchange Exchange
	// Idempotency keeps the answers of writes made with an
	// Idempotency-Key (the exchange's store).
	Idempotency Idempotency
	// SealKey (SealKeySize bytes) seals the answers kept for
	// Idempotency-Key retries, which carry session tokens and claim
	// secrets; every instance serving one database needs the same. nil:
	// a random key, good for this process's life only.
	SealKey []byte

	// Budgets counts each caller's daily lookups in the database every
	// instance shares (rxstore.Budgets); without it lookups are refused
	// (unavailable), never answered uncounted.
	Budgets Budgets

	// Handler's:
	rates     *buckets // each caller's requests to this instance
	cardRates *buckets // each card's prescription lookups and claims
	keyLocks  *keyLocks
	aead      cipher.AEAD
}

// ServerTLS is the TLS configuration Handler needs: the shared policy, and
// a client certificate asked for and, when given, verified to clientCAs at
// the handshake — but not required there, so that /healthz answers without
// one and every other route refuses a request without one with a problem
// document (unauthenticated) rather than a bare handshake failure.
func ServerTLS(cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	return httpedge.ServerTLS(cert, tls.VerifyClientCertIfGiven, clientCAs)
}

// Callers' roles: the software of vendors and the insurer's own services.
var callerRoles = []pki.Role{pki.RoleVendor, pki.RoleService}

// Handler routes the API. Every endpoint but /healthz needs a caller's
// TLS client certificate: verified to our roots by the TLS layer (see
// ServerTLS), then required and checked here for its role and revocation
// status.
func (a *API) Handler() http.Handler {
	// The handler works on a copy with its defaults and state filled in;
	// the API given is left as it was.
	c := *a
	a = &c
	a.Limits = a.Limits.withDefaults()
	a.rates, a.cardRates = newBuckets(a.Limits), newBuckets(a.Limits)
	a.keyLocks = &keyLocks{}
	a.aead = newAEAD(a.SealKey)
	return httpedge.Edge{Log: a.Log, Metrics: a.Metrics}.Handler(a.routes())
}

// routes are the API's routes. Every request is identified first: the
// edge refuses some itself (a path or query no route takes), before a
// route's caller runs.
func (a *API) routes() *httpedge.Routes {
	rt := httpedge.GuardedRoutes(a.identify)
	rt.Handle("GET /v1/eligibility/{nationalId}", a.caller(a.eligibility))
	rt.HandleLimit("POST /v1/rules/check", maxCheckBody, a.caller(a.rulesCheck))
	rt.Handle("GET /v1/rules", a.caller(a.ruleSet))
	rt.Handle("GET /v1/catalogue/items", a.caller(a.catalogueSearch))
	rt.Handle("GET /v1/catalogue/items/{code}", a.caller(a.catalogueItem))
	a.exchangeRoutes(rt)
	a.auditRoutes(rt)
	rt.HandleFunc("GET /healthz", a.health)
	if a.Ready != nil {
		rt.Handle("GET /readyz", a.Ready)
	} else {
		rt.HandleFunc("GET /readyz", a.health)
	}
	return rt
}

// Health is what /healthz reports: enough for an operator (or a load
// balancer) to see that rxd can answer, and with what data.
type Health struct {
	Status           string `json:"status"` // ok, or unavailable
	Problem          string `json:"problem,omitempty"`
	RuleSet          string `json:"rule_set,omitempty"`
	CatalogueVersion string `json:"catalogue_version,omitempty"` // in force today; empty when none is
}

func (a *API) health(w http.ResponseWriter, r *http.Request) {
	h := Health{Status: "ok"}
	if a.Rules != nil {
		h.RuleSet = a.Rules.Current().Version()
	}
	if a.Catalogue != nil {
		if v, err := a.Catalogue.At(r.Context(), persian.Day(a.Now())); err == nil {
			h.CatalogueVersion = v.ID
		}
	}
	if a.DB != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := a.DB.Ping(ctx); err != nil {
			h.Status, h.Problem = "unavailable", "the database does not answer"
			problem.JSON(w, http.StatusServiceUnavailable, h)
			return
		}
	}
	problem.JSON(w, http.StatusOK, h)
}

type callerKey struct{}

// Caller is the authenticated caller of a request.
type Caller struct {
	Role      pki.Role
	SubjectID string
	Name      string
	// Thumbprint is the certificate's x5t#S256 (rx.Thumbprint): the
	// exchange's sessions are bound to it.
	Thumbprint string
	// cert is the SHA-256 of the caller's certificate: limits are per
	// certificate.
	cert string
}

// CallerFrom returns the request's caller.
func CallerFrom(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}

// verifiedChain is the client certificate's chain the TLS handshake
// verified, leaf first, or nil: a chain of one is a certificate trusted as
// its own anchor, which no caller is.
func verifiedChain(r *http.Request) []*x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) < 2 {
		return nil
	}
	return r.TLS.VerifiedChains[0]
}

// identify names the caller in the access log, whatever then refuses the
// request: a route's caller, or the edge itself before any route's
// handler runs (a path that is not text, a query parameter given twice),
// which would otherwise log a vendor's hostile request as anonymous. It
// admits no one; caller does.
func (a *API) identify(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if chain := verifiedChain(r); chain != nil {
			if id, err := a.Arc.IdentityOf(chain[0]); err == nil {
				httpedge.SetCaller(r.Context(), id.SubjectID, string(id.Role))
			}
		}
		next.ServeHTTP(w, r)
	})
}

// caller admits a vendor or service whose certificate is in good
// standing, within its rate; identify has named it in the access log.
func (a *API) caller(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chain := verifiedChain(r)
		if chain == nil {
			a.fail(w, r, errs.New(errs.Unauthorized, "a client certificate issued to a vendor or service is required"))
			return
		}
		id, err := a.Arc.IdentityOf(chain[0])
		if err != nil || !slices.Contains(callerRoles, id.Role) {
			a.fail(w, r, errs.New(errs.Forbidden, "the client certificate is not a vendor's or service's"))
			return
		}
		st, err := a.Status.CheckChain(r.Context(), chain)
		if err == nil {
			err = st.GoodAt(a.Now())
		}
		if err != nil {
			// A revocation is the caller's own news; why evidence is
			// missing (responder URLs, network errors) is ours, for the log.
			why := "no fresh evidence of its revocation status can be had now; try again"
			if errs.CodeOf(err) == errs.CertificateRevoked {
				why = detail(err)
			} else {
				a.Log.WarnContext(r.Context(), "a caller's certificate status is unknown", "subject", id.SubjectID, "err", err)
			}
			a.fail(w, r, errs.Wrap(errs.Unauthorized, err, "the client certificate is not in good standing: %s", why))
			return
		}
		fp := sha256.Sum256(chain[0].Raw)
		c := Caller{Role: id.Role, SubjectID: id.SubjectID, Name: chain[0].Subject.CommonName, Thumbprint: rx.Thumbprint(chain[0]), cert: hex.EncodeToString(fp[:])}
		if no := a.rates.request(c.cert, a.Now()); no != nil {
			a.refuse(w, r, no)
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	})
}

// fail writes a problem. Its instance is the route, not the path
// (problem.Write), so that a vendor's error report that quotes an
// eligibility lookup's holds none of the national id's digits.
//
// A failure that is internal only because the database or the HSM token
// is down is answered unavailable, with a Retry-After (httpedge.Classify):
// nothing was stored, and the same request may be sent again.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	problem.Write(w, r, a.Log, httpedge.Classify(err))
}

// day reads the date query parameter (Gregorian or Solar Hijri), today
// when absent.
func (a *API) day(r *http.Request) (time.Time, error) {
	s := r.URL.Query().Get("date")
	if s == "" {
		return persian.Day(a.Now()), nil
	}
	d, err := persian.ParseDate(s)
	if err != nil {
		return time.Time{}, errs.FieldError(errs.Invalid, "date", "%v", err)
	}
	return d, nil
}

// fullDetail reads the detail query parameter: the minimum (the
// default), or everything rxd knows of the person's cover, which only the
// insurer's own services may ask for.
func fullDetail(r *http.Request, c Caller) (bool, error) {
	switch r.URL.Query().Get("detail") {
	case "", "minimal":
		return false, nil
	case "full":
		if c.Role != pki.RoleService {
			return false, errs.New(errs.Forbidden, "full detail (insurance number, family, supplementary plan) is for the insurer's own services")
		}
		return true, nil
	}
	return false, errs.FieldError(errs.Invalid, "detail", "must be minimal or full")
}

func (a *API) eligibility(w http.ResponseWriter, r *http.Request) {
	nid, err := nationalid.Parse(r.PathValue("nationalId"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	day, err := a.day(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	caller := CallerFrom(r.Context())
	full, err := fullDetail(r, caller)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if !a.spend(w, r, budgetLookup, caller.cert) {
		return
	}
	res, err := a.Eligibility.Check(r.Context(), nid, day)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.lookedUp(r, actEligibility, nid, res); err != nil {
		a.fail(w, r, err)
		return
	}
	if full {
		problem.JSON(w, http.StatusOK, res)
		return
	}
	problem.JSON(w, http.StatusOK, res.Minimal())
}

// detail is what a caller may see of err.
func detail(err error) string {
	var e *errs.Error
	if errors.As(err, &e) {
		return e.Detail
	}
	return "its status cannot be checked now"
}
