package responder_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/responder"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

type fixture struct {
	p       *testpki.PKI
	r       *responder.Responder
	leaf    *x509.Certificate
	revoked *x509.Certificate
}

func newKey() *ecdsa.PrivateKey {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return k
}

func setup(t *testing.T, perSecond float64) *fixture {
	t.Helper()
	return setupClock(t, perSecond, time.Now)
}

// setupClock is setup with the responder's clock.
func setupClock(t *testing.T, perSecond float64, now func() time.Time) *fixture {
	t.Helper()
	p := testpki.New(t, nil, time.Now)
	r, err := responder.New(responder.Config{Issuer: p.Intermediate, Now: now, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), UnknownPerSecond: perSecond, KnownPerSecond: perSecond})
	if err != nil {
		t.Fatal(err)
	}
	respKey := newKey()
	respCert := p.Issue(t, "ocsp-responder", testpki.Subject(pki.RoleService, "sub_ocsp", time.Now()), respKey)
	if err := r.SetCredential(responder.Credential{Cert: respCert, Key: respKey}); err != nil {
		t.Fatal(err)
	}
	f := &fixture{p: p, r: r,
		leaf:    p.Issue(t, "practitioner-signing", testpki.Subject(pki.RolePractitioner, "sub_a", time.Now()), newKey()),
		revoked: p.Issue(t, "practitioner-signing", testpki.Subject(pki.RolePractitioner, "sub_b", time.Now()), newKey()),
	}
	for _, c := range []*x509.Certificate{f.leaf, f.revoked} {
		if err := r.Update(responder.Record{Serial: c.SerialNumber, Status: ocsp.Good, NotAfter: c.NotAfter}); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func request(t testing.TB, cert, issuer *x509.Certificate, h crypto.Hash) []byte {
	t.Helper()
	der, err := ocsp.CreateRequest(cert, issuer, &ocsp.RequestOptions{Hash: h})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func (f *fixture) ask(t *testing.T, cert *x509.Certificate, h crypto.Hash) *ocsp.Response {
	t.Helper()
	ans := f.r.Respond(request(t, cert, f.p.Intermediate, h))
	resp, err := ocsp.ParseResponseForCert(ans.DER, cert, f.p.Intermediate)
	if err != nil {
		t.Fatalf("response does not verify: %v", err)
	}
	return resp
}

func TestStatuses(t *testing.T) {
	f := setup(t, 1000)
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		if got := f.ask(t, f.leaf, h); got.Status != ocsp.Good || !got.NextUpdate.After(got.ThisUpdate) {
			t.Fatalf("%v: status %d", h, got.Status)
		}
	}
	at := time.Now().Add(-time.Minute).Truncate(time.Second)
	if err := f.r.Update(responder.Record{Serial: f.revoked.SerialNumber, Status: ocsp.Revoked, Reason: ocsp.KeyCompromise, RevokedAt: at}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		got := f.ask(t, f.revoked, h)
		if got.Status != ocsp.Revoked || got.RevocationReason != ocsp.KeyCompromise || !got.RevokedAt.Equal(at) {
			t.Fatalf("%v: revoked certificate answered %d reason %d at %s", h, got.Status, got.RevocationReason, got.RevokedAt)
		}
	}
	if err := f.r.Update(responder.Record{Serial: f.leaf.SerialNumber, Status: ocsp.Revoked, Reason: ocsp.CertificateHold, RevokedAt: at}); err != nil {
		t.Fatal(err)
	}
	if got := f.ask(t, f.leaf, crypto.SHA1); got.Status != ocsp.Revoked || got.RevocationReason != ocsp.CertificateHold {
		t.Fatalf("held certificate answered %d reason %d", got.Status, got.RevocationReason)
	}
	stranger := f.p.Issue(t, "practitioner-signing", testpki.Subject(pki.RolePractitioner, "sub_x", time.Now()), newKey())
	if got := f.ask(t, stranger, crypto.SHA1); got.Status != ocsp.Unknown {
		t.Fatalf("a serial the responder does not know answered %d", got.Status)
	}
}

func TestRefusals(t *testing.T) {
	f := setup(t, 1000)
	other := testpki.New(t, nil, time.Now)
	foreign := other.Issue(t, "practitioner-signing", testpki.Subject(pki.RolePractitioner, "sub_f", time.Now()), newKey())
	good := request(t, f.leaf, f.p.Intermediate, crypto.SHA1)
	sha512, _ := ocsp.CreateRequest(f.leaf, f.p.Intermediate, &ocsp.RequestOptions{Hash: crypto.SHA512})
	for name, tc := range map[string]struct {
		der  []byte
		want []byte
	}{
		"empty":             {nil, ocsp.MalformedRequestErrorResponse},
		"garbage":           {[]byte("GET / HTTP/1.1"), ocsp.MalformedRequestErrorResponse},
		"truncated":         {good[:len(good)-3], ocsp.MalformedRequestErrorResponse},
		"trailing data":     {append(append([]byte{}, good...), 0), ocsp.MalformedRequestErrorResponse},
		"huge":              {bytes.Repeat([]byte{0x30}, responder.MaxRequestSize+1), ocsp.MalformedRequestErrorResponse},
		"nonce too long":    {withNonce(t, good, bytes.Repeat([]byte{1}, 33)), ocsp.MalformedRequestErrorResponse},
		"two nonces":        {withNonces(t, good, [][]byte{{1}, {2}}), ocsp.MalformedRequestErrorResponse},
		"another CA's cert": {request(t, foreign, other.Intermediate, crypto.SHA1), ocsp.UnauthorizedErrorResponse},
		"hash not answered": {sha512, ocsp.UnauthorizedErrorResponse},
		"issuer name faked": {request(t, f.leaf, other.Intermediate, crypto.SHA1), ocsp.UnauthorizedErrorResponse},
	} {
		t.Run(name, func(t *testing.T) {
			if got := f.r.Respond(tc.der).DER; !bytes.Equal(got, tc.want) {
				t.Fatalf("answered %x, want %x", got, tc.want)
			}
		})
	}
}

// TestHashesIsACopy: changing what Hashes returns changes nothing the
// responder answers for: SHA-1 is still answered with it overwritten in
// the copy, and SHA-512 still refused with it written in.
func TestHashesIsACopy(t *testing.T) {
	want := []crypto.Hash{crypto.SHA1, crypto.SHA256}
	hs := responder.Hashes()
	if !slices.Equal(hs, want) {
		t.Fatalf("Hashes() = %v", hs)
	}
	hs[0] = crypto.SHA512
	_ = append(hs[:1], crypto.SHA384)
	if got := responder.Hashes(); !slices.Equal(got, want) {
		t.Fatalf("Hashes() after its copy was changed: %v", got)
	}
	f := setup(t, 1000)
	if got := f.ask(t, f.leaf, crypto.SHA1); got.Status != ocsp.Good {
		t.Fatalf("SHA-1 after the copy was changed: status %d", got.Status)
	}
	for _, h := range []crypto.Hash{crypto.SHA512, crypto.SHA384} {
		if got := f.r.Respond(request(t, f.leaf, f.p.Intermediate, h)).DER; !bytes.Equal(got, ocsp.UnauthorizedErrorResponse) {
			t.Fatalf("%v after the copy was changed: answered %x, want unauthorized", h, got)
		}
	}
}

// withNonces rewrites an x/crypto request to carry nonce extensions.
func withNonces(t *testing.T, req []byte, nonces [][]byte) []byte {
	t.Helper()
	var r struct {
		TBS struct {
			RequestList []asn1.RawValue
		}
	}
	if _, err := asn1.Unmarshal(req, &r); err != nil {
		t.Fatal(err)
	}
	var exts []pkix.Extension
	for _, n := range nonces {
		v, _ := asn1.Marshal(n)
		exts = append(exts, pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}, Value: v})
	}
	type tbs struct {
		RequestList []asn1.RawValue
		Exts        []pkix.Extension `asn1:"explicit,tag:2"`
	}
	out, err := asn1.Marshal(struct{ TBS tbs }{tbs{r.TBS.RequestList, exts}})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func withNonce(t *testing.T, req, nonce []byte) []byte { return withNonces(t, req, [][]byte{nonce}) }

