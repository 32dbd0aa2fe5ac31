package client_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/exchange/client"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/revocation"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

// goodStatus says every certificate is good: revocation is the verifier's
// business, tested in internal/rx; here the question is the JWS itself.
type goodStatus struct{}

func (goodStatus) CheckChain(context.Context, []*x509.Certificate) (revocation.Result, error) {
	return revocation.Result{Status: revocation.Good, Source: "test"}, nil
}

// TestSignSessionIsWhatRxdVerifies: a session document made by
// NewSessionDocument and signed by SignSession — with a P-256 key and an
// RSA key (PS256) on a pharmacy's card certificate from the real profiles —
// passes the exchange's own verifier as a session naming the vendor's TLS
// certificate; a key that is not the certificate's is refused before any
// signature.
func TestSignSessionIsWhatRxdVerifies(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	p := testpki.New(t, nil, time.Now)
	v, err := rx.NewVerifier(rx.Config{Roots: []*x509.Certificate{p.Root}, Arc: p.Arc, Status: goodStatus{}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	vendorKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	vendorCert := p.Issue(t, "service-tls-client", testpki.Subject(pki.RoleVendor, "sub_vendor", now), vendorKey)
	roots := x509.NewCertPool()
	roots.AddCert(p.Root)
	c, err := client.New(client.Config{BaseURL: "https://rxd.example.ir", Roots: roots,
		Certificate: tls.Certificate{Certificate: [][]byte{vendorCert.Raw, p.Intermediate.Raw}, PrivateKey: vendorKey}})
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, key := range map[string]crypto.Signer{"ES256": ecKey, "PS256": rsaKey} {
		t.Run(name, func(t *testing.T) {
			chain := []*x509.Certificate{p.Issue(t, "pharmacy-signing", testpki.Subject(pki.RolePharmacy, "sub_ph_"+name, now), key), p.Intermediate}
			doc := c.NewSessionDocument(now)
			token, err := client.SignSession(doc, key, chain, now)
			if err != nil {
				t.Fatal(err)
			}
			got, err := v.Verify(context.Background(), token, rx.KindSession)
			if err != nil {
				t.Fatalf("the exchange's verifier refuses the session: %v", err)
			}
			if got.Session.ID != doc.ID || got.Session.Vendor != rx.Thumbprint(vendorCert) || !got.Session.IssuedAt.Equal(now) ||
				got.Signer.Role != pki.RolePharmacy || got.Session.Aud != rx.SessionAudience {
				t.Fatalf("verified %+v by %+v", got.Session, got.Signer)
			}
			if _, err := client.SignSession(doc, ecKeyOther(), chain, now); err == nil || !strings.Contains(err.Error(), "not the certificate's") {
				t.Fatalf("signing with another key: %v", err)
			}
		})
	}
	if a, b := c.NewSessionDocument(now), c.NewSessionDocument(now); a.ID == b.ID {
		t.Fatal("two session documents share an id")
	}
}

func ecKeyOther() crypto.Signer {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return k
}
