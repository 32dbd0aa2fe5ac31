package lint_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

func TestOCSPResponse(t *testing.T) {
	p := testpki.New(t, nil, time.Now)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	responder := p.Issue(t, "ocsp-responder", testpki.Subject(pki.RoleService, "sub_ocsp", time.Now()), key)
	leaf := p.Issue(t, "practitioner-signing", testpki.Subject(pki.RolePractitioner, "sub_a", time.Now()), key)
	sign := func(thisUpdate time.Time) []byte {
		t.Helper()
		// ocsp.CreateResponse sets producedAt to the wall clock's minute.
		der, err := ocsp.CreateResponse(p.Intermediate, responder, ocsp.Response{Status: ocsp.Good, SerialNumber: leaf.SerialNumber, Certificate: responder,
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
}
