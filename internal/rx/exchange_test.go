package rx_test

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"io"
	"maps"
	"math/big"
	"slices"
	"strings"
	"testing"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/rx/trackcode"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

// signer is a key and its chain.
type signer struct {
	key   crypto.Signer
	chain []*x509.Certificate
}

// exchangeFixture adds to the doctor a pharmacy, a laboratory, the
// exchange's receipt key, trustd's bundle key and a vendor's TLS client.
type exchangeFixture struct {
	*fixture
	pharmacy, lab, exchange, bundle, vendor signer
	pharmacyLicence                         string
}

func setupExchange(t testing.TB) *exchangeFixture {
	f := &exchangeFixture{fixture: setup(t)}
	issue := func(profile string, role pki.Role, id string) signer {
		k := newKey()
		return signer{k, []*x509.Certificate{f.p.Issue(t, profile, testpki.Subject(role, id, f.now), k), f.p.Intermediate}}
	}
	f.pharmacy = issue("pharmacy-signing", pki.RolePharmacy, "sub_ph")
	f.pharmacyLicence = testpki.Subject(pki.RolePharmacy, "sub_ph", f.now).LicenceNumber
	f.lab = issue("paraclinic-signing", pki.RoleParaclinic, "sub_lab")
	f.exchange = issue("exchange-receipt-signing", pki.RoleService, "sub_rxd")
	f.bundle = issue("trust-bundle-signing", pki.RoleService, "sub_trustd")
	f.vendor = issue("service-tls-client", pki.RoleVendor, "sub_vendor")
	return f
}

func (f *exchangeFixture) session() *rx.Session {
	return &rx.Session{V: 1, Type: rx.KindSession, ID: rx.NewID(), Aud: rx.SessionAudience, IssuedAt: f.now, Vendor: rx.Thumbprint(f.vendor.chain[0])}
}

func (f *exchangeFixture) paper() *rx.Paper {
	return &rx.Paper{V: 1, Type: rx.KindPaper, ID: rx.NewID(), EnteredAt: f.now,
		// Whoever wrote the paper: no certificate of theirs is involved.
		Prescriber: rx.Prescriber{CouncilNumber: "MC-777", Profession: "dentist", Specialty: "general", Name: "دکتر كاوه نيك"},
		Patient:    rx.Patient{NationalID: "۰۴۹۹۳۷۰۸۹۹", Name: "علي رضايي", BirthDate: "1985-03-21", Sex: "male"},
		Items:      []rx.Item{{Kind: "drug", Code: "1234567", Quantity: 20, Dosage: "هر ۸ ساعت"}},
		Dispensed:  []rx.DispensedItem{{Code: "1234567", Quantity: 20}},
		Dispenser:  rx.Dispenser{LicenceNumber: f.pharmacyLicence, Role: "pharmacy"}}
}

func (f *exchangeFixture) ack(ref rx.Reference) *rx.Ack {
	return &rx.Ack{V: 1, Type: rx.KindAck, ID: rx.NewID(), Prescription: ref, TrackingCode: trackcode.New(), AcceptedAt: f.now}
}

func (f *exchangeFixture) receipt(ref rx.Reference, dispenses ...rx.Reference) *rx.Receipt {
	return &rx.Receipt{V: 1, Type: rx.KindReceipt, ID: rx.NewID(), TrackingCode: trackcode.New(), Prescription: ref, Dispenses: dispenses,
		Amounts:   rx.Amounts{Total: 1_250_000, Insurer: 875_000, Supplementary: 250_000, Patient: 125_000},
		Dispenser: rx.Dispenser{LicenceNumber: f.pharmacyLicence, Role: "pharmacy"}, ClosedAt: f.now}
}

// A prescription's acknowledgement and a visit's receipt, as the exchange
// makes them, with the documents they name.
// signedKinds is a token of each kind the flow makes, and a session and a
// paper prescription besides, each signed by a key entitled to it.
func (f *exchangeFixture) signedKinds(t testing.TB) map[rx.Kind]string {
	t.Helper()
	rxTok, ackTok, dispTok, receiptTok := f.flow(t)
	sessTok, err := f.v.Sign(ctx, f.session(), f.lab.key, f.lab.chain, f.now)
	if err != nil {
		t.Fatal(err)
	}
	paperTok, err := f.v.Sign(ctx, f.paper(), f.pharmacy.key, f.pharmacy.chain, f.now)
	if err != nil {
		t.Fatal(err)
	}
	return map[rx.Kind]string{rx.KindPrescription: rxTok, rx.KindAck: ackTok, rx.KindDispense: dispTok, rx.KindReceipt: receiptTok,
		rx.KindSession: sessTok, rx.KindPaper: paperTok}
}

