package publish_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"math/big"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/crl"
	"github.com/nuskha/nuskha/internal/publish"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/storetest"
	"github.com/nuskha/nuskha/internal/store/truststore"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

// signings is every CRL the issuing key signed in a test, by number: the
// hashes of the TBS of each.
type signings struct {
	mu  sync.Mutex
	tbs map[int64][][32]byte
}

// watch wraps the CA so that every CRL it signs is recorded.
func (s *signings) watch(ca publish.Issuer) publish.Issuer { return &watchedIssuer{Issuer: ca, s: s} }

type watchedIssuer struct {
	publish.Issuer
	s *signings
}

func (w *watchedIssuer) SignCRL(req crl.Request, before crl.BeforeSign) ([]byte, error) {
	der, err := w.Issuer.SignCRL(req, before)
	if err == nil {
		list, perr := x509.ParseRevocationList(der)
		if perr != nil {
			return nil, perr
		}
		w.s.mu.Lock()
		defer w.s.mu.Unlock()
		if w.s.tbs == nil {
			w.s.tbs = map[int64][][32]byte{}
		}
		n := list.Number.Int64()
		w.s.tbs[n] = append(w.s.tbs[n], sha256.Sum256(list.RawTBSRevocationList))
	}
	return der, err
}

// check fails t if one number was signed twice; it returns the numbers.
func (s *signings) check(t *testing.T) map[int64]bool {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int64]bool{}
	for n, hs := range s.tbs {
		if len(hs) > 1 {
			t.Errorf("CRL number %d was signed %d times (different contents: %v)", n, len(hs), hs[0] != hs[1])
		}
		out[n] = true
	}
	return out
}

// failingStore fails StoreCRL while fail is set, after the CRL was signed.
type failingStore struct {
	*truststore.Store
	fail bool
}

func (f *failingStore) StoreCRL(ctx context.Context, c revoke.CRL, at time.Time) error {
	if f.fail {
		return errors.New("the database went away")
	}
	return f.Store.StoreCRL(ctx, c, at)
}

