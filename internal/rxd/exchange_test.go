package rxd_test

import (
	"context"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/rxd"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

// withExchange gives cfg the exchange's signing key (a key URI, as in the
// HSM) and its certificate chain from p, in dir.
func withExchange(t *testing.T, cfg *rxd.Config, p *testpki.PKI) {
	t.Helper()
	dir := t.TempDir()
	pass := filepath.Join(dir, "pass")
	if err := os.WriteFile(pass, []byte("a long enough password"), 0o600); err != nil {
		t.Fatal(err)
	}
	uri := "softkey:path=" + filepath.Join(dir, "exchange.key") + "?pin-source=" + pass
	keys := hsm.NewManager(hsm.NoPrompt)
	defer keys.Close()
	k, err := keys.CreateKey(context.Background(), uri, hsm.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	leaf := p.Issue(t, "exchange-receipt-signing", testpki.Subject(pki.RoleService, "sub_rxd", time.Now()), k)
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Intermediate.Raw})...)
	cfg.ExchangeKey, cfg.ExchangeCert = uri, filepath.Join(dir, "exchange.crt")
	if err := os.WriteFile(cfg.ExchangeCert, chain, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestNewRefusesExchangeKey: an exchange key without its certificate (or
// the reverse), a key that is not the certificate's, and a chain without
// its intermediate are refused at start, saying so.
func TestNewRefusesExchangeKey(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(*rxd.Config)
		want   string
	}{
		{"key without certificate", func(c *rxd.Config) { c.ExchangeCert = "" }, "-exchange-key and -exchange-cert go together"},
		{"certificate without key", func(c *rxd.Config) { c.ExchangeKey = "" }, "-exchange-key and -exchange-cert go together"},
		{"another key", func(c *rxd.Config) {
			c.ExchangeKey = strings.Replace(c.ExchangeKey, "exchange.key", "other.key", 1)
			keys := hsm.NewManager(hsm.NoPrompt)
			defer keys.Close()
			if _, err := keys.CreateKey(context.Background(), c.ExchangeKey, hsm.ECP256); err != nil {
				t.Fatal(err)
			}
		}, "is not the key of the certificate"},
		{"no intermediate", func(c *rxd.Config) {
			b, _ := os.ReadFile(c.ExchangeCert)
			blk, _ := pem.Decode(b)
			if err := os.WriteFile(c.ExchangeCert, pem.EncodeToMemory(blk), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "needs the exchange's certificate and its intermediate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, _, p := configPKI(t)
			withExchange(t, &cfg, p)
			c.change(&cfg)
			svc, err := rxd.New(context.Background(), cfg, deps(t, slog.DiscardHandler))
			if err == nil {
				svc.Close()
				t.Fatalf("accepted; want a refusal saying %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v; want %q", err, c.want)
			}
		})
	}
}

// TestServeExchange: with its key, rxd serves the exchange (it says so
// when it starts) and purges expired sessions and idempotency records in
// the background, once at start and then every PurgeEvery; without it, it
// says it serves none.
func TestServeExchange(t *testing.T) {
	for _, with := range []bool{true, false} {
		t.Run(map[bool]string{true: "with key", false: "without"}[with], func(t *testing.T) {
			cfg, _, p := configPKI(t)
			if with {
				withExchange(t, &cfg, p)
			}
			cfg.PurgeEvery = 20 * time.Millisecond
			h := &exchangeLog{serving: serving{addr: make(chan string, 1), Handler: slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug})},
				purged: make(chan struct{}, 8)}
			svc, err := rxd.New(context.Background(), cfg, deps(t, h))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- svc.Serve(ctx) }()
			<-h.addr
			if with {
				// Twice: at start and after PurgeEvery.
				<-h.purged
				<-h.purged
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if err := svc.Close(); err != nil {
				t.Fatal(err)
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.exchange != with {
				t.Fatalf("logged exchange=%v, want %v", h.exchange, with)
			}
			if !with && h.purges != 0 {
				t.Fatalf("purged %d times without an exchange", h.purges)
			}
		})
	}
}

// exchangeLog is serving, noting whether rxd said it serves the exchange
// and each purge.
type exchangeLog struct {
	serving
	mu       sync.Mutex
	exchange bool
	purges   int
	purged   chan struct{}
}

func (h *exchangeLog) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	switch r.Message {
	case rxd.MsgServing:
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "exchange" {
				h.exchange = a.Value.Bool()
			}
			return true
		})
	case rxd.MsgPurged:
		h.purges++
		select {
		case h.purged <- struct{}{}:
		default:
		}
	}
	h.mu.Unlock()
	return h.serving.Handle(ctx, r)
}
