package rxapi

import (
	"context"
	"encoding/hex"
	"net/http"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/httpedge"
	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/tlog"
)

// The audit log's dependencies: every eligibility lookup and rules check
// is written to rxd's audit log (internal/tlog) — who asked (the calling
// software's certificate), about whom (the patient's pseudonym, never the
// id) — before it is answered. A lookup that cannot be recorded is not
// answered. The exchange records its own actions (exchange.Service).
type (
	// Pseudonyms names patients in the audit log (tlog.Pseudonyms): one
	// key, so one patient has one pseudonym in every entry.
	Pseudonyms interface {
		Of(nationalID string) (tlog.Pseudonym, error)
	}
	// AuditLog appends entries in a transaction of their own
	// (tlogstore.Store).
	AuditLog interface {
		Append(ctx context.Context, entries ...*tlog.Entry) error
	}
)

// Actions recorded here.
const (
	actEligibility = "eligibility"
	actRulesCheck  = "rules-check"
)

// errNoAudit refuses a lookup on an API without its audit log.
var errNoAudit = errs.New(errs.Unavailable, "lookups cannot be recorded in the audit log, so they are not answered")

// lookedUp records a lookup of nid (action act), answered with res, before
// it is answered: in the audit log, and a line in the process log (with
// the request id, and the pseudonym) for operators.
func (a *API) lookedUp(r *http.Request, act, nid string, res insured.Result) error {
	if a.Pseudonyms == nil || a.AuditLog == nil {
		return errNoAudit
	}
	ctx := r.Context()
	p, err := a.Pseudonyms.Of(nid)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "the lookup cannot be recorded now, so it is not answered")
	}
	caller := CallerFrom(ctx)
	e := &tlog.Entry{Time: a.Now().UTC(), Actor: tlog.Actor{Kind: tlog.ActorCert, ID: caller.cert, Role: string(caller.Role), Org: tlog.Holdable(caller.SubjectID)},
		Action: act, Outcome: audit.OK, Patient: p}
	if err := a.AuditLog.Append(ctx, e); err != nil {
		a.Log.ErrorContext(ctx, "a lookup cannot be written to the audit log; it is not answered", "err", err)
		return errs.Wrap(errs.Unavailable, err, "the lookup cannot be recorded now, so it is not answered")
	}
	outcome := "eligible"
	if !res.Eligible {
		outcome = string(res.Reason)
	}
	a.Log.InfoContext(ctx, "eligibility lookup", "caller", caller.SubjectID, "role", string(caller.Role), "person", hex.EncodeToString(p[:]),
		"outcome", outcome, "request_id", httpedge.RequestID(ctx))
	return nil
}

// service lets through the insurer's own services only: the audit log's
// tiles name no patient but by pseudonym, yet a vendor's software that
// knows when its own user was served could find that patient's pseudonym
// in them, and with it every other visit of the patient. Auditors read
// the log with a service certificate.
func (a *API) service(next http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if c := CallerFrom(r.Context()); c.Role != pki.RoleService {
			a.fail(w, r, errs.New(errs.Forbidden, "the audit log is read by the insurer's own services (and its auditors) only"))
			return
		}
		next.ServeHTTP(w, r)
	}
}

// auditRoutes serve rxd's audit log read-only, as C2SP tlog-tiles, under
// /audit/: the latest signed checkpoint and the tiles and entry bundles
// it commits to.
func (a *API) auditRoutes(rt *httpedge.Routes) {
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, r, errs.New(errs.Unavailable, "this rxd serves no audit log"))
	})
	if a.AuditStore != nil {
		h = http.StripPrefix("/audit", tlog.Handler(a.AuditStore, a.Log))
	}
	rt.Handle("GET /audit/checkpoint", a.caller(a.service(h)))
	rt.Handle("GET /audit/tile/{path...}", a.caller(a.service(h)))
}
