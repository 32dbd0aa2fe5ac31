package rxapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/nuskha/nuskha/internal/adjudicate"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/httpedge"
	"github.com/nuskha/nuskha/internal/nationalid"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/problem"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/rx/trackcode"
)

// Exchange is the prescription exchange's service (exchange.Service):
// one method per operation of api/openapi.yaml, answering its schemas.
type Exchange interface {
	OpenSession(ctx context.Context, caller exchange.Caller, jws string) (*exchange.SessionOpened, error)
	Authenticate(ctx context.Context, caller exchange.Caller, token string) (*exchange.Actor, error)
	EndSession(ctx context.Context, caller exchange.Caller, token string) error
	Prescribe(ctx context.Context, caller exchange.Caller, jws string) (*exchange.PrescriptionAccepted, bool, error)
	Lookup(ctx context.Context, actor *exchange.Actor, f exchange.Find) (*exchange.PrescriptionView, error)
	Claim(ctx context.Context, actor *exchange.Actor, f exchange.Find) (*exchange.ClaimGranted, error)
	Release(ctx context.Context, actor *exchange.Actor, claimID, claimSecret string) error
	Dispense(ctx context.Context, actor *exchange.Actor, claimID, claimSecret, jws string) (*exchange.DispenseAccepted, bool, error)
	Close(ctx context.Context, actor *exchange.Actor, claimID, claimSecret string) (*exchange.Closed, error)
	Cancel(ctx context.Context, caller exchange.Caller, prescriptionID, jws string) (*exchange.CancellationAccepted, bool, error)
	Paper(ctx context.Context, caller exchange.Caller, jws string) (*exchange.PaperAccepted, bool, error)
	History(ctx context.Context, caller exchange.Caller, q exchange.HistoryQuery) (*exchange.HistoryPage, error)
	AccessLog(ctx context.Context, caller exchange.Caller, q exchange.AccessLogQuery) (*exchange.AccessLogPage, error)
}

// Idempotency keeps the answers of writes made with an Idempotency-Key
// (the exchange's Store).
type Idempotency interface {
	Idempotent(ctx context.Context, key, caller string, requestSHA256 []byte, now time.Time) (*exchange.IdempotencyRecord, error)
	Remember(ctx context.Context, r *exchange.IdempotencyRecord) (*exchange.IdempotencyRecord, error)
}

// The exchange's body limits: a signed document at rx.MaxJWS (a
// prescription of fifty items with its certificate chain), JSON at the
// edge's default.
const (
	maxDocument = rx.MaxJWS
	maxJSON     = problem.MaxBody
)

// exchangeRoutes routes every exchange operation of api/openapi.yaml.
// Writes of documents are content-addressed (a replay answers 200 with
// the first answer); the other writes take an Idempotency-Key.
func (a *API) exchangeRoutes(rt *httpedge.Routes) {
	rt.HandleLimit("POST /v1/sessions", maxDocument, a.caller(a.idempotent(a.openSession)))
	rt.HandleLimit("DELETE /v1/sessions/current", maxJSON, a.caller(a.endSession))
	rt.HandleLimit("POST /v1/prescriptions", maxDocument, a.caller(a.prescribe))
	rt.HandleLimit("POST /v1/prescriptions/lookup", maxJSON, a.caller(a.session(a.lookup)))
	rt.HandleLimit("POST /v1/prescriptions/{id}/cancellations", maxDocument, a.caller(a.cancel))
	rt.HandleLimit("POST /v1/claims", maxJSON, a.caller(a.session(a.idempotent(a.claim))))
	rt.HandleLimit("DELETE /v1/claims/{claimId}", maxJSON, a.caller(a.session(a.idempotent(a.release))))
	rt.HandleLimit("POST /v1/claims/{claimId}/dispenses", maxDocument, a.caller(a.session(a.dispense)))
	rt.HandleLimit("POST /v1/claims/{claimId}/close", maxJSON, a.caller(a.session(a.idempotent(a.close))))
	rt.HandleLimit("POST /v1/paper-prescriptions", maxDocument, a.caller(a.paper))
	rt.HandleLimit("POST /v1/patient-history", maxJSON, a.caller(a.history))
	rt.HandleLimit("POST /v1/patient-access-log", maxJSON, a.caller(a.accessLog))
}

// exchangeCaller is the request's caller as the exchange names it: its
// certificate's x5t#S256 binds sessions.
func exchangeCaller(ctx context.Context) exchange.Caller {
	c := CallerFrom(ctx)
	return exchange.Caller{Role: c.Role, SubjectID: c.SubjectID, Thumbprint: c.Thumbprint, CertSHA256: c.cert}
}

type actorKey struct{}

