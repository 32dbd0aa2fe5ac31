package rx

import (
	"fmt"
	"regexp"
	"slices"
	"unicode/utf8"
)

// The JSON Schemas in schema/ are the published contract. The verifier
// checks the same constraints here, in compiled code, because a generic
// schema validator cost a signature check's worth of time per document;
// TestRulesAgreeWithSchema and FuzzRulesAgreeWithSchema hold the two to
// each other (whatever these rules accept, the schema accepts).

var (
	reUUID      = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	reCode      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,31}$`)
	reSpecialty = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,31}$`)
	reNID       = regexp.MustCompile(`^[0-9]{10}$`)
	reDate      = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
	reProvince  = regexp.MustCompile(`^IR-(0[0-9]|[12][0-9]|30)$`)
	reSHA256    = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

var (
	professions = []string{"physician", "dentist", "midwife"}
	itemKinds   = []string{"drug", "lab", "imaging", "procedure"}
	sexes       = []string{"female", "male"}
	roles       = []string{"pharmacy", "paraclinic"}
)

type rules struct{ err error }

func (r *rules) fail(field, format string, args ...any) {
	if r.err == nil {
		r.err = bad(field, format, args...)
	}
}

func (r *rules) match(field, v string, re *regexp.Regexp) {
	if !re.MatchString(v) {
		r.fail(field, "%q does not match %s", v, re)
	}
}

func (r *rules) optMatch(field, v string, re *regexp.Regexp) {
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

func (r *rules) prescriber(prefix string, p Prescriber) {
	r.match(prefix+".council_number", p.CouncilNumber, reCode)
	r.oneOf(prefix+".profession", p.Profession, professions)
	r.match(prefix+".specialty", p.Specialty, reSpecialty)
	r.length(prefix+".name", p.Name, 0, 128)
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
	r.length("patient.name", p.Patient.Name, 1, 128)
	r.match("patient.birth_date", p.Patient.BirthDate, reDate)
	r.oneOf("patient.sex", p.Patient.Sex, sexes)
	r.prescriber("prescriber", p.Prescriber)
	r.length("practice.name", p.Practice.Name, 1, 128)
	r.optMatch("practice.id", p.Practice.ID, reCode)
	r.optMatch("practice.province", p.Practice.Province, reProvince)
	if len(p.Diagnoses) > 20 {
		r.fail("diagnoses", "at most 20")
	}
	for i, d := range p.Diagnoses {
		r.match(fmt.Sprintf("diagnoses[%d]", i), d, reICD10)
		if slices.Contains(p.Diagnoses[:i], d) {
			r.fail(fmt.Sprintf("diagnoses[%d]", i), "%s appears twice", d)
		}
	}
	if len(p.Items) < 1 || len(p.Items) > 50 {
		r.fail("items", "must have 1 to 50 items")
	}
	for i, it := range p.Items {
		f := fmt.Sprintf("items[%d]", i)
		r.oneOf(f+".kind", it.Kind, itemKinds)
		r.match(f+".code", it.Code, reCode)
		r.between(f+".quantity", it.Quantity, 1, 10000)
		r.length(f+".dosage", it.Dosage, 0, 1000)
		r.between(f+".repeats", it.Repeats, 0, 12)
		r.between(f+".repeat_interval_days", it.RepeatIntervalDays, 0, 365)
		r.length(f+".note", it.Note, 0, 1000)
	}
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
	r.length("dispenser.name", d.Dispenser.Name, 0, 128)
	if len(d.Items) < 1 || len(d.Items) > 50 {
		r.fail("items", "must have 1 to 50 items")
	}
	for i, it := range d.Items {
		f := fmt.Sprintf("items[%d]", i)
		r.match(f+".code", it.Code, reCode)
		r.between(f+".quantity", it.Quantity, 1, 10000)
		r.optMatch(f+".substitute_for", it.SubstituteFor, reCode)
		r.length(f+".note", it.Note, 0, 1000)
	}
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
	r.prescriber("prescriber", c.Prescriber)
	r.length("reason", c.Reason, 1, 500)
	return r.err
}
