package httpedge_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/httpedge"
	"github.com/nuskha/nuskha/internal/testutil/softhsm"
	"github.com/nuskha/nuskha/internal/tlsconf"
)

func selfSigned(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestKeyPair: a server key is loaded from a key URI or a PEM file, and
// one that is not the certificate's is refused, whichever way it comes.
func TestKeyPair(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	keys := hsm.NewManager(hsm.NoPrompt)
	t.Cleanup(func() { keys.Close() })
	pass := filepath.Join(dir, "k.pass")
	if err := os.WriteFile(pass, []byte("a long enough password"), 0o600); err != nil {
		t.Fatal(err)
	}
	uri := func(name string) string {
		return "softkey:path=" + filepath.Join(dir, name) + "?pin-source=" + pass
	}
	soft, err := keys.CreateKey(ctx, uri("server.key"), hsm.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.CreateKey(ctx, uri("other.key"), hsm.ECP256); err != nil {
		t.Fatal(err)
	}
	softCert := writePEM(t, dir, "soft.crt", "CERTIFICATE", selfSigned(t, soft))

	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	ecCert := writePEM(t, dir, "ec.crt", "CERTIFICATE", selfSigned(t, ec))
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaCert := writePEM(t, dir, "rsa.crt", "CERTIFICATE", selfSigned(t, rsaKey))
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherDER, _ := x509.MarshalPKCS8PrivateKey(other)

	for _, tc := range []struct {
		name, cert, key, refused string
	}{
		{"softkey URI", softCert, uri("server.key"), ""},
		{"PKCS#8 PEM file", ecCert, writePEM(t, dir, "ec.key", "PRIVATE KEY", ecDER), ""},
		{"SEC 1 PEM file", ecCert, writePEM(t, dir, "ec-sec1.key", "EC PRIVATE KEY", sec1), ""},
		{"PKCS#1 PEM file", rsaCert, writePEM(t, dir, "rsa.key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), ""},
		{"another softkey", softCert, uri("other.key"), "is not the key of the certificate"},
		{"another PEM key", ecCert, writePEM(t, dir, "other.key.pem", "PRIVATE KEY", otherDER), "is not the key of the certificate"},
		{"the softkey's certificate with a PEM key", softCert, filepath.Join(dir, "ec.key"), "is not the key of the certificate"},
		{"an encrypted PEM key", ecCert, writePEM(t, dir, "enc.key", "ENCRYPTED PRIVATE KEY", ecDER), "encrypted"},
		{"no key in the file", ecCert, ecCert, "no PEM private key"},
		{"no certificate", filepath.Join(dir, "none.crt"), uri("server.key"), "server certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := httpedge.KeyPair(ctx, keys, tc.cert, tc.key)
			if tc.refused == "" {
				if err != nil || c.Leaf == nil || len(c.Certificate) != 1 {
					t.Fatalf("%v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.refused) {
				t.Fatalf("got %v, want a refusal saying %q", err, tc.refused)
			}
			if strings.Contains(err.Error(), pass) {
				t.Fatalf("the refusal names the password file: %v", err)
			}
		})
	}
}

func TestServerTLS(t *testing.T) {
	pool := x509.NewCertPool()
	c := httpedge.ServerTLS(tls.Certificate{}, tls.VerifyClientCertIfGiven, pool)
	if c.MinVersion != tls.VersionTLS12 || !slices.Equal(c.CipherSuites, tlsconf.CipherSuites) || c.ClientAuth != tls.VerifyClientCertIfGiven || c.ClientCAs != pool {
		t.Fatalf("%+v", c)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("client certificates required with no anchors to verify them to")
		}
	}()
	httpedge.ServerTLS(tls.Certificate{}, tls.RequireAndVerifyClientCert, nil)
}

// TestKeyPairTokenWithAnotherKeysPublicObject: on a token, a key's public
// key is read from the public-key object of its label and id, which can
// be another key's. The certificate of that other key, given with the
// private key, matches by Public() and would fail every handshake: it is
// refused at start, by a signature that does not verify.
func TestKeyPairTokenWithAnotherKeysPublicObject(t *testing.T) {
	ctx := context.Background()
	tok := softhsm.NewToken(t, "edge")
	tok.PKCS11Tool(t, "--keypairgen", "--key-type", "EC:prime256v1", "--label", "server", "--id", "01")
	tok.PKCS11Tool(t, "--keypairgen", "--key-type", "EC:prime256v1", "--label", "other", "--id", "02")
	keys := hsm.NewManager(hsm.NoPrompt)
	t.Cleanup(func() { keys.Close() })
	uri := func(object string) string {
		return "pkcs11:token=" + tok.Label + ";object=" + object + "?module-path=" + tok.Module + "&pin-source=" + tok.PINFile
	}
	other, err := keys.OpenKey(ctx, uri("other"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// A certificate for the other key (its issuer's signature is not what
	// is checked), and the server's public object replaced by the other's.
	issuer, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, other.Public(), issuer)
	if err != nil {
		t.Fatal(err)
	}
	otherCert := writePEM(t, dir, "other.crt", "CERTIFICATE", der)
	spki, err := x509.MarshalPKIXPublicKey(other.Public())
	if err != nil {
		t.Fatal(err)
	}
	otherPub := filepath.Join(dir, "other.pub.der")
	if err := os.WriteFile(otherPub, spki, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := httpedge.KeyPair(ctx, keys, otherCert, uri("other")); err != nil {
		t.Fatalf("the other key with its own certificate: %v", err)
	}
	tok.PKCS11Tool(t, "--delete-object", "--type", "pubkey", "--id", "01")
	tok.PKCS11Tool(t, "--write-object", otherPub, "--type", "pubkey", "--label", "server", "--id", "01")

	fresh := hsm.NewManager(hsm.NoPrompt) // nothing cached from before the swap
	t.Cleanup(func() { fresh.Close() })
	server, err := fresh.OpenKey(ctx, uri("server"))
	if err != nil {
		t.Fatal(err)
	}
	if !other.Public().(*ecdsa.PublicKey).Equal(server.Public()) {
		t.Fatal("the token's public object for the server key is not the other key's: the test tests nothing")
	}
	_, err = httpedge.KeyPair(ctx, fresh, otherCert, uri("server"))
	if err == nil || !strings.Contains(err.Error(), "does not sign for the certificate") {
		t.Fatalf("got %v; want the private key refused as not the certificate's", err)
	}
}
