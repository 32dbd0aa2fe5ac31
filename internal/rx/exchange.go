package rx

import (
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	"github.com/nuskha/nuskha/internal/rx/trackcode"
)

// The exchange's documents (docs/exchange.md): what a card signs to open a
// session or to enter a paper prescription, and what the exchange signs
// (with its exchange-receipt-signing key) when it accepts a prescription or
// closes a visit.

// SessionAudience is the aud of every session: the exchange.
const SessionAudience = "nuskha-exchange"

// Session is a practitioner's, pharmacy's or centre's card opening a
// session at the exchange, through one vendor's software. The exchange
// MUST use each id once, accept issued_at only close to its own clock, and
// bind the session to the mTLS certificate whose thumbprint is Vendor:
// a session signed for one vendor's connection is refused over another's.
type Session struct {
	V        int       `json:"v"`
	Type     Kind      `json:"type"`
	ID       string    `json:"id"`
	Aud      string    `json:"aud"`
	IssuedAt time.Time `json:"issued_at"`
	// Vendor is Thumbprint of the vendor's mTLS client certificate the
	// session will be used through.
	Vendor string `json:"vendor"`
}

// Thumbprint is the base64url (unpadded) SHA-256 of a certificate's DER:
// JOSE's x5t#S256, and a session's vendor.
func Thumbprint(cert *x509.Certificate) string {
	d := sha256.Sum256(cert.Raw)
	return b64.EncodeToString(d[:])
}

// Paper is a pharmacy entering a paper prescription and what it dispensed
// of it. The prescriber is whoever wrote the paper, as written: unlike a
// prescription's, not the signer. The dispenser is the signer.
type Paper struct {
	V          int             `json:"v"`
	Type       Kind            `json:"type"`
	ID         string          `json:"id"`
	EnteredAt  time.Time       `json:"entered_at"`
	Prescriber Prescriber      `json:"prescriber"`
	Patient    Patient         `json:"patient"`
	Practice   *Practice       `json:"practice,omitempty"`
	Diagnoses  []string        `json:"diagnoses,omitempty"` // ICD-10
	Items      []Item          `json:"items"`               // as written
	Dispensed  []DispensedItem `json:"dispensed"`
	Dispenser  Dispenser       `json:"dispenser"`
}

// Ack is the exchange's acknowledgement that it accepted a prescription,
// and under which tracking code.
type Ack struct {
	V            int       `json:"v"`
	Type         Kind      `json:"type"`
	ID           string    `json:"id"`
	Prescription Reference `json:"prescription"`
	TrackingCode string    `json:"tracking_code"` // canonical (trackcode)
	AcceptedAt   time.Time `json:"accepted_at"`
}

// MaxAmount is the largest amount a receipt holds: 2^53 − 1 rials, the
// largest integer every JSON reader (JavaScript's numbers) holds exactly.
const MaxAmount = 1<<53 - 1

// Amounts are what a visit cost, in rials, and who pays it.
type Amounts struct {
	Total         int64 `json:"total"` // insurer + supplementary + patient
	Insurer       int64 `json:"insurer"`
	Supplementary int64 `json:"supplementary"`
	Patient       int64 `json:"patient"`
}

// Receipt is the exchange's receipt of a closed visit: the dispenses
// recorded under one claim, and the amounts.
type Receipt struct {
	V            int         `json:"v"`
	Type         Kind        `json:"type"`
	ID           string      `json:"id"`
	TrackingCode string      `json:"tracking_code"` // canonical (trackcode)
	Prescription Reference   `json:"prescription"`
	Dispenses    []Reference `json:"dispenses"`
	Amounts      Amounts     `json:"amounts"`
	Dispenser    Dispenser   `json:"dispenser"`
	ClosedAt     time.Time   `json:"closed_at"`
}

func (*Session) Kind() Kind { return KindSession }
func (*Paper) Kind() Kind   { return KindPaper }
func (*Ack) Kind() Kind     { return KindAck }
func (*Receipt) Kind() Kind { return KindReceipt }

