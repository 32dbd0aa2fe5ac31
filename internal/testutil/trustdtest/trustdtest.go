// Package trustdtest runs a real trustd in the test's process: the CA
// ceremony into a temporary directory (keys in password-encrypted files,
// the embedded SQLite store), its admin, public and relying-party (CRL and
// OCSP) listeners served over real sockets, and the publisher running —
// what a tool or a daemon under test talks to as it would to trustd.
package trustdtest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/trustd"
)

// Trustd is a running trustd.
type Trustd struct {
	// AdminURL and PublicURL are its HTTPS APIs; RootFile its root
	// certificate (PEM), the trust anchor of every certificate it issues.
	AdminURL, PublicURL, RootFile string
	// Officers are the ceremony's two officers (alice, bob): dual control
	// means one requests and the other approves.
	Officers []trustd.OfficerCredential
	Service  *trustd.Service
	// RelyingPartyURL is the plain-HTTP base of its CRL and OCSP, as
	// written in every certificate.
	RelyingPartyURL string
	// OpsURL is the plain-HTTP base of its operations listener
	// (/metrics, /healthz, /readyz).
	OpsURL string
	// Dir is trustd's directory, Init what the ceremony made there, and
	// Keys the key manager it serves with.
	Dir  string
	Init *trustd.InitResult
	Keys *hsm.Manager
}

// Options vary the trustd Start makes.
type Options struct {
	// Store is trustd's database [the embedded SQLite store].
	Store trustd.StoreConfig
	// IntermediateKey is the issuing key's URI (e.g. on a SoftHSM2
	// token) [a password-encrypted file the ceremony makes].
	IntermediateKey string
}

// Start runs the ceremony and serves trustd until the test ends.
func Start(t testing.TB) *Trustd { return StartWith(t, Options{}) }

// StartWith is Start with o.
func StartWith(t testing.TB, o Options) *Trustd {
	t.Helper()
	if o.Store == (trustd.StoreConfig{}) {
		o.Store = trustd.StoreConfig{Driver: "sqlite", Path: "trustd.db"}
	}
	keys := hsm.NewManager(hsm.NoPrompt)
	t.Cleanup(func() { keys.Close() })
	dir := filepath.Join(t.TempDir(), "trustd")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	// The relying-party listener's address goes into every certificate
	// (OCSP, CRL), so it is bound before the ceremony.
	rpListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	res, err := trustd.Init(ctx, trustd.InitOptions{
		Dir:             dir,
		IntermediateKey: o.IntermediateKey,
		Officers:        []trustd.Officer{{Name: "alice"}, {Name: "bob"}},
		Store:           o.Store,
		AdminListen:     "127.0.0.1:0", PublicListen: "127.0.0.1:0",
		HTTPBaseURL: "http://" + rpListener.Addr().String(),
	}, trustd.Deps{Log: log, Now: time.Now, Keys: keys})
	if err != nil {
		t.Fatalf("trustd init: %v", err)
	}
	cfg, err := trustd.LoadConfig(res.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := trustd.New(ctx, cfg, trustd.Deps{Log: log, Now: time.Now, Keys: keys})
	if err != nil {
		t.Fatalf("trustd: %v", err)
	}
	t.Cleanup(func() { svc.Close() })
	admin := httptest.NewUnstartedServer(svc.API().AdminHandler())
	admin.TLS = svc.AdminTLS()
	admin.StartTLS()
	t.Cleanup(admin.Close)
	public := httptest.NewUnstartedServer(svc.API().PublicHandler())
	public.TLS = svc.PublicTLS()
	public.StartTLS()
	t.Cleanup(public.Close)
	rp := httptest.NewUnstartedServer(svc.API().RelyingPartyHandler())
	rp.Listener.Close()
	rp.Listener = rpListener
	rp.Start()
	t.Cleanup(rp.Close)
	ops := httptest.NewServer(svc.OpsHandler())
	t.Cleanup(ops.Close)
	runCtx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	go svc.Publisher().Run(runCtx)
	return &Trustd{AdminURL: admin.URL, PublicURL: public.URL, RootFile: res.RootCert, Officers: res.Officers, Service: svc,
		RelyingPartyURL: "http://" + rpListener.Addr().String(), OpsURL: ops.URL, Dir: dir, Init: res, Keys: keys}
}
