package ceremony_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"testing"
	"time"

	"github.com/nuskha/nuskha/certs"
	"github.com/nuskha/nuskha/internal/pki/ceremony"
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
			inter, err := ceremony.CreateIntermediate(root, tc.root, tc.inter.Public(), profiles.Intermediate, ceremony.DefaultNames, now, l)
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
