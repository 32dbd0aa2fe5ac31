package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/bundle"
	"github.com/nuskha/nuskha/internal/pki/crl"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/rx/trackcode"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

// TestRxVerifyEveryKind: rx verify, offline with a trust bundle, takes
// every kind of document, says what the exchange's attest, and refuses
// one of another kind than -kind asks for. (The end-to-end test covers
// the kinds a running trustd's cards sign.)
func TestRxVerifyEveryKind(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	interKey := newKey()
	p := testpki.New(t, interKey, time.Now)
	type signer struct {
		key   crypto.Signer
		chain []*x509.Certificate
	}
	issue := func(profile string, role pki.Role, id string) signer {
		k := newKey()
		return signer{k, []*x509.Certificate{p.Issue(t, profile, testpki.Subject(role, id, now), k), p.Intermediate}}
	}
	doctor := issue("practitioner-signing", pki.RolePractitioner, "sub_doc")
	pharmacy := issue("pharmacy-signing", pki.RolePharmacy, "sub_ph")
	exchange := issue("exchange-receipt-signing", pki.RoleService, "sub_rxd")
	vendor := issue("service-tls-client", pki.RoleVendor, "sub_v")
	bundleKey := issue("trust-bundle-signing", pki.RoleService, "sub_trustd")
	licence := testpki.Subject(pki.RolePharmacy, "sub_ph", now).LicenceNumber

	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	caFile := write("root.pem", testpki.PEM(p.Root))
	crlDER, err := crl.Sign(crl.Request{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(time.Hour)}, p.Intermediate, interKey, p.Linter, nil)
	if err != nil {
		t.Fatal(err)
	}
	signedBundle, err := bundle.Sign(bundle.Payload{IssuedAt: now, Roots: [][]byte{p.Root.Raw}, Intermediates: [][]byte{p.Intermediate.Raw},
		CRLs: [][]byte{crlDER, p.ARL(t, now).Raw}}, bundleKey.key, bundleKey.chain)
	if err != nil {
		t.Fatal(err)
	}
	bundleFile := write("bundle.jws", signedBundle)

	sign := func(doc rx.Document, s signer) string {
		tok, err := rx.Sign(doc, s.key, s.chain, now)
		if err != nil {
			t.Fatalf("%s: %v", doc.Kind(), err)
		}
		return tok
	}
	prescription := &rx.Prescription{V: 1, Type: rx.KindPrescription, ID: rx.NewID(), IssuedAt: now,
		Patient:    rx.Patient{NationalID: "0499370899", Name: "علی رضایی", BirthDate: "1985-03-21", Sex: "male"},
		Prescriber: rx.Prescriber{CouncilNumber: "MC-12345", Profession: "physician", Specialty: "cardiology"},
		Practice:   rx.Practice{Name: "مطب"}, Items: []rx.Item{{Kind: "drug", Code: "1234567", Quantity: 30}}}
	rxTok := sign(prescription, doctor)
	ref := rx.Reference{ID: prescription.ID, JWSSHA256: rx.SHA256(rxTok)}
	dispense := &rx.Dispense{V: 1, Type: rx.KindDispense, ID: rx.NewID(), DispensedAt: now, Prescription: ref,
		Dispenser: rx.Dispenser{LicenceNumber: licence, Role: "pharmacy"}, Items: []rx.DispensedItem{{Code: "1234567", Quantity: 30}}}
	dispTok := sign(dispense, pharmacy)
	code := trackcode.New()
	tokens := map[rx.Kind]string{
		rx.KindPrescription: rxTok,
		rx.KindDispense:     dispTok,
		rx.KindCancellation: sign(&rx.Cancellation{V: 1, Type: rx.KindCancellation, ID: rx.NewID(), CancelledAt: now, Prescription: ref,
			Prescriber: prescription.Prescriber, Reason: "اشتباه"}, doctor),
		rx.KindSession: sign(&rx.Session{V: 1, Type: rx.KindSession, ID: rx.NewID(), Aud: rx.SessionAudience, IssuedAt: now,
			Vendor: rx.Thumbprint(vendor.chain[0])}, pharmacy),
		rx.KindPaper: sign(&rx.Paper{V: 1, Type: rx.KindPaper, ID: rx.NewID(), EnteredAt: now,
			Prescriber: rx.Prescriber{CouncilNumber: "MC-777", Profession: "dentist", Specialty: "general"},
			Patient:    prescription.Patient, Items: prescription.Items, Dispensed: dispense.Items,
			Dispenser: rx.Dispenser{LicenceNumber: licence, Role: "pharmacy"}}, pharmacy),
		rx.KindAck: sign(&rx.Ack{V: 1, Type: rx.KindAck, ID: rx.NewID(), Prescription: ref, TrackingCode: code, AcceptedAt: now}, exchange),
		rx.KindReceipt: sign(&rx.Receipt{V: 1, Type: rx.KindReceipt, ID: rx.NewID(), TrackingCode: code, Prescription: ref,
			Dispenses: []rx.Reference{{ID: dispense.ID, JWSSHA256: rx.SHA256(dispTok)}},
			Amounts:   rx.Amounts{Total: 1_250_000, Insurer: 875_000, Supplementary: 250_000, Patient: 125_000},
			Dispenser: rx.Dispenser{LicenceNumber: licence, Role: "pharmacy"}, ClosedAt: now}, exchange),
	}
	wants := map[rx.Kind][]string{
		rx.KindPrescription: {"by دکتر سارا احمدی (practitioner MC-12345)"},
		rx.KindSession:      {"for the vendor certificate with x5t#S256 " + rx.Thumbprint(vendor.chain[0]), "(pharmacy " + licence + ")"},
		rx.KindPaper:        {"written by dentist MC-777", "1 item(s) written, 1 dispensed", "(pharmacy " + licence + ")"},
		rx.KindAck:          {"of prescription " + prescription.ID, "tracking code " + trackcode.Format(code), "(service)\n"},
		rx.KindReceipt: {"of prescription " + prescription.ID, "tracking code " + trackcode.Format(code), "1 dispense record(s)",
			"total 1250000, insurer 875000, supplementary 250000, patient 125000", "(service)\n"},
	}
	rxctl := func(args ...string) (string, string, int) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), args, &out, &errOut, nil)
		return out.String(), errOut.String(), code
	}
	if len(tokens) != len(rx.Kinds()) {
		t.Fatal("a kind is missing here")
	}
	for kind, tok := range tokens {
		t.Run(string(kind), func(t *testing.T) {
			in := write(string(kind)+".jws", []byte(tok+"\n"))
			for _, args := range [][]string{{}, {"-kind", string(kind)}} {
				out, errOut, code := rxctl(append([]string{"rx", "verify", "-in", in, "-bundle", bundleFile, "-ca-file", caFile}, args...)...)
				if code != exitOK || !strings.HasPrefix(out, "valid "+string(kind)+" ") {
					t.Fatalf("exit %d\n%s%s", code, out, errOut)
				}
				for _, w := range wants[kind] {
					if !strings.Contains(out, w) {
						t.Errorf("output lacks %q:\n%s", w, out)
					}
				}
			}
			other := rx.KindReceipt
			if kind == rx.KindReceipt {
				other = rx.KindAck
			}
			if _, errOut, code := rxctl("rx", "verify", "-in", in, "-bundle", bundleFile, "-ca-file", caFile, "-kind", string(other)); code != exitRefused || !strings.Contains(errOut, "wrong-document-type") {
				t.Fatalf("-kind %s: exit %d, %s", other, code, errOut)
			}
		})
	}
	if _, errOut, code := rxctl("rx", "verify", "-in", write("x.jws", []byte(rxTok)), "-bundle", bundleFile, "-ca-file", caFile, "-kind", "bill"); code != exitRefused || !strings.Contains(errOut, "want prescription, dispense, cancellation, session, paper, ack, receipt") {
		t.Fatalf("-kind bill: exit %d, %s", code, errOut)
	}
}