// responseNonce digs the nonce out of a response's responseExtensions.
func responseNonce(t *testing.T, der []byte) []byte {
	t.Helper()
	var outer struct {
		Status   asn1.Enumerated
		Response struct {
			Type asn1.ObjectIdentifier
			Body []byte
		} `asn1:"explicit,tag:0"`
	}
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		t.Fatal(err)
	}
	var basic struct{ TBS asn1.RawValue }
	if _, err := asn1.Unmarshal(outer.Response.Body, &basic); err != nil {
		t.Fatal(err)
	}
	var data struct {
		Version    int `asn1:"optional,default:0,explicit,tag:0"`
		Responder  asn1.RawValue
		ProducedAt time.Time `asn1:"generalized"`
		Responses  []asn1.RawValue
		Exts       []pkix.Extension `asn1:"explicit,tag:1,optional"`
	}
	if _, err := asn1.Unmarshal(basic.TBS.FullBytes, &data); err != nil {
		t.Fatal(err)
	}
	for _, e := range data.Exts {
		if e.Id.Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}) {
			var n []byte
			asn1.Unmarshal(e.Value, &n)
			return n
		}
	}
	return nil
}

func TestNonceEchoed(t *testing.T) {
	f := setup(t, 1000)
	nonce := []byte("0123456789abcdef")
	ans := f.r.Respond(withNonce(t, request(t, f.leaf, f.p.Intermediate, crypto.SHA256), nonce))
	resp, err := ocsp.ParseResponseForCert(ans.DER, f.leaf, f.p.Intermediate)
	if err != nil || resp.Status != ocsp.Good {
		t.Fatalf("nonce response: %v %v", resp, err)
	}
	if got := responseNonce(t, ans.DER); !bytes.Equal(got, nonce) {
		t.Fatalf("nonce %q echoed as %q", nonce, got)
	}
	if ans.MaxAge != 0 {
		t.Fatal("a nonce response must not be cached")
	}
}

