// Package rx is the signed-prescription format: version-1 documents as
// JSON — the prescription, dispense record and cancellation, and the
// exchange's session, paper prescription, acknowledgement and receipt
// (exchange.go) — signed as compact JWS following the JAdES baseline B-B
// profile (ETSI TS 119 182-1), and the one verifier that rxd, rxctl,
// vendors' software and offline pharmacies all use.
//
// A document MUST be in normal form before it is signed (Normalize): Persian
// letters unified, digits ASCII, white space collapsed, times UTC to the
// second. The verifier refuses a document that is not, so two signatures
// over the same prescription always carry the same content.
package rx

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"strings"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/nationalid"
	"github.com/nuskha/nuskha/internal/persian"
)

// Kind is the kind of signed document.
type Kind string

// Kinds of document.
const (
	KindPrescription Kind = "prescription"
	KindDispense     Kind = "dispense"
	KindCancellation Kind = "cancellation"
	KindSession      Kind = "session" // a card opening a session at the exchange
	KindPaper        Kind = "paper"   // a pharmacy entering a paper prescription
	KindAck          Kind = "ack"     // the exchange acknowledging a prescription
	KindReceipt      Kind = "receipt" // the exchange's receipt of a closed visit
)

// Kinds returns every kind of document.
func Kinds() []Kind {
	return []Kind{KindPrescription, KindDispense, KindCancellation, KindSession, KindPaper, KindAck, KindReceipt}
}

// Typ is the JWS typ header of each kind.
func (k Kind) Typ() string { return "nuskha-" + string(k) + "+jws" }

// Version of the documents this package reads and writes.
const Version = 1

// Document is one of the kinds.
type Document interface {
	Kind() Kind
	// Normalize puts the document in its normal form, in place.
	Normalize()
	// Check validates what JSON Schema cannot (check digits, dates, the
	// relations between fields). Failures are *errs.Error naming the field.
	Check() error
	// walk visits every field that has a normal form (see normalizer).
	walk(*normalizer)
	// rules checks what the kind's JSON Schema says (see rules.go).
	rules() error
}

// Reference names a prescription from a later document: its id and the
// SHA-256 of its JWS signing input (lower-case hex; see SHA256), so that
// exactly that signed version is meant.
type Reference struct {
	ID        string `json:"id"`
	JWSSHA256 string `json:"jws_sha256"`
}

// Prescriber identifies the practitioner; it must match the signing
// certificate's identity.
type Prescriber struct {
	CouncilNumber string `json:"council_number"`
	Profession    string `json:"profession"`
	Specialty     string `json:"specialty"`
	Name          string `json:"name,omitempty"`
}

// Patient is who the prescription is for.
type Patient struct {
	NationalID string `json:"national_id"`
	Name       string `json:"name"`
	BirthDate  string `json:"birth_date"` // YYYY-MM-DD (Gregorian)
	Sex        string `json:"sex"`        // female, male
}

// Practice is where the prescription was written.
type Practice struct {
	Name     string `json:"name"`
	ID       string `json:"id,omitempty"`       // the practice's licence or registry id
	Province string `json:"province,omitempty"` // ISO 3166-2:IR
}

// Item is one drug, test or procedure.
type Item struct {
	Kind     string `json:"kind"` // drug, lab, imaging, procedure
	Code     string `json:"code"` // national catalogue code
	Quantity int    `json:"quantity"`
	Dosage   string `json:"dosage,omitempty"` // dose and usage instructions
	// Repeats of a chronic prescription, at least RepeatIntervalDays apart.
	Repeats            int    `json:"repeats,omitempty"`
	RepeatIntervalDays int    `json:"repeat_interval_days,omitempty"`
	Note               string `json:"note,omitempty"`
}

// Prescription is what a practitioner signs.
type Prescription struct {
	V          int        `json:"v"`
	Type       Kind       `json:"type"`
	ID         string     `json:"id"` // UUID, made by the prescribing software
	IssuedAt   time.Time  `json:"issued_at"`
	Patient    Patient    `json:"patient"`
	Prescriber Prescriber `json:"prescriber"`
	Practice   Practice   `json:"practice"`
	Diagnoses  []string   `json:"diagnoses,omitempty"` // ICD-10
	Items      []Item     `json:"items"`
	Notes      string     `json:"notes,omitempty"`
}

