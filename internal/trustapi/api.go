// Package trustapi is trustd's HTTP API: an admin API for security officers
// (mutual TLS with officer certificates; registry, enrolment, approval,
// listing, audit) and a public read API (the CA certificates and issued
// certificates). JSON in and out; every error is an RFC 9457 problem.
package trustapi

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/httpedge"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/holder"
	"github.com/nuskha/nuskha/internal/problem"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store"
)

// Store is what the API reads directly.
type Store interface {
	GetSubject(ctx context.Context, id string) (*registry.Subject, error)
	ListSubjects(ctx context.Context, f store.SubjectFilter) ([]*registry.Subject, error)
	GetEnrolment(ctx context.Context, id string) (*enrol.Request, error)
	CertificateBySerial(ctx context.Context, serial *big.Int) (*enrol.Certificate, error)
	CertificateByFingerprint(ctx context.Context, sha256Hex string) (*enrol.Certificate, error)
	ListCertificates(ctx context.Context, f store.CertificateFilter) ([]*enrol.Certificate, error)
	ListAudit(ctx context.Context, f store.AuditFilter) ([]audit.Event, error)
	CertificateStatus(ctx context.Context, serial *big.Int) (revoke.Record, error)
	Ping(ctx context.Context) error
}

// Revoker changes certificate statuses (revoke.Service).
type Revoker interface {
	Revoke(ctx context.Context, officer string, serial *big.Int, reason revoke.Reason) (revoke.Record, error)
	RevokeByHolder(ctx context.Context, token string) (revoke.Record, error)
	RequestChange(ctx context.Context, officer string, serial *big.Int, action revoke.Action, comment string) (*revoke.Change, error)
	RequestRevocation(ctx context.Context, officer string, serial *big.Int, reason revoke.Reason, comment string) (*revoke.Change, error)
	DecideChange(ctx context.Context, officer, id string, approve bool, comment string) (*revoke.Change, error)
	Change(ctx context.Context, id string) (*revoke.Change, error)
	Changes(ctx context.Context, pendingOnly bool, limit int) ([]*revoke.Change, error)
}

// Status serves what relying parties fetch: the CRL, the root's ARL, OCSP
// and the bundle.
type Status interface {
	CRL() *revoke.CRL
	CRLHandler() http.Handler
	ARLHandler() http.Handler
	GenerateCRL(ctx context.Context) (revoke.CRL, error)
	Bundle(ctx context.Context) ([]byte, error)
}

// Registry keeps the registry (registry.Service).
type Registry interface {
	Create(ctx context.Context, officer string, s *registry.Subject) (*registry.Subject, error)
	Update(ctx context.Context, officer, id string, next *registry.Subject, baseVersion int) (*registry.Subject, *registry.Change, error)
	Change(ctx context.Context, id string) (*registry.Change, error)
	Changes(ctx context.Context, pendingOnly bool, limit int) ([]*registry.Change, error)
	DecideChange(ctx context.Context, officer, id string, approve bool, comment string) (*registry.Change, *registry.Subject, error)
}

// Enrolment is the dual-control workflow (enrol.Service).
type Enrolment interface {
	Request(ctx context.Context, officer string, in enrol.RequestInput) (*enrol.Request, error)
	Approve(ctx context.Context, officer, enrolmentID, reviewed string) (*enrol.Certificate, error)
	Reject(ctx context.Context, officer, enrolmentID, reason string) (*enrol.Request, error)
	Enrolment(ctx context.Context, id string) (*enrol.Request, error)
	Enrolments(ctx context.Context, f store.EnrolmentFilter) ([]*enrol.Request, error)
}

// Auditor records officers' actions (audit.Log); a failed write fails
// the action.
type Auditor interface {
	Record(ctx context.Context, e audit.Event) error
}

// Refusals counts refused requests that proved nothing (audit.Tally):
// they are summarised in the audit log, not recorded one by one.
type Refusals interface {
	Count(actor, action string, code errs.Code)
}

// Config wires the API; every field but WriteLimits is required.
type Config struct {
	Store         Store
	Registry      Registry
	Enrol         Enrolment
	Audit         Auditor
	Refusals      Refusals
	Roots         []*x509.Certificate
	Intermediates []*x509.Certificate
	Arc           pki.Arc
	Log           *slog.Logger
	Now           func() time.Time
	Revoke        Revoker
	Status        Status
	OCSP          http.Handler // the responder, mounted at OCSPPath
	// AuditLog serves trustd's tamper-evident audit log (tlog.Handler:
	// checkpoints, tiles and entries, public by design) under /audit/ on
	// the public listener; nil serves none.
	AuditLog http.Handler
	// Paths of the CRL and OCSP URLs in issued certificates, and of the
	// ARL URL in the intermediate, on the relying-party listener.
	CRLPath, OCSPPath, ARLPath string
	// WriteLimits throttle anonymous writes; zero fields take defaults.
	WriteLimits WriteLimits
	// Metrics count requests at every listener's edge; nil counts
	// nothing.
	Metrics *httpedge.Metrics
	// Ready answers /readyz on the public listener (observe.Readiness);
	// nil: a database ping.
	Ready http.Handler
}

