// Package edgetest checks what every Nuskha listener promises at its
// edge (internal/httpedge), the same way for rxd and trustd.
package edgetest

import (
	"bytes"
	"errors"
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