func TestOnDemandSigningIsRateLimited(t *testing.T) {
	f := setup(t, 5)
	tryLater := 0
	for i := 0; i < 40; i++ {
		serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 100))
		fake := *f.leaf
		fake.SerialNumber = serial
		ans := f.r.Respond(request(t, &fake, f.p.Intermediate, crypto.SHA1))
		if bytes.Equal(ans.DER, ocsp.TryLaterErrorResponse) {
			tryLater++
		}
	}
	if tryLater < 30 {
		t.Fatalf("only %d of 40 unknown-serial requests were refused with tryLater at 5/s", tryLater)
	}
	// Answers signed in advance, for either CertID hash, are not limited.
	for i := 0; i < 50; i++ {
		for _, h := range responder.Hashes() {
			if got := f.ask(t, f.leaf, h); got.Status != ocsp.Good {
				t.Fatalf("%v: answer signed in advance refused under load", h)
			}
		}
	}
}

type failingKey struct{ crypto.Signer }

func (failingKey) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("hsm: token unavailable")
}

func TestFailedResigningNeverServesTheOldAnswer(t *testing.T) {
	f := setup(t, 1000)
	key := newKey()
	// A valid responder certificate whose key stops working (token pulled).
	respCert := f.p.Issue(t, "ocsp-responder", testpki.Subject(pki.RoleService, "sub_ocsp2", time.Now()), key)
	if err := f.r.SetCredential(responder.Credential{Cert: respCert, Key: failingKey{key}}); err != nil {
		t.Fatal(err)
	}
	err := f.r.Update(responder.Record{Serial: f.leaf.SerialNumber, Status: ocsp.Revoked, Reason: ocsp.KeyCompromise, RevokedAt: time.Now()})
	if err == nil {
		t.Fatal("signing with a failing key succeeded")
	}
	ans := f.r.Respond(request(t, f.leaf, f.p.Intermediate, crypto.SHA1))
	if !bytes.Equal(ans.DER, ocsp.TryLaterErrorResponse) {
		t.Fatal("after a failed re-signing the responder answered something other than tryLater")
	}
}