// API serves the three listeners' handlers.
type API struct {
	cfg    Config
	store  records // cfg.Store, its errors coded
	writes *writeLimiter
}

// New checks cfg.
func New(cfg Config) (*API, error) {
	if cfg.Store == nil || cfg.Registry == nil || cfg.Enrol == nil || cfg.Audit == nil || cfg.Refusals == nil || len(cfg.Roots) == 0 || len(cfg.Intermediates) == 0 || cfg.Log == nil || cfg.Now == nil ||
		cfg.Revoke == nil || cfg.Status == nil || cfg.OCSP == nil || cfg.CRLPath == "" || cfg.OCSPPath == "" || cfg.ARLPath == "" {
		return nil, errors.New("trustapi: incomplete configuration")
	}
	l := cfg.WriteLimits
	if l.PerIPPerMinute < 0 || l.PerIPBurst < 0 || l.PerSecond < 0 || l.Burst < 0 {
		return nil, errors.New("trustapi: negative write limit")
	}
	return &API{cfg: cfg, store: records{cfg.Store}, writes: newWriteLimiter(l, cfg.Now)}, nil
}

type ctxKey struct{}

// officerFrom returns the authenticated officer's subject id.
func officerFrom(ctx context.Context) string {
	s, _ := ctx.Value(ctxKey{}).(string)
	return s
}

// AdminHandler serves /admin/v1/ to officers only. The TLS listener MUST
// require and verify client certificates against our roots; this handler
// then insists, for every path, that the certificate is a registered,
// current officer's.
func (a *API) AdminHandler() http.Handler {
	rt := httpedge.GuardedRoutes(a.officer)
	handle := rt.HandleFunc
	handle("GET /admin/v1/whoami", a.whoami)
	handle("POST /admin/v1/subjects", a.createSubject)
	handle("GET /admin/v1/subjects", a.listSubjects)
	handle("GET /admin/v1/subjects/{id}", a.getSubject)
	handle("PUT /admin/v1/subjects/{id}", a.updateSubject)
	handle("GET /admin/v1/subject-changes", a.listSubjectChanges)
	handle("GET /admin/v1/subject-changes/{id}", a.getSubjectChange)
	handle("POST /admin/v1/subject-changes/{id}/approve", a.decideSubjectChange(true))
	handle("POST /admin/v1/subject-changes/{id}/reject", a.decideSubjectChange(false))
	handle("POST /admin/v1/enrolments", a.createEnrolment)
	handle("GET /admin/v1/enrolments", a.listEnrolments)
	handle("GET /admin/v1/enrolments/{id}", a.getEnrolment)
	handle("POST /admin/v1/enrolments/{id}/approve", a.approve)
	handle("POST /admin/v1/enrolments/{id}/reject", a.reject)
	handle("GET /admin/v1/certificates", a.listCertificates)
	handle("GET /admin/v1/certificates/{serial}", a.getCertificate)
	handle("GET /admin/v1/audit", a.listAudit)
	handle("POST /admin/v1/certificates/{serial}/revoke", a.revoke)
	handle("POST /admin/v1/status-changes", a.requestChange)
	handle("GET /admin/v1/status-changes", a.listChanges)
	handle("GET /admin/v1/status-changes/{id}", a.getChange)
	handle("POST /admin/v1/status-changes/{id}/approve", a.decideChange(true))
	handle("POST /admin/v1/status-changes/{id}/reject", a.decideChange(false))
	handle("POST /admin/v1/crl", a.regenerateCRL)
	return a.edge("admin", rt)
}

