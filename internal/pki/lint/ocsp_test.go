package lint_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/responder"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

func TestOCSPResponse(t *testing.T) {
	p := testpki.New(t, nil, time.Now)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	responderCert := p.Issue(t, "ocsp-responder", testpki.Subject(pki.RoleService, "sub_ocsp", time.Now()), key)
	leaf := p.Issue(t, "practitioner-signing", testpki.Subject(pki.RolePractitioner, "sub_a", time.Now()), key)
	sign := func(thisUpdate time.Time) []byte {
		t.Helper()
		// ocsp.CreateResponse sets producedAt to the wall clock's minute.
		der, err := ocsp.CreateResponse(p.Intermediate, responderCert, ocsp.Response{Status: ocsp.Good, SerialNumber: leaf.SerialNumber, Certificate: responderCert,
			ThisUpdate: thisUpdate, NextUpdate: thisUpdate.Add(time.Hour)}, key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	if f, err := p.Linter.OCSPResponse(sign(time.Now().Add(-time.Hour)), p.Intermediate); err != nil || len(f) != 0 {
		t.Fatalf("a correct response: %v %v", f, err)
	}
	f, err := p.Linter.OCSPResponse(sign(time.Now().Add(time.Hour)), p.Intermediate)
	if err != nil || len(f) != 1 || f[0].Lint != "e_this_update_not_after_produced_at" {
		t.Fatalf("thisUpdate after producedAt: findings %v, %v", f, err)
	}
	if f, err := p.Linter.OCSPResponse(ocsp.TryLaterErrorResponse, p.Intermediate); err != nil || len(f) != 0 {
		t.Fatalf("an unsigned error response: %v %v", f, err)
	}
	other := testpki.New(t, nil, time.Now)
	if _, err := p.Linter.OCSPResponse(sign(time.Now()), other.Intermediate); err == nil || !strings.Contains(err.Error(), "verify") {
		t.Fatalf("a response from another CA was linted: %v", err)
	}
	if _, err := p.Linter.OCSPResponse([]byte("garbage"), p.Intermediate); err == nil {
		t.Fatal("garbage linted")
	}

	// One response about several certificates: each status is linted.
	r, err := responder.New(responder.Config{Issuer: p.Intermediate, Now: time.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetCredential(responder.Credential{Cert: responderCert, Key: key}); err != nil {
		t.Fatal(err)
	}
	other2 := p.Issue(t, "practitioner-signing", testpki.Subject(pki.RolePractitioner, "sub_b", time.Now()), key)
	if err := r.Update(responder.Record{Serial: other2.SerialNumber, Status: ocsp.Revoked, Reason: ocsp.KeyCompromise, RevokedAt: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	var list []asn1.RawValue
	for _, c := range []*x509.Certificate{leaf, other2} {
		req, _ := ocsp.CreateRequest(c, p.Intermediate, &ocsp.RequestOptions{Hash: crypto.SHA256})
		var one struct {
			TBS struct{ List []asn1.RawValue }
		}
		if _, err := asn1.Unmarshal(req, &one); err != nil {
			t.Fatal(err)
		}
		list = append(list, one.TBS.List...)
	}
	type tbs struct{ List []asn1.RawValue }
	multi, _ := asn1.Marshal(struct{ TBS tbs }{tbs{list}})
	der := r.Respond(multi).DER
	if f, err := p.Linter.OCSPResponse(der, p.Intermediate); err != nil || len(f) != 0 {
		t.Fatalf("a response about two certificates: %v %v", f, err)
	}
	if _, err := p.Linter.OCSPResponse(der, other.Intermediate); err == nil || !strings.Contains(err.Error(), "verify") {
		t.Fatalf("a response about two certificates from another CA was linted: %v", err)
	}
}
