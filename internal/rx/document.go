// Package rx is the signed-prescription format: version-1 documents
// (prescription, dispense record, cancellation) as JSON, signed as compact
// JWS following the JAdES baseline B-B profile (ETSI TS 119 182-1), and the
// one verifier that rxd, rxctl and offline pharmacies all use.
//
// A document MUST be in normal form before it is signed (Normalize): Persian
// letters unified, digits ASCII, white space collapsed, times UTC to the
// second. The verifier refuses a document that is not, so two signatures
// over the same prescription always carry the same content.
package rx

import (
	"crypto/rand"
	"fmt"
	"regexp"
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
)

// Typ is the JWS typ header of each kind.
func (k Kind) Typ() string { return "nuskha-" + string(k) + "+jws" }

// Version of the documents this package reads and writes.
const Version = 1

// Document is one of the three kinds.
type Document interface {
	Kind() Kind
	// Normalize puts the document in its normal form, in place.
	Normalize()
	// Check validates what JSON Schema cannot (check digits, dates, the
	// relations between fields). Failures are *errs.Error naming the field.
	Check() error
	// clone is a deep copy, to compare a document with its normal form.
	clone() Document
	// rules checks what the kind's JSON Schema says (see rules.go).
	rules() error
}

func (p *Prescription) clone() Document {
	c := *p
	c.Diagnoses = append([]string(nil), p.Diagnoses...)
	c.Items = append([]Item(nil), p.Items...)
	return &c
}

func (d *Dispense) clone() Document {
	c := *d
	c.Items = append([]DispensedItem(nil), d.Items...)
	return &c
}

func (c *Cancellation) clone() Document {
	x := *c
	return &x
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
func code(s string) string   { return strings.TrimSpace(persian.Digits(s)) }
func instant(t time.Time) time.Time {
	return t.UTC().Truncate(time.Second)
}

func (p *Prescriber) normalize() {
	p.CouncilNumber = digits(p.CouncilNumber)
	p.Profession = strings.ToLower(strings.TrimSpace(p.Profession))
	p.Specialty = strings.ToLower(strings.TrimSpace(p.Specialty))
	p.Name = text(p.Name)
}

// Normalize puts the prescription in normal form.
func (p *Prescription) Normalize() {
	p.ID = strings.ToLower(strings.TrimSpace(p.ID))
	p.IssuedAt = instant(p.IssuedAt)
	p.Patient.NationalID = nationalid.Normalize(p.Patient.NationalID)
	p.Patient.Name = text(p.Patient.Name)
	p.Patient.BirthDate = digits(p.Patient.BirthDate)
	p.Patient.Sex = strings.ToLower(strings.TrimSpace(p.Patient.Sex))
	p.Prescriber.normalize()
	p.Practice.Name = text(p.Practice.Name)
	p.Practice.ID = code(p.Practice.ID)
	p.Practice.Province = strings.ToUpper(digits(p.Practice.Province))
	for i, d := range p.Diagnoses {
		p.Diagnoses[i] = strings.ToUpper(code(d))
	}
	for i := range p.Items {
		it := &p.Items[i]
		it.Kind = strings.ToLower(strings.TrimSpace(it.Kind))
		it.Code = code(it.Code)
		it.Dosage = text(it.Dosage)
		it.Note = text(it.Note)
	}
	p.Notes = text(p.Notes)
}

// Normalize puts the dispense record in normal form.
func (d *Dispense) Normalize() {
	d.ID = strings.ToLower(strings.TrimSpace(d.ID))
	d.DispensedAt = instant(d.DispensedAt)
	d.Prescription.ID = strings.ToLower(strings.TrimSpace(d.Prescription.ID))
	d.Prescription.JWSSHA256 = strings.ToLower(strings.TrimSpace(d.Prescription.JWSSHA256))
	d.Dispenser.LicenceNumber = digits(d.Dispenser.LicenceNumber)
	d.Dispenser.Role = strings.ToLower(strings.TrimSpace(d.Dispenser.Role))
	d.Dispenser.Name = text(d.Dispenser.Name)
	for i := range d.Items {
		it := &d.Items[i]
		it.Code, it.SubstituteFor, it.Note = code(it.Code), code(it.SubstituteFor), text(it.Note)
	}
	d.Notes = text(d.Notes)
}

// Normalize puts the cancellation in normal form.
func (c *Cancellation) Normalize() {
	c.ID = strings.ToLower(strings.TrimSpace(c.ID))
	c.CancelledAt = instant(c.CancelledAt)
	c.Prescription.ID = strings.ToLower(strings.TrimSpace(c.Prescription.ID))
	c.Prescription.JWSSHA256 = strings.ToLower(strings.TrimSpace(c.Prescription.JWSSHA256))
	c.Prescriber.normalize()
	c.Reason = text(c.Reason)
}

var reICD10 = regexp.MustCompile(`^[A-TV-Z][0-9][0-9AB](\.[0-9A-TV-Z]{1,4})?$`)

func bad(field, format string, args ...any) error {
	return errs.FieldError(errs.InvalidDocument, field, format, args...)
}

// Check validates the prescription beyond its schema.
func (p *Prescription) Check() error {
	if _, err := nationalid.Parse(p.Patient.NationalID); err != nil {
		e := err.(*errs.Error)
		return &errs.Error{Code: e.Code, Field: "patient.national_id", Detail: e.Detail}
	}
	birth, err := time.Parse(time.DateOnly, p.Patient.BirthDate)
	if err != nil {
		return bad("patient.birth_date", "must be a date YYYY-MM-DD")
	}
	if birth.After(p.IssuedAt) || birth.Before(p.IssuedAt.AddDate(-130, 0, 0)) {
		return bad("patient.birth_date", "must be a real birth date before the prescription")
	}
	for i, d := range p.Diagnoses {
		if !reICD10.MatchString(d) {
			return bad(fmt.Sprintf("diagnoses[%d]", i), "%q is not an ICD-10 code", d)
		}
	}
	for i, it := range p.Items {
		if (it.Repeats > 0) != (it.RepeatIntervalDays > 0) {
			return bad(fmt.Sprintf("items[%d].repeat_interval_days", i), "repeats and repeat_interval_days go together")
		}
	}
	return nil
}

// Check validates the dispense record beyond its schema.
func (d *Dispense) Check() error {
	seen := map[string]bool{}
	for i, it := range d.Items {
		if seen[it.Code] {
			return bad(fmt.Sprintf("items[%d].code", i), "code %s appears twice", it.Code)
		}
		seen[it.Code] = true
		if it.SubstituteFor == it.Code {
			return bad(fmt.Sprintf("items[%d].substitute_for", i), "an item cannot substitute for itself")
		}
	}
	return nil
}

// Check validates the cancellation beyond its schema.
func (c *Cancellation) Check() error { return nil }
