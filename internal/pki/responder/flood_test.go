package responder_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/nuskha/nuskha/internal/pki/responder"
)

func post(t *testing.T, url string, req []byte) []byte {
	t.Helper()
	resp, err := http.Post(url, "application/ocsp-request", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stranger is a certificate with a random serial this CA never issued.
func (f *fixture) stranger() *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 100))
	c := *f.leaf
	c.SerialNumber = serial
	return &c
}

// TestUnknownFloodDoesNotStarveKnown is the red team's attack: a flood
// of requests for serials never issued, over HTTP, until the signing
// budget for them is spent. A real certificate is still answered, with
// SHA-1 and SHA-256 CertIDs, and its nonce still echoed.
func TestUnknownFloodDoesNotStarveKnown(t *testing.T) {
	f := setup(t, 20)
	srv := httptest.NewServer(f.r.Handler("/ocsp"))
	defer srv.Close()
	refused := 0
	for i := 0; i < 200; i++ {
		if bytes.Equal(post(t, srv.URL+"/ocsp", request(t, f.stranger(), f.p.Intermediate, crypto.SHA1)), ocsp.TryLaterErrorResponse) {
			refused++
		}
	}
	if refused < 150 {
		t.Fatalf("only %d of 200 unknown-serial requests were refused: the flood did not spend the budget", refused)
	}
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		for _, nonce := range [][]byte{nil, []byte("fresh nonce 1234")} {
			req := request(t, f.leaf, f.p.Intermediate, h)
			if nonce != nil {
				req = withNonce(t, req, nonce)
			}
			der := post(t, srv.URL+"/ocsp", req)
			resp, err := ocsp.ParseResponseForCert(der, f.leaf, f.p.Intermediate)
			if err != nil || resp.Status != ocsp.Good {
				t.Fatalf("%v, nonce %v, after the flood: %v (%x)", h, nonce != nil, err, der)
			}
			if got := responseNonce(t, der); !bytes.Equal(got, nonce) {
				t.Fatalf("%v after the flood: nonce %q answered with %q", h, nonce, got)
			}
		}
	}
}

// TestNonceFloodDoesNotStarveUnknown is the reverse: nonce requests for
// a real certificate, until its budget is spent (their nonces dropped),
// leave the budget for unknown serials whole.
func TestNonceFloodDoesNotStarveUnknown(t *testing.T) {
	f := setup(t, 20)
	dropped := 0
	for i := 0; i < 200; i++ {
		der := f.r.Respond(withNonce(t, request(t, f.leaf, f.p.Intermediate, crypto.SHA256), []byte(fmt.Sprint("nonce ", i))))
		if resp, err := ocsp.ParseResponseForCert(der.DER, f.leaf, f.p.Intermediate); err != nil || resp.Status != ocsp.Good {
			t.Fatalf("nonce request %d: %v %v", i, resp, err)
		}
		if responseNonce(t, der.DER) == nil {
			dropped++
		}
	}
	if dropped < 150 {
		t.Fatalf("only %d of 200 nonces were dropped: the flood did not spend the budget", dropped)
	}
	stranger := f.stranger()
	resp, err := ocsp.ParseResponseForCert(f.r.Respond(request(t, stranger, f.p.Intermediate, crypto.SHA1)).DER, stranger, f.p.Intermediate)
	if err != nil || resp.Status != ocsp.Unknown {
		t.Fatalf("an unknown serial after the nonce flood: %v %v", resp, err)
	}
}

// multiRequest is one OCSP request for several certificates.
func multiRequest(t testing.TB, issuer *x509.Certificate, h crypto.Hash, certs ...*x509.Certificate) []byte {
	t.Helper()
	var list []asn1.RawValue
	for _, c := range certs {
		var r struct {
			TBS struct {
				RequestList []asn1.RawValue
			}
		}
		if _, err := asn1.Unmarshal(request(t, c, issuer, h), &r); err != nil {
			t.Fatal(err)
		}
		list = append(list, r.TBS.RequestList...)
	}
	type tbs struct{ RequestList []asn1.RawValue }
	out, err := asn1.Marshal(struct{ TBS tbs }{tbs{list}})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEveryCertIDIsAnswered: a request for several certificates gets one
// signed response holding each one's status (RFC 6960 §4.2.1), with or
// without a nonce; more than MaxCertIDs is a malformed request.
func TestEveryCertIDIsAnswered(t *testing.T) {
	f := setup(t, 1000)
	at := time.Now().Add(-time.Minute).Truncate(time.Second)
	if err := f.r.Update(responder.Record{Serial: f.revoked.SerialNumber, Status: ocsp.Revoked, Reason: ocsp.KeyCompromise, RevokedAt: at}); err != nil {
		t.Fatal(err)
	}
	stranger := f.stranger()
	want := map[*x509.Certificate]int{f.leaf: ocsp.Good, f.revoked: ocsp.Revoked, stranger: ocsp.Unknown}
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		for _, nonce := range [][]byte{nil, []byte("0123456789abcdef")} {
			req := multiRequest(t, f.p.Intermediate, h, f.leaf, f.revoked, stranger)
			if nonce != nil {
				req = withNonce(t, req, nonce)
			}
			der := f.r.Respond(req).DER
			for c, status := range want {
				resp, err := ocsp.ParseResponseForCert(der, c, f.p.Intermediate)
				if err != nil || resp.Status != status {
					t.Fatalf("%v nonce %v: serial %x: %v %v, want status %d", h, nonce != nil, c.SerialNumber, resp, err, status)
				}
			}
			if got := responseNonce(t, der); !bytes.Equal(got, nonce) {
				t.Fatalf("nonce %q echoed as %q", nonce, got)
			}
		}
	}
	many := make([]*x509.Certificate, responder.MaxCertIDs+1)
	for i := range many {
		many[i] = f.leaf
	}
	if got := f.r.Respond(multiRequest(t, f.p.Intermediate, crypto.SHA1, many...)).DER; !bytes.Equal(got, ocsp.MalformedRequestErrorResponse) {
		t.Fatalf("%d CertIDs answered %x, want malformedRequest", len(many), got)
	}
	if got := f.r.Respond(multiRequest(t, f.p.Intermediate, crypto.SHA1, many[1:]...)); len(got.DER) < 100 {
		t.Fatalf("%d CertIDs answered %x", len(many)-1, got.DER)
	}
}
