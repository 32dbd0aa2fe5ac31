// Package edgetest checks what every Nuskha listener promises at its
// edge (internal/httpedge), the same way for rxd and trustd.
package edgetest

import (
	"net/http"
	"strings"
	"testing"
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
