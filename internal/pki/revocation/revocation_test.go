package revocation_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/crl"
	"github.com/nuskha/nuskha/internal/pki/responder"
	"github.com/nuskha/nuskha/internal/pki/revocation"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
	"golang.org/x/crypto/ocsp"
)

func newKey() *ecdsa.PrivateKey {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return k
}

type fixture struct {
	p        *testpki.PKI
	interKey *ecdsa.PrivateKey
	good     *x509.Certificate
	stolen   *x509.Certificate
	retired  *x509.Certificate
	held     *x509.Certificate
	revokeAt time.Time
}

func setup(t testing.TB) *fixture {
	k := newKey()
	p := testpki.New(t, k, time.Now)
	f := &fixture{p: p, interKey: k, revokeAt: time.Now().Add(-4 * time.Hour).Truncate(time.Second)}
	sub := func(id string) *x509.Certificate {
		return p.Issue(t, "practitioner-signing", testpki.Subject(pki.RolePractitioner, id, time.Now()), newKey())
	}
	f.good, f.stolen, f.retired, f.held = sub("sub_g"), sub("sub_s"), sub("sub_r"), sub("sub_h")
	return f
}

func (f *fixture) crl(t testing.TB, number int64, thisUpdate time.Time, validity time.Duration) *x509.RevocationList {
	der, err := crl.Sign(crl.Request{Number: big.NewInt(number), ThisUpdate: thisUpdate, NextUpdate: thisUpdate.Add(validity), Entries: []crl.Entry{
		{Serial: f.stolen.SerialNumber, RevokedAt: f.revokeAt, Reason: 1},
		{Serial: f.retired.SerialNumber, RevokedAt: f.revokeAt, Reason: 5},
		{Serial: f.held.SerialNumber, RevokedAt: f.revokeAt, Reason: 6},
	}}, f.p.Intermediate, f.interKey, f.p.Linter, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, _ := x509.ParseRevocationList(der)
	return l
}

func checker(t testing.TB, now func() time.Time, maxAge time.Duration, client *http.Client) *revocation.Checker {
	c, err := revocation.New(revocation.Config{MaxAge: maxAge, Now: now, HTTP: client})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFromCRL(t *testing.T) {
	f := setup(t)
	c := checker(t, time.Now, time.Hour, nil)
	if err := c.AddCRL(f.crl(t, 2, time.Now(), 24*time.Hour), f.p.Intermediate); err != nil {
		t.Fatal(err)
	}
	before, after := f.revokeAt.Add(-time.Minute), f.revokeAt.Add(time.Minute)
	for _, tc := range []struct {
		name       string
		cert       *x509.Certificate
		status     revocation.Status
		goodBefore bool
		goodAfter  bool
	}{
		{"good", f.good, revocation.Good, true, true},
		{"key compromise: distrusted for all time", f.stolen, revocation.Revoked, false, false},
		// sigT is the signer's claim: a revoked key can backdate it, so no
		// revocation reason leaves earlier signatures trusted.
		{"cessation of operation: not trusted before either", f.retired, revocation.Revoked, false, false},
		{"suspended", f.held, revocation.OnHold, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := c.Check(context.Background(), tc.cert, f.p.Intermediate)
			if err != nil || res.Status != tc.status {
				t.Fatalf("Check: %+v %v", res, err)
			}
			if (res.GoodAt(before) == nil) != tc.goodBefore || (res.GoodAt(after) == nil) != tc.goodAfter {
				t.Fatalf("GoodAt(before)=%v GoodAt(after)=%v", res.GoodAt(before), res.GoodAt(after))
			}
			if err := res.GoodAt(after); err != nil && !errors.Is(err, errs.Of(errs.CertificateRevoked)) {
				t.Fatalf("refusal code: %v", err)
			}
		})
	}
	t.Run("an older CRL does not replace a newer one", func(t *testing.T) {
		old := f.crl(t, 1, time.Now().Add(-3*time.Hour), 24*time.Hour)
		if err := c.AddCRL(old, f.p.Intermediate); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Check(context.Background(), f.good, f.p.Intermediate); err != nil {
			t.Fatalf("the newer CRL was replaced: %v", err)
		}
	})
	t.Run("a delta CRL is not complete evidence", func(t *testing.T) {
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(50), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour),
			ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 27}, Critical: true, Value: []byte{0x02, 0x01, 0x02}}}}, f.p.Intermediate, f.interKey)
		if err != nil {
			t.Fatal(err)
		}
		// Well formed: it is refused for being a delta, nothing else.
		if findings, err := f.p.Linter.RevocationList(der); err != nil || len(findings) != 0 {
			t.Fatalf("zlint on the delta CRL: %v %v", findings, err)
		}
		delta, _ := x509.ParseRevocationList(der)
		if err := c.AddCRL(delta, f.p.Intermediate); err == nil {
			t.Fatal("a delta CRL replaced the full one")
		}
		if res, _ := c.Check(context.Background(), f.stolen, f.p.Intermediate); res.Status != revocation.Revoked {
			t.Fatal("the full CRL's evidence was lost")
		}
	})
	t.Run("a CRL signed by someone else is refused", func(t *testing.T) {
		other := testpki.New(t, nil, time.Now)
		if err := c.AddCRL(f.crl(t, 9, time.Now(), time.Hour), other.Intermediate); err == nil {
			t.Fatal("accepted")
		}
	})
}