func (f *exchangeFixture) flow(t testing.TB) (rxTok, ackTok, dispTok, receiptTok string) {
	rxTok = f.sign(t, f.prescription())
	ref := rx.Reference{ID: idOf(rxTok), JWSSHA256: rx.SHA256(rxTok)}
	var err error
	if ackTok, err = f.v.Sign(ctx, f.ack(ref), f.exchange.key, f.exchange.chain, f.now); err != nil {
		t.Fatal(err)
	}
	d := &rx.Dispense{V: 1, Type: rx.KindDispense, ID: rx.NewID(), DispensedAt: f.now, Prescription: ref,
		Dispenser: rx.Dispenser{LicenceNumber: f.pharmacyLicence, Role: "pharmacy"}, Items: []rx.DispensedItem{{Code: "1234567", Quantity: 30}}}
	if dispTok, err = f.v.Sign(ctx, d, f.pharmacy.key, f.pharmacy.chain, f.now); err != nil {
		t.Fatal(err)
	}
	r := f.receipt(ref, rx.Reference{ID: d.ID, JWSSHA256: rx.SHA256(dispTok)})
	if receiptTok, err = f.v.Sign(ctx, r, f.exchange.key, f.exchange.chain, f.now); err != nil {
		t.Fatal(err)
	}
	return
}

// idOf reads a token's document id (unverified).
func idOf(tok string) string {
	var d struct {
		ID string `json:"id"`
	}
	json.Unmarshal(payloadOf(tok), &d)
	return d.ID
}

func TestSessions(t *testing.T) {
	f := setupExchange(t)
	for role, s := range map[pki.Role]signer{pki.RolePractitioner: {f.key, f.chain}, pki.RolePharmacy: f.pharmacy, pki.RoleParaclinic: f.lab} {
		t.Run(string(role)+" opens a session", func(t *testing.T) {
			sess := f.session()
			tok, err := f.v.Sign(ctx, sess, s.key, s.chain, f.now)
			if err != nil {
				t.Fatal(err)
			}
			v, err := f.v.Verify(ctx, tok, rx.KindSession)
			if err != nil {
				t.Fatal(err)
			}
			if v.Session == nil || v.Session.ID != sess.ID || v.Session.Aud != "nuskha-exchange" || v.Signer.Role != role {
				t.Fatalf("verified %+v", v)
			}
			// The exchange compares the vendor with its connection's certificate.
			if v.Session.Vendor != rx.Thumbprint(f.vendor.chain[0]) || v.Session.Vendor == rx.Thumbprint(f.pharmacy.chain[0]) {
				t.Fatal("the session does not name the vendor's certificate")
			}
		})
	}
	t.Run("the thumbprint is x5t#S256", func(t *testing.T) {
		tok := f.sign(t, f.prescription())
		if headerOf(tok)["x5t#S256"] != rx.Thumbprint(f.chain[0]) {
			t.Fatalf("Thumbprint %s, x5t#S256 %v", rx.Thumbprint(f.chain[0]), headerOf(tok)["x5t#S256"])
		}
	})
	t.Run("a session for another audience", func(t *testing.T) {
		s := f.session()
		s.Aud = "nuskha-trust"
		_, err := f.v.Sign(ctx, s, f.key, f.chain, f.now)
		wantCode(t, err, errs.InvalidDocument)
	})
}

func TestPaperPrescription(t *testing.T) {
	f := setupExchange(t)
	p := f.paper()
	tok, err := f.v.Sign(ctx, p, f.pharmacy.key, f.pharmacy.chain, f.now)
	if err != nil {
		t.Fatal(err)
	}
	v, err := f.v.Verify(ctx, tok, rx.KindPaper)
	if err != nil {
		t.Fatal(err)
	}
	got := v.Paper
	if got == nil || got.Patient.NationalID != "0499370899" || got.Prescriber.Name != "دکتر کاوه نیک" || got.Items[0].Dosage != "هر ۸ ساعت" {
		t.Fatalf("verified %+v", got)
	}
	if v.Signer.RegistrationNumber != f.pharmacyLicence || got.Prescriber.CouncilNumber != "MC-777" {
		t.Fatal("the paper's prescriber is bound, or the pharmacy is not")
	}
	t.Run("a paper prescription is not a prescription", func(t *testing.T) {
		_, err := f.v.Verify(ctx, tok, rx.KindPrescription)
		wantCode(t, err, errs.WrongDocumentType)
	})
}

