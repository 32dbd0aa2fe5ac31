package publish_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"io"
	"math/big"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/bundle"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/storetest"
	"github.com/nuskha/nuskha/internal/store/truststore"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

func TestPublishing(t *testing.T) {
	ctx := context.Background()
	s, err := truststore.Open(ctx, sqlstore.SQLite, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pub, pp, resp := newPublisherWithPKI(t, s)
	sub := storetest.Practitioner("MC-1", "0499370899")
	if err := s.CreateSubject(ctx, sub, "t"); err != nil {
		t.Fatal(err)
	}
	record := func(notAfter time.Time) *x509.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		c := pp.Issue(t, "practitioner-signing", testpki.Subject(pki.RolePractitioner, sub.ID, time.Now()), key)
		rec := enrol.NewCertificateRecord(c, sub.ID, "practitioner-signing", "", "t", time.Now())
		rec.NotAfter = notAfter
		if err := s.StoreCertificate(ctx, rec); err != nil {
			t.Fatal(err)
		}
		return c
	}
	good := record(time.Now().AddDate(1, 0, 0))
	revoked := record(time.Now().AddDate(1, 0, 0))
	held := record(time.Now().AddDate(1, 0, 0))
	expired := record(time.Now().Add(-time.Hour))
	now := time.Now().UTC()
	for c, st := range map[*x509.Certificate]revoke.Status{revoked: revoke.Revoked, held: revoke.OnHold, expired: revoke.Revoked} {
		reason := revoke.KeyCompromise
		if st == revoke.OnHold {
			reason = revoke.CertificateHold
		}
		if _, err := s.RecordStatus(ctx, &revoke.Event{Serial: c.SerialNumber, Status: st, Reason: reason, EffectiveAt: now, RecordedAt: now, RequestedBy: "t"}, []revoke.Status{revoke.Good}); err != nil {
			t.Fatal(err)
		}
	}

	if err := pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	first := pub.CRL()
	list, err := x509.ParseRevocationList(first.DER)
	if err != nil {
		t.Fatal(err)
	}
	if list.Number.Int64() != first.Number || len(list.RevokedCertificateEntries) != 2 {
		t.Fatalf("first CRL: number %d (%s in the CRL), %d entries; want 2 (expired left out)", first.Number, list.Number, len(list.RevokedCertificateEntries))
	}
	reasons := map[string]int{}
	for _, e := range list.RevokedCertificateEntries {
		reasons[e.SerialNumber.String()] = e.ReasonCode
	}
	if reasons[revoked.SerialNumber.String()] != 1 || reasons[held.SerialNumber.String()] != 6 {
		t.Fatalf("reasons %v", reasons)
	}
	stored, err := s.LatestCRL(ctx)
	if err != nil || stored.Number != first.Number {
		t.Fatalf("stored CRL: %+v %v", stored, err)
	}

	// OCSP knows every live certificate after Start.
	// A hold is a revocation for certificateHold, as on the CRL.
	ocspStatus := func(c *x509.Certificate) *ocsp.Response {
		t.Helper()
		req, _ := ocsp.CreateRequest(c, pp.Intermediate, nil)
		r, err := ocsp.ParseResponse(resp.Respond(req).DER, pp.Intermediate)
		if err != nil {
			t.Fatalf("OCSP for %x: %v", c.SerialNumber, err)
		}
		return r
	}
	for c, want := range map[*x509.Certificate][2]int{good: {ocsp.Good, 0}, revoked: {ocsp.Revoked, ocsp.KeyCompromise}, held: {ocsp.Revoked, ocsp.CertificateHold}} {
		if r := ocspStatus(c); r.Status != want[0] || r.RevocationReason != want[1] {
			t.Fatalf("OCSP for %x: status %d reason %d, want %v", c.SerialNumber, r.Status, r.RevocationReason, want)
		}
	}
	// A status change is in OCSP at once, and in the CRL and the bundle
	// whoever fetches them next: made anew first if the background
	// regeneration (racing here) has not made it yet.
	if _, err := s.RecordStatus(ctx, &revoke.Event{Serial: good.SerialNumber, Status: revoke.Revoked, Reason: revoke.Superseded, EffectiveAt: now, RecordedAt: now, RequestedBy: "t"}, []revoke.Status{revoke.Good}); err != nil {
		t.Fatal(err)
	}
	rec, _ := s.CertificateStatus(ctx, good.SerialNumber)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	ran := make(chan struct{})
	go func() { pub.Run(runCtx); close(ran) }()
	if err := pub.StatusChanged(ctx, rec); err != nil {
		t.Fatal(err)
	}
	req, _ := ocsp.CreateRequest(good, pp.Intermediate, nil)
	if r, _ := ocsp.ParseResponse(resp.Respond(req).DER, pp.Intermediate); r.Status != ocsp.Revoked {
		t.Fatal("status change not in OCSP when StatusChanged returned")
	}
	b1, err := pub.Bundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, err := bundle.Verify(b1, []*x509.Certificate{pp.Root}, pp.Arc, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	inBundle := v.CRLs[0].List
	if inBundle.Number.Cmp(big.NewInt(first.Number)) <= 0 || len(inBundle.RevokedCertificateEntries) != 3 {
		t.Fatalf("bundle fetched after the change: CRL %s with %d entries", inBundle.Number, len(inBundle.RevokedCertificateEntries))
	}

	// The bundle is cached while the CRL stays the same.
	stop()
	<-ran
	b2, _ := pub.Bundle(ctx)
	b3, _ := pub.Bundle(ctx)
	if string(b2) != string(b3) {
		t.Fatal("bundle re-signed without a new CRL")
	}

	// The CRL over HTTP.
	srv := httptest.NewServer(pub.CRLHandler())
	defer srv.Close()
	res, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.Header.Get("Content-Type") != "application/pkix-crl" || res.Header.Get("Cache-Control") == "" || string(der) != string(pub.CRL().DER) {
		t.Fatalf("CRL over HTTP: %s %s", res.Header.Get("Content-Type"), res.Header.Get("Cache-Control"))
	}

	// A hold, unlike a revocation, may be released: OCSP says good again.
	if _, err := s.RecordStatus(ctx, &revoke.Event{Serial: held.SerialNumber, Status: revoke.Good, Reason: revoke.RemoveFromCRL, EffectiveAt: now, RecordedAt: now, RequestedBy: "t"}, []revoke.Status{revoke.OnHold}); err != nil {
		t.Fatal(err)
	}
	if rec, err := s.CertificateStatus(ctx, held.SerialNumber); err != nil {
		t.Fatal(err)
	} else if err := pub.StatusChanged(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if r := ocspStatus(held); r.Status != ocsp.Good {
		t.Fatalf("OCSP for a released hold: status %d", r.Status)
	}
}

// TestARL: the root's ARL is served over HTTP and carried in the bundle;
// one from another root, or older than the one served, is refused.
func TestARL(t *testing.T) {
	ctx := context.Background()
	s, err := truststore.Open(ctx, sqlstore.SQLite, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pub, pp, _ := newPublisherWithPKI(t, s)
	if err := pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(pub.ARLHandler())
	defer srv.Close()
	if res, err := srv.Client().Get(srv.URL); err != nil || res.StatusCode != 404 {
		t.Fatalf("no ARL yet: %v %v", res, err)
	}
	first := pp.ARL(t, time.Now().Add(-time.Hour))
	second := pp.ARL(t, time.Now(), pp.Intermediate)
	if _, err := pub.SetARL(first.Raw); err != nil {
		t.Fatal(err)
	}
	b1, _ := pub.Bundle(ctx)
	if _, err := pub.SetARL(second.Raw); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.SetARL(first.Raw); err == nil {
		t.Fatal("an older ARL replaced the one served")
	}
	other := testpki.New(t, nil, time.Now)
	if _, err := pub.SetARL(other.ARL(t, time.Now().Add(time.Hour)).Raw); err == nil {
		t.Fatal("another root's ARL was accepted")
	}
	if _, err := pub.SetARL([]byte("garbage")); err == nil {
		t.Fatal("garbage accepted as the ARL")
	}
	res, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.Header.Get("Content-Type") != "application/pkix-crl" || string(der) != string(second.Raw) {
		t.Fatalf("ARL over HTTP: %s, the second ARL: %v", res.Header.Get("Content-Type"), string(der) == string(second.Raw))
	}
	b2, err := pub.Bundle(ctx)
	if err != nil || string(b1) == string(b2) {
		t.Fatalf("the bundle was not re-signed with the new ARL: %v", err)
	}
	v, err := bundle.Verify(b2, []*x509.Certificate{pp.Root}, pp.Arc, time.Now())
	if err != nil || len(v.CRLs) != 2 || !v.CRLs[1].Issuer.Equal(pp.Root) || v.CRLs[1].List.Number.Cmp(second.Number) != 0 {
		t.Fatalf("bundle: %+v %v", v, err)
	}
}

// TestRestartPublishesRecordedChanges: a status change recorded but not
// reported to this process (trustd stopped before the background
// regeneration) is in the CRL served after the next start, not missing
// until the hourly refresh.
func TestRestartPublishesRecordedChanges(t *testing.T) {
	ctx := context.Background()
	s, err := truststore.Open(ctx, sqlstore.SQLite, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pub, pp, _ := newPublisherWithPKI(t, s)
	sub := storetest.Practitioner("MC-1", "0499370899")
	if err := s.CreateSubject(ctx, sub, "t"); err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c := pp.Issue(t, "practitioner-signing", testpki.Subject(pki.RolePractitioner, sub.ID, time.Now()), key)
	rec := enrol.NewCertificateRecord(c, sub.ID, "practitioner-signing", "", "t", time.Now())
	if err := s.StoreCertificate(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if _, err := s.RecordStatus(ctx, &revoke.Event{Serial: c.SerialNumber, Status: revoke.Revoked, Reason: revoke.KeyCompromise, EffectiveAt: now, RecordedAt: now, RequestedBy: "t"}, []revoke.Status{revoke.Good}); err != nil {
		t.Fatal(err)
	}
	// trustd restarts.
	pub2, _, _ := newPublisherWithPKI(t, s)
	if err := pub2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	list, _ := x509.ParseRevocationList(pub2.CRL().DER)
	if len(list.RevokedCertificateEntries) == 0 {
		t.Fatalf("after a restart, CRL %d is served without the revocation recorded before it", pub2.CRL().Number)
	}
}