func TestFailsClosed(t *testing.T) {
	f := setup(t)
	now := time.Now()
	for _, tc := range []struct {
		name string
		crl  *x509.RevocationList
		want string
	}{
		{"no evidence at all", nil, "no CRL"},
		{"CRL older than the maximum age", f.crl(t, 1, now.Add(-3*time.Hour), 24*time.Hour), "old, more than"},
		{"CRL past its nextUpdate", f.crl(t, 1, now.Add(-50*time.Minute), 30*time.Minute), "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := checker(t, func() time.Time { return now }, time.Hour, nil)
			if tc.crl != nil {
				if err := c.AddCRL(tc.crl, f.p.Intermediate); err != nil {
					t.Fatal(err)
				}
			}
			_, err := c.Check(context.Background(), f.good, f.p.Intermediate)
			if !errors.Is(err, errs.Of(errs.RevocationUnknown)) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want revocation-status-unknown saying %q", err, tc.want)
			}
		})
	}
}

func TestFromOCSP(t *testing.T) {
	f := setup(t)
	r, _ := responder.New(responder.Config{Issuer: f.p.Intermediate, Now: time.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	rk := newKey()
	r.SetCredential(responder.Credential{Cert: f.p.Issue(t, "ocsp-responder", testpki.Subject(pki.RoleService, "sub_o", time.Now()), rk), Key: rk})
	r.Update(responder.Record{Serial: f.good.SerialNumber, Status: ocsp.Good})
	r.Update(responder.Record{Serial: f.stolen.SerialNumber, Status: ocsp.Revoked, Reason: ocsp.KeyCompromise, RevokedAt: f.revokeAt})
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		hits.Add(1)
		r.Handler("/").ServeHTTP(w, req)
	}))
	defer srv.Close()
	// Certificates carry the OCSP URL; point them at the test server.
	good, stolen := *f.good, *f.stolen
	good.OCSPServer, stolen.OCSPServer = []string{srv.URL}, []string{srv.URL}

	c, err := revocation.New(revocation.Config{MaxAge: time.Hour, Recheck: time.Minute, Now: time.Now, HTTP: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Check(context.Background(), &good, f.p.Intermediate)
	if err != nil || res.Status != revocation.Good || !strings.HasPrefix(res.Source, "OCSP") {
		t.Fatalf("good via OCSP: %+v %v", res, err)
	}
	if _, err := c.Check(context.Background(), &good, f.p.Intermediate); err != nil || hits.Load() != 1 {
		t.Fatalf("second check was not answered from cache: %d requests, %v", hits.Load(), err)
	}
	res, err = c.Check(context.Background(), &stolen, f.p.Intermediate)
	if err != nil || res.Status != revocation.Revoked || res.Reason != 1 {
		t.Fatalf("revoked via OCSP: %+v %v", res, err)
	}
	t.Run("responder down", func(t *testing.T) {
		down := good
		down.OCSPServer = []string{"http://127.0.0.1:1/ocsp"}
		down.SerialNumber = big.NewInt(99)
		_, err := c.Check(context.Background(), &down, f.p.Intermediate)
		if !errors.Is(err, errs.Of(errs.RevocationUnknown)) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("answer older than the maximum age", func(t *testing.T) {
		late := checker(t, func() time.Time { return time.Now().Add(2 * time.Hour) }, time.Hour, srv.Client())
		_, err := late.Check(context.Background(), &good, f.p.Intermediate)
		if !errors.Is(err, errs.Of(errs.RevocationUnknown)) {
			t.Fatalf("got %v", err)
		}
	})
}

// BenchmarkCheckCRL shows that a lookup costs the same with a thousand or a
// million revoked serials in the CRL.
func BenchmarkCheckCRL(b *testing.B) {
	f := setup(b)
	for _, n := range []int{1000, 1000000} {
		entries := make([]x509.RevocationListEntry, n)
		for i := range entries {
			s, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 150))
			entries[i] = x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now(), ReasonCode: 4}
		}
		entries[n/2].SerialNumber = f.stolen.SerialNumber
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour),
			RevokedCertificateEntries: entries}, f.p.Intermediate, f.interKey)
		if err != nil {
			b.Fatal(err)
		}
		list, _ := x509.ParseRevocationList(der)
		c := checker(b, time.Now, time.Hour, nil)
		if err := c.AddCRL(list, f.p.Intermediate); err != nil {
			b.Fatal(err)
		}
		for name, cert := range map[string]*x509.Certificate{"good": f.good, "revoked": f.stolen} {
			b.Run(name+"/"+itoa(n), func(b *testing.B) {
				ctx := context.Background()
				for i := 0; i < b.N; i++ {
					if _, err := c.Check(ctx, cert, f.p.Intermediate); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }

// TestChain: every certificate of a chain is checked, the intermediate
// against the root's ARL, which is judged by its nextUpdate (the root
// re-signs it yearly, at a ceremony), not by MaxAge.
func TestChain(t *testing.T) {
	f := setup(t)
	now := time.Now()
	chain := []*x509.Certificate{f.good, f.p.Intermediate, f.p.Root}
	for _, tc := range []struct {
		name string
		arl  *x509.RevocationList
		code errs.Code // "" for good
		want string
	}{
		{"ARL listing no CA", f.p.ARL(t, now.Add(-time.Minute)), "", ""},
		{"ARL much older than MaxAge, not known to be current since", f.p.ARL(t, now.Add(-300*24*time.Hour)), errs.RevocationUnknown, "last known current"},
		{"the intermediate is on the ARL", f.p.ARL(t, now.Add(-time.Minute), f.p.Intermediate), errs.CertificateRevoked, "Nuskha Issuing CA 1"},
		{"no ARL", nil, errs.RevocationUnknown, "no ARL"},
		{"ARL past its nextUpdate", f.p.ARL(t, now.Add(-366*24*time.Hour)), errs.RevocationUnknown, "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := checker(t, func() time.Time { return now }, time.Hour, nil)
			if err := c.AddCRL(f.crl(t, 1, now.Add(-time.Minute), 24*time.Hour), f.p.Intermediate); err != nil {
				t.Fatal(err)
			}
			if tc.arl != nil {
				if err := c.AddCRL(tc.arl, f.p.Root); err != nil {
					t.Fatal(err)
				}
			}
			res, err := c.CheckChain(context.Background(), chain)
			if tc.code == "" {
				if err != nil || res.Status != revocation.Good || !strings.HasPrefix(res.Source, "CRL") {
					t.Fatalf("good chain: %+v %v", res, err)
				}
				return
			}
			if !errors.Is(err, errs.Of(tc.code)) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %s saying %q", err, tc.code, tc.want)
			}
		})
	}
	t.Run("a revoked leaf under a good CA", func(t *testing.T) {
		c := checker(t, func() time.Time { return now }, time.Hour, nil)
		c.AddCRL(f.crl(t, 1, now.Add(-time.Minute), 24*time.Hour), f.p.Intermediate)
		c.AddCRL(f.p.ARL(t, now.Add(-time.Minute)), f.p.Root)
		res, err := c.CheckChain(context.Background(), []*x509.Certificate{f.stolen, f.p.Intermediate, f.p.Root})
		if err != nil || res.Status != revocation.Revoked {
			t.Fatalf("%+v %v", res, err)
		}
	})
	t.Run("an ARL not signed by the root is refused", func(t *testing.T) {
		other := testpki.New(t, nil, time.Now)
		c := checker(t, func() time.Time { return now }, time.Hour, nil)
		if err := c.AddCRL(other.ARL(t, now), f.p.Root); err == nil {
			t.Fatal("accepted")
		}
	})
}

// TestChainOnline: online, the ARL is fetched from the intermediate's CRL
// distribution point, once.
func TestChainOnline(t *testing.T) {
	f := setup(t)
	now := time.Now()
	arl := f.p.ARL(t, now.Add(-time.Minute), f.p.Intermediate)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write(arl.Raw)
	}))
	defer srv.Close()
	inter := *f.p.Intermediate
	inter.CRLDistributionPoints = []string{srv.URL + "/crl/root-ca.crl"}
	c := checker(t, func() time.Time { return now }, time.Hour, srv.Client())
	c.AddCRL(f.crl(t, 1, now.Add(-time.Minute), 24*time.Hour), f.p.Intermediate)
	for i := 0; i < 2; i++ {
		_, err := c.CheckChain(context.Background(), []*x509.Certificate{f.good, &inter, f.p.Root})
		if !errors.Is(err, errs.Of(errs.CertificateRevoked)) {
			t.Fatalf("got %v, want certificate-revoked for the intermediate", err)
		}
	}
	if hits.Load() != 1 {
		t.Fatalf("the ARL was fetched %d times", hits.Load())
	}
	inter.CRLDistributionPoints = []string{"http://127.0.0.1:1/crl/root-ca.crl"}
	down := checker(t, func() time.Time { return now }, time.Hour, srv.Client())
	down.AddCRL(f.crl(t, 1, now.Add(-time.Minute), 24*time.Hour), f.p.Intermediate)
	if _, err := down.CheckChain(context.Background(), []*x509.Certificate{f.good, &inter, f.p.Root}); !errors.Is(err, errs.Of(errs.RevocationUnknown)) {
		t.Fatalf("ARL unreachable: got %v", err)
	}
}