func TestAcknowledgementAndReceipt(t *testing.T) {
	f := setupExchange(t)
	rxTok, ackTok, dispTok, receiptTok := f.flow(t)
	ack, err := f.v.Verify(ctx, ackTok, rx.KindAck)
	if err != nil {
		t.Fatal(err)
	}
	if ack.Ack.Prescription.JWSSHA256 != rx.SHA256(rxTok) || !trackcode.Valid(ack.Ack.TrackingCode) || ack.Signer.Role != pki.RoleService {
		t.Fatalf("acknowledgement %+v signed by %+v", ack.Ack, ack.Signer)
	}
	rc, err := f.v.Verify(ctx, receiptTok, rx.KindReceipt)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Receipt.Dispenses[0].JWSSHA256 != rx.SHA256(dispTok) || rc.Receipt.Amounts.Total != 1_250_000 {
		t.Fatalf("receipt %+v", rc.Receipt)
	}
	// A vendor checks a receipt with its own JOSE library as any document.
	roots := x509.NewCertPool()
	roots.AddCert(f.p.Root)
	if _, err := verifyWithGoJose(receiptTok, rx.KindReceipt.Typ(), roots); err != nil {
		t.Fatalf("go-jose: %v", err)
	}
	t.Run("a receipt is not an acknowledgement", func(t *testing.T) {
		_, err := f.v.Verify(ctx, receiptTok, rx.KindAck)
		wantCode(t, err, errs.WrongDocumentType)
	})
	t.Run("a receipt's amounts cannot be changed", func(t *testing.T) {
		parts := strings.Split(receiptTok, ".")
		changed := strings.Replace(string(payloadOf(receiptTok)), `"patient":125000`, `"patient":0`, 1)
		_, err := f.v.Verify(ctx, parts[0]+"."+base64.RawURLEncoding.EncodeToString([]byte(changed))+"."+parts[2], rx.KindReceipt)
		wantCode(t, err, errs.SignatureInvalid)
	})
}

// Who may sign what among the exchange's kinds; each refusal comes from
// Verifier.Sign before the key is used, and from Verify on the same
// document signed unchecked (TestSignChecksTheSigner's pattern).
func TestExchangeSigners(t *testing.T) {
	f := setupExchange(t)
	rxTok := f.sign(t, f.prescription())
	ref := rx.Reference{ID: idOf(rxTok), JWSSHA256: rx.SHA256(rxTok)}
	dref := rx.Reference{ID: rx.NewID(), JWSSHA256: strings.Repeat("0", 64)}
	doctor := signer{f.key, f.chain}
	otherPharmacy := f.paper()
	otherPharmacy.Dispenser.LicenceNumber = "PH-1"
	for _, tc := range []struct {
		name string
		doc  func() rx.Document
		s    signer
		code errs.Code
	}{
		{"the exchange opening a session", func() rx.Document { return f.session() }, f.exchange, errs.WrongCertProfile},
		{"a vendor's TLS key opening a session", func() rx.Document { return f.session() }, f.vendor, errs.WrongCertProfile},
		{"a practitioner entering a paper prescription", func() rx.Document { return f.paper() }, doctor, errs.WrongCertProfile},
		{"a laboratory entering a paper prescription", func() rx.Document { return f.paper() }, f.lab, errs.WrongCertProfile},
		{"a paper naming another pharmacy", func() rx.Document { return otherPharmacy }, f.pharmacy, errs.PrescriberMismatch},
		{"a pharmacy acknowledging", func() rx.Document { return f.ack(ref) }, f.pharmacy, errs.WrongCertProfile},
		{"a practitioner acknowledging", func() rx.Document { return f.ack(ref) }, doctor, errs.WrongCertProfile},
		{"trustd's bundle key acknowledging", func() rx.Document { return f.ack(ref) }, f.bundle, errs.WrongCertProfile},
		{"a pharmacy writing its own receipt", func() rx.Document { return f.receipt(ref, dref) }, f.pharmacy, errs.WrongCertProfile},
		{"trustd's bundle key writing a receipt", func() rx.Document { return f.receipt(ref, dref) }, f.bundle, errs.WrongCertProfile},
		{"the exchange signing a prescription", func() rx.Document { return f.prescription() }, f.exchange, errs.WrongCertProfile},
		{"the exchange signing a dispense", func() rx.Document {
			return &rx.Dispense{V: 1, Type: rx.KindDispense, ID: rx.NewID(), DispensedAt: f.now, Prescription: ref,
				Dispenser: rx.Dispenser{LicenceNumber: f.pharmacyLicence, Role: "pharmacy"}, Items: []rx.DispensedItem{{Code: "1", Quantity: 1}}}
		}, f.exchange, errs.WrongCertProfile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := &countingSigner{Signer: tc.s.key}
			doc := tc.doc()
			_, err := f.v.Sign(ctx, doc, key, tc.s.chain, f.now)
			wantCode(t, err, tc.code)
			if key.n != 0 {
				t.Fatalf("the key signed %d time(s) before the refusal", key.n)
			}
			tok, err := rx.Sign(doc, tc.s.key, tc.s.chain, f.now)
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.v.Verify(ctx, tok, doc.Kind())
			wantCode(t, err, tc.code)
		})
	}
}

