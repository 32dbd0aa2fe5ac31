package exchange

import (
	"context"
	"crypto/x509"
	"time"

	"github.com/nuskha/nuskha/internal/pki/revocation"
	"github.com/nuskha/nuskha/internal/rx"
)

// Revocation reasons (RFC 5280) that say the holder stopped using the
// certificate for a reason that casts no doubt on what it signed before:
// the only ones that leave a document accepted before the revocation good.
// Every other reason — a compromise, privilegeWithdrawn, unspecified (0, or
// none given), certificateHold, any reason unknown here — refuses it:
// revocation judged at acceptance fails closed.
const (
	reasonAffiliationChanged   = 3
	reasonSuperseded           = 4
	reasonCessationOfOperation = 5
)

type acceptedAtKey struct{}

// withAcceptedAt marks ctx as verifying a document the exchange accepted
// at t, for a status checker wrapped by AtAcceptance.
func withAcceptedAt(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, acceptedAtKey{}, t)
}

// AtAcceptance wraps the status checker of the verifier that verifies
// stored documents again (Config.Reverifier). A signature's own time
// (sigT) is whatever the key holder wrote, so a verifier of a new document
// trusts no revoked certificate; but the exchange's acceptance time is a
// time the signer did not choose. When verifying a document accepted at
// t, a signer's certificate revoked after t because its holder changed
// affiliation, was superseded or ceased operation (the practitioner
// retired, changed practice, the card was replaced) does not undo what it
// signed: the result reads good. Any other reason after t — a compromise,
// privilege withdrawn, unspecified, a suspension (certificateHold) — and
// any revocation or suspension before t stands, as does a revoked CA (an
// error from the chain check) and missing evidence. Without an acceptance
// time in the context (a new document) the wrapped checker's answer is
// returned unchanged.
func AtAcceptance(st rx.StatusChecker) rx.StatusChecker { return atAcceptance{st} }

type atAcceptance struct{ rx.StatusChecker }

func (a atAcceptance) CheckChain(ctx context.Context, chain []*x509.Certificate) (revocation.Result, error) {
	r, err := a.StatusChecker.CheckChain(ctx, chain)
	if err != nil || r.Status == revocation.Good {
		return r, err
	}
	at, ok := ctx.Value(acceptedAtKey{}).(time.Time)
	if !ok || !r.RevokedAt.After(at) {
		return r, nil
	}
	if r.Status != revocation.Revoked || (r.Reason != reasonAffiliationChanged && r.Reason != reasonSuperseded && r.Reason != reasonCessationOfOperation) {
		return r, nil
	}
	// Good for what was accepted before; RevokedAt and Reason still say
	// what happened since.
	r.Status = revocation.Good
	return r, nil
}
