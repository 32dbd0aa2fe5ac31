package rxapi_test

import (
	"context"
	"crypto/x509"
	"database/sql"
	"strconv"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/rxapi"
	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
	"github.com/nuskha/nuskha/internal/testutil/rxdtest"
	"github.com/nuskha/nuskha/internal/testutil/softhsm"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

// swapExchange is the API's exchange, put in once the fixture it is built
// from exists.
type swapExchange struct {
	rxapi.Exchange
	rxapi.Idempotency
}

// TestDependencyDownIsUnavailable: when the exchange's signing key's
// token is gone (its SoftHSM2 directory moved away) or its database is
// (every connection to PostgreSQL cut, new ones refused), a prescription
// is refused 503 unavailable with a Retry-After — never 500, never
// accepted and dropped: nothing of it is stored. Once the token is back
// the same document is accepted.
func TestDependencyDownIsUnavailable(t *testing.T) {
	swap := &swapExchange{}
	f := xsetup(t, func(a *rxapi.API) { a.Exchange, a.Idempotency = swap, swap })
	ctx := context.Background()

	schema := pgtest.Schema(t)
	proxy, proxied := pgtest.Through(t, schema)
	data := rxdtest.OpenAt(t, sqlstore.Postgres, proxied, 40)
	auditLog := data.AuditLog(t)
	store, err := rxstore.NewExchange(ctx, data.DB, auditLog)
	if err != nil {
		t.Fatal(err)
	}
	tok := softhsm.NewToken(t, "exchange")
	keys := hsm.NewManager(nil)
	defer keys.Close()
	key, err := keys.CreateKey(ctx, hsm.PKCS11URI(tok.Module, tok.Label, "exchange", nil, tok.PINFile), hsm.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	leaf := f.pki.IssueWithValidity(t, "exchange-receipt-signing", testpki.Subject(pki.RoleService, "sub_rxd", xstart), key, xstart.Add(-24*time.Hour), xstart.Add(365*24*time.Hour))
	re, err := rx.NewVerifier(rx.Config{Roots: []*x509.Certificate{f.pki.Root}, Arc: f.pki.Arc, Status: exchange.AtAcceptance(f.checker), Now: f.clock.Now, MaxAge: 2 * 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := exchange.New(exchange.Config{Store: store, Verifier: f.verifier, Reverifier: re, Status: f.checker, Adjudicator: data.Adjudicator(f.clock.Now),
		Key: exchange.SigningKey{Signer: key, Chain: []*x509.Certificate{leaf, f.pki.Intermediate}}, Arc: f.pki.Arc, Now: f.clock.Now,
		Pseudonyms: rxdtest.Pseudonyms(), AuditLog: auditLog})
	if err != nil {
		t.Fatal(err)
	}
	swap.Exchange, swap.Idempotency = svc, store

	// Read without the proxy: what PostgreSQL holds, whatever rxd's pool.
	direct, err := sql.Open("pgx", schema)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	stored := func(t *testing.T, id string) bool {
		t.Helper()
		var n int
		if err := direct.QueryRowContext(ctx, "SELECT COUNT(*) FROM prescriptions WHERE id = $1", id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
	submit := func(t *testing.T, p *rx.Prescription) answer {
		t.Helper()
		return f.do(t, req{client: "vendor", method: "POST", path: "/v1/prescriptions", body: f.sign(t, f.doctor, p)})
	}
	unavailable := func(t *testing.T, a answer) {
		t.Helper()
		refused(t, a, 503, "unavailable")
		if s, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || s < 1 {
			t.Fatalf("Retry-After %q, want whole seconds", a.header.Get("Retry-After"))
		}
	}

	first := f.prescription(drug(catalogtest.Amoxicillin, 20))
	want(t, submit(t, first), 201, nil)
	if !stored(t, first.ID) {
		t.Fatal("the accepted prescription is not stored")
	}

	t.Run("token gone", func(t *testing.T) {
		putBack := tok.Pull(t)
		p := f.prescription(drug(catalogtest.Metformin, 60))
		unavailable(t, submit(t, p))
		if stored(t, p.ID) {
			t.Fatal("a prescription refused as unavailable was stored")
		}
		putBack()
		want(t, submit(t, p), 201, nil)
		if !stored(t, p.ID) {
			t.Fatal("the prescription accepted once the token was back is not stored")
		}
	})

	t.Run("database gone", func(t *testing.T) {
		proxy.Cut()
		p := f.prescription(drug(catalogtest.Omeprazole, 14))
		unavailable(t, submit(t, p))
		// The replay of one accepted before cannot be answered either.
		unavailable(t, submit(t, first))
		if stored(t, p.ID) {
			t.Fatal("a prescription refused as unavailable was stored")
		}
	})
}