// FuzzVerifyEveryKind: whatever kind a token's typ names, the verifier
// accepts it only as signed by one of the fixture's keys entitled to that
// kind, with that kind's document, in the one spelling.
func FuzzVerifyEveryKind(fz *testing.F) {
	f := setupExchange(fz)
	tokens := f.signedKinds(fz)
	for _, k := range slices.Sorted(maps.Keys(tokens)) {
		fz.Add(tokens[k])
		fz.Add(tokens[k] + "\n")
	}
	entitled := map[rx.Kind][]*x509.Certificate{
		rx.KindPrescription: {f.chain[0]}, rx.KindCancellation: {f.chain[0]},
		rx.KindDispense: {f.pharmacy.chain[0], f.lab.chain[0]}, rx.KindPaper: {f.pharmacy.chain[0]},
		rx.KindSession: {f.chain[0], f.pharmacy.chain[0], f.lab.chain[0]},
		rx.KindAck:     {f.exchange.chain[0]}, rx.KindReceipt: {f.exchange.chain[0]},
	}
	fz.Fuzz(func(t *testing.T, token string) {
		kind, _, err := rx.Peek(token)
		if err != nil {
			return
		}
		v, err := f.v.Verify(ctx, token, kind)
		if err != nil {
			if errs.CodeOf(err) == errs.Internal {
				t.Fatalf("untyped refusal: %v", err)
			}
			return
		}
		if !slices.ContainsFunc(entitled[kind], v.Chain[0].Equal) {
			t.Fatalf("a %s accepted from %s", kind, v.Chain[0].Subject)
		}
		docs := map[rx.Kind]bool{rx.KindPrescription: v.Prescription != nil, rx.KindDispense: v.Dispense != nil, rx.KindCancellation: v.Cancellation != nil,
			rx.KindSession: v.Session != nil, rx.KindPaper: v.Paper != nil, rx.KindAck: v.Ack != nil, rx.KindReceipt: v.Receipt != nil}
		for k, set := range docs {
			if set != (k == kind) {
				t.Fatalf("a %s verified with the %s document set: %v", kind, k, set)
			}
		}
		for n, part := range strings.Split(token, ".") {
			raw, err := base64.RawURLEncoding.DecodeString(part)
			if err != nil || base64.RawURLEncoding.EncodeToString(raw) != part {
				t.Fatalf("accepted part %d spelled %q", n, part)
			}
		}
	})
}

// faultyToken signs like a card or an HSM whose answer was damaged on the
// way: a signature of the right length that is not the key's.
type faultyToken struct{ crypto.Signer }

func (t faultyToken) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := t.Signer.Sign(r, digest, opts)
	if err != nil {
		return nil, err
	}
	var v struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(sig, &v); err != nil {
		return nil, err
	}
	v.S.Add(v.S, big.NewInt(1))
	return asn1.Marshal(v)
}

// A token's signature is checked before it leaves the signer, a key in
// memory's is not: TestTokenSignatureChecked.
func TestTokenSignatureChecked(t *testing.T) {
	f := setupExchange(t)
	ref := rx.Reference{ID: rx.NewID(), JWSSHA256: rx.SHA256("x")}
	_, err := f.v.Sign(ctx, f.ack(ref), faultyToken{f.exchange.key}, f.exchange.chain, f.now)
	if err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("a token's bad signature: %v, want it caught", err)
	}
	tok, err := f.v.Sign(ctx, f.ack(ref), f.exchange.key, f.exchange.chain, f.now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Verify(ctx, tok, rx.KindAck); err != nil {
		t.Fatalf("an acknowledgement signed in memory does not verify: %v", err)
	}
}
