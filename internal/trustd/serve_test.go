package trustd_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
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

	"github.com/nuskha/nuskha/internal/testutil/edgetest"
	"github.com/nuskha/nuskha/internal/trustd"
)

// listenWatch is trustd's log in a test: it keeps the address of each
// "listening" line by listener name.
type listenWatch struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	addrs map[string]string
	ready chan struct{}
	want  int
}

func (w *listenWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	var line struct{ Msg, Listener, Addr string }
	if json.Unmarshal(p, &line) == nil && line.Msg == "listening" {
		w.addrs[line.Listener] = line.Addr
		if len(w.addrs) == w.want {
			close(w.ready)
		}
	}
	return len(p), nil
}

// dialFrom opens an idle TCP connection from a loopback address of its own.
func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedAtOnce says whether the server closed c without waiting for a
// byte: a read ends at once, with EOF or a reset, rather than timing out
// (an accepted connection would wait for its TLS ClientHello or request
// line for 10 s).
func closedAtOnce(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err != nil
}

// TestConnectionCaps is the red team's file-descriptor exhaustion (20,150
// idle connections), scaled down: trustd serving its three listeners with
// caps of 2 connections per client address and 3 in all. On each, idle
// connections from one address fill its share and the next one from it is
// closed at once, while a request from another address is served; then a
// third address finds the listener full.
func TestConnectionCaps(t *testing.T) {
	s := serveAll(t, func(cfg *trustd.Config) {
		for _, l := range []*trustd.ListenerConfig{&cfg.Admin, &cfg.Public, &cfg.HTTP} {
			l.MaxConnections, l.MaxConnectionsPerIP = 3, 2
		}
	})
	logs, roots, officer := s.logs, s.roots, s.officer
	client := func(ip string, tlsCfg *tls.Config) *http.Client {
		dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dialer.DialContext, TLSClientConfig: tlsCfg}}
	}
	for _, l := range []struct {
		name, url string
		tls       *tls.Config
	}{
		{"admin", "https://" + logs.addrs["admin"] + "/admin/v1/whoami", &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{officer}}},
		{"public", "https://" + logs.addrs["public"] + "/healthz", &tls.Config{RootCAs: roots}},
		{"http", "http://" + logs.addrs["http"] + "/healthz", nil},
	} {
		t.Run(l.name, func(t *testing.T) {
			addr := logs.addrs[l.name]
			dialFrom(t, "127.0.0.1", addr)
			dialFrom(t, "127.0.0.1", addr)
			if !closedAtOnce(t, dialFrom(t, "127.0.0.1", addr)) {
				t.Fatal("a third idle connection from 127.0.0.1 was not closed at once")
			}
			other := client("127.0.0.2", l.tls)
			defer other.CloseIdleConnections()
			resp, err := other.Get(l.url)
			if err != nil {
				t.Fatalf("a request from 127.0.0.2: %v", err)
			}
			// Read to the end, so that the connection is kept alive.
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("a request from 127.0.0.2: %d", resp.StatusCode)
			}
			// 127.0.0.2's connection is kept alive: the listener is full.
			if !closedAtOnce(t, dialFrom(t, "127.0.0.3", addr)) {
				t.Fatal("a fourth connection, from 127.0.0.3, was not closed at once")
			}
		})
	}
}

// served is trustd serving its three listeners in a test.
type served struct {
	logs    *listenWatch
	roots   *x509.CertPool
	officer tls.Certificate // alice's
}

// serveAll initialises a CA with three listeners on loopback ports, lets
// edit change its config, and serves it until the test ends.
func serveAll(t *testing.T, edit func(*trustd.Config)) served {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "ca")
	d := deps(t)
	res, err := trustd.Init(ctx, trustd.InitOptions{
		Dir: dir, Officers: []trustd.Officer{{Name: "alice"}, {Name: "bob"}},
		AdminListen: "127.0.0.1:0", PublicListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
	}, d)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := trustd.LoadConfig(res.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(cfg)
	}
	logs := &listenWatch{addrs: map[string]string{}, ready: make(chan struct{}), want: 3}
	d.Log = slog.New(slog.NewJSONHandler(logs, nil))
	svc, err := trustd.New(ctx, cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Serve(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		svc.Close()
	})
	select {
	case <-logs.ready:
	case err := <-done:
		done <- err
		t.Fatalf("serve ended before it listened: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("trustd did not listen within 30 s")
	}
	roots := x509.NewCertPool()
	pemRoot, _ := os.ReadFile(res.RootCert)
	roots.AppendCertsFromPEM(pemRoot)
	chain, err := pemutil.ReadCertificateBundle(res.Officers[0].CertFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := d.Keys.OpenKey(ctx, res.Officers[0].KeyURI)
	if err != nil {
		t.Fatal(err)
	}
	officer := tls.Certificate{PrivateKey: crypto.Signer(key), Leaf: chain[0]}
	for _, c := range chain {
		officer.Certificate = append(officer.Certificate, c.Raw)
	}
	return served{logs: logs, roots: roots, officer: officer}
}

func (w *listenWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestAccessLogEveryListener: trustd as served writes an access line for
// every request on each of its listeners (admin, public and the
// relying-party HTTP one, CRL fetches included), named by listener and
// route, echoing the request id.
func TestAccessLogEveryListener(t *testing.T) {
	s := serveAll(t, nil)
	officer := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.roots, Certificates: []tls.Certificate{s.officer}}}}
	anonymous := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.roots}}}
	for _, l := range []struct {
		listener, url, route string
		client               *http.Client
	}{
		{"admin", "https://" + s.logs.addrs["admin"] + "/admin/v1/whoami", "GET /admin/v1/whoami", officer},
		{"public", "https://" + s.logs.addrs["public"] + "/v1/ca", "GET /v1/ca", anonymous},
		{"http", "http://" + s.logs.addrs["http"] + "/crl/issuing-ca-1.crl", "GET /crl/issuing-ca-1.crl", http.DefaultClient},
	} {
		t.Run(l.listener, func(t *testing.T) {
			id := "t-" + l.listener
			req, _ := http.NewRequest("GET", l.url, nil)
			req.Header.Set("X-Request-Id", id)
			resp, err := l.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Client-Request-Id") != id {
				t.Fatalf("%d, client's request id %q", resp.StatusCode, resp.Header.Get("X-Client-Request-Id"))
			}
			var found bool
			for _, line := range strings.Split(s.logs.String(), "\n") {
				var a struct{ Msg, Listener, Route, RequestID string }
				found = found || json.Unmarshal([]byte(line), &a) == nil && a.Msg == "request" && a.Listener == l.listener &&
					a.Route == l.route && strings.Contains(line, `"request_id":"`+resp.Header.Get("X-Request-Id")+`","client_request_id":"`+id+`"`)
			}
			if !found {
				t.Fatalf("no access line for %s on %s:\n%s", l.route, l.listener, s.logs)
			}
		})
	}
}

