// Package registry is the identity registry that certificates are issued
// against: practitioners, pharmacies, paraclinic centres, vendor systems, our
// own services and the security officers who run trustd. A certificate
// carries a subject's registry identity; issuance is allowed only while the
// subject's licence is valid and active.
package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/nationalid"
	"github.com/nuskha/nuskha/internal/persian"
	"github.com/nuskha/nuskha/internal/pki"
)

// Kind is what a subject is; it is the role its certificates carry.
type Kind = pki.Role

// Profession of a practitioner: who may prescribe.
type Profession string

// Professions that prescribe.
const (
	Physician Profession = "physician"
	Dentist   Profession = "dentist"
	Midwife   Profession = "midwife"
)

var professions = []Profession{Physician, Dentist, Midwife}

// CentreType of a paraclinic centre.
type CentreType string

// Centre types.
const (
	Laboratory    CentreType = "laboratory"
	Imaging       CentreType = "imaging"
	Physiotherapy CentreType = "physiotherapy"
)

var centreTypes = []CentreType{Laboratory, Imaging, Physiotherapy}

// LicenceStatus is the registry's say on whether a licence is in force.
type LicenceStatus string

// Licence statuses. Only Active licences allow issuance.
const (
	Active    LicenceStatus = "active"
	Suspended LicenceStatus = "suspended"
	Revoked   LicenceStatus = "revoked"
)

// Subject is one registered person, organisation or system.
type Subject struct {
	ID   string `json:"id"`
	Kind Kind   `json:"kind"`
	// Name is the person's or organisation's name as it will appear in the
	// certificate; Persian is normalised (see package persian).
	Name string `json:"name"`
	// NationalID is held for practitioners and officers. It is never put in
	// a certificate, a log line or an audit record.
	NationalID string `json:"national_id,omitempty"`
	// CouncilNumber is the medical-council (نظام پزشکی) registration number.
	CouncilNumber string     `json:"council_number,omitempty"`
	Profession    Profession `json:"profession,omitempty"`
	Specialty     string     `json:"specialty,omitempty"`
	// LicenceNumber is the operating licence (پروانه) of a pharmacy or centre.
	LicenceNumber string     `json:"licence_number,omitempty"`
	CentreType    CentreType `json:"centre_type,omitempty"`
	Province      string     `json:"province,omitempty"`
	// ResponsibleName and ResponsibleCouncilNumber identify the pharmacy's
	// responsible pharmacist (مسئول فنی) or the centre's technical director.
	ResponsibleName          string `json:"responsible_name,omitempty"`
	ResponsibleCouncilNumber string `json:"responsible_council_number,omitempty"`
	// Organization is the company of a vendor system, or the operator of a service.
	Organization string   `json:"organization,omitempty"`
	DNSNames     []string `json:"dns_names,omitempty"`

	// The licence holds from LicenceValidFrom up to, not including,
	// LicenceValidUntil. Licences run over whole days in Iran (see
	// LicencePeriod), and JSON shows them as those days (see MarshalJSON).
	LicenceValidFrom  time.Time     `json:"-"`
	LicenceValidUntil time.Time     `json:"-"`
	LicenceStatus     LicenceStatus `json:"licence_status"`

	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Version increases by one with every change; updates name the version
	// they were based on, so that two officers' edits cannot silently overwrite.
	Version int `json:"version"`
}

// LicencePeriod is the licence period for a licence valid from the start of
// day first through the end of day last, days in Iran as persian.ParseDate
// returns them: what LicenceValidFrom and LicenceValidUntil hold.
func LicencePeriod(first, last time.Time) (from, until time.Time) {
	return persian.DayStart(first), persian.DayStart(last.AddDate(0, 0, 1))
}

// LicenceDays is LicencePeriod's inverse: the first and the last day on
// which the licence holds, in Iran.
func (s *Subject) LicenceDays() (first, last time.Time) {
	return persian.Day(s.LicenceValidFrom), persian.Day(s.LicenceValidUntil.Add(-time.Nanosecond))
}

