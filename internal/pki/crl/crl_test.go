package crl_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/crl"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

func TestCRLAcceptedByOpenSSLAndLintClean(t *testing.T) {
	interKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p := testpki.New(t, interKey, time.Now)
	good := p.Issue(t, "practitioner-signing", testpki.Subject(pki.RolePractitioner, "sub_good", time.Now()), newKey())
	bad := p.Issue(t, "practitioner-signing", testpki.Subject(pki.RolePractitioner, "sub_bad", time.Now()), newKey())
	held := p.Issue(t, "pharmacy-signing", testpki.Subject(pki.RolePharmacy, "sub_held", time.Now()), newKey())
	now := time.Now()
	var tbsSeen []byte
	der, err := crl.Sign(crl.Request{
		Number: big.NewInt(7), ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour),
		Entries: []crl.Entry{{Serial: bad.SerialNumber, RevokedAt: now.Add(-time.Minute), Reason: 1}, {Serial: held.SerialNumber, RevokedAt: now, Reason: 6}},
	}, p.Intermediate, interKey, p.Linter, func(tbs []byte) error { tbsSeen = tbs; return nil })
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Number.Int64() != 7 || len(parsed.RevokedCertificateEntries) != 2 || string(parsed.AuthorityKeyId) != string(p.Intermediate.SubjectKeyId) {
		t.Fatalf("CRL: number %v, %d entries, AKI %x", parsed.Number, len(parsed.RevokedCertificateEntries), parsed.AuthorityKeyId)
	}
	if string(parsed.RawTBSRevocationList) != string(tbsSeen) {
		t.Fatal("the signed CRL is not the linted one")
	}
	if parsed.RevokedCertificateEntries[0].ReasonCode != 1 || parsed.RevokedCertificateEntries[1].ReasonCode != 6 {
		t.Fatal("reason codes lost")
	}
	if f, err := p.Linter.RevocationList(der); err != nil || len(f) != 0 {
		t.Fatalf("zlint CRL findings: %v %v", f, err)
	}
	if out, err := testpki.OpenSSLVerifyCRL(t, p.Root, p.Intermediate, good, der); err != nil {
		t.Fatalf("openssl -crl_check refused a good certificate: %v\n%s", err, out)
	}
	out, err := testpki.OpenSSLVerifyCRL(t, p.Root, p.Intermediate, bad, der)
	if err == nil || !strings.Contains(out, "certificate revoked") {
		t.Fatalf("openssl -crl_check accepted a revoked certificate: %v\n%s", err, out)
	}
	out, err = testpki.OpenSSLVerifyCRL(t, p.Root, p.Intermediate, held, der)
	if err == nil || !strings.Contains(out, "certificate revoked") {
		t.Fatalf("openssl -crl_check accepted a suspended certificate: %v\n%s", err, out)
	}
}

func TestSignRefusals(t *testing.T) {
	interKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p := testpki.New(t, interKey, time.Now)
	now := time.Now()
	stop := errors.New("audit down")
	for name, tc := range map[string]struct {
		req    crl.Request
		before crl.BeforeSign
	}{
		"zero number":               {crl.Request{Number: big.NewInt(0), ThisUpdate: now, NextUpdate: now.Add(time.Hour)}, nil},
		"nextUpdate before this":    {crl.Request{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(-time.Hour)}, nil},
		"intent cannot be recorded": {crl.Request{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(time.Hour)}, func([]byte) error { return stop }},
	} {
		t.Run(name, func(t *testing.T) {
			if der, err := crl.Sign(tc.req, p.Intermediate, interKey, p.Linter, tc.before); err == nil || der != nil {
				t.Fatal("signed")
			}
		})
	}
}

func newKey() *ecdsa.PrivateKey {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return k
}