// TestTLSKeyNotTheCertificates: a tls.key that is not the key of tls.cert
// is refused when trustd starts, rather than failing every handshake.
func TestTLSKeyNotTheCertificates(t *testing.T) {
	ctx := context.Background()
	d := deps(t)
	res, err := trustd.Init(ctx, trustd.InitOptions{Dir: filepath.Join(t.TempDir(), "ca"), Officers: []trustd.Officer{{Name: "alice"}, {Name: "bob"}},
		AdminListen: "127.0.0.1:0", PublicListen: "127.0.0.1:0"}, d)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := trustd.LoadConfig(res.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	// A key trustd can open, but another certificate's.
	cfg.TLS.Key = res.Officers[0].KeyURI
	svc, err := trustd.New(ctx, cfg, d)
	if err == nil {
		svc.Close()
		t.Fatal("trustd started with a TLS key that is not its certificate's")
	}
	if !strings.Contains(err.Error(), "is not the key of the certificate") {
		t.Fatalf("the refusal does not say why: %v", err)
	}
}

// TestHeadersCapped: every listener of trustd refuses a request header
// far larger than any of its clients sends, before it is read whole
// (httpedge.MaxHeaderBytes), and serves an ordinary one.
func TestHeadersCapped(t *testing.T) {
	s := serveAll(t, nil)
	anonymous := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.roots}}}
	for _, l := range []struct{ name, url string }{
		{"public", "https://" + s.logs.addrs["public"] + "/v1/ca"},
		{"http", "http://" + s.logs.addrs["http"] + "/crl/issuing-ca-1.crl"},
	} {
		edgetest.HeadersCapped(t, anonymous, l.url, l.name)
	}
}

// TestStalledHeaderCut: on the public and plain-HTTP listeners, which
// anyone can reach, a client that starts a request and never ends its
// header is cut off (ReadHeaderTimeout), as a slowloris client must be.
// It waits out the 10-second timeout, so it runs beside the others.
func TestStalledHeaderCut(t *testing.T) {
	t.Parallel()
	s := serveAll(t, nil)
	public, err := tls.Dial("tcp", s.logs.addrs["public"], &tls.Config{RootCAs: s.roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := net.Dial("tcp", s.logs.addrs["http"])
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { edgetest.StalledHeaderCut(t, public, 30*time.Second, "the public listener") })
	wg.Go(func() { edgetest.StalledHeaderCut(t, plain, 30*time.Second, "the plain-HTTP listener") })
	wg.Wait()
}

// TestAmbiguousFramingRefused: on the listeners anyone can reach, a
// request whose body could be delimited two ways is refused and its
// connection closed (edgetest.FramingRefused).
func TestAmbiguousFramingRefused(t *testing.T) {
	t.Parallel()
	s := serveAll(t, nil)
	edgetest.FramingRefused(t, func() net.Conn {
		conn, err := tls.Dial("tcp", s.logs.addrs["public"], &tls.Config{RootCAs: s.roots, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}, "/v1/revocations", "the public listener")
	edgetest.FramingRefused(t, func() net.Conn {
		conn, err := net.Dial("tcp", s.logs.addrs["http"])
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}, "/ocsp", "the plain-HTTP listener")
}

// TestStalledBodyCut: on the public and plain-HTTP listeners, which
// anyone can reach, a client that sends a write's header (a holder's
// revocation request; an OCSP request by POST) and then stalls its body
// is cut off once the listener's read_timeout has passed (a second here,
// so as not to wait out the 30 s default). trustd speaks HTTP/1.1 only:
// no HTTP/2 stream to hold. It runs beside the others, as
// TestStalledHeaderCut does (whose wait it overlaps).
func TestStalledBodyCut(t *testing.T) {
	t.Parallel()
	s := serveAll(t, func(c *trustd.Config) {
		c.Public.ReadTimeout.Duration, c.HTTP.ReadTimeout.Duration = time.Second, time.Second
	})
	public, err := tls.Dial("tcp", s.logs.addrs["public"], &tls.Config{RootCAs: s.roots, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := public.ConnectionState().NegotiatedProtocol; p == "h2" {
		t.Fatalf("the public listener now speaks HTTP/2: check that a stalled stream is cut off too")
	}
	plain, err := net.Dial("tcp", s.logs.addrs["http"])
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { edgetest.StalledBodyCut(t, public, "/v1/revocations", 15*time.Second, "the public listener") })
	wg.Go(func() { edgetest.StalledBodyCut(t, plain, "/ocsp", 15*time.Second, "the plain-HTTP listener") })
	wg.Wait()
}