// Dispenser is the pharmacy or paraclinic centre that signs a dispense record.
type Dispenser struct {
	LicenceNumber string `json:"licence_number"`
	Role          string `json:"role"` // pharmacy, paraclinic
	Name          string `json:"name,omitempty"`
}

// DispensedItem is what was handed out or performed.
type DispensedItem struct {
	Code     string `json:"code"`
	Quantity int    `json:"quantity"`
	// SubstituteFor is the prescribed code when an equivalent was given.
	SubstituteFor string `json:"substitute_for,omitempty"`
	Note          string `json:"note,omitempty"`
}

// Dispense is what a pharmacy or centre signs.
type Dispense struct {
	V            int             `json:"v"`
	Type         Kind            `json:"type"`
	ID           string          `json:"id"`
	DispensedAt  time.Time       `json:"dispensed_at"`
	Prescription Reference       `json:"prescription"`
	Dispenser    Dispenser       `json:"dispenser"`
	Items        []DispensedItem `json:"items"`
	Notes        string          `json:"notes,omitempty"`
}

// Cancellation is a prescriber withdrawing a prescription.
type Cancellation struct {
	V            int        `json:"v"`
	Type         Kind       `json:"type"`
	ID           string     `json:"id"`
	CancelledAt  time.Time  `json:"cancelled_at"`
	Prescription Reference  `json:"prescription"`
	Prescriber   Prescriber `json:"prescriber"`
	Reason       string     `json:"reason"`
}

func (*Prescription) Kind() Kind { return KindPrescription }
func (*Dispense) Kind() Kind     { return KindDispense }
func (*Cancellation) Kind() Kind { return KindCancellation }

// NewID returns a random (version 4) UUID.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func text(s string) string   { return persian.Text(s) }
func digits(s string) string { return strings.TrimSpace(persian.Digits(s)) }
func lower(s string) string  { return strings.ToLower(strings.TrimSpace(s)) }
func upperCode(s string) string {
	return strings.ToUpper(digits(s))
}

// normalizer walks a document's fields once, either putting each in
// normal form or, when checking, noting whether any would change. One walk
// serves both so that what Normalize does and what the verifier demands
// cannot drift apart; the functions return their argument unchanged, without
// allocating, when it is already normal.
type normalizer struct {
	check    bool
	abnormal bool
}

func (n *normalizer) str(s *string, f func(string) string) {
	v := f(*s)
	if !n.check {
		*s = v
	} else if v != *s {
		n.abnormal = true
	}
}

// instant is UTC to the second: what the signed JSON shows as ...Z.
func (n *normalizer) instant(t *time.Time) {
	if !n.check {
		*t = t.UTC().Truncate(time.Second)
	} else if t.Location() != time.UTC || t.Nanosecond() != 0 {
		n.abnormal = true
	}
}

func (p *Prescriber) walk(n *normalizer) {
	n.str(&p.CouncilNumber, digits)
	n.str(&p.Profession, lower)
	n.str(&p.Specialty, lower)
	n.str(&p.Name, text)
}

func (r *Reference) walk(n *normalizer) {
	n.str(&r.ID, lower)
	n.str(&r.JWSSHA256, lower)
}

func (p *Patient) walk(n *normalizer) {
	n.str(&p.NationalID, nationalid.Normalize)
	n.str(&p.Name, text)
	n.str(&p.BirthDate, digits)
	n.str(&p.Sex, lower)
}

func (p *Practice) walk(n *normalizer) {
	n.str(&p.Name, text)
	n.str(&p.ID, digits)
	n.str(&p.Province, upperCode)
}

func (it *Item) walk(n *normalizer) {
	n.str(&it.Kind, lower)
	n.str(&it.Code, digits)
	n.str(&it.Dosage, text)
	n.str(&it.Note, text)
}

func (it *DispensedItem) walk(n *normalizer) {
	n.str(&it.Code, digits)
	n.str(&it.SubstituteFor, digits)
	n.str(&it.Note, text)
}

func (d *Dispenser) walk(n *normalizer) {
	n.str(&d.LicenceNumber, digits)
	n.str(&d.Role, lower)
	n.str(&d.Name, text)
}

func (p *Prescription) walk(n *normalizer) {
	n.str(&p.ID, lower)
	n.instant(&p.IssuedAt)
	p.Patient.walk(n)
	p.Prescriber.walk(n)
	p.Practice.walk(n)
	for i := range p.Diagnoses {
		n.str(&p.Diagnoses[i], upperCode)
	}
	for i := range p.Items {
		p.Items[i].walk(n)
	}
	n.str(&p.Notes, text)
}

