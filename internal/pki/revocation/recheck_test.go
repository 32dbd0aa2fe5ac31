package revocation_test

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/responder"
	"github.com/nuskha/nuskha/internal/pki/revocation"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
	"golang.org/x/crypto/ocsp"
)

// clock is a checker's injected time, moved by the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// ocspServer is the real responder over HTTP, counting requests; it can be
// taken down (HTTP 503) or made to hold requests until a gate opens.
type ocspServer struct {
	r    *responder.Responder
	srv  *httptest.Server
	hits atomic.Int32
	down atomic.Bool
	// While holding, requests say they arrived on held, then wait for
	// gate to close.
	holding atomic.Bool
	held    chan struct{}
	gate    chan struct{}
}

func newOCSPServer(t *testing.T, f *fixture) *ocspServer {
	t.Helper()
	s := &ocspServer{held: make(chan struct{}, 100), gate: make(chan struct{})}
	var err error
	s.r, err = responder.New(responder.Config{Issuer: f.p.Intermediate, Now: time.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	rk := newKey()
	if err := s.r.SetCredential(responder.Credential{Cert: f.p.Issue(t, "ocsp-responder", testpki.Subject(pki.RoleService, "sub_o", time.Now()), rk), Key: rk}); err != nil {
		t.Fatal(err)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s.hits.Add(1)
		if s.holding.Load() {
			select {
			case s.held <- struct{}{}:
			default: // nobody counts this many
			}
			<-s.gate
		}
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		s.r.Handler("/").ServeHTTP(w, req)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// point returns cert naming this server as its OCSP responder, with the
// status given.
func (s *ocspServer) point(t *testing.T, cert *x509.Certificate, status revoke.Status) *x509.Certificate {
	t.Helper()
	c := *cert
	c.OCSPServer = []string{s.srv.URL}
	s.set(t, &c, status, 1)
	return &c
}

func (s *ocspServer) set(t *testing.T, cert *x509.Certificate, status revoke.Status, seq int64) {
	t.Helper()
	rec := responder.Record{Serial: cert.SerialNumber, Seq: seq}
	switch status {
	case revoke.Revoked:
		rec.Status, rec.Reason, rec.RevokedAt = ocsp.Revoked, ocsp.KeyCompromise, time.Now().Add(-time.Second)
	case revoke.OnHold:
		rec.Status, rec.Reason, rec.RevokedAt = ocsp.Revoked, ocsp.CertificateHold, time.Now().Add(-time.Second)
	}
	if err := s.r.Update(rec); err != nil {
		t.Fatal(err)
	}
}

func (s *ocspServer) checker(t *testing.T, clk *clock, maxAge, recheck time.Duration) *revocation.Checker {
	t.Helper()
	c, err := revocation.New(revocation.Config{MaxAge: maxAge, Recheck: recheck, Now: clk.Now, HTTP: s.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wantStatus(t *testing.T, what string, res revocation.Result, err error, want revocation.Status) {
	t.Helper()
	if err != nil || res.Status != want {
		t.Fatalf("%s: %+v %v, want %s", what, res, err, want)
	}
}

func wantUnknown(t *testing.T, what string, res revocation.Result, err error, saying string) {
	t.Helper()
	if !errors.Is(err, errs.Of(errs.RevocationUnknown)) || !strings.Contains(err.Error(), saying) {
		t.Fatalf("%s: %+v %v, want revocation-status-unknown saying %q", what, res, err, saying)
	}
}

// TestOCSPRecheck: a "good" answer is reused for Recheck at most, so a
// certificate revoked at the responder is refused within Recheck; the
// revocation, final, is then remembered without asking again.
func TestOCSPRecheck(t *testing.T) {
	f := setup(t)
	s := newOCSPServer(t, f)
	cert := s.point(t, f.good, revoke.Good)
	clk := &clock{t: time.Now()}
	const recheck = time.Minute
	c := s.checker(t, clk, time.Hour, recheck)
	check := func() (revocation.Result, error) { return c.Check(context.Background(), cert, f.p.Intermediate) }

	res, err := check()
	wantStatus(t, "first check", res, err, revocation.Good)
	s.set(t, cert, revoke.Revoked, 2)
	clk.Advance(recheck - time.Second)
	res, err = check()
	wantStatus(t, "within the recheck interval, the answer held", res, err, revocation.Good)
	if n := s.hits.Load(); n != 1 {
		t.Fatalf("%d OCSP requests within the recheck interval, want 1", n)
	}
	clk.Advance(time.Second)
	res, err = check()
	wantStatus(t, "once the recheck interval has passed", res, err, revocation.Revoked)
	if res.Reason != int(revoke.KeyCompromise) || s.hits.Load() != 2 {
		t.Fatalf("reason %d after %d requests", res.Reason, s.hits.Load())
	}

	// Revoked is final: held for the life of the checker, past every
	// interval, without asking — even with the responder down.
	s.down.Store(true)
	clk.Advance(50 * time.Minute)
	res, err = check()
	wantStatus(t, "later, the responder down", res, err, revocation.Revoked)
	if s.hits.Load() != 2 {
		t.Fatalf("asked again about a revoked certificate: %d requests", s.hits.Load())
	}
	// Nor does a CRL made before the revocation undo it.
	if err := c.AddCRL(f.crl(t, 1, clk.Now().Add(-time.Minute), 24*time.Hour), f.p.Intermediate); err != nil {
		t.Fatal(err)
	}
	res, err = check()
	wantStatus(t, "with an older CRL held that does not list it", res, err, revocation.Revoked)
}

// TestOCSPRecheckZero: Recheck 0 asks on every check.
func TestOCSPRecheckZero(t *testing.T) {
	f := setup(t)
	s := newOCSPServer(t, f)
	cert := s.point(t, f.good, revoke.Good)
	c := s.checker(t, &clock{t: time.Now()}, time.Hour, 0)
	for i := range 3 {
		res, err := c.Check(context.Background(), cert, f.p.Intermediate)
		wantStatus(t, "check", res, err, revocation.Good)
		if n := s.hits.Load(); n != int32(i+1) {
			t.Fatalf("check %d made %d requests in all", i+1, n)
		}
	}
	s.set(t, cert, revoke.Revoked, 2)
	res, err := c.Check(context.Background(), cert, f.p.Intermediate)
	wantStatus(t, "the next check after revocation", res, err, revocation.Revoked)
}

// TestOCSPFailuresAreNotHeld: a failed request is never remembered, and
// never turns a held "good" into a longer one.
func TestOCSPFailuresAreNotHeld(t *testing.T) {
	f := setup(t)
	s := newOCSPServer(t, f)
	cert := s.point(t, f.good, revoke.Good)
	clk := &clock{t: time.Now()}
	const recheck = time.Minute
	c := s.checker(t, clk, time.Hour, recheck)
	check := func() (revocation.Result, error) { return c.Check(context.Background(), cert, f.p.Intermediate) }

	s.down.Store(true)
	res, err := check()
	wantUnknown(t, "responder down", res, err, "HTTP 503")
	s.down.Store(false)
	res, err = check()
	wantStatus(t, "responder back", res, err, revocation.Good)
	if s.hits.Load() != 2 {
		t.Fatalf("the failure was held: %d requests", s.hits.Load())
	}
	s.down.Store(true)
	clk.Advance(recheck)
	res, err = check()
	wantUnknown(t, "good held past its interval, responder down", res, err, "HTTP 503")
}

// TestOCSPHeldNoLongerThanTheEvidence: however long Recheck is, a held
// answer is not used past thisUpdate + MaxAge.
func TestOCSPHeldNoLongerThanTheEvidence(t *testing.T) {
	f := setup(t)
	s := newOCSPServer(t, f)
	cert := s.point(t, f.good, revoke.Good)
	clk := &clock{t: time.Now()}
	c := s.checker(t, clk, time.Hour, 10*time.Hour)
	res, err := c.Check(context.Background(), cert, f.p.Intermediate)
	wantStatus(t, "first check", res, err, revocation.Good)
	clk.Advance(time.Hour + time.Minute)
	// Asked again, and the responder's answer (signed when the test
	// began) is now too old as well.
	res, err = c.Check(context.Background(), cert, f.p.Intermediate)
	wantUnknown(t, "past MaxAge", res, err, "old, more than")
	if s.hits.Load() != 2 {
		t.Fatalf("%d requests", s.hits.Load())
	}
}

// TestOCSPHoldIsNotFinal: a suspension is rechecked like "good": once it
// is lifted, the certificate is good again within Recheck.
func TestOCSPHoldIsNotFinal(t *testing.T) {
	f := setup(t)
	s := newOCSPServer(t, f)
	cert := s.point(t, f.good, revoke.OnHold)
	clk := &clock{t: time.Now()}
	const recheck = time.Minute
	c := s.checker(t, clk, time.Hour, recheck)
	res, err := c.Check(context.Background(), cert, f.p.Intermediate)
	wantStatus(t, "suspended", res, err, revocation.OnHold)
	s.set(t, cert, revoke.Good, 2)
	clk.Advance(recheck)
	res, err = c.Check(context.Background(), cert, f.p.Intermediate)
	wantStatus(t, "released", res, err, revocation.Good)
}

// TestOCSPBurstSharesOneRequest: many checks of one certificate at once
// send one OCSP request, even with Recheck 0; and the check that started
// the request giving up (its caller gone) does not fail the others.
func TestOCSPBurstSharesOneRequest(t *testing.T) {
	f := setup(t)
	s := newOCSPServer(t, f)
	cert := s.point(t, f.good, revoke.Good)
	s.holding.Store(true)
	var open sync.Once
	release := func() { open.Do(func() { close(s.gate) }) }
	t.Cleanup(release) // before the server closes, should the test fail first
	c := s.checker(t, &clock{t: time.Now()}, time.Hour, 0)

	firstCtx, cancelFirst := context.WithCancel(context.Background())
	firstErr := make(chan error, 1)
	go func() {
		_, err := c.Check(firstCtx, cert, f.p.Intermediate)
		firstErr <- err
	}()
	select {
	case <-s.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the first request did not reach the responder within 10 s")
	}
	const burst = 50
	var wg sync.WaitGroup
	results := make([]error, burst)
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.Check(context.Background(), cert, f.p.Intermediate)
			if err == nil && res.Status != revocation.Good {
				err = errors.New(string(res.Status))
			}
			results[i] = err
		}()
	}
	if !c.AwaitWaiting(burst+1, 10*time.Second) {
		t.Fatal("the checks were not all waiting for the answer within 10 s")
	}
	cancelFirst()
	if err := <-firstErr; !errors.Is(err, errs.Of(errs.RevocationUnknown)) || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("the check whose caller left: %v", err)
	}
	release()
	wg.Wait()
	for i, err := range results {
		if err != nil {
			t.Fatalf("check %d: %v", i, err)
		}
	}
	if n := s.hits.Load(); n != 1 {
		t.Fatalf("%d checks at once sent %d OCSP requests, want 1", burst+1, n)
	}
}
