package ceremony_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/certs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/ceremony"
	"github.com/nuskha/nuskha/internal/pki/crl"
	"github.com/nuskha/nuskha/internal/pki/lint"
	"github.com/nuskha/nuskha/internal/pki/profile"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

func TestHierarchy(t *testing.T) {
	profiles, err := profile.Load(certs.Profiles())
	if err != nil {
		t.Fatal(err)
	}
	l, _ := lint.New(nil)
	ecRoot, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaRoot, _ := rsa.GenerateKey(rand.Reader, 3072)
	ecInt, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaInt, _ := rsa.GenerateKey(rand.Reader, 2048)
	now := time.Now()
	for _, tc := range []struct {
		name        string
		root, inter crypto.Signer
	}{
		{"EC P-384 root, EC P-256 intermediate", ecRoot, ecInt},
		{"RSA-3072 root, RSA-2048 intermediate", rsaRoot, rsaInt},
		{"RSA root, EC intermediate", rsaRoot, ecInt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, err := ceremony.CreateRoot(tc.root, profiles.Root, ceremony.DefaultNames, now, l)
			if err != nil {
				t.Fatal(err)
			}
			inter, err := ceremony.CreateIntermediate(root, tc.root, tc.inter.Public(), profiles.Intermediate, ceremony.DefaultNames, []string{testpki.ARLURL}, now, l)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []*x509.Certificate{root, inter} {
				if f, err := l.Certificate(c.Raw); err != nil || len(f) != 0 {
					t.Fatalf("%s: zlint findings %v %v", c.Subject.CommonName, f, err)
				}
				if !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 {
					t.Fatalf("%s is not a CA", c.Subject.CommonName)
				}
			}
			if !inter.MaxPathLenZero || root.MaxPathLen != 1 {
				t.Fatalf("path lengths: root %d, intermediate zero=%v", root.MaxPathLen, inter.MaxPathLenZero)
			}
			if inter.NotAfter.After(root.NotAfter) {
				t.Fatal("intermediate outlives the root")
			}
			if out, err := testpki.OpenSSLVerify(t, root, root, inter); err != nil {
				t.Fatalf("openssl verify -x509_strict of the intermediate: %v\n%s", err, out)
			}
		})
	}
}

func TestSerial(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		s, err := ceremony.Serial()
		if err != nil {
			t.Fatal(err)
		}
		if s.Sign() <= 0 || s.BitLen() > 159 || s.BitLen() <= 64 {
			t.Fatalf("serial %x has %d bits", s, s.BitLen())
		}
		if seen[s.String()] {
			t.Fatal("serial repeated")
		}
		seen[s.String()] = true
	}
}

// TestARL: the root's ARL is lint-clean, and with it and the issuing CA's
// CRL `openssl verify -crl_check_all` accepts a practitioner's chain, and
// refuses it once the intermediate is on the ARL.
func TestARL(t *testing.T) {
	interKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p := testpki.New(t, interKey, time.Now)
	if len(p.Intermediate.CRLDistributionPoints) != 1 || p.Intermediate.CRLDistributionPoints[0] != testpki.ARLURL {
		t.Fatalf("the intermediate's CRL distribution points: %v", p.Intermediate.CRLDistributionPoints)
	}
	if f, err := p.Linter.Certificate(p.Intermediate.Raw); err != nil || len(f) != 0 {
		t.Fatalf("zlint on the intermediate: %v %v", f, err)
	}
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := p.Issue(t, "practitioner-signing", testpki.Subject(pki.RolePractitioner, "sub_a", time.Now()), leafKey)
	now := time.Now()
	crlDER, err := crl.Sign(crl.Request{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour)}, p.Intermediate, interKey, p.Linter, nil)
	if err != nil {
		t.Fatal(err)
	}
	var linted []byte
	arl, err := ceremony.SignARL(ceremony.ARLRequest{Number: big.NewInt(1), ThisUpdate: now}, p.Root, p.RootKey, p.Linter, func(tbs []byte) error { linted = tbs; return nil })
	if err != nil {
		t.Fatal(err)
	}
	list, _ := x509.ParseRevocationList(arl)
	if string(list.RawTBSRevocationList) != string(linted) || !list.NextUpdate.Equal(now.Add(ceremony.ARLValidity).UTC().Truncate(time.Second)) {
		t.Fatalf("ARL: signed TBS equal to the linted one: %v; nextUpdate %s", string(list.RawTBSRevocationList) == string(linted), list.NextUpdate)
	}
	if f, err := p.Linter.RevocationList(arl); err != nil || len(f) != 0 {
		t.Fatalf("zlint on the ARL: %v %v", f, err)
	}
	revoked, err := ceremony.SignARL(ceremony.ARLRequest{Number: big.NewInt(2), ThisUpdate: now,
		Revoked: []crl.Entry{{Serial: p.Intermediate.SerialNumber, RevokedAt: now, Reason: 2}}}, p.Root, p.RootKey, p.Linter, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f, err := p.Linter.RevocationList(revoked); err != nil || len(f) != 0 {
		t.Fatalf("zlint on the ARL with an entry: %v %v", f, err)
	}
	// A subtest, so that a missing openssl (without NUSKHA_REQUIRE_OPENSSL)
	// skips these checks alone and the refusals below still run.
	t.Run("openssl verify -crl_check_all", func(t *testing.T) {
		if out, err := testpki.OpenSSLVerifyChain(t, p.Root, p.Intermediate, leaf, arl, crlDER); err != nil {
			t.Fatalf("openssl verify -crl_check_all: %v\n%s", err, out)
		}
		if out, err := testpki.OpenSSLVerifyChain(t, p.Root, p.Intermediate, leaf, revoked, crlDER); err == nil || !strings.Contains(out, "certificate revoked") {
			t.Fatalf("openssl verify -crl_check_all with the intermediate revoked: %v\n%s", err, out)
		}
		// Without the ARL, openssl cannot check the intermediate and refuses.
		if out, err := testpki.OpenSSLVerifyCRL(t, p.Root, p.Intermediate, leaf, crlDER, "-crl_check_all"); err == nil {
			t.Fatalf("openssl verify -crl_check_all without the ARL accepted:\n%s", out)
		}
	})

	for name, tc := range map[string]struct {
		req ceremony.ARLRequest
		key crypto.Signer
	}{
		"hold is not for CAs":                    {ceremony.ARLRequest{Number: big.NewInt(3), ThisUpdate: now, Revoked: []crl.Entry{{Serial: big.NewInt(5), RevokedAt: now, Reason: 6}}}, p.RootKey},
		"keyCompromise is cACompromise for a CA": {ceremony.ARLRequest{Number: big.NewInt(3), ThisUpdate: now, Revoked: []crl.Entry{{Serial: big.NewInt(5), RevokedAt: now, Reason: 1}}}, p.RootKey},
		"not the root's key":                     {ceremony.ARLRequest{Number: big.NewInt(3), ThisUpdate: now}, interKey},
		"negative validity":                      {ceremony.ARLRequest{Number: big.NewInt(3), ThisUpdate: now, Validity: -time.Hour}, p.RootKey},
	} {
		t.Run(name, func(t *testing.T) {
			if der, err := ceremony.SignARL(tc.req, p.Root, tc.key, p.Linter, nil); err == nil || der != nil {
				t.Fatal("signed")
			}
		})
	}
	if _, err := ceremony.SignARL(ceremony.ARLRequest{Number: big.NewInt(3), ThisUpdate: now}, p.Intermediate, interKey, p.Linter, nil); err == nil {
		t.Fatal("an intermediate signed an ARL")
	}
}