func TestCredentialChecks(t *testing.T) {
	f := setup(t, 1000)
	key := newKey()
	tlsCert := f.p.Issue(t, "service-tls-client", testpki.Subject(pki.RoleVendor, "sub_v", time.Now()), key)
	if err := f.r.SetCredential(responder.Credential{Cert: tlsCert, Key: key}); err == nil {
		t.Fatal("a certificate without OCSPSigning was accepted as responder")
	}
	other := testpki.New(t, nil, time.Now)
	foreign := other.Issue(t, "ocsp-responder", testpki.Subject(pki.RoleService, "sub_o", time.Now()), key)
	if err := f.r.SetCredential(responder.Credential{Cert: foreign, Key: key}); err == nil {
		t.Fatal("another CA's responder certificate was accepted")
	}
}

func TestRefreshResignsBeforeExpiry(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	p := testpki.New(t, nil, time.Now)
	r, _ := responder.New(responder.Config{Issuer: p.Intermediate, Now: clock, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Validity: time.Hour})
	key := newKey()
	r.SetCredential(responder.Credential{Cert: p.Issue(t, "ocsp-responder", testpki.Subject(pki.RoleService, "sub_o", now), key), Key: key})
	leaf := p.Issue(t, "practitioner-signing", testpki.Subject(pki.RolePractitioner, "sub_a", now), newKey())
	r.Update(responder.Record{Serial: leaf.SerialNumber, Status: ocsp.Good, NotAfter: leaf.NotAfter})
	if n, err := r.Refresh(); err != nil || n != 0 {
		t.Fatalf("fresh responses re-signed: %d %v", n, err)
	}
	now = now.Add(40 * time.Minute)
	if n, err := r.Refresh(); err != nil || n != len(responder.Hashes()) {
		t.Fatalf("past half-life: re-signed %d, %v; want %d (SHA-1 and SHA-256 CertIDs)", n, err, len(responder.Hashes()))
	}
}

func TestHTTP(t *testing.T) {
	f := setup(t, 1000)
	srv := httptest.NewServer(f.r.Handler("/ocsp"))
	defer srv.Close()
	req := request(t, f.leaf, f.p.Intermediate, crypto.SHA1)
	check := func(resp *http.Response, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/ocsp-response" {
			t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if r, err := ocsp.ParseResponseForCert(body, f.leaf, f.p.Intermediate); err != nil || r.Status != ocsp.Good {
			t.Fatalf("%v %v", r, err)
		}
	}
	check(http.Post(srv.URL+"/ocsp", "application/ocsp-request", bytes.NewReader(req)))
	resp, err := http.Get(srv.URL + "/ocsp/" + base64.StdEncoding.EncodeToString(req))
	if err == nil && resp.Header.Get("Cache-Control") == "" {
		t.Fatal("GET answer without cache headers")
	}
	check(resp, err)
	check(http.Get(srv.URL + "/ocsp/" + base64.RawURLEncoding.EncodeToString(req)))
	r, _ := http.Get(srv.URL + "/ocsp/@@not-base64!")
	body, _ := io.ReadAll(r.Body)
	if !bytes.Equal(body, ocsp.MalformedRequestErrorResponse) {
		t.Fatalf("bad base64 answered %x", body)
	}
	del, _ := http.NewRequest(http.MethodDelete, srv.URL+"/ocsp", nil)
	if r, _ := http.DefaultClient.Do(del); r.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("DELETE answered %d", r.StatusCode)
	}
}

