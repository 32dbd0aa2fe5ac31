package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/testutil/softhsm"
	"github.com/nuskha/nuskha/internal/trustd"
)

// rxctlBinary is the rxctl command built from this tree, run as a user
// runs it: its own process, its own PKCS#11 module, the environment the
// test has set (NUSKHA_CA_FILE, NUSKHA_RXD_URL, the vendor's certificate,
// SOFTHSM2_CONF).
type rxctlBinary struct {
	t    *testing.T
	path string
}

func buildRxctl(t *testing.T) rxctlBinary {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to build rxctl: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "rxctl")
	if out, err := exec.Command(goTool, "build", "-o", bin, "github.com/nuskha/nuskha/cmd/rxctl").CombinedOutput(); err != nil {
		t.Fatalf("go build rxctl: %v\n%s", err, out)
	}
	return rxctlBinary{t: t, path: bin}
}

func (b rxctlBinary) run(args ...string) (stdout, stderr string, code int) {
	b.t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(b.path, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		b.t.Fatalf("rxctl %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

func (b rxctlBinary) ok(args ...string) string {
	b.t.Helper()
	out, errOut, code := b.run(args...)
	if code != exitOK {
		b.t.Fatalf("rxctl %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// refused runs a command that must be refused with the problem code.
func (b rxctlBinary) refused(code string, args ...string) string {
	b.t.Helper()
	out, errOut, exit := b.run(args...)
	if exit != exitRefused || !strings.Contains(errOut, code) {
		b.t.Fatalf("rxctl %s: exit %d, stdout %q, stderr %q; want a refusal with %s", strings.Join(args, " "), exit, out, errOut, code)
	}
	return errOut
}

// patient is in deploy/sample/registry.csv, insured with supplementary
// insurance; prescriptionDoc is Dr Ahmadi's prescription for her, two drugs.
const (
	patient         = "0010350829"
	prescriptionDoc = `{
  "patient": {"national_id": "` + patient + `", "name": "مریم کریمی", "birth_date": "1981-08-03", "sex": "female"},
  "prescriber": {"council_number": "MC-90210", "profession": "physician", "specialty": "cardiology"},
  "practice": {"name": "مطب دکتر احمدی", "province": "IR-23"},
  "diagnoses": ["J02.9"],
  "items": [
    {"kind": "drug", "code": "1000210", "quantity": 20, "dosage": "هر ۸ ساعت یک عدد"},
    {"kind": "drug", "code": "1000105", "quantity": 10, "dosage": "در صورت تب"}
  ]
}`
)

var trackingCodeLine = regexp.MustCompile(`(?m)^prescription ([0-9a-f-]{36}) accepted.*\ntracking code ([0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z])$`)

// TestExchangeEndToEnd is issue 12's first acceptance point, with the
// real binaries: trustd issues rxd's exchange certificate for a key on
// rxd's SoftHSM2 token; rxd serves the exchange; with the rxctl binary a
// practitioner prescribes on her card and gets a tracking code, a pharmacy
// opens a session, looks the prescription up, claims it, dispenses in two
// visits and closes each with a receipt that rx verify accepts; a second
// pharmacy is refused while the first holds it; the same prescription
// submitted again gets the first answer; once the practitioner's card is
// revoked, her new prescription is refused by the exchange. On the way,
// the other commands against the real rxd: release, cancel (refused while
// claimed), paper, and the patient's history for a service caller.
func TestExchangeEndToEnd(t *testing.T) {
	// SoftHSM2 lists the tokens that existed when the module was loaded:
	// every token before trustd opens its own.
	drCard := softhsm.NewToken(t, "dr-card")
	shafaCard := softhsm.NewToken(t, "shafa-card")
	daroCard := softhsm.NewToken(t, "daro-card")
	rxdToken := softhsm.NewToken(t, "rxd-hsm")
	d := deploy(t, trustd.StoreConfig{Driver: "sqlite", Path: "trustd.db"})
	work := t.TempDir()
	doctor := d.enrolPractitioner(t, drCard, "MC-90210")
	shafa := d.enrolPharmacyAs(t, shafaCard, "PH-8812", "داروخانه شفا")
	daro := d.enrolPharmacyAs(t, daroCard, "PH-8813", "داروخانه دارو")
	vendorChain, vendorKey := d.enrolService(work, "his-connector", "vendor", "service-tls-client")
	rxdChain, rxdKey := d.enrolService(work, "rxd", "service", "service-tls-server")

	rxctl := buildRxctl(t)
	// rxd's exchange key is made on rxd's token and certified by the
	// officers (profile exchange-receipt-signing), as for any service.
	hsmFlags := []string{"-module", rxdToken.Module, "-token", rxdToken.Label, "-key-label", "exchange-receipts", "-key-id", "0e", "-pin-file", rxdToken.PINFile}
	rxctl.ok(append([]string{"token", "keygen"}, hsmFlags...)...)
	exchangeCSR := filepath.Join(work, "exchange.csr")
	rxctl.ok(append([]string{"token", "csr", "-out", exchangeCSR}, hsmFlags...)...)
	subj := d.ok("alice", "subject", "add", "-file", writeFile(t, work, "exchange.json",
		`{"kind": "service", "name": "Nuskha exchange", "organization": "Nuskha", "licence_valid_from": "2024-03-20", "licence_valid_until": "2030-03-20"}`))
	req := d.ok("alice", "enrol", "request", "-subject", field(t, subj, "id"), "-profile", "exchange-receipt-signing", "-csr", exchangeCSR)
	exchangeChain := filepath.Join(work, "exchange-chain.pem")
	d.ok("bob", "enrol", "approve", "-out", exchangeChain, field(t, req, "id"))

	bin := buildRxd(t)
	db := filepath.Join(work, "rxd.db")
	sample := filepath.Join("..", "..", "deploy", "sample")
	rxdCommand(t, bin, "import-registry", "-db", db, "-create", "-mode", "full", "-quiet", filepath.Join(sample, "registry.csv"))
	rxdCommand(t, bin, "import-catalogue", "-db", db, "-label", "sample", "-valid-from", "1400-01-01",
		"-drugs", filepath.Join(sample, "drugs.csv"), "-services", filepath.Join(sample, "services.csv"))
	// -revocation-recheck 0: rxd asks trustd's responder on every call, so
	// the revocation below is refused at the next prescription, not within
	// the minute a "good" answer is otherwise reused.
	// The audit log's keys on rxd's token, as in production: the pseudonym
	// key (HMAC) and the key its checkpoint key is sealed under (AES).
	audit := []string{"-audit-pseudonym-key", hsm.PKCS11URI(rxdToken.Module, rxdToken.Label, "audit-pseudonyms", []byte{0x0a}, rxdToken.PINFile),
		"-audit-seal-key", hsm.PKCS11URI(rxdToken.Module, rxdToken.Label, "audit-seal", []byte{0x0b}, rxdToken.PINFile),
		"-audit-note-key", filepath.Join(work, "audit-note.key"), "-audit-origin", "rxd.test/audit"}
	rxdCommand(t, bin, append([]string{"audit-keys"}, audit...)...)
	rxd := startRxd(t, bin, append([]string{"-db", db, "-tls-cert", rxdChain, "-tls-key", rxdKey, "-client-ca", d.init.RootCert,
		"-revocation-recheck", "0",
		"-exchange-key", hsm.PKCS11URI(rxdToken.Module, rxdToken.Label, "exchange-receipts", []byte{0x0e}, rxdToken.PINFile),
		"-exchange-cert", exchangeChain}, audit...)...)
	// Every party's software calls through the same vendor certificate.
	t.Setenv("NUSKHA_RXD_URL", rxd.url)
	t.Setenv("NUSKHA_CLIENT_CERT", vendorChain)
	t.Setenv("NUSKHA_CLIENT_KEY", vendorKey)
	bundleFile := filepath.Join(work, "bundle.jws")
	rxctl.ok("trust", "pull", "-out", bundleFile)

	// The practitioner prescribes on her card: two drugs, the exchange's
	// tracking code and its signed acknowledgement.
	prescription := writeFile(t, work, "p.json", prescriptionDoc)
	rxFile, ackFile := filepath.Join(work, "rx.jws"), filepath.Join(work, "ack.jws")
	first := rxctl.ok(append([]string{"rx", "prescribe", "-in", prescription, "-bundle", bundleFile, "-out", rxFile, "-ack-out", ackFile}, doctor.flags...)...)
	m := trackingCodeLine.FindStringSubmatch(first)
	if m == nil || !strings.Contains(first, " accepted (state active)") || !strings.Contains(first, "item 0 1000210 ×20: covered") {
		t.Fatalf("rx prescribe:\n%s", first)
	}
	id, code := m[1], m[2]
	t.Logf("rx prescribe:\n%s", first)
	if out := rxctl.ok("rx", "verify", "-kind", "ack", "-in", ackFile, "-bundle", bundleFile); !strings.Contains(out, "valid ack") {
		t.Fatalf("rx verify of the acknowledgement: %s", out)
	}

	// The same prescription again: the first answer, nothing new stored.
	again := rxctl.ok("rx", "prescribe", "-signed", rxFile)
	if !strings.Contains(again, "accepted before: this is the first answer again") || !strings.Contains(again, "tracking code "+code) {
		t.Fatalf("the same prescription again:\n%s\nfirst:\n%s", again, first)
	}

	// Pharmacy Shafa opens a session on its card and finds the
	// prescription with the code and the patient's national id.
	shafaSession := filepath.Join(work, "shafa.session")
	if out := rxctl.ok(append([]string{"session", "open", "-bundle", bundleFile, "-session", shafaSession}, shafa.flags...)...); !strings.Contains(out, "session open for pharmacy PH-8812") {
		t.Fatalf("session open: %s", out)
	}
	if fi, err := os.Stat(shafaSession); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the session file: %v %v", fi, err)
	}
	pharmacy := []string{"-session", shafaSession, "-national-id", patient}
	if out := rxctl.ok(append([]string{"rx", "lookup", "-code", strings.ToLower(code)}, pharmacy...)...); !strings.Contains(out, "tracking code "+code+", state active") {
		t.Fatalf("rx lookup: %s", out)
	}

	// First visit: claim, hand out the first drug, close with a receipt.
	claim1 := filepath.Join(work, "claim1.json")
	rxctl.ok(append([]string{"rx", "claim", "-code", code, "-claim-out", claim1}, pharmacy...)...)

	// Meanwhile, pharmacy Daro is refused: Shafa holds it.
	daroSession := filepath.Join(work, "daro.session")
	rxctl.ok(append([]string{"session", "open", "-bundle", bundleFile, "-session", daroSession}, daro.flags...)...)
	rxctl.refused("prescription-claimed", "rx", "claim", "-code", code, "-national-id", patient, "-session", daroSession, "-claim-out", filepath.Join(work, "daro-claim.json"))

	visit := func(n, claim, items, wantState string) {
		t.Helper()
		in := writeFile(t, work, "visit"+n+".json", `{"dispenser": {"licence_number": "PH-8812", "role": "pharmacy", "name": "داروخانه شفا"}, "items": [`+items+`]}`)
		out := rxctl.ok(append([]string{"rx", "dispense", "-in", in, "-claim", claim, "-session", shafaSession, "-bundle", bundleFile}, shafa.flags...)...)
		if !strings.Contains(out, "recorded (state "+wantState+")") {
			t.Fatalf("visit %s, rx dispense:\n%s", n, out)
		}
		t.Logf("visit %s:\n%s", n, out)
		receipt := filepath.Join(work, "receipt"+n+".jws")
		out = rxctl.ok("rx", "close", "-claim", claim, "-session", shafaSession, "-receipt-out", receipt)
		if !strings.Contains(out, "closed; receipt") {
			t.Fatalf("visit %s, rx close:\n%s", n, out)
		}
		if out := rxctl.ok("rx", "verify", "-kind", "receipt", "-in", receipt, "-bundle", bundleFile); !strings.HasPrefix(out, "valid receipt") {
			t.Fatalf("visit %s, rx verify -kind receipt: %s", n, out)
		}
	}
	visit("1", claim1, `{"code": "1000210", "quantity": 20}`, "partly-dispensed")

	// Second visit: claim again, the rest, close.
	claim2 := filepath.Join(work, "claim2.json")
	rxctl.ok(append([]string{"rx", "claim", "-code", code, "-claim-out", claim2}, pharmacy...)...)
	visit("2", claim2, `{"code": "1000105", "quantity": 10}`, "dispensed")
	if out := rxctl.ok(append([]string{"rx", "lookup", "-code", code}, pharmacy...)...); !strings.Contains(out, "state dispensed") {
		t.Fatalf("rx lookup after the second visit: %s", out)
	}
	// Fully dispensed, it cannot be claimed again.
	rxctl.refused("prescription-not-dispensable", append([]string{"rx", "claim", "-code", code, "-claim-out", filepath.Join(work, "claim3.json")}, pharmacy...)...)

	// A second prescription, claimed by Daro: the prescriber cannot cancel
	// it while Daro holds it, and can once Daro releases it.
	rx2 := filepath.Join(work, "rx2.jws")
	out := rxctl.ok(append([]string{"rx", "prescribe", "-in", writeFile(t, work, "p2.json", strings.Replace(prescriptionDoc, "1000105", "1000420", 1)),
		"-bundle", bundleFile, "-out", rx2}, doctor.flags...)...)
	m = trackingCodeLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("rx prescribe of the second prescription:\n%s", out)
	}
	id2, code2 := m[1], m[2]
	daroClaim := filepath.Join(work, "daro-claim2.json")
	rxctl.ok("rx", "claim", "-code", code2, "-national-id", patient, "-session", daroSession, "-claim-out", daroClaim)
	cancel := append([]string{"rx", "cancel", "-prescription", rx2, "-reason", "دوز اشتباه", "-bundle", bundleFile, "-rxd", rxd.url}, doctor.flags...)
	rxctl.refused("prescription-claimed", cancel...)
	if out := rxctl.ok("rx", "release", "-claim", daroClaim, "-session", daroSession); !strings.Contains(out, "released") {
		t.Fatalf("rx release: %s", out)
	}
	if out := rxctl.ok(cancel...); !strings.Contains(out, " cancelled (recorded)") {
		t.Fatalf("rx cancel: %s", out)
	}
	rxctl.refused("prescription-not-dispensable", "rx", "claim", "-code", code2, "-national-id", patient, "-session", daroSession, "-claim-out", daroClaim)

	// Shafa enters a paper prescription, dispensed in the same call, and
	// keeps its receipt.
	paperReceipt := filepath.Join(work, "paper-receipt.jws")
	paper := writeFile(t, work, "paper.json", `{
  "prescriber": {"council_number": "MC-77001", "profession": "physician", "specialty": "general"},
  "patient": {"national_id": "`+patient+`", "name": "مریم کریمی", "birth_date": "1981-08-03", "sex": "female"},
  "items": [{"kind": "drug", "code": "1000315", "quantity": 30}],
  "dispensed": [{"code": "1000315", "quantity": 30}],
  "dispenser": {"licence_number": "PH-8812", "role": "pharmacy"}
}`)
	if out := rxctl.ok(append([]string{"rx", "paper", "-in", paper, "-receipt-out", paperReceipt, "-bundle", bundleFile}, shafa.flags...)...); !strings.Contains(out, "paper prescription") {
		t.Fatalf("rx paper: %s", out)
	}
	rxctl.ok("rx", "verify", "-kind", "receipt", "-in", paperReceipt, "-bundle", bundleFile)
	rxctl.ok("session", "close", "-session", shafaSession)
	if exists(shafaSession) {
		t.Fatal("session close left the session file")
	}

	// The insurer's patient portal (a service, not a vendor) reads the
	// patient's history: all three, each in its state.
	rxctl.refused("role-not-allowed", "rx", "history", "-national-id", patient)
	portalChain, portalKey := d.enrolService(work, "patient-portal", "service", "service-tls-client")
	history := rxctl.ok("rx", "history", "-national-id", patient, "-cert", portalChain, "-key", portalKey)
	var page struct {
		Prescriptions []struct{ ID, Kind, State string } `json:"prescriptions"`
	}
	if err := json.Unmarshal([]byte(history), &page); err != nil {
		t.Fatalf("rx history: %v\n%s", err, history)
	}
	got := map[string]string{}
	for _, p := range page.Prescriptions {
		if p.Kind == "paper" {
			p.ID = "paper"
		}
		got[p.ID] = p.Kind + " " + p.State
	}
	if want := map[string]string{id: "electronic dispensed", id2: "electronic cancelled", "paper": "paper dispensed"}; !maps.Equal(got, want) {
		t.Fatalf("rx history: %v, want %v\n%s", got, want, history)
	}
	// And who acted on the patient's prescriptions, from rxd's audit log:
	// the pharmacy's dispense of the first among them, once rxd has
	// sequenced it (every second).
	rxctl.refused("role-not-allowed", "rx", "access-log", "-national-id", patient)
	type access struct {
		Action, Role, Outcome string
		Prescription          string `json:"prescription_id"`
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		out := rxctl.ok("rx", "access-log", "-national-id", patient, "-limit", "200", "-cert", portalChain, "-key", portalKey)
		var log struct {
			Accesses []access `json:"accesses"`
		}
		if err := json.Unmarshal([]byte(out), &log); err != nil {
			t.Fatalf("rx access-log: %v\n%s", err, out)
		}
		if slices.ContainsFunc(log.Accesses, func(a access) bool {
			return a.Action == "dispense" && a.Role == "pharmacy" && a.Outcome == "ok" && a.Prescription == id
		}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rx access-log: no dispense of %s by a pharmacy after 30 s\n%s", id, out)
		}
		time.Sleep(200 * time.Millisecond) // rxd sequences every second
	}

	// The practitioner's card is stolen and revoked. Her software last
	// pulled the trust bundle before that, so rxctl signs; the exchange,
	// which asks trustd, refuses the prescription.
	rxctl.ok(append([]string{"token", "revoke", "-reason", "keyCompromise"}, doctor.flags...)...)
	after := filepath.Join(work, "after.jws")
	rxctl.refused("certificate-revoked", append([]string{"rx", "prescribe", "-in", prescription, "-bundle", bundleFile, "-out", after}, doctor.flags...)...)
	if !exists(after) {
		t.Fatal("the refusal came from rxctl's own check, not from the exchange")
	}
}

// enrolPharmacyAs registers a pharmacy with its licence number and
// certifies a key on its card.
func (d *deployment) enrolPharmacyAs(t *testing.T, card *softhsm.Token, licence, name string) enrolled {
	t.Helper()
	work := t.TempDir()
	e := enrolled{card: card, flags: []string{"-module", card.Module, "-token", card.Label, "-key-label", "dispense", "-pin-file", card.PINFile}}
	d.ok("", append([]string{"token", "keygen"}, e.flags...)...)
	csr := filepath.Join(work, "req.csr")
	d.ok("", append([]string{"token", "csr", "-out", csr}, e.flags...)...)
	subj := d.ok("alice", "subject", "add", "-file", writeFile(t, work, "ph.json", `{"kind": "pharmacy", "name": "`+name+`",
		"licence_number": "`+licence+`", "province": "IR-23", "responsible_name": "دکتر رضا کریمی", "responsible_council_number": "P-5521",
		"licence_valid_from": "2024-01-01", "licence_valid_until": "2030-01-01"}`))
	req := d.ok("alice", "enrol", "request", "-subject", field(t, subj, "id"), "-profile", "pharmacy-signing", "-csr", csr)
	e.chainFile = filepath.Join(work, "chain.pem")
	e.serial = field(t, d.ok("bob", "enrol", "approve", "-out", e.chainFile, field(t, req, "id")), "serial")
	d.ok("", append([]string{"token", "import-cert", "-cert", e.chainFile}, e.flags...)...)
	return e
}
