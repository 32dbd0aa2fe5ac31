package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/testutil/interop"
	"github.com/nuskha/nuskha/internal/testutil/softhsm"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
	"github.com/nuskha/nuskha/internal/trustd"
)

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func prescriptionJSON(council string) string {
	return fmt.Sprintf(`{
  "patient": {"national_id": "۰۴۹۹۳۷۰۸۹۹", "name": "علي رضايي", "birth_date": "1985-03-21", "sex": "male"},
  "prescriber": {"council_number": %q, "profession": "physician", "specialty": "cardiology"},
  "practice": {"name": "درمانگاه شفا", "province": "IR-23"},
  "diagnoses": ["I10"],
  "items": [{"kind": "drug", "code": "1234567", "quantity": 30, "dosage": "روزی یک عدد", "repeats": 2, "repeat_interval_days": 30}]
}`, council)
}

// TestPrescriptionEndToEnd: a practitioner signs with a SoftHSM2 card
// through rxctl; rxctl verifies it offline with the trust bundle, and so
// does panva/jose; panva/jose signs with a key and certificate we issued
// and rxctl accepts it; a pharmacy signs a dispense record and the
// prescriber a cancellation; once the practitioner's certificate is
// revoked, the offline verifier refuses.
func TestPrescriptionEndToEnd(t *testing.T) {
	card := softhsm.NewToken(t, "rx-card")
	pharmacyCard := softhsm.NewToken(t, "pharmacy-card")
	d := deploy(t, trustd.StoreConfig{Driver: "sqlite", Path: "trustd.db"})
	doctor := d.enrolPractitioner(t, card, "MC-2001")
	work := t.TempDir()
	bundleFile := filepath.Join(work, "bundle.jws")
	d.ok("", "trust", "pull", "-out", bundleFile)

	// Sign with the card; verify offline.
	pFile := writeFile(t, work, "p.json", prescriptionJSON("MC-2001"))
	rxFile := filepath.Join(work, "rx.jws")
	d.ok("", append([]string{"rx", "sign", "-in", pFile, "-bundle", bundleFile, "-out", rxFile}, doctor.flags...)...)
	out := d.ok("", "rx", "verify", "-in", rxFile, "-bundle", bundleFile)
	if !strings.HasPrefix(out, "valid prescription") || !strings.Contains(out, "practitioner MC-2001") {
		t.Fatalf("rx verify: %s", out)
	}
	token, _ := os.ReadFile(rxFile)
	var signed rx.Prescription
	json.Unmarshal(payloadOf(strings.TrimSpace(string(token))), &signed)
	if signed.Patient.NationalID != "0499370899" || signed.Patient.Name != "علی رضایی" {
		t.Fatalf("signed without normalising: %+v", signed.Patient)
	}

	// Signing runs the verifier's checks of the signer first: what they
	// refuse is never signed (no output, and the card not asked).
	pharmacy := d.enrolPharmacy(t, pharmacyCard)
	refusedFile := filepath.Join(work, "refused.jws")
	refusedToSign := func(code string, args ...string) {
		t.Helper()
		d.refused("", code, append(args, "-out", refusedFile)...)
		if exists(refusedFile) {
			t.Fatalf("rxctl %s was refused with %s but wrote a signed document", strings.Join(args, " "), code)
		}
	}
	refusedToSign("wrong-certificate-profile", append([]string{"rx", "sign", "-in", pFile, "-bundle", bundleFile}, pharmacy.flags...)...)
	refusedToSign("prescriber-mismatch", append([]string{"rx", "sign", "-in", writeFile(t, work, "other.json", prescriptionJSON("MC-2999")), "-bundle", bundleFile}, doctor.flags...)...)
	refusedToSign("revocation-status-unknown", append([]string{"rx", "sign", "-in", pFile, "-chain", doctor.chainFile}, doctor.flags...)...)
	refusedToSign("wrong-certificate-profile", append([]string{"rx", "cancel", "-prescription", rxFile, "-reason", "x", "-bundle", bundleFile}, pharmacy.flags...)...)
	dFile := writeFile(t, work, "d.json", `{"dispenser": {"licence_number": "PH-8812", "role": "pharmacy"}, "items": [{"code": "1234567", "quantity": 30}]}`)
	refusedToSign("wrong-certificate-profile", append([]string{"rx", "dispense", "-prescription", rxFile, "-in", dFile, "-bundle", bundleFile}, doctor.flags...)...)

	t.Run("panva/jose verifies what the card signed", func(t *testing.T) {
		if id := interop.Node(t, "verify.mjs", rxFile, d.init.RootCert); id != signed.ID {
			t.Fatalf("jose read id %q, want %q", id, signed.ID)
		}
	})

	t.Run("a JWS made by panva/jose with a certificate we issued verifies", func(t *testing.T) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "vendor-made"}}, key)
		csr := writeFile(t, work, "vendor.csr", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})))
		subj := d.ok("alice", "subject", "add", "-file", writeFile(t, work, "p2.json", practitionerJSON(testpki.NationalID(), "MC-2002", "2030-03-20")))
		req := d.ok("alice", "enrol", "request", "-subject", field(t, subj, "id"), "-csr", csr)
		chainFile := filepath.Join(work, "vendor-chain.pem")
		d.ok("bob", "enrol", "approve", "-out", chainFile, field(t, req, "id"))
		pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
		keyFile := writeFile(t, work, "vendor.key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})))
		p := rx.Prescription{V: 1, Type: rx.KindPrescription, ID: rx.NewID(), IssuedAt: time.Now(),
			Patient:    rx.Patient{NationalID: "0010350829", Name: "مریم کریمی", BirthDate: "1990-01-01", Sex: "female"},
			Prescriber: rx.Prescriber{CouncilNumber: "MC-2002", Profession: "physician", Specialty: "cardiology"},
			Practice:   rx.Practice{Name: "مطب"}, Items: []rx.Item{{Kind: "lab", Code: "LAB-101", Quantity: 1}}}
		p.Normalize()
		body, _ := json.Marshal(p)
		payload := writeFile(t, work, "vendor-payload.json", string(body))
		jws := interop.Node(t, "sign.mjs", keyFile, chainFile, payload)
		vendorFile := writeFile(t, work, "vendor.jws", jws)
		if out := d.ok("", "rx", "verify", "-in", vendorFile, "-bundle", bundleFile); !strings.Contains(out, "valid prescription "+p.ID) {
			t.Fatalf("rx verify of the jose-made JWS: %s", out)
		}
	})

	// A pharmacy dispenses; the prescriber cancels. rx verify takes the
	// kind from typ; -kind, if given, must agree.
	dispFile := filepath.Join(work, "dispense.jws")
	d.ok("", append([]string{"rx", "dispense", "-prescription", rxFile, "-in", dFile, "-bundle", bundleFile, "-out", dispFile}, pharmacy.flags...)...)
	if out := d.ok("", "rx", "verify", "-in", dispFile, "-bundle", bundleFile); !strings.HasPrefix(out, "valid dispense") || !strings.Contains(out, "of prescription "+signed.ID) {
		t.Fatalf("dispense: %s", out)
	}
	d.ok("", "rx", "verify", "-kind", "dispense", "-in", dispFile, "-bundle", bundleFile)
	d.refused("", "wrong-document-type", "rx", "verify", "-kind", "prescription", "-in", dispFile, "-bundle", bundleFile)
	d.refused("", "wrong-document-type", "rx", "verify", "-kind", "receipt", "-in", dispFile, "-bundle", bundleFile)
	d.refused("", "want prescription, dispense, cancellation, session, paper, ack, receipt", "rx", "verify", "-kind", "bill", "-in", dispFile, "-bundle", bundleFile)
	refusedToSign("not a prescription", append([]string{"rx", "dispense", "-prescription", dispFile, "-in", dFile, "-bundle", bundleFile}, pharmacy.flags...)...)
	cancelFile := filepath.Join(work, "cancel.jws")
	d.ok("", append([]string{"rx", "cancel", "-prescription", rxFile, "-reason", "دوز اشتباه", "-bundle", bundleFile, "-out", cancelFile}, doctor.flags...)...)
	if out := d.ok("", "rx", "verify", "-in", cancelFile, "-bundle", bundleFile); !strings.HasPrefix(out, "valid cancellation") {
		t.Fatalf("cancellation: %s", out)
	}
	d.refused("", "wrong-document-type", "rx", "verify", "-kind", "dispense", "-in", cancelFile, "-bundle", bundleFile)

	// After the card is reported stolen, the offline verifier refuses.
	d.ok("alice", "cert", "revoke", "-serial", doctor.serial, "-reason", "keyCompromise")
	// A CRL (and bundle) fetched after a status change always includes it.
	if n := len(d.currentCRL(t).RevokedCertificateEntries); n != 1 {
		t.Fatalf("the CRL fetched after the revocation lists %d certificates, want 1", n)
	}
	d.ok("", "trust", "pull", "-out", bundleFile)
	d.refused("", "certificate-revoked", "rx", "verify", "-in", rxFile, "-bundle", bundleFile)
	// Nor will the card sign with it once the bundle lists the revocation.
	refusedToSign("certificate-revoked", append([]string{"rx", "sign", "-in", pFile, "-bundle", bundleFile}, doctor.flags...)...)
	// And with no evidence at all it refuses too, saying why.
	d.refused("", "revocation-status-unknown", "rx", "verify", "-in", rxFile)
}

func payloadOf(token string) []byte {
	_, b, _ := rx.Peek(token)
	return b
}

// enrolPharmacy registers Pharmacy Shafa (licence PH-8812) and certifies
// a key on its card.
func (d *deployment) enrolPharmacy(t *testing.T, card *softhsm.Token) enrolled {
	t.Helper()
	return d.enrolPharmacyAs(t, card, "PH-8812", "داروخانه شفا")
}
