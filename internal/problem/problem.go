// Package problem is the HTTP edge of errs: it writes RFC 9457
// application/problem+json documents with a stable type URI per code, and
// reads JSON request bodies strictly (size limit, no unknown or repeated
// members, one value; errors by line and column), so that bad input is
// refused before it reaches the domain. Both daemons read bodies with it.
package problem

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/nuskha/nuskha/internal/errs"
)

// TypePrefix prefixes every problem type: urn:nuskha:problem:<code>.
// docs/problems.md lists the codes.
const TypePrefix = "urn:nuskha:problem:"

// ContentType of problem documents.
const ContentType = "application/problem+json"

// RequestIDHeader carries a request's id: in the response, the id the
// server gave it and logged it under; in the request, the client's own,
// which the edge logs beside it (client_request_id) when it is a safe
// token.
const RequestIDHeader = "X-Request-Id"

// Problem is an RFC 9457 problem document with our extension members.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Code is the bare code, for clients that prefer not to parse the URN.
	Code errs.Code `json:"code"`
	// Field names the offending input field, when there is one.
	Field string `json:"field,omitempty"`
	// RequestID is the id the request was logged under, for a vendor's
	// error report to be matched with the daemon's log.
	RequestID string `json:"request_id,omitempty"`
}

type meta struct {
	status int
	title  string
}

