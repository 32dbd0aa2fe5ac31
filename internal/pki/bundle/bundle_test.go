package bundle_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/bundle"
	"github.com/nuskha/nuskha/internal/pki/crl"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

func key() *ecdsa.PrivateKey {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return k
}

type fixture struct {
	p      *testpki.PKI
	signer *ecdsa.PrivateKey
	chain  []*x509.Certificate
	crl    []byte
	arl    []byte
}

func setup(t *testing.T) fixture {
	interKey := key()
	p := testpki.New(t, interKey, time.Now)
	signer := key()
	cert := p.Issue(t, "trust-bundle-signing", testpki.Subject(pki.RoleService, "sub_bundle", time.Now()), signer)
	der, err := crl.Sign(crl.Request{Number: big.NewInt(1), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}, p.Intermediate, interKey, p.Linter, nil)
	if err != nil {
		t.Fatal(err)
	}
	return fixture{p: p, signer: signer, chain: []*x509.Certificate{cert, p.Intermediate}, crl: der, arl: p.ARL(t, time.Now()).Raw}
}

func (f fixture) payload() bundle.Payload {
	return bundle.Payload{IssuedAt: time.Now(), Roots: [][]byte{f.p.Root.Raw}, Intermediates: [][]byte{f.p.Intermediate.Raw}, CRLs: [][]byte{f.crl, f.arl}}
}

func TestRoundTrip(t *testing.T) {
	f := setup(t)
	b, err := bundle.Sign(f.payload(), f.signer, f.chain)
	if err != nil {
		t.Fatal(err)
	}
	v, err := bundle.Verify(b, []*x509.Certificate{f.p.Root}, f.p.Arc, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Roots) != 1 || len(v.Intermediates) != 1 || len(v.CRLs) != 2 || !v.CRLs[0].Issuer.Equal(f.p.Intermediate) || !v.CRLs[1].Issuer.Equal(f.p.Root) {
		t.Fatalf("verified bundle: %+v", v)
	}
}

func TestRefusals(t *testing.T) {
	f := setup(t)
	good, _ := bundle.Sign(f.payload(), f.signer, f.chain)
	other := testpki.New(t, nil, time.Now)
	otherSigner := key()
	otherChain := []*x509.Certificate{other.Issue(t, "trust-bundle-signing", testpki.Subject(pki.RoleService, "sub_o", time.Now()), otherSigner), other.Intermediate}
	foreign, _ := bundle.Sign(f.payload(), otherSigner, otherChain)
	ocspKey := key()
	ocspCert := f.p.Issue(t, "ocsp-responder", testpki.Subject(pki.RoleService, "sub_ocsp", time.Now()), ocspKey)
	wrongEKU, _ := bundle.Sign(f.payload(), ocspKey, []*x509.Certificate{ocspCert, f.p.Intermediate})
	p := f.payload()
	p.Intermediates = [][]byte{other.Intermediate.Raw}
	foreignIntermediate, _ := bundle.Sign(p, f.signer, f.chain)
	p = f.payload()
	p.CRLs = [][]byte{mustCRL(t, other)}
	foreignCRL, _ := bundle.Sign(p, f.signer, f.chain)
	p = f.payload()
	p.CRLs = [][]byte{f.crl, other.ARL(t, time.Now()).Raw}
	foreignARL, _ := bundle.Sign(p, f.signer, f.chain)
	p = f.payload()
	p.IssuedAt = time.Now().Add(time.Hour)
	future, _ := bundle.Sign(p, f.signer, f.chain)
	parts := strings.Split(string(good), ".")
	tampered := parts[0] + "." + strings.TrimRight(parts[1], "A") + "B." + parts[2]

	for name, b := range map[string][]byte{
		"garbage":                        []byte("not a jws"),
		"tampered payload":               []byte(tampered),
		"alg none":                       []byte("eyJhbGciOiJub25lIn0." + parts[1] + "."),
		"signer from another CA":         foreign,
		"signer without the bundle EKU":  wrongEKU,
		"intermediate from another root": foreignIntermediate,
		"CRL from another CA":            foreignCRL,
		"ARL from another root":          foreignARL,
		"issued in the future":           future,
		// encoding/base64 skips line breaks: the same bundle, spelled twice.
		"line break in the signature": []byte(parts[0] + "." + parts[1] + "." + parts[2][:20] + "\r\n" + parts[2][20:]),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := bundle.Verify(b, []*x509.Certificate{f.p.Root}, f.p.Arc, time.Now())
			if !errors.Is(err, errs.Of(errs.BadTrustBundle)) {
				t.Fatalf("got %v, want bad-trust-bundle", err)
			}
		})
	}
}

func mustCRL(t *testing.T, p *testpki.PKI) []byte {
	// another CA's CRL, signed by a key that is not its intermediate's: the
	// issuer check fails either way.
	k := key()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)},
		&x509.Certificate{Subject: p.Intermediate.Subject, SubjectKeyId: []byte{1}, KeyUsage: x509.KeyUsageCRLSign, PublicKey: k.Public()}, k)
	if err != nil {
		t.Fatal(err)
	}
	// Well formed: it is refused for its signer, nothing else.
	if f, err := p.Linter.RevocationList(der); err != nil || len(f) != 0 {
		t.Fatalf("zlint on the foreign CRL: %v %v", f, err)
	}
	return der
}

// TestLogs: a bundle naming audit logs is version 2 and gives them back
// verified; one naming a log with a key that is not a note verifier key
// is not signed; a bundle without logs stays version 1.
func TestLogs(t *testing.T) {
	f := setup(t)
	const vkey = "rxd.example/rxd-audit/k1+35d4df94+AexSadJ0slXSUWXOtSzLBlAgcc9Ve98zn6M6E27CYbVS"
	p := f.payload()
	p.Logs = []bundle.Log{{Origin: "rxd.example/rxd-audit", VerifierKeys: []string{vkey}, URL: "https://rxd.example/audit/"}}
	b, err := bundle.Sign(p, f.signer, f.chain)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(payloadOf(t, b)), `"v":2`) {
		t.Fatalf("a bundle with logs is not version 2: %s", payloadOf(t, b))
	}
	v, err := bundle.Verify(b, []*x509.Certificate{f.p.Root}, f.p.Arc, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := v.Log("rxd.example/rxd-audit"); !ok || l.VerifierKeys[0] != vkey || l.URL != "https://rxd.example/audit/" {
		t.Fatalf("logs read back: %+v", v.Logs)
	}
	if _, ok := v.Log("other"); ok {
		t.Fatal("a log the bundle does not name was found")
	}
	for name, l := range map[string]bundle.Log{
		"key that is not a note key": {Origin: "o", VerifierKeys: []string{"not-a-key"}},
		"no key":                     {Origin: "o"},
		"origin with a space":        {Origin: "o o", VerifierKeys: []string{vkey}},
	} {
		p.Logs = []bundle.Log{l}
		if _, err := bundle.Sign(p, f.signer, f.chain); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
	plain, err := bundle.Sign(f.payload(), f.signer, f.chain)
	if err != nil || !strings.Contains(string(payloadOf(t, plain)), `"v":1`) {
		t.Fatalf("a bundle without logs: %v, %s", err, payloadOf(t, plain))
	}
}

func payloadOf(t *testing.T, jws []byte) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(string(jws), ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	return b
}
