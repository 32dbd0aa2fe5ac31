package publish_test

import (
	"bytes"
	"context"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/pki/crl"
	"github.com/nuskha/nuskha/internal/publish"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/truststore"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

// cancellingIssuer cancels a context as soon as the key has signed: a
// shutdown or a client hanging up while the HSM signs.
type cancellingIssuer struct {
	publish.Issuer
	mu     sync.Mutex
	cancel func()
	signed []int64
}

func (c *cancellingIssuer) SignCRL(req crl.Request, before crl.BeforeSign) ([]byte, error) {
	der, err := c.Issuer.SignCRL(req, before)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil && err == nil {
		c.signed = append(c.signed, req.Number.Int64())
		c.cancel()
	}
	return der, err
}

func (c *cancellingIssuer) arm(cancel func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancel = cancel
}

func (c *cancellingIssuer) numbers() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.signed)
}

// TestCRLSignedThenCancelledIsKept: once the key has signed a CRL, the
// context it was asked under ending (trustd stopping, the client that
// fetched the CRL hanging up) neither loses the CRL nor leaves its audit
// intent without an outcome.
func TestCRLSignedThenCancelledIsKept(t *testing.T) {
	for name, cancelDuring := range map[string]func(t *testing.T, pub *publish.Publisher, ctx context.Context){
		"Run stopped": func(t *testing.T, pub *publish.Publisher, ctx context.Context) {
			done := make(chan struct{})
			go func() { pub.Run(ctx); close(done) }()
			if err := pub.StatusChanged(context.Background(), revoke.Record{Serial: big.NewInt(12345), Status: revoke.Revoked,
				Reason: revoke.KeyCompromise, EffectiveAt: time.Now(), NotAfter: time.Now().Add(time.Hour)}); err != nil {
				t.Log(err) // the serial is unknown to the responder; the CRL is what is tested
			}
			<-done
		},
		"client hung up": func(t *testing.T, pub *publish.Publisher, ctx context.Context) {
			_ = pub.StatusChanged(context.Background(), revoke.Record{Serial: big.NewInt(12345), Status: revoke.Revoked,
				Reason: revoke.KeyCompromise, EffectiveAt: time.Now(), NotAfter: time.Now().Add(time.Hour)})
			rr := httptest.NewRecorder()
			pub.CRLHandler().ServeHTTP(rr, httptest.NewRequest("GET", "/crl", nil).WithContext(ctx))
			if rr.Code != http.StatusOK {
				t.Errorf("status %d; want the CRL made for the request served", rr.Code)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			bg := context.Background()
			s, err := truststore.Open(bg, sqlstore.SQLite, filepath.Join(t.TempDir(), "t.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			p := testpki.New(t, nil, time.Now)
			var logs bytes.Buffer
			cfg := publisherConfig(t, s, p, time.Now)
			cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
			cfg.Audit = audit.NewLog(s, cfg.Log, time.Now)
			iss := &cancellingIssuer{Issuer: p.CA}
			cfg.Issuer = iss
			pub, err := publish.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := pub.Start(bg); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(bg)
			defer cancel()
			iss.arm(cancel)
			cancelDuring(t, pub, ctx)

			signed := iss.numbers()
			if len(signed) != 1 {
				t.Fatalf("signed %v; want one CRL signed before the cancel", signed)
			}
			latest, err := s.LatestCRL(bg)
			if err != nil {
				t.Fatal(err)
			}
			if latest.Number != signed[0] || pub.CRL().Number != signed[0] {
				t.Errorf("CRL %d was signed; the latest recorded is %d and %d is served", signed[0], latest.Number, pub.CRL().Number)
			}
			evs, err := s.ListAudit(bg, store.AuditFilter{Object: "crl:" + strconv.FormatInt(signed[0], 10), Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			var outcomes []string
			for _, e := range evs {
				outcomes = append(outcomes, string(e.Outcome))
			}
			slices.Sort(outcomes)
			if !slices.Equal(outcomes, []string{string(audit.Intent), string(audit.OK)}) {
				t.Errorf("audit outcomes of CRL %d: %v; want an intent and ok\nlog:\n%s", signed[0], outcomes, logs.String())
			}
		})
	}
}

// TestRunLogsFailureWhileStopping: a generation that fails as Run stops
// is logged, not dropped.
func TestRunLogsFailureWhileStopping(t *testing.T) {
	bg := context.Background()
	s, err := truststore.Open(bg, sqlstore.SQLite, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := testpki.New(t, nil, time.Now)
	var logs syncBuffer
	cfg := publisherConfig(t, s, p, time.Now)
	cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
	fs := &failingStore{Store: s}
	iss := &cancellingIssuer{Issuer: p.CA}
	cfg.Store, cfg.Issuer = fs, iss
	pub, err := publish.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Start(bg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	fs.fail = true
	iss.arm(cancel)
	done := make(chan struct{})
	go func() { pub.Run(ctx); close(done) }()
	_ = pub.StatusChanged(bg, revoke.Record{Serial: big.NewInt(1), Status: revoke.Revoked, EffectiveAt: time.Now(), NotAfter: time.Now().Add(time.Hour)})
	<-done
	if !strings.Contains(logs.String(), "the database went away") {
		t.Fatalf("the failure of the generation stopped by Run is not logged:\n%s", logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a logger writing from another
// goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
