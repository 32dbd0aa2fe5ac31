package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nuskha/nuskha/internal/client"
)

// TestRefusesCBCServers: a server offering only a TLS 1.2 CBC-SHA1 suite
// gets no connection from the client.
func TestRefusesCBCServers(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{}`)) }))
	srv.TLS = &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}}
	srv.StartTLS()
	defer srv.Close()
	c, err := client.New(client.Options{BaseURL: srv.URL, Roots: poolOf(srv)})
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	err = c.Do(context.Background(), "GET", "/", nil, &out)
	if err == nil || !strings.Contains(err.Error(), "handshake") {
		t.Fatalf("a CBC-only server: %v", err)
	}
	// The same server with an AEAD suite is reachable: the refusal was the suite.
	ok := httptest.NewUnstartedServer(srv.Config.Handler)
	ok.TLS = &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}
	ok.StartTLS()
	defer ok.Close()
	c, _ = client.New(client.Options{BaseURL: ok.URL, Roots: poolOf(ok)})
	if err := c.Do(context.Background(), "GET", "/", nil, &out); err != nil {
		t.Fatalf("an AEAD server: %v", err)
	}
}

func poolOf(s *httptest.Server) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.Certificate())
	return p
}
