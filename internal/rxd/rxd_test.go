package rxd_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/lifecycle"
	"github.com/nuskha/nuskha/internal/netcap"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/rxd"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/testutil/audittest"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

// config is a Config that New accepts: a server certificate from a fresh
// test hierarchy (whose roots it returns), its key, and a new SQLite
// database in a temporary directory.
func config(t *testing.T) (rxd.Config, *x509.CertPool) {
	t.Helper()
	cfg, roots, _ := configPKI(t)
	return cfg, roots
}

// configPKI is config with the test hierarchy it was made from.
func configPKI(t *testing.T) (rxd.Config, *x509.CertPool, *testpki.PKI) {
	t.Helper()
	now := time.Now()
	p := testpki.New(t, nil, func() time.Time { return now })
	dir := t.TempDir()
	write := func(name, typ string, der ...[]byte) string {
		var b []byte
		for _, d := range der {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert := p.Issue(t, "service-tls-server", testpki.Subject(pki.RoleService, "rxd", now), key)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	roots := x509.NewCertPool()
	roots.AddCert(p.Root)
	audit, _ := audittest.Shared(t)
	return rxd.Config{
		Audit:    audit,
		Store:    rxd.Store{Driver: sqlstore.SQLite, Path: filepath.Join(dir, "db", "rxd.db"), Create: true},
		Listen:   "127.0.0.1:0",
		TLSCert:  write("rxd.crt", "CERTIFICATE", cert.Raw, p.Intermediate.Raw),
		TLSKey:   write("rxd.key", "PRIVATE KEY", keyDER),
		ClientCA: write("root.crt", "CERTIFICATE", p.Root.Raw),
	}, roots, p
}

func deps(t *testing.T, h slog.Handler) rxd.Deps {
	keys := hsm.NewManager(hsm.NoPrompt)
	t.Cleanup(func() { keys.Close() })
	return rxd.Deps{Log: slog.New(h), Now: time.Now, Keys: keys}
}

// TestNewRefuses: a config that cannot be served is refused by New,
// saying why, before the database is made.
func TestNewRefuses(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(*rxd.Config)
		want   string
	}{
		{"no client CA", func(c *rxd.Config) { c.ClientCA = "" }, "needs -tls-cert, -tls-key and -client-ca"},
		{"negative recheck", func(c *rxd.Config) { c.Recheck = -time.Second }, "-revocation-recheck must be 0"},
		{"negative lookups", func(c *rxd.Config) { c.Limits.PerSecond, c.Limits.DailyLookups = 1, -1 }, "must be positive"},
		{"negative read timeout", func(c *rxd.Config) { c.ReadTimeout = -time.Second }, "read timeout must be between 1s and 10m"},
		{"read timeout that would cut honest requests", func(c *rxd.Config) { c.ReadTimeout = time.Millisecond }, "read timeout must be between 1s and 10m"},
		{"read timeout that cuts nobody off", func(c *rxd.Config) { c.ReadTimeout = time.Hour }, "read timeout must be between 1s and 10m"},
		{"per-client cap above the total", func(c *rxd.Config) { c.Conns = netcap.Limits{Total: 2, PerIP: 3} }, "above the total 2"},
		{"unknown driver", func(c *rxd.Config) { c.Store.Driver = "mysql" }, `-db-driver must be sqlite or postgres, not "mysql"`},
		{"postgres without a DSN file", func(c *rxd.Config) { c.Store = rxd.Store{Driver: sqlstore.Postgres} }, "needs -dsn-file"},
		{"bad arc", func(c *rxd.Config) { c.Arc = "2.999.x" }, "2.999.x"},
		{"no audit log", func(c *rxd.Config) { c.Audit.NoteKeyFile = "" }, "-audit-note-key"},
		{"origin with a space", func(c *rxd.Config) { c.Audit.Origin = "rxd audit" }, "-audit-origin"},
		{"missing database", func(c *rxd.Config) { c.Store.Create = false }, "there is no database at"},
		{"rules file that does not compile", func(c *rxd.Config) {
			c.RulesFile = filepath.Join(t.TempDir(), "rules.yaml")
			if err := os.WriteFile(c.RulesFile, []byte("rules: [{id: x, when: 'nonsense ++'}]\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "rules.yaml"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, _ := config(t)
			c.change(&cfg)
			svc, err := rxd.New(context.Background(), cfg, deps(t, slog.DiscardHandler))
			if err == nil {
				svc.Close()
				t.Fatalf("accepted; want a refusal saying %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v; want %q", err, c.want)
			}
			if cfg.Store.Path == "" {
				return
			}
			if _, err := os.Stat(filepath.Dir(cfg.Store.Path)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("the database's directory was made (%v)", err)
			}
		})
	}
}

// TestServeThenClose: a Service serves on the address it logs until its
// context ends, returns once it has stopped, and then Close releases the
// database.
func TestServeThenClose(t *testing.T) {
	cfg, roots := config(t)
	h := &serving{addr: make(chan string, 1), Handler: slog.NewTextHandler(io.Discard, nil)}
	svc, err := rxd.New(context.Background(), cfg, deps(t, h))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx) }()
	var addr string
	select {
	case addr = <-h.addr:
	case err := <-done:
		t.Fatalf("Serve ended before it listened: %v", err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	resp, err := c.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %d", resp.StatusCode)
	}
	c.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if !h.stopped {
		t.Fatalf("Serve returned before logging %q", lifecycle.MsgStopped)
	}
	if err := svc.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// serving is a log handler that hands over the address of rxd's
// MsgServing line and notes lifecycle's MsgStopped.
type serving struct {
	slog.Handler
	addr    chan string
	stopped bool
}

func (s *serving) Handle(ctx context.Context, r slog.Record) error {
	// Logged before the address is handed over: whoever receives it may
	// read the line.
	err := s.Handler.Handle(ctx, r)
	switch r.Message {
	case rxd.MsgServing:
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "listen" {
				s.addr <- a.Value.String()
			}
			return true
		})
	case lifecycle.MsgStopped:
		s.stopped = true
	}
	return err
}

// The audit log records its pseudonym key's check value at the first
// start; an rxd given another key (a token swapped for one with a key of
// the same label, another instance's key file) refuses to start over
// that database — its patients' pseudonyms would not be the log's — and
// the log's own key still starts it.
func TestPseudonymKeyChecked(t *testing.T) {
	cfg, _ := config(t)
	start := func(c rxd.Config) error {
		svc, err := rxd.New(context.Background(), c, deps(t, slog.DiscardHandler))
		if err == nil {
			svc.Close()
		}
		return err
	}
	if err := start(cfg); err != nil {
		t.Fatal(err)
	}
	other, _ := audittest.Keys(t, t.TempDir())
	swapped := cfg
	swapped.Audit.PseudonymKey = other.PseudonymKey
	err := start(swapped)
	if err == nil || !strings.Contains(err.Error(), "-audit-pseudonym-key") || !strings.Contains(err.Error(), "check value differs") {
		t.Fatalf("another pseudonym key: %v, want a refusal naming -audit-pseudonym-key", err)
	}
	if err := start(cfg); err != nil {
		t.Fatalf("the log's own key again: %v", err)
	}
}
