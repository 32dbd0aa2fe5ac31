package responder_test

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/responder"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

// BenchmarkOCSPOverHTTP measures OCSP answers per second over loopback
// HTTP from this responder and, in the same run and with the same client
// and certificates, from `openssl ocsp` acting as a responder (which signs
// every answer). The client and servers share the machine's cores.
func BenchmarkOCSPOverHTTP(b *testing.B) {
	openssl := testpki.OpenSSL(b)
	p := testpki.New(b, nil, time.Now)
	respKey := newKey()
	respCert := p.Issue(b, "ocsp-responder", testpki.Subject(pki.RoleService, "sub_ocsp", time.Now()), respKey)
	r, err := responder.New(responder.Config{Issuer: p.Intermediate, Now: time.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	if err := r.SetCredential(responder.Credential{Cert: respCert, Key: respKey}); err != nil {
		b.Fatal(err)
	}
	const n = 1000
	dir := b.TempDir()
	var index strings.Builder
	reqs := make([][]byte, n)
	for i := range reqs {
		serial := new(big.Int).SetUint64(mrand.Uint64() | 1<<62)
		tpl := &x509.Certificate{SerialNumber: serial}
		st := ocsp.Good
		if i%10 == 0 {
			st = ocsp.Revoked
		}
		r.Track(responder.Record{Serial: serial, Status: st, Reason: ocsp.Superseded, RevokedAt: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)})
		reqs[i], err = ocsp.CreateRequest(tpl, p.Intermediate, nil)
		if err != nil {
			b.Fatal(err)
		}
		flag, extra := "V", ""
		if st == ocsp.Revoked {
			flag, extra = "R", time.Now().Add(-time.Hour).UTC().Format("060102150405Z")+",superseded"
		}
		fmt.Fprintf(&index, "%s\t%s\t%s\t%X\tunknown\t/CN=leaf%d\n", flag, time.Now().Add(24*time.Hour).UTC().Format("060102150405Z"), extra, serial, i)
	}
	if _, err := r.Refresh(); err != nil {
		b.Fatal(err)
	}
	write := func(name string, data []byte) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, data, 0o600); err != nil {
			b.Fatal(err)
		}
		return f
	}
	idx := write("index.txt", []byte(index.String()))
	keyDER, _ := x509.MarshalPKCS8PrivateKey(respKey)
	rkey := write("resp.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	rcert := write("resp.pem", testpki.PEM(respCert))
	ca := write("int.pem", testpki.PEM(p.Intermediate))

	ours := httptest.NewServer(r.Handler("/"))
	defer ours.Close()
	// openssl's responder answers one request per connection (and spins on
	// an idle kept-alive one), so it is measured with a new connection per
	// request; ours both ways.
	type target struct {
		name, url string
		keepAlive bool
	}
	targets := []target{{"nuskha-keepalive", ours.URL + "/", true}, {"nuskha-newconn", ours.URL + "/", false}}
	for _, multi := range []int{1, 2} {
		// Port 0: openssl binds a port of the kernel's choosing and says
		// which, so no port is freed here for it to take.
		args := []string{"ocsp", "-index", idx, "-port", "0", "-rsigner", rcert, "-rkey", rkey, "-CA", ca, "-nmin", "60", "-ignore_err"}
		if multi > 1 {
			args = append(args, "-multi", fmt.Sprint(multi))
		}
		cmd := exec.Command(openssl, args...)
		// It announces readiness on stdout or stderr, depending on version.
		out, w := io.Pipe()
		cmd.Stdout, cmd.Stderr = w, w
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		defer cmd.Process.Kill()
		port := waitReady(b, out)
		targets = append(targets, target{fmt.Sprintf("openssl-multi%d-newconn", multi), "http://127.0.0.1:" + port + "/", false})
	}
	for _, tg := range targets {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true, DisableKeepAlives: !tg.keepAlive}}
		// Both answer correctly before they are timed.
		resp, err := client.Post(tg.url, "application/ocsp-request", bytes.NewReader(reqs[0]))
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if parsed, err := ocsp.ParseResponse(body, p.Intermediate); err != nil || parsed.Status != ocsp.Revoked {
			b.Fatalf("%s: %v %v", tg.name, parsed, err)
		}
		b.Run(tg.name, func(b *testing.B) {
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				i := mrand.IntN(n)
				for pb.Next() {
					resp, err := client.Post(tg.url, "application/ocsp-request", bytes.NewReader(reqs[i%n]))
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("HTTP %d", resp.StatusCode)
						return
					}
					i++
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "responses/s")
		})
	}
}

// waitReady waits for openssl to say it listens, and returns the port it
// says. Probing the port instead would not do: OpenSSL 3.0's responder
// spins at full CPU after a connection that closes without a request.
func waitReady(b *testing.B, stderr io.Reader) string {
	ready := make(chan string, 1)
	var seen strings.Builder
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			mu.Lock()
			seen.WriteString(sc.Text() + "\n")
			mu.Unlock()
			// "ACCEPT [::]:port PID=n" is printed once the socket listens.
			if addr, ok := strings.CutPrefix(sc.Text(), "ACCEPT "); ok && !signalled {
				addr, _, _ = strings.Cut(addr, " ")
				ready <- addr[strings.LastIndexByte(addr, ':')+1:]
				signalled = true
			}
		}
	}()
	select {
	case port := <-ready:
		return port
	case <-time.After(10 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		b.Fatalf("openssl ocsp did not start:\n%s", seen.String())
	}
	return ""
}
