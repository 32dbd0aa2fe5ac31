package ca_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	"github.com/smallstep/certificates/authority"
	"github.com/smallstep/certificates/authority/config"
	"github.com/smallstep/certificates/authority/provisioner"
	"go.step.sm/crypto/x509util"

	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/ca"
	"github.com/nuskha/nuskha/internal/pki/ceremony"
	"github.com/nuskha/nuskha/internal/testutil/softhsm"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

// intermediateKeys are the custodies compared: SoftHSM2 through PKCS#11 (the
// production path) and an in-memory key (the signing floor).
func intermediateKeys(b *testing.B) map[string]crypto.Signer {
	tok := softhsm.NewToken(b, "bench-ca")
	m := hsm.NewManager(nil)
	b.Cleanup(func() { m.Close() })
	k, err := m.CreateKey(context.Background(), hsm.PKCS11URI(tok.Module, tok.Label, "issuing", nil, tok.PINFile), hsm.ECP256)
	if err != nil {
		b.Fatal(err)
	}
	mem, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return map[string]crypto.Signer{"softhsm2": k, "memory": mem}
}

// BenchmarkIssue is our issuance: template, zlint pre-issuance lint with the
// throwaway key, step-ca signing with the intermediate key, TBS check.
func BenchmarkIssue(b *testing.B) {
	for name, key := range intermediateKeys(b) {
		b.Run(name, func(b *testing.B) {
			p := testpki.New(b, key, time.Now)
			prof, _ := p.Profiles.Get("practitioner-signing")
			data, _ := enrol.CertificateData(testpki.Subject(pki.RolePractitioner, "sub_bench", time.Now()), p.Arc, p.URLs)
			leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			csr := testpki.CSR(b, leafKey)
			td := data.TemplateData()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				serial, _ := ceremony.Serial()
				if _, err := p.CA.Issue(context.Background(), ca.Request{CSR: csr, Template: prof.Template, Data: td, Serial: serial,
					NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "issuances/s")
		})
	}
}

// BenchmarkAuthoritySign is a bare step-ca authority.Sign of the same
// template with the same key: the floor our issuance is compared with.
func BenchmarkAuthoritySign(b *testing.B) {
	for name, key := range intermediateKeys(b) {
		b.Run(name, func(b *testing.B) {
			p := testpki.New(b, key, time.Now)
			auth, err := authority.NewEmbedded(
				authority.WithConfig(&config.Config{AuthorityConfig: &config.AuthConfig{}}),
				authority.WithX509RootCerts(p.Root),
				authority.WithX509SignerChain([]*x509.Certificate{p.Intermediate}, key),
				authority.WithQuietInit(),
			)
			if err != nil {
				b.Fatal(err)
			}
			prof, _ := p.Profiles.Get("practitioner-signing")
			data, _ := enrol.CertificateData(testpki.Subject(pki.RolePractitioner, "sub_bench", time.Now()), p.Arc, p.URLs)
			opts, err := provisioner.CustomTemplateOptions(nil, x509util.TemplateData(data.TemplateData()), prof.Template)
			if err != nil {
				b.Fatal(err)
			}
			validity := provisioner.CertificateModifierFunc(func(c *x509.Certificate, _ provisioner.SignOptions) error {
				c.NotBefore, c.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
				return nil
			})
			leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			csr := testpki.CSR(b, leafKey)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := auth.SignWithContext(context.Background(), csr, provisioner.SignOptions{}, opts, validity); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "issuances/s")
		})
	}
}
