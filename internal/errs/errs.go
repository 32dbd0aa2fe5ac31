// Package errs gives domain failures a stable machine-readable code. Domain
// packages return *Error values (or wrap them with %w); only the HTTP edge
// (internal/problem) turns a code into an RFC 9457 problem document with a
// status. A code, once published, MUST NOT change meaning: vendors' software
// branches on it.
package errs

import (
	"errors"
	"fmt"
)

// Code is a stable failure identifier, kebab-case.
type Code string

// Codes shared by every daemon. Each is documented in docs/problems.md.
const (
	Malformed        Code = "malformed-request"   // body or parameters do not parse
	Invalid          Code = "invalid-field"       // a field has a bad value
	NotFound         Code = "not-found"           // the named thing does not exist
	MethodNotAllowed Code = "method-not-allowed"  // the resource exists, the HTTP method does not apply
	Conflict         Code = "conflict"            // the write conflicts with the current state
	Unauthorized     Code = "unauthenticated"     // no acceptable client credential
	Forbidden        Code = "forbidden"           // credential accepted, action not allowed
	TooLarge         Code = "request-too-large"   // body over the limit
	Internal         Code = "internal"            // our fault; details are in the log
	Unavailable      Code = "unavailable"         // a dependency (HSM, database) is down; retry later
	RateLimited      Code = "rate-limited"        // too many requests from this client (or from everyone); retry after Retry-After
	NotAnOfficer     Code = "not-an-officer"      // client certificate is not an active officer's
	InvalidNID       Code = "invalid-national-id" // national id fails its format or check digit
	SubjectExists    Code = "subject-exists"      // registry already has this person/organisation

	LicenceExpired     Code = "licence-expired"       // registry licence validity has ended
	LicenceNotYetValid Code = "licence-not-yet-valid" // registry licence validity has not begun
	LicenceSuspended   Code = "licence-suspended"     // registry licence is suspended or revoked

	BadCSR          Code = "bad-csr"                  // CSR does not parse or its signature (proof of possession) fails
	WeakKey         Code = "weak-key"                 // key too small, factorable, or otherwise unsafe
	WrongKeyType    Code = "wrong-key-type"           // key algorithm not allowed by the profile
	KeyReused       Code = "key-reused"               // the public key was already enrolled
	UnknownProfile  Code = "unknown-profile"          // no such certificate profile
	ProfileMismatch Code = "profile-subject-mismatch" // the profile is not for this kind of subject
	DualControl     Code = "dual-control-violation"   // the requesting officer tried to approve, or one officer to do alone what needs two
	NotPending      Code = "enrolment-not-pending"    // enrolment already decided, or issued on another approval
	LintFailed      Code = "lint-failed"              // the to-be-signed certificate failed linting
	NotIssued       Code = "certificate-not-issued"   // the enrolment has no certificate (yet)

	EnrolmentStale          Code = "enrolment-stale"            // the subject changed since the request was entered; enter a new request
	EnrolmentExpired        Code = "enrolment-expired"          // the request waited longer than its lifetime for a second officer
	ReviewMismatch          Code = "review-mismatch"            // the approval names a review digest other than the enrolment's
	RequesterNotActive      Code = "requester-not-active"       // the officer who entered the request is no longer an active officer
	SubjectChangeNotPending Code = "subject-change-not-pending" // the registry change was decided, expired, or overtaken by another change

	AlreadyRevoked       Code = "already-revoked"           // the certificate is revoked; revocation is final
	AlreadyOnHold        Code = "already-on-hold"           // the certificate is already suspended
	NotOnHold            Code = "not-on-hold"               // only a suspended certificate can be released
	ReasonNotAllowed     Code = "reason-not-allowed"        // this revocation reason is not accepted here
	BadRevocationRequest Code = "bad-revocation-request"    // a holder's signed request does not parse or verify
	ChangeNotPending     Code = "status-change-not-pending" // the hold/release request was decided, expired, or overtaken by another change
	ChangeAlreadyPending Code = "change-already-pending"    // a hold/release/revocation of the certificate, or a change of the registry entry, already awaits a second officer
	OfficerQuorum        Code = "officer-quorum"            // the change would leave fewer than two active officers, and no one could approve anything
	CertificateRevoked   Code = "certificate-revoked"       // the certificate was revoked (or suspended) at the time that matters
	RevocationUnknown    Code = "revocation-status-unknown" // no fresh evidence of status: refused, never assumed good
	StaleTrustBundle     Code = "stale-trust-bundle"        // the offline trust bundle is older than allowed
	BadTrustBundle       Code = "bad-trust-bundle"          // the trust bundle does not verify

	MalformedSignature    Code = "malformed-signature"                   // not a compact JWS, or parts that do not decode
	UnsupportedAlgorithm  Code = "unsupported-algorithm"                 // alg is not ES256, ES384 or PS256 (never none, never HMAC)
	UnknownCritical       Code = "unknown-critical-header"               // crit names a header parameter we do not understand
	BadSignatureHeader    Code = "bad-signature-header"                  // a header parameter is duplicated, missing, unknown or wrong
	SignatureInvalid      Code = "signature-invalid"                     // the signature does not verify over the signed bytes
	WrongDocumentType     Code = "wrong-document-type"                   // typ is not the document type expected here
	UntrustedChain        Code = "untrusted-certificate-chain"           // x5c does not chain to a configured root
	WrongCertProfile      Code = "wrong-certificate-profile"             // the certificate is not for this kind of signature
	CertificateNotValidAt Code = "certificate-not-valid-at-signing-time" // outside its validity period at sigT
	SigningTimeInFuture   Code = "signing-time-in-future"                // sigT is later than now beyond the allowed skew
	SigningTimeTooOld     Code = "signing-time-too-old"                  // sigT is older than the accepted window
	PrescriberMismatch    Code = "prescriber-mismatch"                   // the document's signer identity differs from the certificate's
	InvalidDocument       Code = "invalid-document"                      // the payload breaks the schema or a rule of its format

	ImportRejected      Code = "import-rejected"        // a CSV import had bad rows (each reported with its line); nothing was committed
	InvalidRuleSet      Code = "invalid-rule-set"       // a rule set fails to parse, compile or type-check; the running set stays in force
	CatalogueNotInForce Code = "catalogue-not-in-force" // no catalogue version is in force on the date asked for
	UnknownScope        Code = "unknown-scope"          // the rules scope is not prescribe, dispense, paper or paraclinic
	QuotaExceeded       Code = "quota-exceeded"         // the caller has used its lookups for the day; retry after Retry-After (the next day)

	DocumentIDConflict         Code = "document-id-conflict"         // a different document (another signing input) is stored under this id
	PrescriptionClaimed        Code = "prescription-claimed"         // another organisation holds a claim on the prescription (until the time given)
	PrescriptionNotDispensable Code = "prescription-not-dispensable" // expired, cancelled, fully dispensed, or no fill of the item in force
	OverDispense               Code = "over-dispense"                // more than remains of an item in the fill in force
	ClaimSecretWrong           Code = "claim-secret-wrong"           // the Claim-Secret is not the claim's current secret
	ClaimNotActive             Code = "claim-not-active"             // the claim was released, closed or has expired
	SessionIDUsed              Code = "session-id-used"              // the session document's id was used before; sign a new one
	IdempotencyKeyReused       Code = "idempotency-key-reused"       // the Idempotency-Key was used by this caller for a different request
	RoleNotAllowed             Code = "role-not-allowed"             // the acting card's role may not do this (e.g. a pharmacy prescribing)
	NotEligible                Code = "not-eligible"                 // the patient is not insured on the day judged
	RuleViolation              Code = "rule-violation"               // a rule with severity reject applies; the decision says which, per item
)

// Error is a domain failure with a stable code. Detail is safe to show to
// the caller: it MUST NOT contain secrets, national ids or internal state.
type Error struct {
	Code   Code
	Detail string
	// Field names the offending input field, when there is one.
	Field string
	// Err is the cause, for logs; it is never shown to callers.
	Err error
}

func (e *Error) Error() string {
	msg := string(e.Code)
	if e.Field != "" {
		msg += " (" + e.Field + ")"
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, &Error{Code: c}) match any error with code c.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Detail == "" && t.Err == nil && t.Field == ""
}

// New returns an Error with a formatted detail.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// Field returns an Error about one input field.
func FieldError(code Code, field, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Detail: fmt.Sprintf(format, args...)}
}

// Wrap returns an Error with a cause kept for logs.
func Wrap(code Code, err error, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...), Err: err}
}

// CodeOf returns the code of the first *Error in err's chain, or Internal.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// Of is a matcher for errors.Is: errors.Is(err, errs.Of(errs.KeyReused)).
func Of(code Code) error { return &Error{Code: code} }