// TestARLRefresh: an online verifier fetches the ARL again once the one it
// holds was fetched ARLRefresh ago, so an intermediate revoked after the
// first fetch is refused within that interval, not after the ARL's year;
// a failed refresh keeps the ARL held while it was known current within
// MaxAge; an older ARL served later (a replay) does not undo a revocation.
func TestARLRefresh(t *testing.T) {
	f := setup(t)
	now := time.Now()
	clock := func() time.Time { return now }
	empty := f.p.ARL(t, now.Add(-time.Minute))
	revoked := f.p.ARL(t, now.Add(time.Minute), f.p.Intermediate)
	var serving atomic.Pointer[x509.RevocationList]
	serving.Store(empty)
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write(serving.Load().Raw)
	}))
	defer srv.Close()
	inter := *f.p.Intermediate
	inter.CRLDistributionPoints = []string{srv.URL + "/crl/root-ca.crl"}
	chain := []*x509.Certificate{f.good, &inter, f.p.Root}
	c, err := revocation.New(revocation.Config{MaxAge: 24 * time.Hour, ARLRefresh: time.Hour, Now: clock, HTTP: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	check := func() error {
		// The issuing CA's CRL is kept fresh throughout: only the ARL is at issue.
		if err := c.AddCRL(f.crl(t, now.Unix(), now.Add(-time.Minute), 24*time.Hour), f.p.Intermediate); err != nil {
			t.Fatal(err)
		}
		_, err := c.CheckChain(context.Background(), chain)
		return err
	}
	if err := check(); err != nil {
		t.Fatalf("with the empty ARL: %v", err)
	}

	// The root revokes the intermediate; within the refresh interval the
	// held ARL is used, after it the new one is fetched.
	serving.Store(revoked)
	now = now.Add(30 * time.Minute)
	if err := check(); err != nil {
		t.Fatalf("within the refresh interval: %v", err)
	}
	now = now.Add(31 * time.Minute)
	if err := check(); !errors.Is(err, errs.Of(errs.CertificateRevoked)) {
		t.Fatalf("an hour after the intermediate was revoked: %v", err)
	}

	// A replayed older ARL does not undo it.
	serving.Store(empty)
	now = now.Add(2 * time.Hour)
	if err := check(); !errors.Is(err, errs.Of(errs.CertificateRevoked)) {
		t.Fatalf("after the older ARL was served again: %v", err)
	}

	// The distribution point goes down: the ARL held is used while it was
	// known current within MaxAge (confirmed by the last fetch), then the
	// status is unknown.
	fresh := f.p.ARL(t, now.Add(time.Minute))
	c2, _ := revocation.New(revocation.Config{MaxAge: 24 * time.Hour, ARLRefresh: time.Hour, Now: clock, HTTP: srv.Client()})
	serving.Store(fresh)
	c = c2
	if err := check(); err != nil {
		t.Fatalf("a new verifier: %v", err)
	}
	down.Store(true)
	now = now.Add(23 * time.Hour)
	if err := check(); err != nil {
		t.Fatalf("distribution point down, ARL confirmed 23 h ago: %v", err)
	}
	now = now.Add(2 * time.Hour)
	if err := check(); !errors.Is(err, errs.Of(errs.RevocationUnknown)) {
		t.Fatalf("distribution point down, ARL confirmed 25 h ago: %v", err)
	}
}

// TestAnchorMustBeARoot: a chain ending at an intermediate (configured as
// a trust anchor) is refused, since the intermediate's own revocation would
// never be checked.
func TestAnchorMustBeARoot(t *testing.T) {
	f := setup(t)
	now := time.Now()
	c := checker(t, func() time.Time { return now }, time.Hour, nil)
	if err := c.AddCRL(f.crl(t, 1, now.Add(-time.Minute), 24*time.Hour), f.p.Intermediate); err != nil {
		t.Fatal(err)
	}
	_, err := c.CheckChain(context.Background(), []*x509.Certificate{f.good, f.p.Intermediate})
	if !errors.Is(err, errs.Of(errs.RevocationUnknown)) || !strings.Contains(err.Error(), "not a self-signed root") {
		t.Fatalf("a chain anchored at the intermediate: %v", err)
	}
	if !revocation.SelfSigned(f.p.Root) || revocation.SelfSigned(f.p.Intermediate) {
		t.Fatal("SelfSigned")
	}
}

// TestFailingARLRefreshBacksOff: while the ARL's distribution point fails,
// the checks of a chain (one per caller request in rxd) share one fetch and
// do not try again for a minute, using the ARL held meanwhile.
func TestFailingARLRefreshBacksOff(t *testing.T) {
	f := setup(t)
	now := time.Now()
	clock := func() time.Time { return now }
	var hits atomic.Int32
	var down atomic.Bool
	arl := f.p.ARL(t, now.Add(-time.Minute))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write(arl.Raw)
	}))
	defer srv.Close()
	inter := *f.p.Intermediate
	inter.CRLDistributionPoints = []string{srv.URL + "/crl/root-ca.crl"}
	chain := []*x509.Certificate{f.good, &inter, f.p.Root}
	c, err := revocation.New(revocation.Config{MaxAge: 24 * time.Hour, ARLRefresh: time.Hour, Now: clock, HTTP: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddCRL(f.crl(t, now.Unix(), now.Add(-time.Minute), 48*time.Hour), f.p.Intermediate); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CheckChain(context.Background(), chain); err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	now = now.Add(61 * time.Minute)
	hits.Store(0)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := c.CheckChain(context.Background(), chain); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := hits.Load(); n != 1 {
		t.Fatalf("50 checks while the distribution point is down fetched the ARL %d times", n)
	}
	now = now.Add(61 * time.Second)
	if _, err := c.CheckChain(context.Background(), chain); err != nil || hits.Load() != 2 {
		t.Fatalf("a minute later: %v, %d fetches", err, hits.Load())
	}
}

// BenchmarkCheckChain: a leaf, its intermediate and the root, from CRLs —
// what rxd does for every signed document and every caller.
func BenchmarkCheckChain(b *testing.B) {
	c, chain := chainFromCRLs(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.CheckChain(context.Background(), chain); err != nil {
			b.Fatal(err)
		}
	}
}

// chainFromCRLs is a checker holding the intermediate's CRL and the root's
// ARL, and a good chain under them.
func chainFromCRLs(t testing.TB) (*revocation.Checker, []*x509.Certificate) {
	f := setup(t)
	now := time.Now()
	c := checker(t, func() time.Time { return now }, time.Hour, nil)
	if err := c.AddCRL(f.crl(t, 1, now.Add(-time.Minute), 24*time.Hour), f.p.Intermediate); err != nil {
		t.Fatal(err)
	}
	if err := c.AddCRL(f.p.ARL(t, now.Add(-time.Minute)), f.p.Root); err != nil {
		t.Fatal(err)
	}
	return c, []*x509.Certificate{f.good, f.p.Intermediate, f.p.Root}
}

// TestChainCheckDoesNotReverifyTheRoot: the root's self-signature (a
// P-384 verification: 19 of the 35 allocations a chain took) is checked
// once per Checker, not on every chain (530 µs → 1.3 µs a chain from
// CRLs). The anchor rule still holds afterwards.
func TestChainCheckDoesNotReverifyTheRoot(t *testing.T) {
	c, chain := chainFromCRLs(t)
	if _, err := c.CheckChain(context.Background(), chain); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(20, func() {
		if _, err := c.CheckChain(context.Background(), chain); err != nil {
			t.Fatal(err)
		}
	}); n > 24 {
		t.Fatalf("%.0f allocations per chain checked: the root's signature is checked again", n)
	}
	if _, err := c.CheckChain(context.Background(), chain[:2]); !errors.Is(err, errs.Of(errs.RevocationUnknown)) {
		t.Fatalf("a chain anchored at the intermediate after the root was remembered: %v", err)
	}
}