// MarshalJSON shows the licence period as the days people enter, in both
// calendars: "licence_valid_from": "2024-03-20", "licence_valid_from_hijri":
// "1403-01-01", and the last valid day as licence_valid_until(_hijri).
func (s Subject) MarshalJSON() ([]byte, error) {
	type plain Subject // the same fields, without this method
	v := struct {
		plain
		From       string `json:"licence_valid_from,omitempty"`
		FromHijri  string `json:"licence_valid_from_hijri,omitempty"`
		Until      string `json:"licence_valid_until,omitempty"`
		UntilHijri string `json:"licence_valid_until_hijri,omitempty"`
	}{plain: plain(s)}
	// Outside the calendar's range the period is unset (or corrupt):
	// leave it out rather than show a made-up day.
	if first, last := s.LicenceDays(); persian.InRange(first) && persian.InRange(last) {
		v.From, v.FromHijri = persian.Dates(first)
		v.Until, v.UntilHijri = persian.Dates(last)
	}
	// Not json.Marshal: names such as "Ahmadi & Sons" stay as written
	// (an Encoder does not re-escape what MarshalJSON returns).
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

var (
	reRegNumber = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9/-]{0,31}$`)
	reCode      = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,31}$`)
	reProvince  = regexp.MustCompile(`^IR-(0[0-9]|[12][0-9]|30)$`)
	reDNS       = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)
)

// Normalize puts the subject's free-text fields in canonical form: Persian
// letters and digits unified, white space collapsed, codes lower-cased.
func (s *Subject) Normalize() {
	s.Name = persian.Text(s.Name)
	s.ResponsibleName = persian.Text(s.ResponsibleName)
	s.Organization = persian.Text(s.Organization)
	if s.NationalID != "" {
		s.NationalID = nationalid.Normalize(s.NationalID)
	}
	s.CouncilNumber = strings.TrimSpace(persian.Digits(s.CouncilNumber))
	s.ResponsibleCouncilNumber = strings.TrimSpace(persian.Digits(s.ResponsibleCouncilNumber))
	s.LicenceNumber = strings.TrimSpace(persian.Digits(s.LicenceNumber))
	s.Specialty = strings.ToLower(strings.TrimSpace(s.Specialty))
	s.Province = strings.ToUpper(strings.TrimSpace(persian.Digits(s.Province)))
	for i, d := range s.DNSNames {
		s.DNSNames[i] = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
	}
	if s.LicenceStatus == "" {
		s.LicenceStatus = Active
	}
}