// PublicHandler serves what anyone may read.
func (a *API) PublicHandler() http.Handler {
	rt := httpedge.NewRoutes()
	rt.HandleFunc("GET /v1/ca", a.caJSON)
	rt.HandleFunc("GET /v1/ca/roots.pem", a.caPEM(func() []*x509.Certificate { return a.cfg.Roots }))
	rt.HandleFunc("GET /v1/ca/intermediates.pem", a.caPEM(func() []*x509.Certificate { return a.cfg.Intermediates }))
	rt.HandleFunc("GET /v1/ca/intermediate.crt", a.intermediateDER)
	rt.HandleFunc("GET /v1/certificates/{serial}", a.getCertificate)
	rt.HandleFunc("GET /v1/enrolments/{id}/certificate", a.enrolmentCertificate)
	rt.HandleFunc("GET /v1/certificates/{serial}/status", a.certificateStatus)
	rt.HandleLimit("POST /v1/revocations", holder.MaxSize, http.HandlerFunc(a.holderRevocation))
	rt.HandleFunc("GET /v1/trust-bundle", a.trustBundle)
	rt.Handle("GET /v1/crl", a.cfg.Status.CRLHandler())
	rt.Handle("GET /v1/arl", a.cfg.Status.ARLHandler())
	rt.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		problem.JSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	if a.cfg.Ready != nil {
		rt.Handle("GET /readyz", a.cfg.Ready)
	} else {
		rt.HandleFunc("GET /readyz", a.ready)
	}
	a.mountAuditLog(rt)
	return a.edge("public", rt)
}

// AuditLogPath is where the public listener serves trustd's audit log: a
// C2SP tlog-tiles log whose base URL is the public URL and this path.
const AuditLogPath = "/audit/"

// mountAuditLog serves the audit log, if there is one, at AuditLogPath:
// on the public listener and on the relying-party one (its checkpoints
// are signed, so plain HTTP is enough, as for CRLs).
func (a *API) mountAuditLog(rt *httpedge.Routes) {
	if a.cfg.AuditLog != nil {
		rt.Handle("GET "+AuditLogPath, http.StripPrefix(strings.TrimSuffix(AuditLogPath, "/"), a.cfg.AuditLog))
	}
}

// edge is the listener's edge (httpedge): request ids, the access log
// (every request, OCSP and CRL fetches included, at info level), panics
// recovered.
func (a *API) edge(listener string, h http.Handler) http.Handler {
	return httpedge.Edge{Log: a.cfg.Log, Listener: listener, Metrics: a.cfg.Metrics}.Handler(h)
}

// fail writes a problem; a failure that is internal only because the
// database or the HSM token is down is answered unavailable, with a
// Retry-After (httpedge.Classify).
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	problem.Write(w, r, a.cfg.Log, httpedge.Classify(err))
}

// officer authenticates the client certificate as an officer's.
func (a *API) officer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
			a.fail(w, r, errs.New(errs.Unauthorized, "a security officer's client certificate is required"))
			return
		}
		leaf := r.TLS.VerifiedChains[0][0]
		if id, err := a.cfg.Arc.IdentityOf(leaf); err == nil {
			// Named in the access log even when refused below.
			httpedge.SetCaller(r.Context(), id.SubjectID, string(id.Role))
		}
		id, err := a.officerID(r.Context(), leaf)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, id)))
	})
}

func (a *API) officerID(ctx context.Context, leaf *x509.Certificate) (string, error) {
	fp := sha256.Sum256(leaf.Raw)
	rec, err := a.store.CertificateByFingerprint(ctx, hex.EncodeToString(fp[:]))
	if errs.CodeOf(err) == errs.NotFound {
		return "", errs.New(errs.NotAnOfficer, "the client certificate was not issued by this trustd")
	}
	if err != nil {
		return "", err
	}
	if rec.Profile != "officer" {
		return "", errs.New(errs.NotAnOfficer, "the client certificate is a %s certificate, not an officer's", rec.Profile)
	}
	if id, err := a.cfg.Arc.IdentityOf(leaf); err != nil || id.Role != pki.RoleOfficer || id.SubjectID != rec.SubjectID {
		return "", errs.New(errs.NotAnOfficer, "the client certificate does not name an officer")
	}
	sub, err := a.store.GetSubject(ctx, rec.SubjectID)
	if err != nil {
		return "", err
	}
	// The same test applies to the officer who entered a request when it
	// is approved (registry.ActiveOfficer).
	if err := sub.CheckOfficer(a.cfg.Now()); err != nil {
		return "", err
	}
	st, err := a.store.CertificateStatus(ctx, leaf.SerialNumber)
	if err != nil {
		return "", err
	}
	if st.Status != revoke.Good {
		return "", errs.New(errs.NotAnOfficer, "the officer's certificate is %s", st.Status)
	}
	return sub.ID, nil
}

func (a *API) whoami(w http.ResponseWriter, r *http.Request) {
	sub, err := a.store.GetSubject(r.Context(), officerFrom(r.Context()))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	problem.JSON(w, http.StatusOK, map[string]string{"officer_id": sub.ID, "name": sub.Name})
}

func (a *API) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.store.Ping(ctx); err != nil {
		a.fail(w, r, err)
		return
	}
	problem.JSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func pemOf(certs ...*x509.Certificate) string {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return string(out)
}

