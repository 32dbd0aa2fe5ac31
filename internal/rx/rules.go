package rx

import (
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/nuskha/nuskha/internal/persian"
)

// The JSON Schemas in schema/ are the published contract. The verifier
// checks the same constraints here, in compiled code, because a generic
// schema validator cost a signature check's worth of time per document;
// TestRulesAgreeWithSchema and FuzzRulesAgreeWithSchema hold the two to
// each other (whatever these rules accept, the schema accepts).

var (
	professions = []string{"physician", "dentist", "midwife"}
	itemKinds   = []string{"drug", "lab", "imaging", "procedure"}
	sexes       = []string{"female", "male"}
	roles       = []string{"pharmacy", "paraclinic"}
)

// rules collects the first failure. Inside a list (items, diagnoses) the
// field names are relative and the full name ("items[3].code") is built
// only on failure: formatting it for every field of every item was a
// measurable part of verification.
type rules struct {
	err   error
	list  string // set while checking one element of a list
	index int
}

func (r *rules) in(list string, i int) { r.list, r.index = list, i }

func (r *rules) fail(field, format string, args ...any) {
	if r.err != nil {
		return
	}
	if r.list != "" {
		if field == "" {
			field = fmt.Sprintf("%s[%d]", r.list, r.index)
		} else {
			field = fmt.Sprintf("%s[%d].%s", r.list, r.index, field)
		}
	}
	r.err = bad(field, format, args...)
}

func (r *rules) match(field, v string, re pattern) {
	if !re.MatchString(v) {
		r.fail(field, "%q does not match %s", v, re)
	}
}

func (r *rules) optMatch(field, v string, re pattern) {
	if v != "" {
		r.match(field, v, re)
	}
}

func (r *rules) oneOf(field, v string, allowed []string) {
	if !slices.Contains(allowed, v) {
		r.fail(field, "must be one of %v", allowed)
	}
}

// length counts characters (code points), as JSON Schema does.
func (r *rules) length(field, v string, min, max int) {
	if n := utf8.RuneCountInString(v); n < min || n > max {
		r.fail(field, "must be %d to %d characters", min, max)
	}
}

// name is a person's or an organisation's name, shown to pharmacists,
// insurers and patients: nothing in it may hide or disguise what it says
// (the schema's name pattern; the registry refuses the same runes).
func (r *rules) name(field, v string, min int) {
	r.length(field, v, min, 128)
	if c, found := persian.HiddenRune(v); found {
		r.fail(field, "must not contain %U: control, format (such as bidirectional overrides) and private-use characters can disguise a name; only the zero-width non-joiner is allowed", c)
	}
}

func (r *rules) between(field string, v, min, max int) {
	if v < min || v > max {
		r.fail(field, "must be from %d to %d", min, max)
	}
}

func (r *rules) header(v int, typ, want Kind, id string) {
	if v != Version {
		r.fail("v", "must be %d", Version)
	}
	if typ != want {
		r.fail("type", "must be %q", want)
	}
	r.match("id", id, reUUID)
}

func (r *rules) prescriber(p Prescriber) {
	r.match("prescriber.council_number", p.CouncilNumber, reCode)
	r.oneOf("prescriber.profession", p.Profession, professions)
	r.match("prescriber.specialty", p.Specialty, reSpecialty)
	r.name("prescriber.name", p.Name, 0)
}

func (r *rules) reference(p Reference) {
	r.match("prescription.id", p.ID, reUUID)
	r.match("prescription.jws_sha256", p.JWSSHA256, reSHA256)
}

func (p *Prescription) rules() error {
	var r rules
	r.header(p.V, p.Type, KindPrescription, p.ID)
	if p.IssuedAt.IsZero() {
		r.fail("issued_at", "required")
	}
	r.match("patient.national_id", p.Patient.NationalID, reNID)
	r.name("patient.name", p.Patient.Name, 1)
	r.match("patient.birth_date", p.Patient.BirthDate, reDate)
	r.oneOf("patient.sex", p.Patient.Sex, sexes)
	r.prescriber(p.Prescriber)
	r.name("practice.name", p.Practice.Name, 1)
	r.optMatch("practice.id", p.Practice.ID, reCode)
	r.optMatch("practice.province", p.Practice.Province, reProvince)
	if len(p.Diagnoses) > 20 {
		r.fail("diagnoses", "at most 20")
	}
	for i, d := range p.Diagnoses {
		r.in("diagnoses", i)
		r.match("", d, reICD10)
		if slices.Contains(p.Diagnoses[:i], d) {
			r.fail("", "%s appears twice", d)
		}
	}
	r.in("", 0)
	if len(p.Items) < 1 || len(p.Items) > 50 {
		r.fail("items", "must have 1 to 50 items")
	}
	for i, it := range p.Items {
		r.in("items", i)
		r.oneOf("kind", it.Kind, itemKinds)
		r.match("code", it.Code, reCode)
		r.between("quantity", it.Quantity, 1, 10000)
		r.length("dosage", it.Dosage, 0, 1000)
		r.between("repeats", it.Repeats, 0, 12)
		r.between("repeat_interval_days", it.RepeatIntervalDays, 0, 365)
		r.length("note", it.Note, 0, 1000)
	}
	r.in("", 0)
	r.length("notes", p.Notes, 0, 1000)
	return r.err
}

func (d *Dispense) rules() error {
	var r rules
	r.header(d.V, d.Type, KindDispense, d.ID)
	if d.DispensedAt.IsZero() {
		r.fail("dispensed_at", "required")
	}
	r.reference(d.Prescription)
	r.match("dispenser.licence_number", d.Dispenser.LicenceNumber, reCode)
	r.oneOf("dispenser.role", d.Dispenser.Role, roles)
	r.name("dispenser.name", d.Dispenser.Name, 0)
	if len(d.Items) < 1 || len(d.Items) > 50 {
		r.fail("items", "must have 1 to 50 items")
	}
	for i, it := range d.Items {
		r.in("items", i)
		r.match("code", it.Code, reCode)
		r.between("quantity", it.Quantity, 1, 10000)
		r.optMatch("substitute_for", it.SubstituteFor, reCode)
		r.length("note", it.Note, 0, 1000)
	}
	r.in("", 0)
	r.length("notes", d.Notes, 0, 1000)
	return r.err
}

func (c *Cancellation) rules() error {
	var r rules
	r.header(c.V, c.Type, KindCancellation, c.ID)
	if c.CancelledAt.IsZero() {
		r.fail("cancelled_at", "required")
	}
	r.reference(c.Prescription)
	r.prescriber(c.Prescriber)
	r.length("reason", c.Reason, 1, 500)
	return r.err
}