// Validate checks every field for the subject's kind. The first problem is
// returned as an *errs.Error naming the field.
func (s *Subject) Validate() error {
	bad := func(field, format string, args ...any) error {
		return errs.FieldError(errs.Invalid, field, format, args...)
	}
	if !slices.Contains(Kinds, s.Kind) {
		return bad("kind", "must be one of %v", Kinds)
	}
	if s.Name == "" {
		return bad("name", "is required")
	}
	// Free text that reaches a certificate or an officer's screen. The
	// limits are what issuance will require: a name longer than the
	// certificate's field can hold (counted in characters, as the linter
	// counts them) would pass registration and enrolment, and fail only at
	// approval.
	for _, f := range []struct {
		field, value string
		max          int
		inCert       string // the X.520 upper bound the limit comes from
	}{
		{"name", s.Name, MaxName, "ub-common-name"},
		{"organization", s.Organization, MaxOrganization, "ub-organization-name"},
		{"responsible_name", s.ResponsibleName, MaxResponsibleName, ""},
	} {
		if r, found := persian.HiddenRune(f.value); found {
			return bad(f.field, "must not contain %U: control, format (such as bidirectional overrides) and private-use characters can disguise a name; only the zero-width non-joiner is allowed", r)
		}
		if n := utf8.RuneCountInString(f.value); n > f.max {
			if f.inCert != "" {
				return bad(f.field, "has %d characters; a certificate holds at most %d (%s)", n, f.max, f.inCert)
			}
			return bad(f.field, "has %d characters; at most %d are allowed", n, f.max)
		}
		if f.inCert != "" && latin1Mixup(f.value) {
			return bad(f.field, "looks like UTF-8 read as Latin-1 (such as \"Ã©\" for \"é\"); type it again")
		}
	}
	switch s.LicenceStatus {
	case Active, Suspended, Revoked:
	default:
		return bad("licence_status", "must be active, suspended or revoked")
	}
	if s.LicenceValidFrom.IsZero() || s.LicenceValidUntil.IsZero() {
		return bad("licence_valid_until", "licence_valid_from and licence_valid_until are required")
	}
	if !s.LicenceValidUntil.After(s.LicenceValidFrom) {
		return bad("licence_valid_until", "must not be before licence_valid_from")
	}
	needNID := s.Kind == pki.RolePractitioner
	if s.NationalID != "" || needNID {
		if _, err := nationalid.Parse(s.NationalID); err != nil {
			e := err.(*errs.Error)
			e.Field = "national_id"
			return e
		}
	}
	switch s.Kind {
	case pki.RolePractitioner:
		if !reRegNumber.MatchString(s.CouncilNumber) {
			return bad("council_number", "must be 1 to 32 letters, digits, '/' or '-'")
		}
		if !slices.Contains(professions, s.Profession) {
			return bad("profession", "must be one of %v", professions)
		}
		if !reCode.MatchString(s.Specialty) {
			return bad("specialty", "must be a specialty code (lower-case letters, digits, '.', '_', '-')")
		}
	case pki.RolePharmacy, pki.RoleParaclinic:
		if !reRegNumber.MatchString(s.LicenceNumber) {
			return bad("licence_number", "must be 1 to 32 letters, digits, '/' or '-'")
		}
		if !reProvince.MatchString(s.Province) {
			return bad("province", "must be an ISO 3166-2:IR code, IR-00 to IR-30")
		}
		if s.ResponsibleName == "" {
			return bad("responsible_name", "the responsible pharmacist or technical director is required")
		}
		if !reRegNumber.MatchString(s.ResponsibleCouncilNumber) {
			return bad("responsible_council_number", "must be 1 to 32 letters, digits, '/' or '-'")
		}
		if s.Kind == pki.RoleParaclinic && !slices.Contains(centreTypes, s.CentreType) {
			return bad("centre_type", "must be one of %v", centreTypes)
		}
		if s.Kind == pki.RolePharmacy && s.CentreType != "" {
			return bad("centre_type", "is only for paraclinic centres")
		}
	case pki.RoleVendor, pki.RoleService:
		if s.Organization == "" {
			return bad("organization", "is required for vendor systems and services")
		}
		for _, d := range s.DNSNames {
			if net.ParseIP(d) == nil && (!reDNS.MatchString(d) || len(d) > 253) {
				return bad("dns_names", "%q is not a DNS name (at most 253 characters, labels of 1 to 63 letters, digits and '-') or IP address", d)
			}
			if label, ok := badIDN(d); ok {
				return bad("dns_names", "%q: the label %q is not a valid internationalised (xn--) label", d, label)
			}
		}
	}
	return nil
}

// Limits on free text, in characters (Unicode code points). A name and an
// organization go into certificates, whose fields have X.520 upper bounds
// (RFC 5280 Appendix A: ub-common-name and ub-organization-name, 64) that
// the linter enforces before anything is signed.
const (
	MaxName            = 64
	MaxOrganization    = 64
	MaxResponsibleName = 128
)

// cp1252Shown is how Windows-1252 shows the bytes 0x80–0x9F; with
// U+00A0–U+00BF they are what a UTF-8 continuation byte looks like when
// UTF-8 is read as Latin-1.
const cp1252Shown = "€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ"

// latin1Mixup reports text that looks like UTF-8 read as Latin-1: "Ã"
// followed by a continuation byte shown as a character ("Ã©" for "é"). The
// linter refuses it in a certificate's subject (e_utf8_latin1_mixup); this
// is a superset of its list.
func latin1Mixup(s string) bool {
	for i, r := range s {
		if r != 'Ã' {
			continue
		}
		next, _ := utf8.DecodeRuneInString(s[i+utf8.RuneLen(r):])
		if (next >= 0xA0 && next <= 0xBF) || strings.ContainsRune(cp1252Shown, next) {
			return true
		}
	}
	return false
}

// badIDN returns the first xn-- label of the DNS name d that is not a valid
// IDNA label in NFC: the linter refuses one (e_idn_dnsname_malformed_unicode,
// e_idn_dnsname_must_be_nfc). The registration profile is stricter than
// the linter's decoding, never laxer.
func badIDN(d string) (string, bool) {
	for label := range strings.SplitSeq(d, ".") {
		if !strings.HasPrefix(label, "xn--") {
			continue
		}
		if u, err := idna.Registration.ToUnicode(label); err != nil || !norm.NFC.IsNormalString(u) {
			return label, true
		}
	}
	return "", false
}

