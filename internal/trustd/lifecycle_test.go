package trustd_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.step.sm/crypto/pemutil"
	"golang.org/x/crypto/ocsp"

	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/lifecycle"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/bundle"
	"github.com/nuskha/nuskha/internal/testutil/logbuf"
	"github.com/nuskha/nuskha/internal/trustd"
)

// initCA makes a CA in a temporary directory with its listeners on ports
// of the kernel's choosing, and returns its config.
func initCA(t *testing.T, d trustd.Deps) (*trustd.Config, *trustd.InitResult) {
	t.Helper()
	res, err := trustd.Init(context.Background(), trustd.InitOptions{
		Dir: filepath.Join(t.TempDir(), "ca"), Officers: []trustd.Officer{{Name: "alice"}, {Name: "bob"}},
		AdminListen: "127.0.0.1:0", PublicListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
	}, d)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := trustd.LoadConfig(res.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, res
}

// ocspRequest asks for the status of an officer's certificate.
func ocspRequest(t *testing.T, res *trustd.InitResult) []byte {
	t.Helper()
	chain, err := pemutil.ReadCertificateBundle(res.Officers[0].CertFile)
	if err != nil {
		t.Fatal(err)
	}
	req, err := ocsp.CreateRequest(chain[0], chain[1], nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestServeStopsInOrder: trustd serving is stopped (its context ends)
// with a request in flight. The listener stops accepting, the request is
// served to the end, and only then does the background work stop; Serve
// returns after all of it ended, before the store and the keys close.
func TestServeStopsInOrder(t *testing.T) {
	ctx := context.Background()
	d := deps(t)
	cfg, res := initCA(t, d)
	logs := logbuf.NewLines()
	d.Log = slog.New(slog.NewJSONHandler(logs, nil))
	svc, err := trustd.New(ctx, cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- svc.Serve(runCtx) }()
	select {
	case <-logs.Logged("listening", 3):
	case err := <-done:
		t.Fatalf("serve ended before it listened: %v", err)
	}
	var addr string
	for _, l := range logs.Find("listening") {
		if l["listener"] == "http" {
			addr, _ = l["addr"].(string)
		}
	}

	// An OCSP request over plain HTTP, held in flight: its headers are
	// read and the handler waits for the body (the server's "100
	// Continue" says it has begun reading it).
	body := ocspRequest(t, res)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /ocsp HTTP/1.1\r\nHost: %s\r\nContent-Type: application/ocsp-request\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", addr, len(body))
	rd := bufio.NewReader(conn)
	if line, err := rd.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("no 100 Continue: %q %v", line, err)
	}
	if _, err := rd.ReadString('\n'); err != nil { // the blank line after it
		t.Fatal(err)
	}

	stop()
	select {
	case <-logs.Logged(lifecycle.MsgDraining, 1):
	case err := <-done:
		t.Fatalf("Serve returned (%v) with a request in flight", err)
	}
	select {
	case err := <-done:
		t.Fatalf("Serve returned (%v) with a request in flight", err)
	default:
	}
	if n := len(logs.Find(lifecycle.MsgTaskStopped)); n != 0 {
		t.Fatalf("%d background task(s) stopped before the requests drained", n)
	}
	if _, err := conn.Write(body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(rd, nil)
	if err != nil {
		t.Fatal(err)
	}
	var der bytes.Buffer
	_, _ = der.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("the request in flight: %d", resp.StatusCode)
	}
	if _, err := ocsp.ParseResponse(der.Bytes(), nil); err != nil {
		t.Fatalf("the request in flight got no OCSP response: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	// Serve has returned: every background task has, too.
	stopped := map[string]bool{}
	for _, l := range logs.Find(lifecycle.MsgTaskStopped) {
		stopped[l["task"].(string)] = true
	}
	for _, task := range []string{"publisher", "refusal summaries", "credential renewal", "ARL reload"} {
		if !stopped[task] {
			t.Errorf("Serve returned before %q stopped (stopped: %v)", task, stopped)
		}
	}
	if err := svc.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("the http listener still accepts after Serve returned")
	}
}

// testClock is a clock the test sets.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// TestRenewCredentials: trustd's renewal loop replaces a credential near
// its expiry, after which the OCSP responder signs with the new
// certificate and the trust bundle with the new signer; a renewal that
// fails is logged and tried again sooner than the next scheduled check.
func TestRenewCredentials(t *testing.T) {
	ctx := context.Background()
	d := deps(t)
	start := time.Now()
	clock := &testClock{t: start}
	d.Now = clock.Now
	cfg, res := initCA(t, d)
	var logs logbuf.Buffer
	d.Log = slog.New(slog.NewJSONHandler(&logs, nil))
	svc, err := trustd.New(ctx, cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	latest := func(purpose string) (serial string, keyPath string) {
		t.Helper()
		c, err := svc.Store().LatestServiceCredential(ctx, purpose)
		if err != nil {
			t.Fatal(err)
		}
		u, err := hsm.ParseURI(c.KeyURI)
		if err != nil {
			t.Fatal(err)
		}
		return c.Serial.String(), u.Path["path"]
	}
	// ocspSigner is the certificate the responder's answers carry and
	// verify under.
	req := ocspRequest(t, res)
	ocspSigner := func() string {
		t.Helper()
		r, err := ocsp.ParseResponse(svc.Responder().Respond(req).DER, nil)
		if err != nil || r.Certificate == nil {
			t.Fatalf("OCSP answer: %v", err)
		}
		return r.Certificate.SerialNumber.String()
	}
	roots, err := pemutil.ReadCertificateBundle(res.RootCert)
	if err != nil {
		t.Fatal(err)
	}
	bundleSigner := func() string {
		t.Helper()
		b, err := svc.Publisher().Bundle(ctx)
		if err != nil {
			t.Fatal(err)
		}
		v, err := bundle.Verify(b, roots, pki.MustArc(cfg.OIDArc), clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		return v.Signer.SerialNumber.String()
	}
	ocsp0, ocspKey0 := latest(trustd.PurposeOCSP)
	bundle0, _ := latest(trustd.PurposeBundle)
	if ocspSigner() != ocsp0 || bundleSigner() != bundle0 {
		t.Fatal("the responder or the bundle does not sign with the credentials recorded")
	}

	asked, fire := make(chan time.Duration, 1), make(chan time.Time)
	loopCtx, stop := context.WithCancel(ctx)
	ended := make(chan struct{})
	go func() {
		svc.KeepCredentials(loopCtx, func(d time.Duration) <-chan time.Time { asked <- d; return fire })
		close(ended)
	}()
	defer func() { stop(); <-ended }()
	next := func(want time.Duration) {
		t.Helper()
		if d := <-asked; d != want {
			t.Fatalf("next check in %s, want %s", d, want)
		}
	}
	next(trustd.RenewEvery)

	// 61 days on, the OCSP responder's certificate (90 days) is within the
	// 30-day renewal window; its key cannot be opened, and renewal fails.
	clock.set(start.AddDate(0, 0, 61))
	if err := os.Rename(ocspKey0, ocspKey0+".away"); err != nil {
		t.Fatal(err)
	}
	fire <- clock.Now()
	next(trustd.RenewRetry)
	if !strings.Contains(logs.String(), `"level":"ERROR","msg":"renewing trustd's own credentials failed; trying again"`) {
		t.Fatalf("the failed renewal was not logged as an error:\n%s", logs.String())
	}
	if ocspSigner() != ocsp0 {
		t.Fatal("the responder changed its certificate although renewal failed")
	}

	// The retry succeeds: a new responder certificate signs the answers;
	// the bundle signer (a year) is not due yet.
	if err := os.Rename(ocspKey0+".away", ocspKey0); err != nil {
		t.Fatal(err)
	}
	fire <- clock.Now()
	next(trustd.RenewEvery)
	ocsp1, _ := latest(trustd.PurposeOCSP)
	if ocsp1 == ocsp0 || ocspSigner() != ocsp1 {
		t.Fatalf("OCSP credential %s (was %s); the responder signs with %s", ocsp1, ocsp0, ocspSigner())
	}
	if b, _ := latest(trustd.PurposeBundle); b != bundle0 || bundleSigner() != bundle0 {
		t.Fatal("the bundle signer was renewed before its window")
	}

	// 340 days on, the bundle signer is due: the bundle is signed anew by
	// the new one.
	clock.set(start.AddDate(0, 0, 340))
	fire <- clock.Now()
	next(trustd.RenewEvery)
	bundle1, _ := latest(trustd.PurposeBundle)
	if bundle1 == bundle0 || bundleSigner() != bundle1 {
		t.Fatalf("bundle credential %s (was %s); the bundle is signed by %s", bundle1, bundle0, bundleSigner())
	}

	// The renewed certificate is answered "good" by OCSP at once, not
	// after the publisher's next sync: renewal issues through the one
	// enrolment service, which tells the responder of every certificate.
	cred, err := svc.Store().LatestServiceCredential(ctx, trustd.PurposeBundle)
	if err != nil {
		t.Fatal(err)
	}
	certRec, err := svc.Store().CertificateBySerial(ctx, cred.Serial)
	if err != nil {
		t.Fatal(err)
	}
	renewed, err := x509.ParseCertificate(certRec.DER)
	if err != nil {
		t.Fatal(err)
	}
	officer, err := pemutil.ReadCertificateBundle(res.Officers[0].CertFile)
	if err != nil {
		t.Fatal(err)
	}
	renewedReq, err := ocsp.CreateRequest(renewed, officer[1], nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ocsp.ParseResponseForCert(svc.Responder().Respond(renewedReq).DER, renewed, officer[1])
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != ocsp.Good {
		t.Fatalf("OCSP for the renewed bundle certificate: status %d, want good (%d)", r.Status, ocsp.Good)
	}
}

// TestStandbyTakesUpRenewedCredentials: two trustd over one database, an
// active and a standby. When the active renews its OCSP-responder
// credential, the standby's next credential check installs it: its
// answers are signed by the new certificate, not the old one until it
// expires.
func TestStandbyTakesUpRenewedCredentials(t *testing.T) {
	ctx := context.Background()
	d := deps(t)
	start := time.Now()
	clock := &testClock{t: start}
	d.Now = clock.Now
	cfg, res := initCA(t, d)
	active, err := trustd.New(ctx, cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	defer active.Close()
	standby, err := trustd.New(ctx, cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	defer standby.Close()
	req := ocspRequest(t, res)
	signer := func(s *trustd.Service) string {
		t.Helper()
		r, err := ocsp.ParseResponse(s.Responder().Respond(req).DER, nil)
		if err != nil || r.Certificate == nil {
			t.Fatalf("OCSP answer: %v", err)
		}
		return r.Certificate.SerialNumber.String()
	}
	old := signer(active)
	if signer(standby) != old {
		t.Fatal("the two trustd started with different responder credentials")
	}
	// 61 days on, the responder's certificate (90 days) is due: the active
	// renews it.
	clock.set(start.AddDate(0, 0, 61))
	if err := active.RenewCredentials(ctx); err != nil {
		t.Fatal(err)
	}
	renewed := signer(active)
	if renewed == old {
		t.Fatal("the active trustd did not renew its responder credential")
	}
	if err := standby.RenewCredentials(ctx); err != nil {
		t.Fatal(err)
	}
	if got := signer(standby); got != renewed {
		t.Fatalf("the standby signs with %s after its check, want the renewed %s (was %s)", got, renewed, old)
	}
	latest, err := standby.Store().LatestServiceCredential(ctx, trustd.PurposeOCSP)
	if err != nil || latest.Serial.String() != renewed {
		t.Fatalf("the standby made a credential of its own: latest %v, %v", latest, err)
	}
}
