package publish_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"io"
	"log/slog"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/responder"
	"github.com/nuskha/nuskha/internal/publish"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/storetest"
	"github.com/nuskha/nuskha/internal/store/truststore"
	"github.com/nuskha/nuskha/internal/testutil/bulk"
	"github.com/nuskha/nuskha/internal/testutil/softhsm"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

// BenchmarkGenerateCRL is a whole CRL generation — read every live revoked
// serial from the store, lint with the throwaway key, sign, record — with a
// thousand and a million revoked certificates.
func BenchmarkGenerateCRL(b *testing.B) {
	ctx := context.Background()
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		for _, n := range []int{1000, 1000000} {
			parent := b
			var pub *publish.Publisher
			b.Run(driver+"/"+bulk.Label(n), func(b *testing.B) {
				// b.Run calls this several times; the database is filled
				// once, and only if this size is selected.
				if pub == nil {
					s, _ := bulk.Store(parent, driver, n)
					pub = newPublisher(parent, s)
					b.ResetTimer()
				}
				for i := 0; i < b.N; i++ {
					c, err := pub.GenerateCRL(ctx)
					if err != nil {
						b.Fatal(err)
					}
					if c.Entries != n {
						b.Fatalf("%d entries, want %d", c.Entries, n)
					}
					b.ReportMetric(float64(len(c.DER))/(1<<20), "MiB")
				}
			})
		}
	}
}

func newPublisher(b testing.TB, s *truststore.Store) *publish.Publisher {
	pub, _, _ := newPublisherWithPKI(b, s)
	return pub
}

// newPublisherWithPKI makes a publisher over s with a fresh hierarchy
// (intermediate key in memory) and returns the hierarchy and responder.
func newPublisherWithPKI(b testing.TB, s *truststore.Store) (*publish.Publisher, *testpki.PKI, *responder.Responder) {
	p := testpki.New(b, nil, time.Now)
	cfg := publisherConfig(b, s, p, time.Now)
	pub, err := publish.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return pub, p, cfg.Responder
}

// publisherConfig configures a publisher over s, signing with p's
// intermediate, with a responder and a bundle signer of their own.
func publisherConfig(b testing.TB, s *truststore.Store, p *testpki.PKI, now func() time.Time) publish.Config {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := responder.New(responder.Config{Issuer: p.Intermediate, Now: now, Log: log})
	if err != nil {
		b.Fatal(err)
	}
	rk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := r.SetCredential(responder.Credential{Cert: p.Issue(b, "ocsp-responder", testpki.Subject(pki.RoleService, "sub_o", now()), rk), Key: rk}); err != nil {
		b.Fatal(err)
	}
	bk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	bc := p.Issue(b, "trust-bundle-signing", testpki.Subject(pki.RoleService, "sub_b", now()), bk)
	return publish.Config{Store: s, Roots: []*x509.Certificate{p.Root}, Issuer: p.CA,
		Responder: r, BundleSigner: publish.Signer{Key: bk, Chain: []*x509.Certificate{bc, p.Intermediate}},
		Audit: audit.NewLog(s, log, now), Log: log, Now: now}
}

// BenchmarkRevocationToVisible is the time from an officer's revocation
// call to the OCSP responder answering "revoked" for it: recording the
// event, two audit writes, and re-signing the answer with the responder
// key on SoftHSM2.
func BenchmarkRevocationToVisible(b *testing.B) {
	ctx := context.Background()
	tok := softhsm.NewToken(b, "bench-ocsp")
	keys := hsm.NewManager(nil)
	defer keys.Close()
	ocspKey, err := keys.CreateKey(ctx, hsm.PKCS11URI(tok.Module, tok.Label, "ocsp", nil, tok.PINFile), hsm.ECP256)
	if err != nil {
		b.Fatal(err)
	}
	s, err := truststore.Open(ctx, sqlstore.SQLite, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	interKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p := testpki.New(b, interKey, time.Now)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, _ := responder.New(responder.Config{Issuer: p.Intermediate, Now: time.Now, Log: log})
	if err := r.SetCredential(responder.Credential{Cert: p.Issue(b, "ocsp-responder", testpki.Subject(pki.RoleService, "sub_o", time.Now()), ocspKey), Key: ocspKey}); err != nil {
		b.Fatal(err)
	}
	bk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	bc := p.Issue(b, "trust-bundle-signing", testpki.Subject(pki.RoleService, "sub_b", time.Now()), bk)
	rec := audit.NewLog(s, log, time.Now)
	pub, err := publish.New(publish.Config{Store: s, Roots: []*x509.Certificate{p.Root}, Issuer: p.CA,
		Responder: r, BundleSigner: publish.Signer{Key: bk, Chain: []*x509.Certificate{bc, p.Intermediate}},
		Audit: rec, Log: log, Now: time.Now})
	if err != nil {
		b.Fatal(err)
	}
	svc, err := revoke.New(revoke.Config{Store: s, Audit: rec, Refusals: audit.NewTally(rec, log, time.Now, time.Minute), Publisher: pub, Log: log, Now: time.Now})
	if err != nil {
		b.Fatal(err)
	}
	sub := storetest.Practitioner("MC-bench", "0499370899")
	if err := s.CreateSubject(ctx, sub, "bench"); err != nil {
		b.Fatal(err)
	}
	leaf := p.Issue(b, "practitioner-signing", testpki.Subject(pki.RolePractitioner, "sub_l", time.Now()), bk)
	reqs := make([][]byte, b.N)
	serials := make([]*big.Int, b.N)
	for i := range serials {
		serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 150))
		serials[i] = serial
		c := enrol.NewCertificateRecord(leaf, sub.ID, "practitioner-signing", "", "bench", time.Now())
		c.Serial, c.Fingerprint, c.SPKIHash = serial, pki.SerialHex(serial), "spki"+pki.SerialHex(serial)
		if err := s.StoreCertificate(ctx, c); err != nil {
			b.Fatal(err)
		}
		if err := r.Update(responder.Record{Serial: serial, Status: ocsp.Good, NotAfter: leaf.NotAfter}); err != nil {
			b.Fatal(err)
		}
		fake := *leaf
		fake.SerialNumber = serial
		reqs[i], _ = ocsp.CreateRequest(&fake, p.Intermediate, nil)
	}
	b.ResetTimer()
	for i, serial := range serials {
		if _, err := svc.Revoke(ctx, "officer-a", serial, revoke.KeyCompromise); err != nil {
			b.Fatal(err)
		}
		ans, err := ocsp.ParseResponse(r.Respond(reqs[i]).DER, p.Intermediate)
		if err != nil || ans.Status != ocsp.Revoked {
			b.Fatalf("not visible: %v %v", ans, err)
		}
	}
}