// TestFailedStoreCRLDoesNotReuseTheNumber: a CRL signed but not recorded
// keeps its number; the next CRL, with other contents (a revocation since),
// is signed under a new, higher one, even with the clock standing still.
func TestFailedStoreCRLDoesNotReuseTheNumber(t *testing.T) {
	ctx := context.Background()
	s, err := truststore.Open(ctx, sqlstore.SQLite, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	at := time.Now()
	clock := func() time.Time { return at }
	p := testpki.New(t, nil, clock)
	var signed signings
	cfg := publisherConfig(t, s, p, clock)
	fs := &failingStore{Store: s}
	cfg.Store, cfg.Issuer = fs, signed.watch(p.CA)
	pub, err := publish.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	first := pub.CRL().Number

	fs.fail = true
	if _, err := pub.GenerateCRL(ctx); err == nil {
		t.Fatal("GenerateCRL succeeded although the CRL could not be recorded")
	}
	fs.fail = false
	revokeOne(t, s, p, at)
	c, err := pub.GenerateCRL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	numbers := signed.check(t)
	if len(numbers) != 3 || c.Number <= first || c.Entries != 1 {
		t.Fatalf("signed numbers %v; first CRL %d, the one served after the failure %d with %d entries", numbers, first, c.Number, c.Entries)
	}
	for n := range numbers {
		if n > c.Number {
			t.Fatalf("the failed CRL's number %d is above the next CRL's %d", n, c.Number)
		}
	}
}

// revokeOne records a certificate of p, to a new subject, as revoked.
func revokeOne(t *testing.T, s *truststore.Store, p *testpki.PKI, at time.Time) {
	t.Helper()
	ctx := context.Background()
	sub := storetest.Practitioner("MC-1", "0499370899")
	if err := s.CreateSubject(ctx, sub, "t"); err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c := p.Issue(t, "practitioner-signing", testpki.Subject(pki.RolePractitioner, sub.ID, at), key)
	if err := s.StoreCertificate(ctx, enrol.NewCertificateRecord(c, sub.ID, "practitioner-signing", "", "t", at)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordStatus(ctx, &revoke.Event{Serial: c.SerialNumber, Status: revoke.Revoked, Reason: revoke.KeyCompromise,
		EffectiveAt: at, RecordedAt: at, RequestedBy: "t"}, []revoke.Status{revoke.Good}); err != nil {
		t.Fatal(err)
	}
}

// TestTwoPublishersOnOneDatabase is two trustd on one database making CRLs
// at once, with clocks that read the same: no number is signed twice, and
// the CRLs recorded go up.
func TestTwoPublishersOnOneDatabase(t *testing.T) {
	for name, dsn := range map[string]func(t *testing.T) (string, string){
		sqlstore.SQLite:   func(t *testing.T) (string, string) { return sqlstore.SQLite, filepath.Join(t.TempDir(), "t.db") },
		sqlstore.Postgres: func(t *testing.T) (string, string) { return sqlstore.Postgres, pgtest.Schema(t) },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			driver, source := dsn(t)
			at := time.Now()
			clock := func() time.Time { return at }
			p := testpki.New(t, nil, clock)
			var signed signings
			var pubs []*publish.Publisher
			var first *truststore.Store
			for range 2 {
				s, err := truststore.Open(ctx, driver, source)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				if first == nil {
					first = s
				}
				cfg := publisherConfig(t, s, p, clock)
				cfg.Issuer = signed.watch(p.CA)
				pub, err := publish.New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				pubs = append(pubs, pub)
			}
			const each = 6
			var wg sync.WaitGroup
			errc := make(chan error, 2*each)
			for _, pub := range pubs {
				wg.Go(func() {
					for range each {
						if _, err := pub.GenerateCRL(ctx); err != nil {
							errc <- err
						}
					}
				})
			}
			wg.Wait()
			close(errc)
			for err := range errc {
				t.Error(err)
			}
			if numbers := signed.check(t); len(numbers) != 2*each {
				t.Fatalf("%d numbers signed for %d CRLs", len(numbers), 2*each)
			}
			latest, err := first.LatestCRL(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, pub := range pubs {
				if pub.CRL().Number > latest.Number {
					t.Fatalf("a publisher serves CRL %d, above the latest recorded %d", pub.CRL().Number, latest.Number)
				}
			}
		})
	}
}

// TestCRLNumbersGrowAcrossRestarts: a database whose CRLs were numbered
// 1..N by the old counter moves on above N; numbers follow the clock, and
// a restart with a clock set back still goes up.
func TestCRLNumbersGrowAcrossRestarts(t *testing.T) {
	ctx := context.Background()
	s, err := truststore.Open(ctx, sqlstore.SQLite, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	at := time.Now()
	p := testpki.New(t, nil, time.Now)
	// CRLs 1..3, as the counter numbered them.
	for n := int64(1); n <= 3; n++ {
		der, err := p.CA.SignCRL(crl.Request{Number: big.NewInt(n), ThisUpdate: at, NextUpdate: at.Add(time.Hour)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.StoreCRL(ctx, revoke.CRL{Number: n, ThisUpdate: at, NextUpdate: at.Add(time.Hour), DER: der}, at); err != nil {
			t.Fatal(err)
		}
	}
	start := func(now time.Time) int64 {
		t.Helper()
		pub, err := publish.New(publisherConfig(t, s, p, func() time.Time { return now }))
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return pub.CRL().Number
	}
	n1 := start(at)
	if n1 != at.UnixNano() {
		t.Fatalf("first CRL after CRL 3: number %d, want the time in nanoseconds %d", n1, at.UnixNano())
	}
	if n2 := start(at.Add(-time.Hour)); n2 <= n1 {
		t.Fatalf("after a restart with the clock an hour back: number %d, not above %d", n2, n1)
	}
	if n3 := start(at.Add(time.Minute)); n3 != at.Add(time.Minute).UnixNano() {
		t.Fatalf("a minute later: number %d, want %d", n3, at.Add(time.Minute).UnixNano())
	}
}

// downIssuer is an issuing key that cannot sign (the HSM is gone).
type downIssuer struct{ publish.Issuer }

var errHSMDown = errors.New("hsm down")

func (downIssuer) SignCRL(crl.Request, crl.BeforeSign) ([]byte, error) { return nil, errHSMDown }

// failedAuditDown fails the audit writes of failed outcomes.
type failedAuditDown struct{ inner audit.Recorder }

var errAuditDown = errors.New("audit disk full")

func (f failedAuditDown) Record(ctx context.Context, e audit.Event) error {
	if e.Outcome == audit.Failed {
		return errAuditDown
	}
	return f.inner.Record(ctx, e)
}

// TestFailedGenerationWithoutItsAudit: a CRL generation that fails, and
// whose failure the audit log cannot record, reports both.
func TestFailedGenerationWithoutItsAudit(t *testing.T) {
	ctx := context.Background()
	s, err := truststore.Open(ctx, sqlstore.SQLite, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := testpki.New(t, nil, time.Now)
	cfg := publisherConfig(t, s, p, time.Now)
	cfg.Issuer, cfg.Audit = downIssuer{p.CA}, failedAuditDown{cfg.Audit}
	pub, err := publish.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.GenerateCRL(ctx); !errors.Is(err, errHSMDown) || !errors.Is(err, errAuditDown) {
		t.Fatalf("got %v; want the signing failure and the audit failure", err)
	}
}

// TestTwoTrustdServeTheLatestChange: with two trustd on one database, a
// CRL fetched from either after a revocation made through one includes
// it, and the CRL numbers served, whichever trustd answers, never go
// back.
func TestTwoTrustdServeTheLatestChange(t *testing.T) {
	for name, dsn := range map[string]func(t *testing.T) (string, string){
		sqlstore.SQLite:   func(t *testing.T) (string, string) { return sqlstore.SQLite, filepath.Join(t.TempDir(), "t.db") },
		sqlstore.Postgres: func(t *testing.T) (string, string) { return sqlstore.Postgres, pgtest.Schema(t) },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			driver, source := dsn(t)
			p := testpki.New(t, nil, time.Now)
			var pubs []*publish.Publisher
			var stores []*truststore.Store
			for range 2 {
				s, err := truststore.Open(ctx, driver, source)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				pub, err := publish.New(publisherConfig(t, s, p, time.Now))
				if err != nil {
					t.Fatal(err)
				}
				if err := pub.Start(ctx); err != nil {
					t.Fatal(err)
				}
				pubs, stores = append(pubs, pub), append(stores, s)
			}
			var last *big.Int
			fetch := func(i int) *x509.RevocationList {
				t.Helper()
				rr := httptest.NewRecorder()
				pubs[i].CRLHandler().ServeHTTP(rr, httptest.NewRequest("GET", "/crl", nil))
				l, err := x509.ParseRevocationList(rr.Body.Bytes())
				if err != nil {
					t.Fatalf("trustd %d: status %d: %v", i, rr.Code, err)
				}
				if last != nil && l.Number.Cmp(last) < 0 {
					t.Fatalf("trustd %d serves CRL %s after CRL %s was served", i, l.Number, last)
				}
				last = l.Number
				return l
			}
			// trustd 1 serves the CRL it started with; trustd 0 then makes a
			// newer one, which trustd 1 serves rather than its own.
			fetch(1)
			if _, err := pubs[0].GenerateCRL(ctx); err != nil {
				t.Fatal(err)
			}
			fetch(0)
			fetch(1)
			// trustd 0 records a revocation and tells its own publisher, as
			// revoke does; trustd 1 hears nothing of it.
			at := time.Now()
			revokeOne(t, stores[0], p, at)
			for _, i := range []int{1, 0, 1, 0} {
				if l := fetch(i); len(l.RevokedCertificateEntries) != 1 {
					t.Fatalf("trustd %d serves CRL %s with %d entries after the revocation", i, l.Number, len(l.RevokedCertificateEntries))
				}
			}
		})
	}
}
