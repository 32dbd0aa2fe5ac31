package main

import (
	"context"
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
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/insured/insuredtest"
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
	return append([]string{"serve", "-db", filepath.Join(dir, "rxd.db"), "-create",
		"-tls-cert", write("rxd.crt", "CERTIFICATE", cert.Raw, p.Intermediate.Raw), "-tls-key", write("rxd.key", "PRIVATE KEY", keyDER),
		"-client-ca", write("root.crt", "CERTIFICATE", p.Root.Raw)}, testAuditFlags(t)...), roots
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

// TestServeRefusesKeyNotTheCertificates: a -tls-key that is not the key
// of -tls-cert is refused at start, saying so, whether it is a PEM file or
// a key URI.
func TestServeRefusesKeyNotTheCertificates(t *testing.T) {
	args, _ := serveArgs(t)
	dir := t.TempDir()
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(other)
	pemKey := filepath.Join(dir, "other.key")
	if err := os.WriteFile(pemKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	pass := filepath.Join(dir, "other.pass")
	if err := os.WriteFile(pass, []byte("a long enough password"), 0o600); err != nil {
		t.Fatal(err)
	}
	uri := "softkey:path=" + filepath.Join(dir, "soft.key") + "?pin-source=" + pass
	keys := hsm.NewManager(hsm.NoPrompt)
	defer keys.Close()
	if _, err := keys.CreateKey(context.Background(), uri, hsm.ECP256); err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]string{"PEM file": pemKey, "key URI": uri} {
		t.Run(name, func(t *testing.T) {
			a := slices.Clone(args)
			a[slices.Index(a, "-tls-key")+1] = key
			err := run(context.Background(), append(a, "-listen", "127.0.0.1:0"), io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), "is not the key of the certificate") {
				t.Fatalf("rxd serve with another key: %v", err)
			}
		})
	}
}

// TestServeAccessLog: a request through the real command is logged by its
// route, with the caller and its request id, and nothing of the national
// id in its path or the date in its query; the request id is echoed, kept
// when the client's is a safe token and replaced when it is not.
func TestServeAccessLog(t *testing.T) {
	args, roots := serveArgs(t)
	addr, logs := servingLogged(t, args)
	anonymous := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	nid := insuredtest.NationalID(3)
	ask := func(requestID string) (*http.Response, problem.Problem) {
		t.Helper()
		req, _ := http.NewRequest("GET", "https://"+addr+"/v1/eligibility/"+nid+"?date=1405-06-15", nil)
		req.Header.Set(problem.RequestIDHeader, requestID)
		resp, err := anonymous.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var p problem.Problem
		if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
			t.Fatal(err)
		}
		return resp, p
	}
	resp, p := ask("vendor-ticket-8812")
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("X-Client-Request-Id") != "vendor-ticket-8812" ||
		p.RequestID != resp.Header.Get(problem.RequestIDHeader) || p.RequestID == "vendor-ticket-8812" {
		t.Fatalf("a safe request id: %d, header %q, problem %+v", resp.StatusCode, resp.Header.Get(problem.RequestIDHeader), p)
	}
	resp, p = ask("id with spaces " + nid)
	replaced := resp.Header.Get(problem.RequestIDHeader)
	if replaced == "" || strings.Contains(replaced, " ") || p.RequestID != replaced {
		t.Fatalf("an unsafe request id: header %q, problem %+v", replaced, p)
	}
	// An answer this small is sent only once the handler, and the edge's
	// access line with it, is done: the log is complete here.
	out := logs.String()
	for _, part := range []string{nid, nid[:8], nid[2:], "1405-06-15"} {
		if strings.Contains(out, part) {
			t.Fatalf("the log holds %q:\n%s", part, out)
		}
	}
	for _, want := range []string{
		`"route":"GET /v1/eligibility/{nationalId}","status":401`,
		`"caller":"anonymous","remote":"127.0.0.1:`,
		`"client_request_id":"vendor-ticket-8812"`,
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("the log has no %s:\n%s", want, out)
		}
	}
}