// actorFrom is the request's actor, set by session.
func actorFrom(ctx context.Context) *exchange.Actor {
	a, _ := ctx.Value(actorKey{}).(*exchange.Actor)
	return a
}

// bearer is the token of an Authorization: Bearer header, or "".
func bearer(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// session authenticates the request's actor by its session token
// (Authorization: Bearer), presented through the certificate the session
// was opened through; the card's revocation is checked again (Authenticate).
func (a *API) session(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.Exchange == nil {
			a.failExchange(w, r, errNoExchange)
			return
		}
		actor, err := a.Exchange.Authenticate(r.Context(), exchangeCaller(r.Context()), bearer(r))
		if err != nil {
			if errs.CodeOf(err) == errs.Unauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="nuskha-exchange"`)
			}
			a.failExchange(w, r, err)
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), actorKey{}, actor)))
	}
}

// errNoExchange answers the exchange's routes on an rxd started without
// the exchange's signing key.
var errNoExchange = errs.New(errs.Unavailable, "this rxd does not serve the prescription exchange (it was started without -exchange-key)")

// document reads a compact JWS body (application/jose) within the
// route's limit, as received: the exchange stores it byte for byte.
func document(r *http.Request) (string, error) {
	if err := problem.CheckBody(r, "application/jose"); err != nil {
		return "", err
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, httpedge.Limit(r)))
	if err != nil {
		if mbe := new(http.MaxBytesError); errors.As(err, &mbe) {
			return "", errs.New(errs.TooLarge, "a signed document is at most %d bytes", mbe.Limit)
		}
		return "", errs.New(errs.Malformed, "the body could not be read")
	}
	if len(body) == 0 {
		return "", errs.New(errs.Malformed, "empty body: send the signed document")
	}
	return string(body), nil
}

// answered writes a document's answer: 201 the first time, 200 for the
// same document again (the first answer).
func answered(w http.ResponseWriter, replay bool, v any) {
	status := http.StatusCreated
	if replay {
		status = http.StatusOK
	}
	problem.JSON(w, status, v)
}

// decisionView is a decision as the caller may see it: the insurer's own
// services see everything, vendors' software the eligibility at its least
// (insured.Minimal), as for POST /v1/rules/check.
func decisionView(c Caller, d *adjudicate.Decision) any {
	if d == nil || c.Role == pki.RoleService {
		return d
	}
	return minimalDecision{Decision: d, Eligibility: d.Eligibility.Minimal()}
}

// The answers that carry a decision, with the decision as the caller may
// see it: the outer member shadows the embedded one.
type (
	prescriptionAccepted struct {
		*exchange.PrescriptionAccepted
		Decision any `json:"decision"`
	}
	dispenseAccepted struct {
		*exchange.DispenseAccepted
		Decision any `json:"decision"`
	}
	paperAccepted struct {
		*exchange.PaperAccepted
		Decision any `json:"decision"`
	}
)

func (a *API) openSession(w http.ResponseWriter, r *http.Request) {
	if a.Exchange == nil {
		a.failExchange(w, r, errNoExchange)
		return
	}
	jws, err := document(r)
	if err != nil {
		a.failExchange(w, r, err)
		return
	}
	s, err := a.Exchange.OpenSession(r.Context(), exchangeCaller(r.Context()), jws)
	if err != nil {
		a.failExchange(w, r, err)
		return
	}
	problem.JSON(w, http.StatusCreated, s)
}

func (a *API) endSession(w http.ResponseWriter, r *http.Request) {
	if a.Exchange == nil {
		a.failExchange(w, r, errNoExchange)
		return
	}
	if err := a.Exchange.EndSession(r.Context(), exchangeCaller(r.Context()), bearer(r)); err != nil {
		if errs.CodeOf(err) == errs.Unauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="nuskha-exchange"`)
		}
		a.failExchange(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// patientLookup spends a lookup of the caller's daily budget before the
// exchange looks the patient up (prescribe and paper check eligibility,
// the history and the access log read a patient's records): counted as
// GET /v1/eligibility and POST /v1/rules/check are. The exchange records
// the action, by the patient's pseudonym, before it answers. It writes
// the refusal and returns false when the request may not go on.
func (a *API) patientLookup(w http.ResponseWriter, r *http.Request, nationalID string) bool {
	if _, err := nationalid.Parse(nationalID); err != nil {
		a.failExchange(w, r, err)
		return false
	}
	return a.spend(w, r, budgetLookup, CallerFrom(r.Context()).cert)
}

// documentPatient is the patient's national id a prescription or paper
// prescription names, read before it is verified (the exchange verifies
// it); a document that names none is refused as the verifier would.
//
// It is read as strictly as the verifier reads it (names matched exactly,
// none twice, valid UTF-8, nothing after the value): encoding/json folds
// "PATIENT" onto patient and takes the last of two members, so a payload
// naming a second patient was judged by that patient's national id, where
// the verifier refuses it as the ambiguous document it is.
func documentPatient(jws string) (string, error) {
	_, payload, err := rx.Peek(jws)
	if err != nil {
		return "", err
	}
	var doc struct {
		Patient struct {
			NationalID string `json:"national_id"`
		} `json:"patient"`
	}
	if err := jsonv2.Unmarshal(payload, &doc); err != nil {
		return "", errs.Wrap(errs.InvalidDocument, err, "the payload does not decode as one JSON object")
	}
	return doc.Patient.NationalID, nil
}

// withPatientDocument is withDocument for a document whose acceptance
// looks its patient up (patientLookup).
func (a *API) withPatientDocument(w http.ResponseWriter, r *http.Request, act func(jws string) (any, bool, error)) {
	a.withDocument(w, r, func(jws string) (any, bool, error) {
		nid, err := documentPatient(jws)
		if err != nil {
			return nil, false, err
		}
		if !a.patientLookup(w, r, nid) {
			return nil, false, errAnswered
		}
		return act(jws)
	})
}

// errAnswered stops withDocument after the refusal was written.
var errAnswered = errors.New("rxapi: answered")

func (a *API) prescribe(w http.ResponseWriter, r *http.Request) {
	a.withPatientDocument(w, r, func(jws string) (any, bool, error) {
		ans, replay, err := a.Exchange.Prescribe(r.Context(), exchangeCaller(r.Context()), jws)
		if err != nil {
			return nil, false, err
		}
		return prescriptionAccepted{ans, decisionView(CallerFrom(r.Context()), ans.Decision)}, replay, nil
	})
}

func (a *API) cancel(w http.ResponseWriter, r *http.Request) {
	a.withDocument(w, r, func(jws string) (any, bool, error) {
		return unpack(a.Exchange.Cancel(r.Context(), exchangeCaller(r.Context()), r.PathValue("id"), jws))
	})
}

func (a *API) paper(w http.ResponseWriter, r *http.Request) {
	a.withPatientDocument(w, r, func(jws string) (any, bool, error) {
		ans, replay, err := a.Exchange.Paper(r.Context(), exchangeCaller(r.Context()), jws)
		if err != nil {
			return nil, false, err
		}
		return paperAccepted{ans, decisionView(CallerFrom(r.Context()), ans.Decision)}, replay, nil
	})
}

func (a *API) dispense(w http.ResponseWriter, r *http.Request) {
	a.withDocument(w, r, func(jws string) (any, bool, error) {
		ans, replay, err := a.Exchange.Dispense(r.Context(), actorFrom(r.Context()), r.PathValue("claimId"), r.Header.Get("Claim-Secret"), jws)
		if err != nil {
			return nil, false, err
		}
		return dispenseAccepted{ans, decisionView(CallerFrom(r.Context()), ans.Decision)}, replay, nil
	})
}

// unpack makes a typed answer an any without making a nil pointer a
// non-nil interface.
func unpack[T any](v *T, replay bool, err error) (any, bool, error) {
	if err != nil {
		return nil, false, err
	}
	return v, replay, nil
}

// withDocument serves a write of a signed document: read it, act, answer
// 201 or, for the same document again, 200.
func (a *API) withDocument(w http.ResponseWriter, r *http.Request, act func(jws string) (any, bool, error)) {
	if a.Exchange == nil {
		a.failExchange(w, r, errNoExchange)
		return
	}
	jws, err := document(r)
	if err != nil {
		a.failExchange(w, r, err)
		return
	}
	ans, replay, err := act(jws)
	if errors.Is(err, errAnswered) {
		return
	}
	if err != nil {
		a.failExchange(w, r, err)
		return
	}
	answered(w, replay, ans)
}

// find reads a Find body and spends a lookup of the caller's and of the
// card's daily budgets: counted before the prescription is read, found or
// not, so that a guesser pays for every guess. A code whose check symbol
// fails (a typing error: a guesser computes the symbol) costs nothing.
func (a *API) find(w http.ResponseWriter, r *http.Request) (exchange.Find, bool) {
	var f exchange.Find
	if err := httpedge.Decode(r, &f); err != nil {
		a.failExchange(w, r, err)
		return f, false
	}
	if _, err := trackcode.Parse(f.TrackingCode); err != nil {
		a.failExchange(w, r, err)
		return f, false
	}
	if no := a.cardRates.request(cardPrefix+actorFrom(r.Context()).CertSerial, a.Now()); no != nil {
		a.refuse(w, r, no)
		return f, false
	}
	for _, key := range []string{CallerFrom(r.Context()).cert, cardPrefix + actorFrom(r.Context()).CertSerial} {
		if !a.spend(w, r, budgetFind, key) {
			return f, false
		}
	}
	return f, true
}

func (a *API) lookup(w http.ResponseWriter, r *http.Request) {
	f, ok := a.find(w, r)
	if !ok {
		return
	}
	v, err := a.Exchange.Lookup(r.Context(), actorFrom(r.Context()), f)
	if err != nil {
		a.failExchange(w, r, err)
		return
	}
	problem.JSON(w, http.StatusOK, v)
}

func (a *API) claim(w http.ResponseWriter, r *http.Request) {
	f, ok := a.find(w, r)
	if !ok {
		return
	}
	g, err := a.Exchange.Claim(r.Context(), actorFrom(r.Context()), f)
	if err != nil {
		a.failExchange(w, r, err)
		return
	}
	problem.JSON(w, http.StatusCreated, g)
}

func (a *API) release(w http.ResponseWriter, r *http.Request) {
	if err := a.Exchange.Release(r.Context(), actorFrom(r.Context()), r.PathValue("claimId"), r.Header.Get("Claim-Secret")); err != nil {
		a.failExchange(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) close(w http.ResponseWriter, r *http.Request) {
	c, err := a.Exchange.Close(r.Context(), actorFrom(r.Context()), r.PathValue("claimId"), r.Header.Get("Claim-Secret"))
	if err != nil {
		a.failExchange(w, r, err)
		return
	}
	problem.JSON(w, http.StatusOK, c)
}

func (a *API) history(w http.ResponseWriter, r *http.Request) {
	if a.Exchange == nil {
		a.failExchange(w, r, errNoExchange)
		return
	}
	var q exchange.HistoryQuery
	if err := httpedge.Decode(r, &q); err != nil {
		a.failExchange(w, r, err)
		return
	}
	if !a.patientLookup(w, r, q.NationalID) {
		return
	}
	page, err := a.Exchange.History(r.Context(), exchangeCaller(r.Context()), q)
	if err != nil {
		a.failExchange(w, r, err)
		return
	}
	problem.JSON(w, http.StatusOK, page)
}

func (a *API) accessLog(w http.ResponseWriter, r *http.Request) {
	if a.Exchange == nil {
		a.failExchange(w, r, errNoExchange)
		return
	}
	var q exchange.AccessLogQuery
	if err := httpedge.Decode(r, &q); err != nil {
		a.failExchange(w, r, err)
		return
	}
	if !a.patientLookup(w, r, q.NationalID) {
		return
	}
	page, err := a.Exchange.AccessLog(r.Context(), exchangeCaller(r.Context()), q)
	if err != nil {
		a.failExchange(w, r, err)
		return
	}
	problem.JSON(w, http.StatusOK, page)
}

// exchangeProblem is a problem document with what the exchange's
// refusals say beyond their code (api/openapi.yaml, schema Problem).
type exchangeProblem struct {
	problem.Problem
	// Decision is a rule violation's per-item outcome.
	Decision any `json:"decision,omitempty"`
	// ClaimedUntil is when the claim holding the prescription ends.
	ClaimedUntil *time.Time `json:"claimed_until,omitempty"`
	// State is the prescription's, when nothing may be dispensed in it.
	State exchange.State `json:"state,omitempty"`
	// Remaining is what remains of the item in the fill in force, when a
	// dispense asked more.
	Remaining *int `json:"remaining,omitempty"`
}

// failExchange writes an exchange refusal: the problem document of its
// code, with the members its kind of refusal carries.
func (a *API) failExchange(w http.ResponseWriter, r *http.Request, err error) {
	var (
		rv *exchange.RuleViolationError
		ce *exchange.ClaimedError
		nd *exchange.NotDispensableError
		od *exchange.OverDispenseError
	)
	p := exchangeProblem{Problem: problem.From(err)}
	switch {
	case errors.As(err, &rv):
		p.Decision = decisionView(CallerFrom(r.Context()), rv.Decision)
	case errors.As(err, &ce):
		t := ce.Until.UTC()
		p.ClaimedUntil = &t
	case errors.As(err, &nd):
		p.State = nd.State
	case errors.As(err, &od):
		p.Remaining = &od.Remaining
	default:
		a.fail(w, r, err)
		return
	}
	// The route, as problem.Write has it: the path holds the ids.
	p.Instance = problem.Instance(r)
	p.RequestID = w.Header().Get(problem.RequestIDHeader)
	problem.Note(r, p.Code)
	w.Header().Set("Content-Type", problem.ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(p)
}
