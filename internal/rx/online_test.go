package rx_test

import (
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/responder"
	"github.com/nuskha/nuskha/internal/pki/revocation"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
	"golang.org/x/crypto/ocsp"
)

// toServer sends every request, whatever its URL, to one test server: the
// certificates name trustd.test.
type toServer struct{ base *url.URL }

func (s toServer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Scheme, r.URL.Host = s.base.Scheme, s.base.Host
	return http.DefaultTransport.RoundTrip(r)
}

// TestVerifyOnline: a verifier asking the CA's OCSP responder (as rxd's
// will at submission and dispense) under the revocation library's
// bounds. A signer revoked at the responder is refused once the recheck
// interval has passed — every document of theirs, whatever signing time
// it claims; an answer older than the evidence age allowed is never used.
func TestVerifyOnline(t *testing.T) {
	f := setup(t)
	r, err := responder.New(responder.Config{Issuer: f.p.Intermediate, Now: time.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	rk := newKey()
	if err := r.SetCredential(responder.Credential{Cert: f.p.Issue(t, "ocsp-responder", testpki.Subject(pki.RoleService, "sub_o", time.Now()), rk), Key: rk}); err != nil {
		t.Fatal(err)
	}
	signer := f.chain[0].SerialNumber
	if err := r.Update(responder.Record{Serial: signer, Status: ocsp.Good, Seq: 1}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r.Handler("/ocsp"))
	defer srv.Close()
	base, _ := url.Parse(srv.URL)

	var mu sync.Mutex
	now := f.now
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	const recheck = time.Minute
	status, err := revocation.New(revocation.Config{MaxAge: time.Hour, Recheck: recheck, Now: clock, HTTP: &http.Client{Transport: toServer{base}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := status.AddCRL(f.p.ARL(t, f.now.Add(-time.Minute)), f.p.Root); err != nil {
		t.Fatal(err)
	}
	v, err := rx.NewVerifier(rx.Config{Roots: []*x509.Certificate{f.p.Root}, Arc: f.p.Arc, Status: status, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	tok := f.sign(t, f.prescription())
	got, err := v.Verify(ctx, tok, rx.KindPrescription)
	if err != nil || got.Status.Status != revocation.Good || !strings.HasPrefix(got.Status.Source, "OCSP") {
		t.Fatalf("before revocation: %+v %v", got, err)
	}

	// Evidence age: a verifier whose clock is past thisUpdate + MaxAge of
	// every answer the responder has refuses, though the answer is "good".
	later, _ := revocation.New(revocation.Config{MaxAge: time.Hour, Recheck: recheck, Now: func() time.Time { return time.Now().Add(2 * time.Hour) },
		HTTP: &http.Client{Transport: toServer{base}}})
	if err := later.AddCRL(f.p.ARL(t, f.now.Add(-time.Minute)), f.p.Root); err != nil {
		t.Fatal(err)
	}
	stale, _ := rx.NewVerifier(rx.Config{Roots: []*x509.Certificate{f.p.Root}, Arc: f.p.Arc, Status: later, Now: clock})
	_, err = stale.Verify(ctx, tok, rx.KindPrescription)
	wantCode(t, err, errs.RevocationUnknown)

	if err := r.Update(responder.Record{Serial: signer, Status: ocsp.Revoked, Reason: ocsp.KeyCompromise, RevokedAt: time.Now(), Seq: 2}); err != nil {
		t.Fatal(err)
	}
	advance(recheck - time.Second)
	if _, err := v.Verify(ctx, tok, rx.KindPrescription); err != nil {
		t.Fatalf("within the recheck interval the held answer stands (the documented bound): %v", err)
	}
	advance(time.Second)
	_, err = v.Verify(ctx, tok, rx.KindPrescription)
	wantCode(t, err, errs.CertificateRevoked)
	// Signed before the revocation by its own claim: still refused.
	if !strings.Contains(err.Error(), "keyCompromise") {
		t.Fatalf("refusal: %v", err)
	}
}
