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
	"sync"
	"testing"
	"time"

	"go.step.sm/crypto/pemutil"

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
	for _, l := range []*trustd.ListenerConfig{&cfg.Admin, &cfg.Public, &cfg.HTTP} {
		l.MaxConnections, l.MaxConnectionsPerIP = 3, 2
	}
	logs := &listenWatch{addrs: map[string]string{}, ready: make(chan struct{}), want: 3}
	d.Log = slog.New(slog.NewJSONHandler(logs, nil))
	svc, err := trustd.New(ctx, cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Serve(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	select {
	case <-logs.ready:
	case err := <-done:
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
