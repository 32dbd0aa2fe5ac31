package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/problem"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

// TestServeTLS starts the real command and checks its listener: /healthz
// answers a client without a certificate; every other route refuses it
// with a problem document; TLS 1.2 offers only AEAD suites.
func TestServeTLS(t *testing.T) {
	args, roots := serveArgs(t)
	addr := serving(t, args)
	anonymous := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	resp, err := anonymous.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("/healthz without a client certificate: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz without a client certificate: %d", resp.StatusCode)
	}
	for _, path := range []string{"/v1/rules", "/v1/catalogue/items?q=a", "/v1/eligibility/0499370899"} {
		resp, err := anonymous.Get("https://" + addr + path)
		if err != nil {
			t.Fatalf("%s without a client certificate: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var pr problem.Problem
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Content-Type") != problem.ContentType ||
			json.Unmarshal(body, &pr) != nil || pr.Code != "unauthenticated" {
			t.Fatalf("%s without a client certificate: %d %s", path, resp.StatusCode, body)
		}
	}
	for _, suite := range []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{suite}})
		if err == nil {
			conn.Close()
			t.Errorf("TLS 1.2 with %s was accepted", tls.CipherSuiteName(suite))
		}
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}})
	if err != nil {
		t.Fatalf("TLS 1.2 with an AEAD suite: %v", err)
	}
	conn.Close()
}

// serveArgs are the arguments of an rxd serve with a fresh database and
// a TLS server certificate from a fresh hierarchy, whose root it returns.
func serveArgs(t *testing.T) ([]string, *x509.CertPool) {
	t.Helper()
	now := time.Now()
	p := testpki.New(t, nil, func() time.Time { return now })
	dir := t.TempDir()
	write := func(name string, typ string, der ...[]byte) string {
		var b []byte
		for _, d := range der {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert := p.Issue(t, "service-tls-server", testpki.Subject(pki.RoleService, "rxd", now), key)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	roots := x509.NewCertPool()
	roots.AddCert(p.Root)
	return []string{"serve", "-db", filepath.Join(dir, "rxd.db"), "-create",
		"-tls-cert", write("rxd.crt", "CERTIFICATE", cert.Raw, p.Intermediate.Raw), "-tls-key", write("rxd.key", "PRIVATE KEY", keyDER),
		"-client-ca", write("root.crt", "CERTIFICATE", p.Root.Raw)}, roots
}

// TestServeConnectionCaps is the red team's file-descriptor exhaustion,
// scaled down: rxd serving with caps of 2 connections per client address
// and 3 in all. Idle connections from one address fill its share and the
// next one from it is closed at once, while a request from another
// address is served; then a third address finds the listener full.
func TestServeConnectionCaps(t *testing.T) {
	args, roots := serveArgs(t)
	addr := serving(t, append(args, "-max-conns", "3", "-max-conns-per-ip", "2"))
	dialFrom := func(ip string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// A read on a connection rxd closed at once ends at once; on one it
	// accepted, it waits for the TLS ClientHello.
	closedAtOnce := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		return err != nil && !(errors.As(err, &ne) && ne.Timeout())
	}
	dialFrom("127.0.0.1")
	dialFrom("127.0.0.1")
	if !closedAtOnce(dialFrom("127.0.0.1")) {
		t.Fatal("a third idle connection from 127.0.0.1 was not closed at once")
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	other := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	defer other.CloseIdleConnections()
	resp, err := other.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("a request from 127.0.0.2: %v", err)
	}
	// Read to the end, so that the connection is kept alive.
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a request from 127.0.0.2: %d", resp.StatusCode)
	}
	if !closedAtOnce(dialFrom("127.0.0.3")) {
		t.Fatal("a fourth connection, from 127.0.0.3, was not closed at once")
	}
}
