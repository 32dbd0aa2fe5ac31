// Package edgetest checks what every Nuskha listener promises at its
// edge (internal/httpedge), the same way for rxd and trustd.
package edgetest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// HeadersCapped asks url through c with an ordinary header (4 KiB), which
// must be served 200, and one far over httpedge.MaxHeaderBytes (256 KiB),
// which must not be. what names the listener or protocol in failures.
func HeadersCapped(t testing.TB, c *http.Client, url, what string) {
	t.Helper()
	for _, size := range []int{4 << 10, 256 << 10} {
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Padding", strings.Repeat("a", size))
		resp, err := c.Do(req)
		status := 0
		if err == nil {
			status = resp.StatusCode
			resp.Body.Close()
		}
		switch {
		case size < 8<<10 && status != http.StatusOK:
			t.Errorf("%s, a %d-byte header: %d %v", what, size, status, err)
		case size > 64<<10 && status == http.StatusOK:
			t.Errorf("%s, a %d-byte header is read and served", what, size)
		}
	}
}

// StalledHeaderCut sends a request's first header lines on conn and then
// nothing, as a slowloris client does: the listener must close the
// connection once its ReadHeaderTimeout has passed, not hold it for as
// long as the client likes (each held connection is one of the few a
// client address may have open). within bounds the wait, well above the
// listener's timeout; what names the listener in failures. It reports
// with Errorf only, so that listeners can be tried side by side.
func StalledHeaderCut(t testing.TB, conn net.Conn, within time.Duration, what string) {
	t.Helper()
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Stalled: "); err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if err := conn.SetReadDeadline(time.Now().Add(within)); err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	got, err := io.ReadAll(conn)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		t.Errorf("%s held a connection whose header never ended for %v", what, within)
	case bytes.HasPrefix(got, []byte("HTTP/1.1 2")):
		t.Errorf("%s answered a request whose header never ended: %q", what, got)
	}
}

// stalledBody is what StalledBodyCut declares and sends of a request
// body: far under every route's body cap and under
// net/http's 256 KiB (which it reads on its own to keep a connection),
// so that the server waits for the rest rather than refusing its size.
const (
	stalledBodyDeclared = 1000
	stalledBodySent     = 16
)

// StalledBodyCut sends on conn a POST to path with a whole header
// declaring a body, the body's first bytes and then nothing, as a
// slow-body (R-U-Dead-Yet) client does: the listener must close the
// connection once its ReadTimeout has passed, not wait for the rest for
// as long as the client likes. (net/http reads a body's rest before it
// answers, even a refusal, to keep the connection: without ReadTimeout
// nothing ends the wait.) within bounds the wait, well above the
// listener's timeout; what names the listener in failures. It reports
// with Errorf only, so that listeners can be tried side by side.
func StalledBodyCut(t testing.TB, conn net.Conn, path string, within time.Duration, what string) {
	t.Helper()
	defer conn.Close()
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n", path, stalledBodyDeclared)
	if _, err := io.WriteString(conn, head+strings.Repeat("a", stalledBodySent)); err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if err := conn.SetReadDeadline(time.Now().Add(within)); err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	// What it answers, if anything, is the route's business (an OCSP
	// responder answers malformedRequest in a 200): what matters is that
	// the connection ends.
	_, err := io.ReadAll(conn)
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("%s held a connection whose request body never ended for %v", what, within)
	}
}

// AmbiguousFraming are HTTP/1.1 requests whose body two readers could
// delimit differently — the request-smuggling shapes (RFC 9112 §6.3, §11.2)
// — each header given to a POST of a 5-byte body. A proxy in front
// reading one length and the listener another would let one request
// carry a second, hidden one past the proxy.
var AmbiguousFraming = []struct {
	Name, Header string
	// Chunked: the one shape RFC 9112 §6.3 lets a server read, as
	// chunked, if it closes the connection after its answer.
	Chunked bool
}{
	{Name: "two different Content-Lengths", Header: "Content-Length: 5\r\nContent-Length: 6\r\n"},
	{Name: "a Content-Length list", Header: "Content-Length: 5, 6\r\n"},
	{Name: "a signed Content-Length", Header: "Content-Length: +5\r\n"},
	{Name: "chunked, and not last", Header: "Transfer-Encoding: chunked, identity\r\n"},
	{Name: "a coding other than chunked", Header: "Transfer-Encoding: gzip\r\n"},
	{Name: "Content-Length and a look-alike of chunked", Header: "Content-Length: 5\r\nTransfer-Encoding: xchunked\r\n"},
	{Name: "Content-Length and chunked", Header: "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", Chunked: true},
}

// FramingRefused sends on each connection dial gives one request of
// AmbiguousFraming's, to path, followed by what a smuggler would hide
// after the first body: the listener must answer once and close the
// connection, so that no second request is read from what follows. Go's
// HTTP server refuses all but the Chunked shape, with a 4xx or 5xx status,
// before any handler runs; that one it reads as chunked and closes after
// the answer, which is the route's (an OCSP responder's malformedRequest
// comes in a 200). what names the listener in failures.
func FramingRefused(t testing.TB, dial func() net.Conn, path, what string) {
	t.Helper()
	for _, f := range AmbiguousFraming {
		conn := dial()
		req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: localhost\r\n%s\r\nhello", path, f.Header) +
			"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
		if _, err := io.WriteString(conn, req); err != nil {
			t.Errorf("%s, %s: %v", what, f.Name, err)
			conn.Close()
			continue
		}
		if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(conn)
		conn.Close()
		var ne net.Error
		switch status, _, _ := strings.Cut(strings.TrimPrefix(string(got), "HTTP/1.1 "), " "); {
		case errors.As(err, &ne) && ne.Timeout():
			t.Errorf("%s, %s: the connection stayed open after the answer %q", what, f.Name, got)
		case bytes.Count(got, []byte("HTTP/1.1 ")) != 1:
			t.Errorf("%s, %s: not one answer (a second request read?): %q", what, f.Name, got)
		case !f.Chunked && (len(status) != 3 || status[0] != '4' && status[0] != '5'):
			t.Errorf("%s, %s: answered %q, want a refusal", what, f.Name, got)
		}
	}
}
