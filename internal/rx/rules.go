package rx

import (
	"fmt"
	"slices"
	"time"
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
	pharmacy    = []string{"pharmacy"}
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

// text is free text a person wrote for another to read (a dosage, a
// note, a reason): any letters and marks, but no control character. Normal
// form has already turned the white-space ones (tab, line feeds) into
// spaces; the rest (NUL, escape, the C1 controls) are in no text anyone
// writes, and readers part ways on them: C strings end at a NUL, and
// PostgreSQL's jsonb refuses \u0000 outright, so a pharmacy's software
// would show or store less than was signed, or fail on it; an escape
// sequence redraws the terminal that prints it.
//
// Bidirectional controls are checked too (bidi). Persian text mixed with
// Latin drug names and digits needs the marks, the isolates and, from
// older software, the embeddings — but an override shows its text
// reversed ("20 tablets" read as "stelbat 02"), and an embedding or
// isolate left open runs on into whatever a screen shows after the field
// (the "Trojan Source" attack, CVE-2021-42574).
func (r *rules) text(field, v string, min, max int) {
	r.length(field, v, min, max)
	for _, c := range v {
		if c < 0x20 || 0x7f <= c && c <= 0x9f { // Unicode's Cc, the schemas' \p{Cc}
			r.fail(field, "must not contain %U: control characters are not text", c)
			return
		}
	}
	if msg := bidi(v); msg != "" {
		r.fail(field, "%s", msg)
	}
}

// bidi is what is wrong with the bidirectional controls of v, or "":
// no override (U+202D, U+202E) at all, and every embedding (U+202A,
// U+202B, closed by U+202C) and isolate (U+2066 to U+2068, closed by
// U+2069) closed within v, innermost first, none closed that was not
// opened. Marks (U+200E, U+200F, U+061C) change no direction beyond
// themselves and are always allowed.
func bidi(v string) string {
	var open []rune // 'e' an embedding, 'i' an isolate
	for _, c := range v {
		switch c {
		case '\u202D', '\u202E':
			return fmt.Sprintf("must not contain %U: a bidirectional override shows the text it covers reversed", c)
		case '\u202A', '\u202B':
			open = append(open, 'e')
		case '\u2066', '\u2067', '\u2068':
			open = append(open, 'i')
		case '\u202C', '\u2069':
			want := 'e'
			if c == '\u2069' {
				want = 'i'
			}
			if len(open) == 0 || open[len(open)-1] != want {
				return fmt.Sprintf("%U closes no embedding or isolate opened before it, innermost first", c)
			}
			open = open[:len(open)-1]
		}
	}
	if len(open) > 0 {
		return "a bidirectional embedding or isolate is left open: it would change the direction of the text shown after this field"
	}
	return ""
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

func (r *rules) patient(p Patient) {
	r.match("patient.national_id", p.NationalID, reNID)
	r.name("patient.name", p.Name, 1)
	r.match("patient.birth_date", p.BirthDate, reDate)
	r.oneOf("patient.sex", p.Sex, sexes)
}

func (r *rules) practice(p Practice) {
	r.name("practice.name", p.Name, 1)
	r.optMatch("practice.id", p.ID, reCode)
	r.optMatch("practice.province", p.Province, reProvince)
}

func (r *rules) diagnoses(diagnoses []string) {
	if len(diagnoses) > 20 {
		r.fail("diagnoses", "at most 20")
	}
	for i, d := range diagnoses {
		r.in("diagnoses", i)
		r.match("", d, reICD10)
		if slices.Contains(diagnoses[:i], d) {
			r.fail("", "%s appears twice", d)
		}
	}
	r.in("", 0)
}

// items are a prescription's, or a paper's as written.
func (r *rules) items(items []Item) {
	if len(items) < 1 || len(items) > 50 {
		r.fail("items", "must have 1 to 50 items")
	}
	for i, it := range items {
		r.in("items", i)
		r.oneOf("kind", it.Kind, itemKinds)
		r.match("code", it.Code, reCode)
		r.between("quantity", it.Quantity, 1, 10000)
		r.text("dosage", it.Dosage, 0, 1000)
		r.between("repeats", it.Repeats, 0, 12)
		r.between("repeat_interval_days", it.RepeatIntervalDays, 0, 365)
		r.text("note", it.Note, 0, 1000)
	}
	r.in("", 0)
}

// dispensed are a dispense record's items, or a paper's dispensed.
func (r *rules) dispensed(list string, items []DispensedItem) {
	if len(items) < 1 || len(items) > 50 {
		r.fail(list, "must have 1 to 50 items")
	}
	for i, it := range items {
		r.in(list, i)
		r.match("code", it.Code, reCode)
		r.between("quantity", it.Quantity, 1, 10000)
		r.optMatch("substitute_for", it.SubstituteFor, reCode)
		r.text("note", it.Note, 0, 1000)
	}
	r.in("", 0)
}

func (r *rules) dispenser(d Dispenser, allowed []string) {
	r.match("dispenser.licence_number", d.LicenceNumber, reCode)
	r.oneOf("dispenser.role", d.Role, allowed)
	r.name("dispenser.name", d.Name, 0)
}

func (r *rules) required(field string, t time.Time) {
	if t.IsZero() {
		r.fail(field, "required")
	}
}

func (p *Prescription) rules() error {
	var r rules
	r.header(p.V, p.Type, KindPrescription, p.ID)
	r.required("issued_at", p.IssuedAt)
	r.patient(p.Patient)
	r.prescriber(p.Prescriber)
	r.practice(p.Practice)
	r.diagnoses(p.Diagnoses)
	r.items(p.Items)
	r.text("notes", p.Notes, 0, 1000)
	return r.err
}

func (d *Dispense) rules() error {
	var r rules
	r.header(d.V, d.Type, KindDispense, d.ID)
	r.required("dispensed_at", d.DispensedAt)
	r.reference(d.Prescription)
	r.dispenser(d.Dispenser, roles)
	r.dispensed("items", d.Items)
	r.text("notes", d.Notes, 0, 1000)
	return r.err
}

func (c *Cancellation) rules() error {
	var r rules
	r.header(c.V, c.Type, KindCancellation, c.ID)
	r.required("cancelled_at", c.CancelledAt)
	r.reference(c.Prescription)
	r.prescriber(c.Prescriber)
	r.text("reason", c.Reason, 1, 500)
	return r.err
}

func (s *Session) rules() error {
	var r rules
	r.header(s.V, s.Type, KindSession, s.ID)
	if s.Aud != SessionAudience {
		r.fail("aud", "must be %q", SessionAudience)
	}
	r.required("issued_at", s.IssuedAt)
	r.match("vendor", s.Vendor, reThumbprint)
	return r.err
}

func (p *Paper) rules() error {
	var r rules
	r.header(p.V, p.Type, KindPaper, p.ID)
	r.required("entered_at", p.EnteredAt)
	r.prescriber(p.Prescriber)
	r.patient(p.Patient)
	if p.Practice != nil {
		r.practice(*p.Practice)
	}
	r.diagnoses(p.Diagnoses)
	r.items(p.Items)
	r.dispensed("dispensed", p.Dispensed)
	r.dispenser(p.Dispenser, pharmacy)
	return r.err
}

func (a *Ack) rules() error {
	var r rules
	r.header(a.V, a.Type, KindAck, a.ID)
	r.reference(a.Prescription)
	r.match("tracking_code", a.TrackingCode, reTrackingCode)
	r.required("accepted_at", a.AcceptedAt)
	return r.err
}

func (rc *Receipt) rules() error {
	var r rules
	r.header(rc.V, rc.Type, KindReceipt, rc.ID)
	r.match("tracking_code", rc.TrackingCode, reTrackingCode)
	r.reference(rc.Prescription)
	if len(rc.Dispenses) < 1 || len(rc.Dispenses) > 50 {
		r.fail("dispenses", "must list 1 to 50 dispenses")
	}
	for i, d := range rc.Dispenses {
		r.in("dispenses", i)
		r.match("id", d.ID, reUUID)
		r.match("jws_sha256", d.JWSSHA256, reSHA256)
	}
	r.in("", 0)
	for _, a := range []struct {
		field string
		v     int64
	}{{"amounts.total", rc.Amounts.Total}, {"amounts.insurer", rc.Amounts.Insurer},
		{"amounts.supplementary", rc.Amounts.Supplementary}, {"amounts.patient", rc.Amounts.Patient}} {
		if a.v < 0 || a.v > MaxAmount {
			r.fail(a.field, "must be from 0 to %d rials", int64(MaxAmount))
		}
	}
	r.dispenser(rc.Dispenser, roles)
	r.required("closed_at", rc.ClosedAt)
	return r.err
}