func (a *API) caJSON(w http.ResponseWriter, r *http.Request) {
	problem.JSON(w, http.StatusOK, map[string]any{
		"roots":         splitPEM(a.cfg.Roots),
		"intermediates": splitPEM(a.cfg.Intermediates),
	})
}

func splitPEM(certs []*x509.Certificate) []string {
	out := make([]string, len(certs))
	for i, c := range certs {
		out[i] = pemOf(c)
	}
	return out
}

func (a *API) caPEM(certs func() []*x509.Certificate) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/pem-certificate-chain")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		_, _ = w.Write([]byte(pemOf(certs()...)))
	}
}

// intermediateDER serves the AIA caIssuers URL: one DER certificate
// (RFC 5280 §4.2.2.1).
func (a *API) intermediateDER(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/pkix-cert")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(a.cfg.Intermediates[0].Raw)
}

// certificateView is a certificate as the API shows it.
type certificateView struct {
	Serial      string    `json:"serial"`
	SubjectID   string    `json:"subject_id"`
	Profile     string    `json:"profile"`
	EnrolmentID string    `json:"enrolment_id,omitempty"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	IssuedAt    time.Time `json:"issued_at"`
	IssuedBy    string    `json:"issued_by"`
	Fingerprint string    `json:"sha256_fingerprint"`
	SPKIHash    string    `json:"spki_sha256"`
	PEM         string    `json:"certificate_pem"`
	ChainPEM    string    `json:"chain_pem"`
}

func (a *API) certificateView(c *enrol.Certificate) certificateView {
	leaf := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER}))
	return certificateView{
		Serial: c.SerialHex(), SubjectID: c.SubjectID, Profile: c.Profile, EnrolmentID: c.EnrolmentID,
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, IssuedAt: c.IssuedAt, IssuedBy: c.IssuedBy,
		Fingerprint: c.Fingerprint, SPKIHash: c.SPKIHash, PEM: leaf, ChainPEM: leaf + pemOf(a.cfg.Intermediates...),
	}
}

func (a *API) getCertificate(w http.ResponseWriter, r *http.Request) {
	serial, ok := pki.ParseSerialHex(r.PathValue("serial"))
	if !ok {
		a.fail(w, r, errs.FieldError(errs.Malformed, "serial", "a serial is 1 to 20 bytes of hex"))
		return
	}
	c, err := a.store.CertificateBySerial(r.Context(), serial)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	problem.JSON(w, http.StatusOK, a.certificateView(c))
}

// enrolmentCertificate lets a practitioner's IT support fetch the
// certificate of an enrolment they know the (unguessable) id of.
// Certificates are public: they travel inside every signed prescription.
func (a *API) enrolmentCertificate(w http.ResponseWriter, r *http.Request) {
	e, err := a.store.GetEnrolment(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if e.Status != enrol.Issued {
		a.fail(w, r, errs.New(errs.NotIssued, "enrolment is %s", e.Status))
		return
	}
	serial, ok := pki.ParseSerialHex(e.CertificateSerial)
	if !ok {
		a.fail(w, r, errs.New(errs.Internal, "the certificate of enrolment %s is recorded under a damaged serial", e.ID))
		return
	}
	c, err := a.store.CertificateBySerial(r.Context(), serial)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	problem.JSON(w, http.StatusOK, a.certificateView(c))
}

func queryInt(r *http.Request, name string) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, errs.FieldError(errs.Malformed, name, "must be a non-negative integer")
	}
	return n, nil
}

// RelyingPartyHandler serves, over plain HTTP, what certificates point
// relying parties to: the issuer certificate (AIA), the CRL, the root's
// ARL and OCSP. Everything here is signed or public, so TLS would add
// nothing but a bootstrapping loop.
func (a *API) RelyingPartyHandler() http.Handler {
	rt := httpedge.NewRoutes()
	rt.HandleFunc("GET /ca/intermediate.crt", a.intermediateDER)
	rt.Handle("GET "+a.cfg.CRLPath, a.cfg.Status.CRLHandler())
	rt.Handle("GET "+a.cfg.ARLPath, a.cfg.Status.ARLHandler())
	ocspPath := strings.TrimSuffix(a.cfg.OCSPPath, "/")
	// GET requests carry the OCSP request in the path: logged as the
	// route, ocspPath + "/".
	rt.Handle(ocspPath, a.cfg.OCSP)
	rt.Handle(ocspPath+"/", a.cfg.OCSP)
	rt.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		problem.JSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	a.mountAuditLog(rt)
	return a.edge("http", rt)
}
