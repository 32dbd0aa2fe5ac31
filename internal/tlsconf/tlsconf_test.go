package tlsconf_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/testutil/testpki"
	"github.com/nuskha/nuskha/internal/tlsconf"
)

// serverCert is a self-signed certificate for localhost.
func serverCert(t *testing.T, key crypto.Signer) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return tlsconf.Certificate(key, []*x509.Certificate{c}), c
}

// policyServer serves TLS handshakes with the policy and both an ECDSA and
// an RSA certificate, so that a suite is refused for itself, never for the
// key type.
func policyServer(t *testing.T) (addr string, roots *x509.CertPool) {
	t.Helper()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecCert, ecX := serverCert(t, ec)
	rsaCert, rsaX := serverCert(t, rk)
	roots = x509.NewCertPool()
	roots.AddCert(ecX)
	roots.AddCert(rsaX)
	cfg := tlsconf.New()
	cfg.Certificates = []tls.Certificate{ecCert, rsaCert}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	return ln.Addr().String(), roots
}

// TestTLS12OnlyAEAD connects with every TLS 1.2 suite Go knows, one at a
// time: exactly the policy's suites complete a handshake.
func TestTLS12OnlyAEAD(t *testing.T) {
	addr, roots := policyServer(t)
	var accepted []uint16
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if !slices.Contains(s.SupportedVersions, tls.VersionTLS12) {
			continue
		}
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost",
			MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{s.ID}})
		if err == nil {
			accepted = append(accepted, conn.ConnectionState().CipherSuite)
			conn.Close()
		}
	}
	slices.Sort(accepted)
	want := slices.Sorted(slices.Values(tlsconf.CipherSuites))
	if !slices.Equal(accepted, want) {
		names := func(ids []uint16) (out []string) {
			for _, id := range ids {
				out = append(out, tls.CipherSuiteName(id))
			}
			return out
		}
		t.Fatalf("TLS 1.2 accepted %v, want %v", names(accepted), names(want))
	}
	for _, id := range tlsconf.CipherSuites {
		if strings.Contains(tls.CipherSuiteName(id), "CBC") || !strings.HasPrefix(tls.CipherSuiteName(id), "TLS_ECDHE_") {
			t.Fatalf("%s is not ECDHE with an AEAD cipher", tls.CipherSuiteName(id))
		}
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatalf("TLS 1.3: %v", err)
	}
	conn.Close()
}

// TestOpenSSLClient: OpenSSL's client, forced to TLS 1.2 with one suite,
// is refused a CBC-SHA1 suite and served an AEAD one.
func TestOpenSSLClient(t *testing.T) {
	openssl := testpki.OpenSSL(t)
	addr, _ := policyServer(t)
	connect := func(cipher string) (string, error) {
		cmd := exec.Command(openssl, "s_client", "-connect", addr, "-servername", "localhost", "-tls1_2", "-cipher", cipher)
		out, err := cmd.CombinedOutput() // stdin is /dev/null: s_client quits after the handshake
		return string(out), err
	}
	for _, cbc := range []string{"ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA"} {
		if out, err := connect(cbc); err == nil || strings.Contains(out, "Cipher is "+cbc) {
			t.Errorf("openssl s_client -tls1_2 -cipher %s was served:\n%s", cbc, out)
		}
	}
	for _, aead := range []string{"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-CHACHA20-POLY1305"} {
		if out, err := connect(aead); err != nil || !strings.Contains(out, "Cipher is "+aead) {
			t.Errorf("openssl s_client -tls1_2 -cipher %s: %v\n%s", aead, err, out)
		}
	}
}