// Kinds lists every subject kind.
var Kinds = []Kind{pki.RolePractitioner, pki.RolePharmacy, pki.RoleParaclinic, pki.RoleVendor, pki.RoleService, pki.RoleOfficer}

// CanBeCertified says whether a certificate may be issued to the subject at
// now: the licence must be active and in its validity period.
func (s *Subject) CanBeCertified(now time.Time) error {
	switch {
	case s.LicenceStatus == Suspended:
		return errs.New(errs.LicenceSuspended, "the subject's licence is suspended")
	case s.LicenceStatus != Active:
		return errs.New(errs.LicenceSuspended, "the subject's licence is %s", s.LicenceStatus)
	case now.Before(s.LicenceValidFrom):
		first, _ := s.LicenceDays()
		return errs.New(errs.LicenceNotYetValid, "the subject's licence is valid from %s", days(first))
	case !now.Before(s.LicenceValidUntil):
		_, last := s.LicenceDays()
		return errs.New(errs.LicenceExpired, "the subject's licence was valid through %s", days(last))
	}
	return nil
}

// days names a day in both calendars, for messages.
func days(day time.Time) string {
	if !persian.InRange(day) {
		return day.Format(time.DateOnly)
	}
	g, h := persian.Dates(day)
	return fmt.Sprintf("%s (%s)", g, h)
}

// Identity is what certificates of this subject say about it.
func (s *Subject) Identity() pki.Identity {
	id := pki.Identity{Role: s.Kind, SubjectID: s.ID}
	switch s.Kind {
	case pki.RolePractitioner:
		id.RegistrationNumber = s.CouncilNumber
		id.Profession = string(s.Profession)
		id.Specialty = s.Specialty
	case pki.RolePharmacy, pki.RoleParaclinic:
		id.RegistrationNumber = s.LicenceNumber
		id.Specialty = string(s.CentreType)
		id.Province = s.Province
	}
	return id
}

// URI is the subject's identifier in URI SANs: urn:nuskha:subject:<id>.
func (s *Subject) URI() string { return "urn:nuskha:subject:" + s.ID }

// SerialNumberAttr is the X.520 serialNumber attribute: the registration
// scheme and number, in the style of ETSI EN 319 412-1 semantics identifiers.
func (s *Subject) SerialNumberAttr() string {
	switch s.Kind {
	case pki.RolePractitioner:
		return "IRMC-" + s.CouncilNumber
	case pki.RolePharmacy:
		return "IRPH-" + s.LicenceNumber
	case pki.RoleParaclinic:
		return "IRPC-" + s.LicenceNumber
	}
	return ""
}

// Title is the X.520 title of a practitioner: profession and specialty.
func (s *Subject) Title() string {
	if s.Kind != pki.RolePractitioner {
		return ""
	}
	return fmt.Sprintf("%s; %s", s.Profession, s.Specialty)
}

// ProvinceName returns the English name of an ISO 3166-2:IR code.
func ProvinceName(code string) string { return provinces[code] }

var provinces = map[string]string{
	"IR-00": "Markazi", "IR-01": "Gilan", "IR-02": "Mazandaran", "IR-03": "East Azerbaijan",
	"IR-04": "West Azerbaijan", "IR-05": "Kermanshah", "IR-06": "Khuzestan", "IR-07": "Fars",
	"IR-08": "Kerman", "IR-09": "Razavi Khorasan", "IR-10": "Isfahan", "IR-11": "Sistan and Baluchestan",
	"IR-12": "Kurdistan", "IR-13": "Hamadan", "IR-14": "Chaharmahal and Bakhtiari", "IR-15": "Lorestan",
	"IR-16": "Ilam", "IR-17": "Kohgiluyeh and Boyer-Ahmad", "IR-18": "Bushehr", "IR-19": "Zanjan",
	"IR-20": "Semnan", "IR-21": "Yazd", "IR-22": "Hormozgan", "IR-23": "Tehran", "IR-24": "Ardabil",
	"IR-25": "Qom", "IR-26": "Qazvin", "IR-27": "Golestan", "IR-28": "North Khorasan",
	"IR-29": "South Khorasan", "IR-30": "Alborz",
}