var codes = map[errs.Code]meta{
	errs.Malformed:                  {http.StatusBadRequest, "Malformed request"},
	errs.Invalid:                    {http.StatusUnprocessableEntity, "Invalid field"},
	errs.NotFound:                   {http.StatusNotFound, "Not found"},
	errs.MethodNotAllowed:           {http.StatusMethodNotAllowed, "Method not allowed"},
	errs.Conflict:                   {http.StatusConflict, "Conflict"},
	errs.Unauthorized:               {http.StatusUnauthorized, "Not authenticated"},
	errs.Forbidden:                  {http.StatusForbidden, "Forbidden"},
	errs.TooLarge:                   {http.StatusRequestEntityTooLarge, "Request too large"},
	errs.Internal:                   {http.StatusInternalServerError, "Internal error"},
	errs.Unavailable:                {http.StatusServiceUnavailable, "Temporarily unavailable"},
	errs.RateLimited:                {http.StatusTooManyRequests, "Too many requests"},
	errs.NotAnOfficer:               {http.StatusForbidden, "Not an active security officer"},
	errs.InvalidNID:                 {http.StatusUnprocessableEntity, "Invalid national id"},
	errs.SubjectExists:              {http.StatusConflict, "Subject already registered"},
	errs.LicenceExpired:             {http.StatusUnprocessableEntity, "Licence expired"},
	errs.LicenceNotYetValid:         {http.StatusUnprocessableEntity, "Licence not yet valid"},
	errs.LicenceSuspended:           {http.StatusUnprocessableEntity, "Licence suspended"},
	errs.BadCSR:                     {http.StatusBadRequest, "Bad certificate signing request"},
	errs.WeakKey:                    {http.StatusUnprocessableEntity, "Weak key"},
	errs.WrongKeyType:               {http.StatusUnprocessableEntity, "Key type not accepted"},
	errs.KeyReused:                  {http.StatusConflict, "Key already enrolled"},
	errs.UnknownProfile:             {http.StatusUnprocessableEntity, "Unknown certificate profile"},
	errs.ProfileMismatch:            {http.StatusUnprocessableEntity, "Profile not for this subject"},
	errs.DualControl:                {http.StatusForbidden, "Dual control violation"},
	errs.NotPending:                 {http.StatusConflict, "Enrolment not pending"},
	errs.LintFailed:                 {http.StatusUnprocessableEntity, "Certificate failed linting"},
	errs.NotIssued:                  {http.StatusConflict, "Certificate not issued"},
	errs.EnrolmentStale:             {http.StatusConflict, "Enrolment stale"},
	errs.EnrolmentExpired:           {http.StatusConflict, "Enrolment expired"},
	errs.ReviewMismatch:             {http.StatusConflict, "Not what was reviewed"},
	errs.RequesterNotActive:         {http.StatusConflict, "Requester no longer an officer"},
	errs.SubjectChangeNotPending:    {http.StatusConflict, "Registry change not pending"},
	errs.AlreadyRevoked:             {http.StatusConflict, "Certificate already revoked"},
	errs.AlreadyOnHold:              {http.StatusConflict, "Certificate already on hold"},
	errs.NotOnHold:                  {http.StatusConflict, "Certificate not on hold"},
	errs.ReasonNotAllowed:           {http.StatusUnprocessableEntity, "Revocation reason not allowed"},
	errs.BadRevocationRequest:       {http.StatusBadRequest, "Bad revocation request"},
	errs.ChangeNotPending:           {http.StatusConflict, "Status change not pending"},
	errs.ChangeAlreadyPending:       {http.StatusConflict, "Status change already pending"},
	errs.OfficerQuorum:              {http.StatusConflict, "Officer quorum"},
	errs.CertificateRevoked:         {http.StatusUnprocessableEntity, "Certificate revoked"},
	errs.RevocationUnknown:          {http.StatusUnprocessableEntity, "Revocation status unknown"},
	errs.StaleTrustBundle:           {http.StatusUnprocessableEntity, "Trust bundle too old"},
	errs.BadTrustBundle:             {http.StatusUnprocessableEntity, "Trust bundle does not verify"},
	errs.MalformedSignature:         {http.StatusUnprocessableEntity, "Malformed signature"},
	errs.UnsupportedAlgorithm:       {http.StatusUnprocessableEntity, "Signature algorithm not accepted"},
	errs.UnknownCritical:            {http.StatusUnprocessableEntity, "Unknown critical header"},
	errs.BadSignatureHeader:         {http.StatusUnprocessableEntity, "Bad signature header"},
	errs.SignatureInvalid:           {http.StatusUnprocessableEntity, "Signature invalid"},
	errs.WrongDocumentType:          {http.StatusUnprocessableEntity, "Wrong document type"},
	errs.UntrustedChain:             {http.StatusUnprocessableEntity, "Untrusted certificate chain"},
	errs.WrongCertProfile:           {http.StatusUnprocessableEntity, "Wrong certificate profile"},
	errs.CertificateNotValidAt:      {http.StatusUnprocessableEntity, "Certificate not valid at signing time"},
	errs.SigningTimeInFuture:        {http.StatusUnprocessableEntity, "Signing time in the future"},
	errs.SigningTimeTooOld:          {http.StatusUnprocessableEntity, "Signing time too old"},
	errs.PrescriberMismatch:         {http.StatusUnprocessableEntity, "Signer does not match the document"},
	errs.InvalidDocument:            {http.StatusUnprocessableEntity, "Invalid document"},
	errs.ImportRejected:             {http.StatusUnprocessableEntity, "Import rejected"},
	errs.InvalidRuleSet:             {http.StatusUnprocessableEntity, "Invalid rule set"},
	errs.CatalogueNotInForce:        {http.StatusUnprocessableEntity, "No catalogue in force on that date"},
	errs.UnknownScope:               {http.StatusUnprocessableEntity, "Unknown rules scope"},
	errs.QuotaExceeded:              {http.StatusTooManyRequests, "Daily quota used"},
	errs.DocumentIDConflict:         {http.StatusConflict, "Document id already used"},
	errs.PrescriptionClaimed:        {http.StatusConflict, "Prescription claimed"},
	errs.PrescriptionNotDispensable: {http.StatusConflict, "Prescription not dispensable"},
	errs.OverDispense:               {http.StatusConflict, "More than remains"},
	errs.ClaimSecretWrong:           {http.StatusForbidden, "Wrong claim secret"},
	errs.ClaimNotActive:             {http.StatusConflict, "Claim not active"},
	errs.SessionIDUsed:              {http.StatusConflict, "Session document already used"},
	errs.IdempotencyKeyReused:       {http.StatusUnprocessableEntity, "Idempotency key reused"},
	errs.RoleNotAllowed:             {http.StatusForbidden, "Role not allowed"},
	errs.NotEligible:                {http.StatusUnprocessableEntity, "Patient not eligible"},
	errs.RuleViolation:              {http.StatusUnprocessableEntity, "Rule violation"},
}

