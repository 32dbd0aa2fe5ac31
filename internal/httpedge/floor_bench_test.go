package httpedge_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// BenchmarkHTTPSFloor is what net/http and crypto/tls alone cost this
// machine for one exchange-sized call — a 3.5 KB signed prescription in,
// a 4.7 KB answer out, over kept-alive connections from 32 clients, the
// handler doing nothing else — client and server in one process, as the
// load tool and rxd share the cores. It is the floor under the exchange's
// end-to-end figure (docs/BENCHMARKS.md), for HTTP/2 (what Go's clients
// and rxload speak) and HTTP/1.1 (what many vendors' stacks speak).
func BenchmarkHTTPSFloor(b *testing.B) {
	in, out := bytes.Repeat([]byte("a"), 3500), bytes.Repeat([]byte("b"), 4700)
	for _, h2 := range []bool{true, false} {
		name := "http1.1"
		if h2 {
			name = "h2"
		}
		b.Run(name, func(b *testing.B) {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if _, err := io.Copy(io.Discard, r.Body); err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.Write(out)
			}))
			srv.EnableHTTP2 = h2
			srv.StartTLS()
			defer srv.Close()
			const clients = 32
			var wg sync.WaitGroup
			b.ResetTimer()
			for i := range clients {
				tr := srv.Client().Transport.(*http.Transport).Clone()
				tr.ForceAttemptHTTP2 = h2
				if !h2 {
					tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
				}
				c := &http.Client{Transport: tr}
				n := b.N / clients
				if i < b.N%clients {
					n++
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer tr.CloseIdleConnections()
					for range n {
						resp, err := c.Post(srv.URL, "application/json", bytes.NewReader(in))
						if err != nil {
							b.Error(err)
							return
						}
						got, err := io.ReadAll(resp.Body)
						resp.Body.Close()
						if err != nil || resp.StatusCode != http.StatusOK || len(got) != len(out) || (h2 != (resp.ProtoMajor == 2)) {
							b.Errorf("%s %d, %d bytes, %v", resp.Proto, resp.StatusCode, len(got), err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
		})
	}
}
