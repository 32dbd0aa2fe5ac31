package rxd_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/rxd"
	"github.com/nuskha/nuskha/internal/testutil/edgetest"
)

// TestHeadersCapped: a request whose header is far larger than any
// client of the API sends (a token, a claim secret, an Idempotency-Key)
// is refused (431) before it is read whole: net/http's default lets each
// connection hold a megabyte of header for ReadHeaderTimeout, and the
// connection caps would let one client address hold hundreds of them.
func TestHeadersCapped(t *testing.T) {
	addr, roots := serveDefault(t)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	defer c.CloseIdleConnections()
	edgetest.HeadersCapped(t, c, "https://"+addr+"/healthz", "rxd")
}

// TestHTTP1Only: rxd speaks HTTP/1.1 only (docs/rxd.md says why). A client
// offering HTTP/2 as well is given HTTP/1.1; one offering HTTP/2 alone is
// refused at the handshake, and so cannot open a stream.
func TestHTTP1Only(t *testing.T) {
	addr, roots := serveDefault(t)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Errorf("offered h2 and http/1.1, rxd chose %q", p)
	}
	conn.Close()
	if conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"h2"}}); err == nil {
		conn.Close()
		t.Errorf("a client offering HTTP/2 only completed its handshake, negotiating %q", conn.ConnectionState().NegotiatedProtocol)
	}
	resp, err := (&http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}).Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 1 {
		t.Errorf("Go's client, attempting HTTP/2, was answered over %s", resp.Proto)
	}
}

// TestStalledHeaderCut: a client that starts a request and never ends its
// header is cut off (ReadHeaderTimeout), as a slowloris client must be.
// It waits out the 10-second timeout, so it runs beside the others.
func TestStalledHeaderCut(t *testing.T) {
	t.Parallel()
	addr, roots := serveDefault(t)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	edgetest.StalledHeaderCut(t, conn, 30*time.Second, "rxd")
}

// TestStalledBodyCut: a client that sends a request's header and then
// stalls its body is cut off once ReadTimeout has passed (a second here,
// so as not to wait out the 30 s default). No client certificate is
// needed: over HTTP/1.1 net/http reads the rest of a body before it sends
// any answer, rxd's refusal of an anonymous caller included.
// TestOperations stalls one as a real vendor, whose body rxd reads.
func TestStalledBodyCut(t *testing.T) {
	addr, roots := serve(t, func(c *rxd.Config) { c.ReadTimeout = time.Second })
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	edgetest.StalledBodyCut(t, conn, "/v1/prescriptions", 15*time.Second, "rxd")
}

// TestAmbiguousFramingRefused: a request whose body could be delimited
// two ways (request smuggling, were a proxy to read it the other way) is
// refused before any handler runs — by Go's HTTP server, with a
// plain-text status (docs/problems.md says so) — and its connection
// closed.
func TestAmbiguousFramingRefused(t *testing.T) {
	addr, roots := serveDefault(t)
	edgetest.FramingRefused(t, func() net.Conn {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}, "/v1/prescriptions", "rxd")
}

// serveDefault serves rxd with config's defaults until the test ends,
// and returns its address and the roots its certificate chains to.
func serveDefault(t *testing.T) (string, *x509.CertPool) {
	t.Helper()
	return serve(t, nil)
}

// serve is serveDefault with the config changed by edit (if not nil).
func serve(t *testing.T, edit func(*rxd.Config)) (string, *x509.CertPool) {
	t.Helper()
	cfg, roots := config(t)
	if edit != nil {
		edit(&cfg)
	}
	h := &serving{addr: make(chan string, 1), Handler: slog.NewTextHandler(io.Discard, nil)}
	svc, err := rxd.New(context.Background(), cfg, deps(t, h))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case addr := <-h.addr:
		return addr, roots
	case err := <-done:
		t.Fatalf("Serve ended before it listened: %v", err)
	}
	panic("unreachable")
}