func (d *Dispense) walk(n *normalizer) {
	n.str(&d.ID, lower)
	n.instant(&d.DispensedAt)
	d.Prescription.walk(n)
	d.Dispenser.walk(n)
	for i := range d.Items {
		d.Items[i].walk(n)
	}
	n.str(&d.Notes, text)
}

func (c *Cancellation) walk(n *normalizer) {
	n.str(&c.ID, lower)
	n.instant(&c.CancelledAt)
	c.Prescription.walk(n)
	c.Prescriber.walk(n)
	n.str(&c.Reason, text)
}

// Normalize puts the prescription in normal form.
func (p *Prescription) Normalize() { p.walk(&normalizer{}) }

// Normalize puts the dispense record in normal form.
func (d *Dispense) Normalize() { d.walk(&normalizer{}) }

// Normalize puts the cancellation in normal form.
func (c *Cancellation) Normalize() { c.walk(&normalizer{}) }

// normal reports whether doc is in normal form, without changing it.
func normal(doc interface{ walk(*normalizer) }) bool {
	n := normalizer{check: true}
	doc.walk(&n)
	return !n.abnormal
}

func bad(field, format string, args ...any) error {
	return errs.FieldError(errs.InvalidDocument, field, format, args...)
}

// Check validates the prescription beyond its schema.
func (p *Prescription) Check() error {
	if err := p.Patient.check(p.IssuedAt); err != nil {
		return err
	}
	if err := checkDiagnoses(p.Diagnoses); err != nil {
		return err
	}
	return checkItems("items", p.Items)
}

// check validates the patient of a document written at t.
func (p *Patient) check(t time.Time) error {
	if _, err := nationalid.Parse(p.NationalID); err != nil {
		e := err.(*errs.Error)
		return &errs.Error{Code: e.Code, Field: "patient.national_id", Detail: e.Detail}
	}
	birth, err := time.Parse(time.DateOnly, p.BirthDate)
	if err != nil {
		return bad("patient.birth_date", "must be a date YYYY-MM-DD")
	}
	if birth.After(t) || birth.Before(t.AddDate(-130, 0, 0)) {
		return bad("patient.birth_date", "must be a real birth date before the prescription")
	}
	return nil
}

func checkDiagnoses(diagnoses []string) error {
	for i, d := range diagnoses {
		if !reICD10.MatchString(d) {
			return bad(fmt.Sprintf("diagnoses[%d]", i), "%q is not an ICD-10 code", d)
		}
	}
	return nil
}

func checkItems(list string, items []Item) error {
	for i, it := range items {
		if (it.Repeats > 0) != (it.RepeatIntervalDays > 0) {
			return bad(fmt.Sprintf("%s[%d].repeat_interval_days", list, i), "repeats and repeat_interval_days go together")
		}
	}
	return nil
}

// Check validates the dispense record beyond its schema.
func (d *Dispense) Check() error { return checkDispensed("items", d.Items) }

func checkDispensed(list string, items []DispensedItem) error {
	seen := map[string]bool{}
	for i, it := range items {
		if seen[it.Code] {
			return bad(fmt.Sprintf("%s[%d].code", list, i), "code %s appears twice", it.Code)
		}
		seen[it.Code] = true
		if it.SubstituteFor == it.Code {
			return bad(fmt.Sprintf("%s[%d].substitute_for", list, i), "an item cannot substitute for itself")
		}
	}
	return nil
}

// Check validates the cancellation beyond its schema.
func (c *Cancellation) Check() error { return nil }

// Prepare puts an unsigned draft in normal form and checks it exactly as
// the verifier will check the signed document: what the rules service and
// the signer apply before anything is signed.
func Prepare(doc Document) error {
	doc.Normalize()
	return checkDocument(doc)
}

// ValidCode reports whether s is a catalogue code as the format allows it.
func ValidCode(s string) bool { return reCode.MatchString(s) }

// ContainsNull reports whether the valid JSON document b uses the literal null
// anywhere, which the format forbids (the verifier refuses it; so must
// anything that reads a draft).
func ContainsNull(b []byte) bool { return bytes.Contains(b, []byte("null")) && hasNull(b) }