func (s *Session) walk(n *normalizer) {
	n.str(&s.ID, lower)
	n.instant(&s.IssuedAt)
}

func (p *Paper) walk(n *normalizer) {
	n.str(&p.ID, lower)
	n.instant(&p.EnteredAt)
	p.Prescriber.walk(n)
	p.Patient.walk(n)
	if p.Practice != nil {
		p.Practice.walk(n)
	}
	for i := range p.Diagnoses {
		n.str(&p.Diagnoses[i], upperCode)
	}
	for i := range p.Items {
		p.Items[i].walk(n)
	}
	for i := range p.Dispensed {
		p.Dispensed[i].walk(n)
	}
	p.Dispenser.walk(n)
}

func (a *Ack) walk(n *normalizer) {
	n.str(&a.ID, lower)
	a.Prescription.walk(n)
	n.str(&a.TrackingCode, trackcode.Normalize)
	n.instant(&a.AcceptedAt)
}

func (r *Receipt) walk(n *normalizer) {
	n.str(&r.ID, lower)
	n.str(&r.TrackingCode, trackcode.Normalize)
	r.Prescription.walk(n)
	for i := range r.Dispenses {
		r.Dispenses[i].walk(n)
	}
	r.Dispenser.walk(n)
	n.instant(&r.ClosedAt)
}

// Normalize puts the session in normal form.
func (s *Session) Normalize() { s.walk(&normalizer{}) }

// Normalize puts the paper prescription in normal form.
func (p *Paper) Normalize() { p.walk(&normalizer{}) }

// Normalize puts the acknowledgement in normal form.
func (a *Ack) Normalize() { a.walk(&normalizer{}) }

// Normalize puts the receipt in normal form.
func (r *Receipt) Normalize() { r.walk(&normalizer{}) }

// Check validates the session beyond its schema.
func (s *Session) Check() error { return nil }

// Check validates the paper prescription beyond its schema: as a
// prescription's patient, diagnoses and items, as a dispense record's
// dispensed items, and each dispensed item is (or substitutes for) a drug
// written on the paper: a pharmacy dispenses drugs.
func (p *Paper) Check() error {
	if err := p.Patient.check(p.EnteredAt); err != nil {
		return err
	}
	if err := checkDiagnoses(p.Diagnoses); err != nil {
		return err
	}
	if err := checkItems("items", p.Items); err != nil {
		return err
	}
	if err := checkDispensed("dispensed", p.Dispensed); err != nil {
		return err
	}
	for i, it := range p.Dispensed {
		field, written := fmt.Sprintf("dispensed[%d].code", i), it.Code
		if it.SubstituteFor != "" {
			field, written = fmt.Sprintf("dispensed[%d].substitute_for", i), it.SubstituteFor
		}
		if !slices.ContainsFunc(p.Items, func(w Item) bool { return w.Code == written && w.Kind == "drug" }) {
			return bad(field, "%s is not a drug written on the paper", written)
		}
	}
	return nil
}

// Check validates the acknowledgement beyond its schema.
func (a *Ack) Check() error { return checkTrackingCode(a.TrackingCode) }

// Check validates the receipt beyond its schema: the tracking code's check
// symbol, each dispense listed once, and the amounts adding up.
func (r *Receipt) Check() error {
	if err := checkTrackingCode(r.TrackingCode); err != nil {
		return err
	}
	for i, d := range r.Dispenses {
		if slices.ContainsFunc(r.Dispenses[:i], func(o Reference) bool { return o.ID == d.ID }) {
			return bad(fmt.Sprintf("dispenses[%d].id", i), "dispense %s is listed twice", d.ID)
		}
	}
	a := r.Amounts
	if a.Total != a.Insurer+a.Supplementary+a.Patient {
		return bad("amounts.total", "%d is not insurer + supplementary + patient (%d)", a.Total, a.Insurer+a.Supplementary+a.Patient)
	}
	return nil
}

func checkTrackingCode(code string) error {
	if !trackcode.Valid(code) {
		return bad(trackcode.Field, "the check symbol does not match")
	}
	return nil
}
