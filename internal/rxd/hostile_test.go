package rxd_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"

	"github.com/nuskha/nuskha/internal/rxd"
	"github.com/nuskha/nuskha/internal/testutil/edgetest"
)

// TestHeadersCapped: a request whose header is far larger than any
// client of the API sends (a token, a claim secret, an Idempotency-Key)
// is refused (431) before it is read whole: net/http's default lets each
// connection hold a megabyte of header for ReadHeaderTimeout, and the
// connection caps would let one client address hold hundreds of them.
func TestHeadersCapped(t *testing.T) {
	cfg, roots := config(t)
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
	var addr string
	select {
	case addr = <-h.addr:
	case err := <-done:
		t.Fatalf("Serve ended before it listened: %v", err)
	}
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		c := &http.Client{Transport: tr}
		edgetest.HeadersCapped(t, c, "https://"+addr+"/healthz", fmt.Sprintf("HTTP/2 %v", h2))
		c.CloseIdleConnections()
	}
}
