package rxapi_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/rxapi"
)

// failingExchange refuses every prescription with err, as the exchange
// would when its store or its signing key failed.
type failingExchange struct {
	rxapi.Exchange
	err error
}

func (f failingExchange) Prescribe(context.Context, exchange.Caller, string) (*exchange.PrescriptionAccepted, bool, error) {
	return nil, false, f.err
}

// goneKey is a signing key whose token was pulled.
type goneKey struct{ *ecdsa.PrivateKey }

func (goneKey) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, fmt.Errorf("%w: token \"rxd\": CKR_DEVICE_REMOVED", hsm.ErrTokenUnavailable)
}

// TestExchangeUnavailable: a write that failed because the database was
// unreachable (a failover) or the signing token was gone is answered 503
// unavailable with Retry-After — the vendor's software sends it again —
// and not 500, which tells it to give up; a fault of ours is still 500.
func TestExchangeUnavailable(t *testing.T) {
	f := xsetup(t)
	// What rx.Sign (as the exchange signs its acknowledgements) makes of a
	// pulled token, wrapped as the exchange wraps it.
	_, signErr := rx.Sign(f.prescription(drug(catalogtest.Amoxicillin, 20)), goneKey{f.doctor.key.(*ecdsa.PrivateKey)}, f.doctor.chain, f.clock.Now())
	if !errors.Is(signErr, hsm.ErrTokenUnavailable) {
		t.Fatalf("rx.Sign lost the token's error: %v", signErr)
	}
	for _, c := range []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"the leader shut down under the pool", fmt.Errorf("exchange: storing a prescription: %w", &pgconn.PgError{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"}), 503, "unavailable"},
		{"a replica not yet promoted", fmt.Errorf("exchange: storing a prescription: %w", &pgconn.PgError{Severity: "ERROR", Code: "25006", Message: "cannot execute INSERT in a read-only transaction"}), 503, "unavailable"},
		{"the signing token pulled", errs.Wrap(errs.Internal, signErr, "exchange: signing an ack"), 503, "unavailable"},
		{"a fault of ours", errors.New("exchange: the stored answer does not decode"), 500, "internal"},
		{"a refusal that names its own code", errs.Wrap(errs.RevocationUnknown, &pgconn.PgError{Code: "08006"}, "no fresh evidence"), 422, "revocation-status-unknown"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := xsetup(t, func(a *rxapi.API) { a.Exchange = failingExchange{a.Exchange, c.err} })
			a := g.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions", body: g.sign(t, g.doctor, g.prescription(drug(catalogtest.Amoxicillin, 20)))})
			refused(t, a, c.status, c.code)
			if got, want := a.header.Get("Retry-After"), map[bool]string{true: "1", false: ""}[c.status == 503]; got != want {
				t.Fatalf("Retry-After %q, want %q", got, want)
			}
		})
	}
}
