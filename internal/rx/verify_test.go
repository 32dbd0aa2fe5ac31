package rx_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/crl"
	"github.com/nuskha/nuskha/internal/pki/revocation"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

var ctx = context.Background()

type fixture struct {
	p        *testpki.PKI
	interKey *ecdsa.PrivateKey
	now      time.Time
	doctor   *registry.Subject
	key      crypto.Signer
	chain    []*x509.Certificate
	checker  *revocation.Checker
	v        *rx.Verifier
}

func newKey() *ecdsa.PrivateKey {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return k
}

func setup(t testing.TB, revoked ...*big.Int) *fixture {
	f := &fixture{interKey: newKey(), now: time.Now().UTC().Truncate(time.Second)}
	f.p = testpki.New(t, f.interKey, time.Now)
	f.doctor = testpki.Subject(pki.RolePractitioner, "sub_doctor", f.now)
	f.key = newKey()
	f.chain = []*x509.Certificate{f.p.Issue(t, "practitioner-signing", f.doctor, f.key), f.p.Intermediate}
	f.checker = f.freshChecker(t, f.now, revoked...)
	var err error
	f.v, err = rx.NewVerifier(rx.Config{Roots: []*x509.Certificate{f.p.Root}, Arc: f.p.Arc, Status: f.checker, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// freshChecker holds a CRL made at thisUpdate listing revoked (key
// compromise), and the root's ARL listing no CA.
func (f *fixture) freshChecker(t testing.TB, thisUpdate time.Time, revoked ...*big.Int) *revocation.Checker {
	var entries []crl.Entry
	for _, s := range revoked {
		entries = append(entries, crl.Entry{Serial: s, RevokedAt: thisUpdate.Add(-time.Hour), Reason: 1})
	}
	der, err := crl.Sign(crl.Request{Number: big.NewInt(1), ThisUpdate: thisUpdate, NextUpdate: thisUpdate.Add(24 * time.Hour), Entries: entries},
		f.p.Intermediate, f.interKey, f.p.Linter, nil)
	if err != nil {
		t.Fatal(err)
	}
	list, _ := x509.ParseRevocationList(der)
	c, _ := revocation.New(revocation.Config{MaxAge: 24 * time.Hour, Now: func() time.Time { return f.now }})
	if err := c.AddCRL(list, f.p.Intermediate); err != nil {
		t.Fatal(err)
	}
	if err := c.AddCRL(f.p.ARL(t, thisUpdate), f.p.Root); err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fixture) prescription() *rx.Prescription {
	return &rx.Prescription{
		V: 1, Type: rx.KindPrescription, ID: rx.NewID(), IssuedAt: f.now,
		Patient:    rx.Patient{NationalID: "۰۴۹۹۳۷۰۸۹۹", Name: "علي رضايي", BirthDate: "1985-03-21", Sex: "male"},
		Prescriber: rx.Prescriber{CouncilNumber: f.doctor.CouncilNumber, Profession: "physician", Specialty: "cardiology", Name: "دکتر سارا احمدی"},
		Practice:   rx.Practice{Name: "درمانگاه  شفا", Province: "IR-23"},
		Diagnoses:  []string{"i10"},
		Items: []rx.Item{
			{Kind: "drug", Code: "1234567", Quantity: 30, Dosage: "روزی يک عدد", Repeats: 2, RepeatIntervalDays: 30},
			{Kind: "lab", Code: "LAB-101", Quantity: 1},
		},
	}
}

func (f *fixture) sign(t testing.TB, doc rx.Document) string {
	tok, err := rx.Sign(doc, f.key, f.chain, f.now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func wantCode(t *testing.T, err error, code errs.Code) {
	t.Helper()
	if !errors.Is(err, errs.Of(code)) {
		t.Fatalf("got %v, want %s", err, code)
	}
}

func TestSignAndVerify(t *testing.T) {
	f := setup(t)
	p := f.prescription()
	tok := f.sign(t, p)
	got, err := f.v.Verify(ctx, tok, rx.KindPrescription)
	if err != nil {
		t.Fatal(err)
	}
	if got.Prescription.ID != p.ID || got.Prescription.Patient.NationalID != "0499370899" || got.Prescription.Patient.Name != "علی رضایی" {
		t.Fatalf("verified document: %+v", got.Prescription)
	}
	if got.Prescription.Practice.Name != "درمانگاه شفا" || got.Prescription.Diagnoses[0] != "I10" || got.Prescription.Items[0].Dosage != "روزی یک عدد" {
		t.Fatal("not normalised before signing")
	}
	if got.Signer.RegistrationNumber != f.doctor.CouncilNumber || !got.SigningTime.Equal(f.now) || got.Status.Status != revocation.Good {
		t.Fatalf("verified: %+v", got)
	}
	if got.SHA256() != rx.SHA256(tok) || len(got.Chain) != 3 {
		t.Fatal("reference or chain missing")
	}
	// The same prescription typed differently signs to the same payload.
	q := f.prescription()
	q.ID, q.Patient.NationalID, q.Patient.Name = p.ID, "0499370899", "علی رضایی"
	q.Practice.Name, q.Diagnoses, q.Items[0].Dosage = "درمانگاه شفا", []string{"I10"}, "روزی یک عدد"
	if strings.Split(f.sign(t, q), ".")[1] != strings.Split(tok, ".")[1] {
		t.Fatal("equal prescriptions typed differently do not sign the same bytes")
	}
	// The header is the JAdES B-B shape.
	var h map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	json.Unmarshal(raw, &h)
	if h["alg"] != "ES256" || h["typ"] != "nuskha-prescription+jws" || h["sigT"] == nil || h["x5t#S256"] == nil || len(h["x5c"].([]any)) != 2 {
		t.Fatalf("header %v", h)
	}
	if crit, _ := h["crit"].([]any); len(crit) != 1 || crit[0] != "sigT" {
		t.Fatalf("crit %v", h["crit"])
	}
}

func TestOtherKeyTypes(t *testing.T) {
	f := setup(t)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	r2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, key := range map[string]crypto.Signer{"ES384": p384, "PS256": r2048} {
		t.Run(name, func(t *testing.T) {
			chain := []*x509.Certificate{f.p.Issue(t, "practitioner-signing", f.doctor, key), f.p.Intermediate}
			tok, err := rx.Sign(f.prescription(), key, chain, f.now)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.v.Verify(ctx, tok, rx.KindPrescription); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// forge builds a compact JWS with exactly the given header, signed (over
// the exact signing input) with key, to say what honest signers never would.
func forge(t *testing.T, header map[string]any, payload []byte, key crypto.Signer) string {
	hb, _ := json.Marshal(header)
	input := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(payload)
	h := sha256.Sum256([]byte(input))
	var sig []byte
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, h[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// headerOf decodes a token's header into a map to be altered.
func headerOf(tok string) map[string]any {
	raw, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	var h map[string]any
	json.Unmarshal(raw, &h)
	return h
}

func payloadOf(tok string) []byte {
	raw, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	return raw
}

func TestRefusals(t *testing.T) {
	f := setup(t)
	good := f.sign(t, f.prescription())
	parts := strings.Split(good, ".")

	pharmacyKey := newKey()
	pharmacyChain := []*x509.Certificate{f.p.Issue(t, "pharmacy-signing", testpki.Subject(pki.RolePharmacy, "sub_ph", f.now), pharmacyKey), f.p.Intermediate}
	tlsKey := newKey()
	vendor := testpki.Subject(pki.RoleVendor, "sub_v", f.now)
	tlsChain := []*x509.Certificate{f.p.Issue(t, "service-tls-client", vendor, tlsKey), f.p.Intermediate}
	foreign := testpki.New(t, nil, time.Now)
	foreignKey := newKey()
	foreignChain := []*x509.Certificate{foreign.Issue(t, "practitioner-signing", f.doctor, foreignKey), foreign.Intermediate}

	withHeader := func(mod func(h map[string]any)) string {
		h := headerOf(good)
		mod(h)
		return forge(t, h, payloadOf(good), f.key)
	}
	withPayload := func(mod func(p map[string]any)) string {
		var p map[string]any
		json.Unmarshal(payloadOf(good), &p)
		mod(p)
		b, _ := json.Marshal(p)
		return forge(t, headerOf(good), b, f.key)
	}
	chainHeader := func(chain []*x509.Certificate) func(h map[string]any) {
		return func(h map[string]any) {
			var x5c []string
			for _, c := range chain {
				x5c = append(x5c, base64.StdEncoding.EncodeToString(c.Raw))
			}
			th := sha256.Sum256(chain[0].Raw)
			h["x5c"], h["x5t#S256"] = x5c, base64.RawURLEncoding.EncodeToString(th[:])
		}
	}
	hs256 := func() string {
		h := headerOf(good)
		h["alg"] = "HS256"
		hb, _ := json.Marshal(h)
		input := base64.RawURLEncoding.EncodeToString(hb) + "." + parts[1]
		secret, _ := x509.MarshalPKIXPublicKey(f.key.Public())
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(input))
		return input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	derSignature := func() string {
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		der, _ := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])})
		return parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(der)
	}
	signedWith := func(key crypto.Signer, chain []*x509.Certificate, sigT time.Time, mod func(*rx.Prescription)) string {
		p := f.prescription()
		if mod != nil {
			mod(p)
		}
		tok, err := rx.Sign(p, key, chain, sigT)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tamperedPayload := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payloadOf(good)), `"quantity":30`, `"quantity":90`, 1))) + "." + parts[2]
	tamperedHeader := func() string {
		h := headerOf(good)
		h["kid"] = "attacker"
		hb, _ := json.Marshal(h)
		return base64.RawURLEncoding.EncodeToString(hb) + "." + parts[1] + "." + parts[2]
	}()

	for _, tc := range []struct {
		name  string
		token string
		code  errs.Code
	}{
		{"tampered payload", tamperedPayload, errs.SignatureInvalid},
		{"tampered header", tamperedHeader, errs.SignatureInvalid},
		{"alg none", base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".", errs.UnsupportedAlgorithm},
		{"HS256 keyed with the public key", hs256(), errs.UnsupportedAlgorithm},
		{"RS256 (PKCS#1 v1.5)", withHeader(func(h map[string]any) { h["alg"] = "RS256" }), errs.UnsupportedAlgorithm},
		{"unknown crit", withHeader(func(h map[string]any) { h["crit"] = []string{"sigT", "exp"}; h["exp"] = 1 }), errs.UnknownCritical},
		{"crit names an absent parameter", withHeader(func(h map[string]any) { delete(h, "sigT") }), errs.UnknownCritical},
		{"no crit", withHeader(func(h map[string]any) { delete(h, "crit") }), errs.BadSignatureHeader},
		{"unknown header parameter", withHeader(func(h map[string]any) { h["jku"] = "https://evil.example/keys" }), errs.BadSignatureHeader},
		{"duplicate header parameter", func() string {
			hb, _ := json.Marshal(headerOf(good))
			dup := strings.Replace(string(hb), `{`, `{"alg":"ES256",`, 1)
			input := base64.RawURLEncoding.EncodeToString([]byte(dup)) + "." + parts[1]
			return input + "." + parts[2]
		}(), errs.BadSignatureHeader},
		{"missing x5t#S256", withHeader(func(h map[string]any) { delete(h, "x5t#S256") }), errs.BadSignatureHeader},
		{"x5t#S256 of another certificate", withHeader(func(h map[string]any) { h["x5t#S256"] = base64.RawURLEncoding.EncodeToString(make([]byte, 32)) }), errs.BadSignatureHeader},
		{"x5c in base64url", withHeader(func(h map[string]any) {
			h["x5c"] = []string{base64.RawURLEncoding.EncodeToString(f.chain[0].Raw), base64.RawURLEncoding.EncodeToString(f.chain[1].Raw)}
		}), errs.BadSignatureHeader},
		{"x5c with a line break (skipped by encoding/base64)", withHeader(func(h map[string]any) {
			leaf := base64.StdEncoding.EncodeToString(f.chain[0].Raw)
			h["x5c"] = []string{leaf[:64] + "\r\n" + leaf[64:], base64.StdEncoding.EncodeToString(f.chain[1].Raw)}
		}), errs.BadSignatureHeader},
		{"wrong typ", withHeader(func(h map[string]any) { h["typ"] = "nuskha-dispense+jws" }), errs.WrongDocumentType},
		{"DER instead of r‖s signature", derSignature(), errs.SignatureInvalid},
		{"not three parts", parts[0] + "." + parts[1], errs.MalformedSignature},
		{"padded base64", parts[0] + "=." + parts[1] + "." + parts[2], errs.MalformedSignature},
		{"chain to a foreign root", signedWith(foreignKey, foreignChain, f.now, nil), errs.UntrustedChain},
		{"TLS certificate used to prescribe", forge(t, func() map[string]any { h := headerOf(good); chainHeader(tlsChain)(h); return h }(), payloadOf(good), tlsKey), errs.WrongCertProfile},
		{"pharmacy certificate used to prescribe", signedWith(pharmacyKey, pharmacyChain, f.now, func(p *rx.Prescription) {}), errs.WrongCertProfile},
		{"sigT in the future", signedWith(f.key, f.chain, f.now.Add(time.Hour), nil), errs.SigningTimeInFuture},
		{"sigT too old", signedWith(f.key, f.chain, f.now.AddDate(-1, 0, 0), nil), errs.SigningTimeTooOld},
		{"prescriber mismatch", signedWithMismatch(t, f), errs.PrescriberMismatch},
		{"invalid national id", withPayload(func(p map[string]any) { p["patient"].(map[string]any)["national_id"] = "0499370898" }), errs.InvalidNID},
		{"not in normal form", withPayload(func(p map[string]any) { p["patient"].(map[string]any)["name"] = "علي  رضايي" }), errs.InvalidDocument},
		{"schema: unknown field", withPayload(func(p map[string]any) { p["discount"] = 100 }), errs.InvalidDocument},
		{"schema: no items", withPayload(func(p map[string]any) { p["items"] = []any{} }), errs.InvalidDocument},
		{"schema: version 2", withPayload(func(p map[string]any) { p["v"] = 2 }), errs.InvalidDocument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.v.Verify(ctx, tc.token, rx.KindPrescription)
			wantCode(t, err, tc.code)
		})
	}
}

// signedWithMismatch is an honest signature by the doctor over a
// prescription naming another practitioner.
func signedWithMismatch(t *testing.T, f *fixture) string {
	p := f.prescription()
	p.Prescriber.CouncilNumber = "MC-99999"
	tok, err := rx.Sign(p, f.key, f.chain, f.now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestExpiredAtSigningTime(t *testing.T) {
	f := setup(t)
	// A certificate valid for one day, and a signature (and verification)
	// three days later.
	key := newKey()
	cert := f.p.IssueWithValidity(t, "practitioner-signing", f.doctor, key, f.now, f.now.Add(24*time.Hour))
	later := f.now.Add(72 * time.Hour)
	tok, err := rx.Sign(f.prescription(), key, []*x509.Certificate{cert, f.p.Intermediate}, later)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := rx.NewVerifier(rx.Config{Roots: []*x509.Certificate{f.p.Root}, Arc: f.p.Arc, Status: f.checker, Now: func() time.Time { return later }})
	_, err = v.Verify(ctx, tok, rx.KindPrescription)
	wantCode(t, err, errs.CertificateNotValidAt)
}

func TestRevocationAtSigningTime(t *testing.T) {
	f := setup(t)
	tok := f.sign(t, f.prescription())
	t.Run("revoked before sigT (key compromise)", func(t *testing.T) {
		revoked := f.freshChecker(t, f.now, f.chain[0].SerialNumber)
		v, _ := rx.NewVerifier(rx.Config{Roots: []*x509.Certificate{f.p.Root}, Arc: f.p.Arc, Status: revoked, Now: func() time.Time { return f.now }})
		_, err := v.Verify(ctx, tok, rx.KindPrescription)
		wantCode(t, err, errs.CertificateRevoked)
	})
	t.Run("no fresh evidence", func(t *testing.T) {
		stale := f.freshChecker(t, f.now.Add(-30*time.Hour))
		v, _ := rx.NewVerifier(rx.Config{Roots: []*x509.Certificate{f.p.Root}, Arc: f.p.Arc, Status: stale, Now: func() time.Time { return f.now }})
		_, err := v.Verify(ctx, tok, rx.KindPrescription)
		wantCode(t, err, errs.RevocationUnknown)
	})
	t.Run("the intermediate is on the root's ARL", func(t *testing.T) {
		c := f.freshChecker(t, f.now)
		if err := c.AddCRL(f.p.ARL(t, f.now.Add(time.Second), f.p.Intermediate), f.p.Root); err != nil {
			t.Fatal(err)
		}
		v, _ := rx.NewVerifier(rx.Config{Roots: []*x509.Certificate{f.p.Root}, Arc: f.p.Arc, Status: c, Now: func() time.Time { return f.now.Add(time.Minute) }})
		_, err := v.Verify(ctx, tok, rx.KindPrescription)
		wantCode(t, err, errs.CertificateRevoked)
	})
	t.Run("no ARL", func(t *testing.T) {
		c, _ := revocation.New(revocation.Config{MaxAge: 24 * time.Hour, Now: func() time.Time { return f.now }})
		der, err := crl.Sign(crl.Request{Number: big.NewInt(1), ThisUpdate: f.now, NextUpdate: f.now.Add(24 * time.Hour)}, f.p.Intermediate, f.interKey, f.p.Linter, nil)
		if err != nil {
			t.Fatal(err)
		}
		list, _ := x509.ParseRevocationList(der)
		if err := c.AddCRL(list, f.p.Intermediate); err != nil {
			t.Fatal(err)
		}
		v, _ := rx.NewVerifier(rx.Config{Roots: []*x509.Certificate{f.p.Root}, Arc: f.p.Arc, Status: c, Now: func() time.Time { return f.now }})
		_, err = v.Verify(ctx, tok, rx.KindPrescription)
		wantCode(t, err, errs.RevocationUnknown)
	})
}

func TestDispenseAndCancellation(t *testing.T) {
	f := setup(t)
	rxTok := f.sign(t, f.prescription())
	ref := rx.Reference{ID: headerless(t, rxTok), JWSSHA256: rx.SHA256(rxTok)}
	pharmacy := testpki.Subject(pki.RolePharmacy, "sub_ph", f.now)
	phKey := newKey()
	phChain := []*x509.Certificate{f.p.Issue(t, "pharmacy-signing", pharmacy, phKey), f.p.Intermediate}
	d := &rx.Dispense{V: 1, Type: rx.KindDispense, ID: rx.NewID(), DispensedAt: f.now, Prescription: ref,
		Dispenser: rx.Dispenser{LicenceNumber: pharmacy.LicenceNumber, Role: "pharmacy"},
		Items:     []rx.DispensedItem{{Code: "7654321", Quantity: 30, SubstituteFor: "1234567"}}}
	dTok, err := rx.Sign(d, phKey, phChain, f.now)
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.v.Verify(ctx, dTok, rx.KindDispense)
	if err != nil || got.Dispense.Prescription != ref {
		t.Fatalf("dispense: %+v %v", got, err)
	}
	t.Run("a practitioner cannot sign a dispense record", func(t *testing.T) {
		d2 := *d
		d2.Dispenser = rx.Dispenser{LicenceNumber: f.doctor.CouncilNumber, Role: "pharmacy"}
		tok, _ := rx.Sign(&d2, f.key, f.chain, f.now)
		_, err := f.v.Verify(ctx, tok, rx.KindDispense)
		wantCode(t, err, errs.WrongCertProfile)
	})
	t.Run("the record must name the signing pharmacy", func(t *testing.T) {
		d2 := *d
		d2.Dispenser.LicenceNumber = "PH-1"
		tok, _ := rx.Sign(&d2, phKey, phChain, f.now)
		_, err := f.v.Verify(ctx, tok, rx.KindDispense)
		wantCode(t, err, errs.PrescriberMismatch)
	})
	t.Run("a dispense record is not a prescription", func(t *testing.T) {
		_, err := f.v.Verify(ctx, dTok, rx.KindPrescription)
		wantCode(t, err, errs.WrongDocumentType)
	})
	c := &rx.Cancellation{V: 1, Type: rx.KindCancellation, ID: rx.NewID(), CancelledAt: f.now, Prescription: ref,
		Prescriber: rx.Prescriber{CouncilNumber: f.doctor.CouncilNumber, Profession: "physician", Specialty: "cardiology"}, Reason: "اشتباه در دوز"}
	cTok, err := rx.Sign(c, f.key, f.chain, f.now)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := f.v.Verify(ctx, cTok, rx.KindCancellation); err != nil || got.Cancellation.Reason != "اشتباه در دوز" {
		t.Fatalf("cancellation: %v %v", got, err)
	}
	t.Run("a pharmacy cannot cancel", func(t *testing.T) {
		c2 := *c
		tok, _ := rx.Sign(&c2, phKey, phChain, f.now)
		_, err := f.v.Verify(ctx, tok, rx.KindCancellation)
		wantCode(t, err, errs.WrongCertProfile)
	})
}

func headerless(t *testing.T, tok string) string {
	var p struct {
		ID string `json:"id"`
	}
	json.Unmarshal(payloadOf(tok), &p)
	return p.ID
}

func TestSignRefusesBadDocuments(t *testing.T) {
	f := setup(t)
	p := f.prescription()
	p.Patient.NationalID = "1234567890"
	if _, err := rx.Sign(p, f.key, f.chain, f.now); !errors.Is(err, errs.Of(errs.InvalidNID)) {
		t.Fatalf("signed a prescription with a bad national id: %v", err)
	}
	p = f.prescription()
	if _, err := rx.Sign(p, newKey(), f.chain, f.now); err == nil {
		t.Fatal("signed with a key that is not the certificate's")
	}
}

func FuzzVerify(fz *testing.F) {
	f := setup(fz)
	good := f.sign(fz, f.prescription())
	fz.Add(good)
	fz.Add(strings.Replace(good, ".", "..", 1))
	fz.Add("e30.e30.")
	// Other spellings of the good token, which must all be refused.
	i := strings.LastIndexByte(good, '.')
	for _, c := range []string{"\n", "\r", "\r\n", " ", "\t", "=", "+", "/"} {
		fz.Add(good[:i+10] + c + good[i+10:])
		fz.Add(good + c)
		fz.Add(good[:i] + c + good[i:])
	}
	fz.Fuzz(func(t *testing.T, token string) {
		v, err := f.v.Verify(ctx, token, rx.KindPrescription)
		if err != nil {
			if errs.CodeOf(err) == errs.Internal {
				t.Fatalf("untyped refusal: %v", err)
			}
			return
		}
		// Anything accepted is signed by the doctor's key over its payload.
		if v.Prescription == nil || v.Signer.RegistrationNumber != f.doctor.CouncilNumber {
			t.Fatalf("accepted a forgery: %+v", v)
		}
		// And it has one spelling: each part is exactly the unpadded
		// base64url encoding of its bytes, so nothing outside
		// [A-Za-z0-9_-] and no padding.
		parts := strings.Split(token, ".")
		if len(parts) != 3 {
			t.Fatalf("accepted %d parts", len(parts))
		}
		for n, part := range parts {
			raw, err := base64.RawURLEncoding.DecodeString(part)
			if err != nil || base64.RawURLEncoding.EncodeToString(raw) != part {
				t.Fatalf("accepted part %d spelled %q, which does not re-encode to itself", n, part)
			}
		}
	})
}

func TestParserDifferentialsAreRefused(t *testing.T) {
	f := setup(t)
	good := f.sign(t, f.prescription())
	payload := string(payloadOf(good))
	for name, p := range map[string]string{
		// encoding/json would read ITEMS as items; JavaScript would not.
		"case variant of a member":   strings.TrimSuffix(payload, "}") + `,"ITEMS":[{"kind":"drug","code":"999999","quantity":9999}]}`,
		"Kelvin sign folding onto k": strings.Replace(payload, `"kind"`, "\"\u212aind\"", 1),
		// Some parsers keep the first of two members, encoding/json the last.
		"duplicate member":          strings.Replace(payload, `{"v":1,`, `{"v":1,"v":1,`, 1),
		"duplicate escaped member":  strings.Replace(payload, `{"v":1,`, `{"v":1,"\u0076":1,`, 1),
		"duplicate nested member":   strings.Replace(payload, `"sex":"male"`, `"sex":"male","sex":"female"`, 1),
		"null member":               strings.Replace(payload, `"items":`, `"notes":null,"items":`, 1),
		"null in an array":          strings.Replace(payload, `"diagnoses":["I10"`, `"diagnoses":["I10",null`, 1),
		"invalid UTF-8 in a string": strings.Replace(payload, "علی", "\xff", 1),
		// A C string ends at the NUL; PostgreSQL's jsonb refuses it.
		"NUL in free text":        strings.Replace(payload, `"dosage":"`, `"dosage":"\u0000`, 1),
		"data after the document": payload + ` {}`,
	} {
		t.Run(name, func(t *testing.T) {
			if p == payload {
				t.Fatal("the case did not change the payload")
			}
			_, err := f.v.Verify(ctx, forge(t, headerOf(good), []byte(p), f.key), rx.KindPrescription)
			wantCode(t, err, errs.InvalidDocument)
		})
	}
}

// Times are written one way, YYYY-MM-DDThh:mm:ssZ: in the payload (the
// schemas' utc pattern) and in sigT. time.Parse also takes a fraction of a
// second that the layout does not show, and drops digits past the ninth:
// the verifier read 10:00:00.0000000009Z as 10:00:00, where a verifier
// built on the published schema refuses the document and one that rounds
// reads another instant.
func TestTimesHaveOneSpelling(t *testing.T) {
	f := setup(t)
	good := f.sign(t, f.prescription())
	payload := string(payloadOf(good))
	at := f.now.Format("2006-01-02T15:04:05")
	if !strings.Contains(payload, `"issued_at":"`+at+`Z"`) {
		t.Fatalf("no issued_at %s in %s", at, payload)
	}
	for name, spelt := range map[string]string{
		"a zero fraction":             at + ".000Z",
		"a fraction past nanoseconds": at + ".0000000000009Z",
		"a fraction":                  at + ".5Z",
		"an offset of zero":           at + "+00:00",
		"a lower-case z":              at + "z",
		"a one-digit hour":            f.now.Format("2006-01-02T") + "1:04:05Z",
	} {
		t.Run("issued_at with "+name, func(t *testing.T) {
			p := strings.Replace(payload, `"issued_at":"`+at+`Z"`, `"issued_at":"`+spelt+`"`, 1)
			_, err := f.v.Verify(ctx, forge(t, headerOf(good), []byte(p), f.key), rx.KindPrescription)
			wantCode(t, err, errs.InvalidDocument)
		})
		t.Run("sigT with "+name, func(t *testing.T) {
			h := headerOf(good)
			h["sigT"] = spelt
			_, err := f.v.Verify(ctx, forge(t, h, payloadOf(good), f.key), rx.KindPrescription)
			wantCode(t, err, errs.BadSignatureHeader)
		})
	}
}

func TestReferenceSurvivesSignatureMalleability(t *testing.T) {
	f := setup(t)
	tok := f.sign(t, f.prescription())
	i := strings.LastIndexByte(tok, '.')
	sig, _ := base64.RawURLEncoding.DecodeString(tok[i+1:])
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(elliptic.P256().Params().N, s) // (r, n-s) is an equally valid signature
	s.FillBytes(sig[32:])
	twin := tok[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
	if twin == tok {
		t.Fatal("no twin made")
	}
	v, err := f.v.Verify(ctx, twin, rx.KindPrescription)
	if err != nil {
		t.Fatalf("the malleated twin should verify (ECDSA allows it): %v", err)
	}
	if v.SHA256() != rx.SHA256(tok) {
		t.Fatal("the twin has another reference digest: dispense records could be double-counted")
	}
}

// The word null inside a string is text, not the literal.
func TestNullInsideStringsIsText(t *testing.T) {
	f := setup(t)
	p := f.prescription()
	p.Notes = "null"
	p.Items[0].Note = `"null" [null] {null}`
	if _, err := f.v.Verify(ctx, f.sign(t, p), rx.KindPrescription); err != nil {
		t.Fatal(err)
	}
}

// A segment holds only the base64url alphabet. encoding/base64 skips CR
// and LF even in Strict mode, so without a check of its own the verifier
// would accept one signed prescription under many spellings: anyone could
// add line breaks to the signature, and the signer to the signed parts
// (each spelling a signing input of its own, so another jws_sha256 for
// the same id).
func TestSegmentsHoldOnlyTheAlphabet(t *testing.T) {
	f := setup(t)
	good := f.sign(t, f.prescription())
	if _, err := f.v.Verify(ctx, good, rx.KindPrescription); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	names := []string{"header", "payload", "signature"}
	for seg := range parts {
		for _, c := range []string{"\r", "\n", "\r\n", " ", "\t", "=", "+", "/"} {
			for _, at := range []int{0, len(parts[seg]) / 2, len(parts[seg])} {
				p := slices.Clone(parts)
				p[seg] = p[seg][:at] + c + p[seg][at:]
				tok := strings.Join(p, ".")
				if seg < 2 {
					// Signed as spelled, so that only the alphabet can refuse it.
					tok = testpki.SignInput(t, p[0]+"."+p[1], f.key.(*ecdsa.PrivateKey))
				}
				t.Run(fmt.Sprintf("%q in the %s at %d", c, names[seg], at), func(t *testing.T) {
					_, err := f.v.Verify(ctx, tok, rx.KindPrescription)
					wantCode(t, err, errs.MalformedSignature)
				})
			}
		}
	}
}

// countingSigner counts the signatures it is asked for.
type countingSigner struct {
	crypto.Signer
	n int
}

func (c *countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	c.n++
	return c.Signer.Sign(r, digest, opts)
}

// Verifier.Sign refuses, before the key is asked for a signature, whatever
// Verify would refuse about the signer, with the same code: each case is
// also signed unchecked and verified, and must fail there the same way.
func TestSignChecksTheSigner(t *testing.T) {
	f := setup(t)
	pharmacy := testpki.Subject(pki.RolePharmacy, "sub_ph", f.now)
	phKey := newKey()
	phChain := []*x509.Certificate{f.p.Issue(t, "pharmacy-signing", pharmacy, phKey), f.p.Intermediate}
	foreign := testpki.New(t, nil, time.Now)
	foreignKey := newKey()
	foreignChain := []*x509.Certificate{foreign.Issue(t, "practitioner-signing", f.doctor, foreignKey), foreign.Intermediate}
	shortKey := newKey()
	shortChain := []*x509.Certificate{f.p.IssueWithValidity(t, "practitioner-signing", f.doctor, shortKey, f.now, f.now.Add(24*time.Hour)), f.p.Intermediate}
	later := f.now.Add(72 * time.Hour)
	late, _ := rx.NewVerifier(rx.Config{Roots: []*x509.Certificate{f.p.Root}, Arc: f.p.Arc, Status: f.checker, Now: func() time.Time { return later }})
	revokedKey := newKey()
	revokedChain := []*x509.Certificate{f.p.Issue(t, "practitioner-signing", f.doctor, revokedKey), f.p.Intermediate}
	revoked, _ := rx.NewVerifier(rx.Config{Roots: []*x509.Certificate{f.p.Root}, Arc: f.p.Arc,
		Status: f.freshChecker(t, f.now, revokedChain[0].SerialNumber), Now: func() time.Time { return f.now }})
	noEvidence, _ := revocation.New(revocation.Config{MaxAge: 24 * time.Hour, Now: func() time.Time { return f.now }})
	blind, _ := rx.NewVerifier(rx.Config{Roots: []*x509.Certificate{f.p.Root}, Arc: f.p.Arc, Status: noEvidence, Now: func() time.Time { return f.now }})

	rxTok := f.sign(t, f.prescription())
	ref := rx.Reference{ID: headerless(t, rxTok), JWSSHA256: rx.SHA256(rxTok)}
	dispense := func(licence string) *rx.Dispense {
		return &rx.Dispense{V: 1, Type: rx.KindDispense, ID: rx.NewID(), DispensedAt: f.now, Prescription: ref,
			Dispenser: rx.Dispenser{LicenceNumber: licence, Role: "pharmacy"}, Items: []rx.DispensedItem{{Code: "1234567", Quantity: 30}}}
	}
	cancellation := func() *rx.Cancellation {
		return &rx.Cancellation{V: 1, Type: rx.KindCancellation, ID: rx.NewID(), CancelledAt: f.now, Prescription: ref,
			Prescriber: rx.Prescriber{CouncilNumber: f.doctor.CouncilNumber, Profession: "physician", Specialty: "cardiology"}, Reason: "اشتباه"}
	}
	mismatch := f.prescription()
	mismatch.Prescriber.CouncilNumber = "MC-99999"
	otherSpecialty := f.prescription()
	otherSpecialty.Prescriber.Specialty = "neurology"

	for _, tc := range []struct {
		name  string
		v     *rx.Verifier
		doc   rx.Document
		key   crypto.Signer
		chain []*x509.Certificate
		sigT  time.Time
		code  errs.Code
	}{
		{"pharmacy certificate signing a prescription", f.v, f.prescription(), phKey, phChain, f.now, errs.WrongCertProfile},
		{"another practitioner's council number", f.v, mismatch, f.key, f.chain, f.now, errs.PrescriberMismatch},
		{"another specialty", f.v, otherSpecialty, f.key, f.chain, f.now, errs.PrescriberMismatch},
		{"revoked certificate", revoked, f.prescription(), revokedKey, revokedChain, f.now, errs.CertificateRevoked},
		{"no revocation evidence", blind, f.prescription(), f.key, f.chain, f.now, errs.RevocationUnknown},
		{"chain to a foreign root", f.v, f.prescription(), foreignKey, foreignChain, f.now, errs.UntrustedChain},
		{"certificate expired", late, f.prescription(), shortKey, shortChain, later, errs.CertificateNotValidAt},
		{"sigT in the future", f.v, f.prescription(), f.key, f.chain, f.now.Add(time.Hour), errs.SigningTimeInFuture},
		{"pharmacy cancelling", f.v, cancellation(), phKey, phChain, f.now, errs.WrongCertProfile},
		{"practitioner dispensing", f.v, dispense(f.doctor.CouncilNumber), f.key, f.chain, f.now, errs.WrongCertProfile},
		{"dispense naming another pharmacy", f.v, dispense("PH-1"), phKey, phChain, f.now, errs.PrescriberMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := &countingSigner{Signer: tc.key}
			_, err := tc.v.Sign(ctx, tc.doc, key, tc.chain, tc.sigT)
			wantCode(t, err, tc.code)
			if key.n != 0 {
				t.Fatalf("the key signed %d time(s) before the refusal", key.n)
			}
			// What Verify says of the same document signed unchecked.
			tok, err := rx.Sign(tc.doc, tc.key, tc.chain, tc.sigT)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tc.v.Verify(ctx, tok, tc.doc.Kind())
			wantCode(t, err, tc.code)
		})
	}

	t.Run("what it signs verifies", func(t *testing.T) {
		p := f.prescription()
		// Typed with Persian digits: bound to the certificate after normalising.
		p.Prescriber.CouncilNumber = strings.NewReplacer("0", "۰", "1", "۱", "2", "۲", "3", "۳", "4", "۴", "5", "۵", "6", "۶", "7", "۷", "8", "۸", "9", "۹").Replace(f.doctor.CouncilNumber)
		for _, tc := range []struct {
			doc   rx.Document
			key   crypto.Signer
			chain []*x509.Certificate
		}{{p, f.key, f.chain}, {dispense(pharmacy.LicenceNumber), phKey, phChain}, {cancellation(), f.key, f.chain}} {
			tok, err := f.v.Sign(ctx, tc.doc, tc.key, tc.chain, f.now)
			if err != nil {
				t.Fatalf("%s: %v", tc.doc.Kind(), err)
			}
			if _, err := f.v.Verify(ctx, tok, tc.doc.Kind()); err != nil {
				t.Fatalf("%s: signed but does not verify: %v", tc.doc.Kind(), err)
			}
		}
	})
	t.Run("a chain without its intermediate", func(t *testing.T) {
		_, err := f.v.Sign(ctx, f.prescription(), f.key, f.chain[:1], f.now)
		wantCode(t, err, errs.BadSignatureHeader)
	})
}

func TestPeek(t *testing.T) {
	f := setup(t)
	p := f.prescription()
	tok := f.sign(t, p)
	kind, payload, err := rx.Peek(tok)
	if err != nil || kind != rx.KindPrescription || string(payload) != string(payloadOf(tok)) {
		t.Fatalf("peek: %s %v", kind, err)
	}
	for _, k := range rx.Kinds() {
		h := headerOf(tok)
		h["typ"] = k.Typ()
		if got, _, err := rx.Peek(forge(t, h, payloadOf(tok), f.key)); err != nil || got != k {
			t.Fatalf("typ %s: %s %v", k.Typ(), got, err)
		}
	}
	h := headerOf(tok)
	h["typ"] = "JWT"
	_, _, err = rx.Peek(forge(t, h, payloadOf(tok), f.key))
	wantCode(t, err, errs.WrongDocumentType)
	_, _, err = rx.Peek(tok[:20] + "\n" + tok[20:])
	wantCode(t, err, errs.MalformedSignature)
}

// TestOnlyRootsAreAnchors: an intermediate given as a trust anchor is
// refused at construction, since it would never be checked against the
// root's ARL.
func TestOnlyRootsAreAnchors(t *testing.T) {
	f := setup(t)
	_, err := rx.NewVerifier(rx.Config{Roots: []*x509.Certificate{f.p.Root, f.p.Intermediate}, Arc: f.p.Arc, Status: f.checker, Now: func() time.Time { return f.now }})
	if err == nil || !strings.Contains(err.Error(), "not a self-signed root") {
		t.Fatalf("an intermediate as an anchor: %v", err)
	}
}