// Status returns the HTTP status for a code.
func Status(c errs.Code) int {
	if m, ok := codes[c]; ok {
		return m.status
	}
	return http.StatusInternalServerError
}

// Codes lists every code with its status and title, for documentation tests.
func Codes() map[errs.Code]struct {
	Status int
	Title  string
} {
	out := map[errs.Code]struct {
		Status int
		Title  string
	}{}
	for c, m := range codes {
		out[c] = struct {
			Status int
			Title  string
		}{m.status, m.title}
	}
	return out
}

// From builds the problem for err. Internal errors get a generic detail:
// their text stays in the log.
func From(err error) Problem {
	var e *errs.Error
	if !errors.As(err, &e) {
		e = &errs.Error{Code: errs.Internal}
	}
	m, ok := codes[e.Code]
	if !ok {
		m = codes[errs.Internal]
	}
	p := Problem{Type: TypePrefix + string(e.Code), Title: m.title, Status: m.status, Code: e.Code, Detail: e.Detail, Field: e.Field}
	if e.Code == errs.Internal {
		p.Detail = "an internal error occurred; it has been logged"
	}
	return p
}

// Write sends err as a problem document, with the request id the edge
// gave the response (its RequestIDHeader, set before any handler runs).
// Its instance is the route the request matched, never the path, which
// may hold a national id (/v1/eligibility/{nationalId}); none without a
// route.
// Server-side failures are logged with their cause, by route and request
// id (never the path, which may hold a national id); client errors are not
// (they are audited where it matters).
//
// An unavailable answer (a database or a token that is down) always says
// when to try again: the Retry-After a handler set, or RetryAfter.
func Write(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	p := From(err)
	p.Instance = Instance(r)
	p.RequestID = w.Header().Get(RequestIDHeader)
	if p.Status >= 500 && log != nil {
		log.ErrorContext(r.Context(), "request failed", "method", r.Method, "route", r.Pattern, "request_id", p.RequestID, "code", string(p.Code), "err", err)
	}
	Note(r, p.Code)
	if p.Code == errs.Unavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", RetryAfter)
	}
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(p)
}

// RetryAfter is the Retry-After, in seconds, of an unavailable answer
// whose handler set none: a PostgreSQL failover or a token found again
// takes seconds, and a client that waits one second between tries neither
// hammers the daemon nor waits long after it is back.
const RetryAfter = "1"

type noteKey struct{}

// WithNote returns ctx under which Write tells note the code of the
// problem it writes: the HTTP edge counts answers by problem type. note
// is called on the goroutine serving the request.
func WithNote(ctx context.Context, note func(errs.Code)) context.Context {
	return context.WithValue(ctx, noteKey{}, note)
}

// Note tells the edge (WithNote) that the answer to r is a problem
// document with code c: for a handler that writes one itself, with
// members of its own, rather than through Write.
func Note(r *http.Request, c errs.Code) {
	if note, ok := r.Context().Value(noteKey{}).(func(errs.Code)); ok {
		note(c)
	}
}

// Instance is the instance of a problem document answering r: the path of
// the route it matched, never its own path; "" without a route. Writers
// of problem documents with members of their own use it as Write does.
func Instance(r *http.Request) string { return routePath(r.Pattern) }

// routePath is a ServeMux pattern's path ("GET /v1/x/{id}" → "/v1/x/{id}"):
// without its method and host, a relative URI reference as an instance is.
func routePath(pattern string) string {
	if _, path, ok := strings.Cut(pattern, " "); ok {
		pattern = strings.TrimLeft(path, " \t")
	}
	if i := strings.IndexByte(pattern, '/'); i >= 0 {
		return pattern[i:]
	}
	return ""
}

// JSON writes v with status. Rule expressions, messages and names are
// sent as written: "a && b", not "a \u0026\u0026 b" (the escaping is for
// JSON pasted into HTML, which these answers never are, and problem+json is
// never sniffed as HTML). Compact: the answers are read by programs, and
// rxctl indents what it shows.
func JSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