func FuzzRespond(f *testing.F) {
	p := testpki.New(f, nil, time.Now)
	r, _ := responder.New(responder.Config{Issuer: p.Intermediate, Now: time.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	key := newKey()
	r.SetCredential(responder.Credential{Cert: p.Issue(f, "ocsp-responder", testpki.Subject(pki.RoleService, "sub_o", time.Now()), key), Key: key})
	leaf := p.Issue(f, "practitioner-signing", testpki.Subject(pki.RolePractitioner, "sub_a", time.Now()), newKey())
	r.Update(responder.Record{Serial: leaf.SerialNumber, Status: ocsp.Good})
	good, _ := ocsp.CreateRequest(leaf, p.Intermediate, nil)
	f.Add(good)
	f.Add([]byte{0x30, 0x00})
	f.Add(multiRequest(f, p.Intermediate, crypto.SHA256, leaf, leaf))
	f.Fuzz(func(t *testing.T, der []byte) {
		ans := r.Respond(der)
		// Invariant: every answer is an OCSP response that parses; a
		// successful one verifies against the issuer and answers each
		// serial it names.
		_, err := ocsp.ParseResponse(ans.DER, p.Intermediate)
		var re ocsp.ResponseError
		if errors.As(err, &re) {
			return
		}
		serials := responseSerials(t, ans.DER)
		if len(serials) == 0 || len(serials) > responder.MaxCertIDs {
			t.Fatalf("a successful answer with %d statuses", len(serials))
		}
		if len(serials) == 1 && err != nil {
			t.Fatalf("answer does not parse: %v (%x)", err, ans.DER)
		}
		for _, s := range serials {
			if _, err := ocsp.ParseResponseForCert(ans.DER, &x509.Certificate{SerialNumber: s}, p.Intermediate); err != nil {
				t.Fatalf("the status of serial %x does not verify: %v", s, err)
			}
		}
	})
}

// responseSerials lists the serials a successful response answers for.
func responseSerials(t *testing.T, der []byte) []*big.Int {
	t.Helper()
	var outer struct {
		Status   asn1.Enumerated
		Response struct {
			Type asn1.ObjectIdentifier
			Body []byte
		} `asn1:"explicit,tag:0"`
	}
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		t.Fatal(err)
	}
	var basic struct{ TBS asn1.RawValue }
	if _, err := asn1.Unmarshal(outer.Response.Body, &basic); err != nil {
		t.Fatal(err)
	}
	var data struct {
		Version    int `asn1:"optional,default:0,explicit,tag:0"`
		Responder  asn1.RawValue
		ProducedAt time.Time `asn1:"generalized"`
		Responses  []asn1.RawValue
	}
	if _, err := asn1.Unmarshal(basic.TBS.FullBytes, &data); err != nil {
		t.Fatal(err)
	}
	var out []*big.Int
	for _, r := range data.Responses {
		var certID struct {
			Hash              pkix.AlgorithmIdentifier
			NameHash, KeyHash []byte
			Serial            *big.Int
		}
		// A SingleResponse starts with its CertID; only that is read.
		if _, err := asn1.Unmarshal(r.Bytes, &certID); err != nil {
			t.Fatal(err)
		}
		out = append(out, certID.Serial)
	}
	return out
}

// A periodic sync's snapshot may arrive after a newer change: the
// responder keeps the status of the latest event, and a revocation for good.
func TestStatusOnlyMovesForward(t *testing.T) {
	f := setup(t, 1000)
	at := time.Now().Add(-time.Minute).Truncate(time.Second)
	serial := f.leaf.SerialNumber
	status := func() int { return f.ask(t, f.leaf, crypto.SHA1).Status }
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(f.r.Update(responder.Record{Serial: serial, Status: ocsp.Revoked, Reason: ocsp.CertificateHold, RevokedAt: at, Seq: 3}))
	must(f.r.Update(responder.Record{Serial: serial, Status: ocsp.Good, Seq: 4}))
	f.r.Track(responder.Record{Serial: serial, Status: ocsp.Revoked, Reason: ocsp.CertificateHold, RevokedAt: at, Seq: 3}) // stale snapshot
	if _, err := f.r.Refresh(); err != nil {
		t.Fatal(err)
	}
	if status() != ocsp.Good {
		t.Fatal("a stale snapshot put the released certificate back on hold")
	}
	must(f.r.Update(responder.Record{Serial: serial, Status: ocsp.Revoked, Reason: ocsp.KeyCompromise, RevokedAt: at, Seq: 7}))
	f.r.Track(responder.Record{Serial: serial, Status: ocsp.Good, Seq: 4}) // stale snapshot
	must(f.r.Update(responder.Record{Serial: serial, Status: ocsp.Good, Seq: 9}))
	if _, err := f.r.Refresh(); err != nil {
		t.Fatal(err)
	}
	if status() != ocsp.Revoked {
		t.Fatal("a revoked certificate was answered good again")
	}
}

// TestEveryResponseLintsClean runs zlint's OCSP lints over every kind of
// response the responder makes: good, revoked, suspended and unknown;
// SHA-1 and SHA-256 CertIDs; with and without a nonce; over GET and POST;
// pre-signed and signed on demand. The responder's clock is an hour ahead
// of the wall clock, so a producedAt taken from anything but that clock
// (as ocsp.CreateResponse does) shows.
func TestEveryResponseLintsClean(t *testing.T) {
	at := time.Now().Add(time.Hour).Truncate(time.Minute).Add(42*time.Second + 250*time.Millisecond)
	f := setupClock(t, 1000, func() time.Time { return at })
	held := f.p.Issue(t, "practitioner-signing", testpki.Subject(pki.RolePractitioner, "sub_h", time.Now()), newKey())
	stranger := f.p.Issue(t, "practitioner-signing", testpki.Subject(pki.RolePractitioner, "sub_x", time.Now()), newKey())
	revokedAt := at.Add(-time.Hour).Truncate(time.Second)
	for _, rec := range []responder.Record{
		{Serial: f.revoked.SerialNumber, Status: ocsp.Revoked, Reason: ocsp.KeyCompromise, RevokedAt: revokedAt},
		{Serial: held.SerialNumber, Status: ocsp.Revoked, Reason: ocsp.CertificateHold, RevokedAt: revokedAt},
	} {
		if err := f.r.Update(rec); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(f.r.Handler("/ocsp"))
	defer srv.Close()
	fetch := func(method string, req []byte) []byte {
		t.Helper()
		var resp *http.Response
		var err error
		if method == http.MethodGet {
			resp, err = http.Get(srv.URL + "/ocsp/" + base64.StdEncoding.EncodeToString(req))
		} else {
			resp, err = http.Post(srv.URL+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return body
	}
	cases := []struct {
		name string
		cert *x509.Certificate
		want int
	}{
		{"good", f.leaf, ocsp.Good},
		{"revoked", f.revoked, ocsp.Revoked},
		{"suspended", held, ocsp.Revoked},
		{"unknown", stranger, ocsp.Unknown},
	}
	for _, tc := range cases {
		for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
			for _, nonce := range [][]byte{nil, []byte("0123456789abcdef")} {
				for _, method := range []string{http.MethodGet, http.MethodPost} {
					name := fmt.Sprintf("%s/%v/nonce=%v/%s", tc.name, h, nonce != nil, method)
					t.Run(name, func(t *testing.T) {
						req := request(t, tc.cert, f.p.Intermediate, h)
						if nonce != nil {
							req = withNonce(t, req, nonce)
						}
						der := fetch(method, req)
						resp, err := ocsp.ParseResponseForCert(der, tc.cert, f.p.Intermediate)
						if err != nil {
							t.Fatalf("response does not verify: %v", err)
						}
						if resp.Status != tc.want {
							t.Fatalf("status %d, want %d", resp.Status, tc.want)
						}
						if !resp.ProducedAt.Equal(at.Truncate(time.Second)) || resp.ThisUpdate.After(resp.ProducedAt) {
							t.Fatalf("producedAt %s, thisUpdate %s; the responder's clock says %s", resp.ProducedAt, resp.ThisUpdate, at)
						}
						if nonce != nil && !bytes.Equal(responseNonce(t, der), nonce) {
							t.Fatal("nonce not echoed")
						}
						findings, err := f.p.Linter.OCSPResponse(der, f.p.Intermediate)
						if err != nil || len(findings) != 0 {
							t.Fatalf("zlint: %v %v", findings, err)
						}
					})
				}
			}
		}
	}
	// All four in one request: one response, every status in it.
	everyone := make([]*x509.Certificate, len(cases))
	for i, tc := range cases {
		everyone[i] = tc.cert
	}
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		for _, nonce := range [][]byte{nil, []byte("0123456789abcdef")} {
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				t.Run(fmt.Sprintf("all four/%v/nonce=%v/%s", h, nonce != nil, method), func(t *testing.T) {
					req := multiRequest(t, f.p.Intermediate, h, everyone...)
					if nonce != nil {
						req = withNonce(t, req, nonce)
					}
					der := fetch(method, req)
					if n := len(responseSerials(t, der)); n != len(cases) {
						t.Fatalf("%d statuses for %d CertIDs", n, len(cases))
					}
					for _, tc := range cases {
						resp, err := ocsp.ParseResponseForCert(der, tc.cert, f.p.Intermediate)
						if err != nil || resp.Status != tc.want {
							t.Fatalf("%s: %v %v, want status %d", tc.name, resp, err, tc.want)
						}
						if !resp.ProducedAt.Equal(at.Truncate(time.Second)) || resp.ThisUpdate.After(resp.ProducedAt) {
							t.Fatalf("%s: producedAt %s, thisUpdate %s; the responder's clock says %s", tc.name, resp.ProducedAt, resp.ThisUpdate, at)
						}
					}
					if !bytes.Equal(responseNonce(t, der), nonce) {
						t.Fatal("nonce not echoed")
					}
					findings, err := f.p.Linter.OCSPResponse(der, f.p.Intermediate)
					if err != nil || len(findings) != 0 {
						t.Fatalf("zlint: %v %v", findings, err)
					}
				})
			}
		}
	}
}

// TestUpdateBeforeCredential: before the responder has its credential (as
// when trustd issues the responder's own certificate) an update records
// the status without failing; requests get tryLater until the credential
// is set, and the Refresh after it signs what was recorded.
func TestUpdateBeforeCredential(t *testing.T) {
	p := testpki.New(t, nil, time.Now)
	r, err := responder.New(responder.Config{Issuer: p.Intermediate, Now: time.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	leaf := p.Issue(t, "practitioner-signing", testpki.Subject(pki.RolePractitioner, "sub_a", time.Now()), newKey())
	if err := r.Update(responder.Record{Serial: leaf.SerialNumber, Status: ocsp.Good, NotAfter: leaf.NotAfter}); err != nil {
		t.Fatalf("an update before the credential: %v", err)
	}
	_, err = ocsp.ParseResponse(r.Respond(request(t, leaf, p.Intermediate, crypto.SHA256)).DER, p.Intermediate)
	if re, ok := err.(ocsp.ResponseError); !ok || re.Status != ocsp.TryLater {
		t.Fatalf("without a credential: %v, want tryLater", err)
	}
	respKey := newKey()
	if err := r.SetCredential(responder.Credential{Cert: p.Issue(t, "ocsp-responder", testpki.Subject(pki.RoleService, "sub_ocsp", time.Now()), respKey), Key: respKey}); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Refresh(); err != nil || n != len(responder.Hashes()) {
		t.Fatalf("Refresh signed %d (%v), want %d", n, err, len(responder.Hashes()))
	}
	got, err := ocsp.ParseResponseForCert(r.Respond(request(t, leaf, p.Intermediate, crypto.SHA256)).DER, leaf, p.Intermediate)
	if err != nil || got.Status != ocsp.Good {
		t.Fatalf("after the credential: %v %v", got, err)
	}
}
