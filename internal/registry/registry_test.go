package registry_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/persian"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

var now = time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)

func TestValidate(t *testing.T) {
	for _, kind := range registry.Kinds {
		t.Run("valid "+string(kind), func(t *testing.T) {
			s := testpki.Subject(kind, "sub_1", now)
			s.Normalize()
			if err := s.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
	for _, tc := range []struct {
		name  string
		kind  registry.Kind
		mod   func(s *registry.Subject)
		field string
		code  errs.Code
	}{
		{"practitioner without national id", pki.RolePractitioner, func(s *registry.Subject) { s.NationalID = "" }, "national_id", errs.InvalidNID},
		{"practitioner with a bad check digit", pki.RolePractitioner, func(s *registry.Subject) { s.NationalID = "0499370898" }, "national_id", errs.InvalidNID},
		{"unknown profession", pki.RolePractitioner, func(s *registry.Subject) { s.Profession = "astrologer" }, "profession", errs.Invalid},
		{"no council number", pki.RolePractitioner, func(s *registry.Subject) { s.CouncilNumber = "" }, "council_number", errs.Invalid},
		{"specialty with spaces", pki.RolePractitioner, func(s *registry.Subject) { s.Specialty = "heart doctor" }, "specialty", errs.Invalid},
		{"empty name", pki.RolePractitioner, func(s *registry.Subject) { s.Name = "" }, "name", errs.Invalid},
		{"licence ends before it starts", pki.RolePractitioner, func(s *registry.Subject) { s.LicenceValidUntil = s.LicenceValidFrom.Add(-time.Hour) }, "licence_valid_until", errs.Invalid},
		{"no licence dates", pki.RolePharmacy, func(s *registry.Subject) { s.LicenceValidFrom = time.Time{} }, "licence_valid_until", errs.Invalid},
		{"pharmacy province out of range", pki.RolePharmacy, func(s *registry.Subject) { s.Province = "IR-31" }, "province", errs.Invalid},
		{"pharmacy without a responsible pharmacist", pki.RolePharmacy, func(s *registry.Subject) { s.ResponsibleName = "" }, "responsible_name", errs.Invalid},
		{"pharmacy with a centre type", pki.RolePharmacy, func(s *registry.Subject) { s.CentreType = registry.Imaging }, "centre_type", errs.Invalid},
		{"paraclinic without centre type", pki.RoleParaclinic, func(s *registry.Subject) { s.CentreType = "" }, "centre_type", errs.Invalid},
		{"vendor with a bad DNS name", pki.RoleVendor, func(s *registry.Subject) { s.DNSNames = []string{"bad_name!"} }, "dns_names", errs.Invalid},
		{"vendor without organisation", pki.RoleVendor, func(s *registry.Subject) { s.Organization = "" }, "organization", errs.Invalid},
		{"unknown kind", "doctor", func(s *registry.Subject) {}, "kind", errs.Invalid},
		{"unknown licence status", pki.RoleOfficer, func(s *registry.Subject) { s.LicenceStatus = "maybe" }, "licence_status", errs.Invalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testpki.Subject(tc.kind, "sub_1", now)
			s.Kind = tc.kind
			tc.mod(s)
			err := s.Validate()
			var e *errs.Error
			if !errors.As(err, &e) || e.Field != tc.field || e.Code != tc.code {
				t.Fatalf("got %v, want %s on field %s", err, tc.code, tc.field)
			}
		})
	}
}

// TestHiddenCharacters: a name that reaches a certificate or an officer's
// screen cannot carry characters that hide or disguise what it says
// (U+202E shows "Ali\u202Eirahk" as another name); the zero-width
// non-joiner, which Persian spelling needs, stays allowed.
func TestHiddenCharacters(t *testing.T) {
	fields := []struct {
		field string
		kind  registry.Kind
		set   func(s *registry.Subject, v string)
	}{
		{"name", pki.RolePractitioner, func(s *registry.Subject, v string) { s.Name = v }},
		{"organization", pki.RoleVendor, func(s *registry.Subject, v string) { s.Organization = v }},
		{"responsible_name", pki.RolePharmacy, func(s *registry.Subject, v string) { s.ResponsibleName = v }},
	}
	for _, tc := range []struct {
		name, value string
		refused     bool
	}{
		{"right-to-left override", "Dr Ali\u202Eirahk", true},
		{"left-to-right isolate", "\u2066سارا احمدی\u2069", true},
		{"right-to-left mark", "سارا\u200F احمدی", true},
		{"byte-order mark", "\uFEFFسارا احمدی", true},
		{"soft hyphen", "Ahma\u00ADdi", true},
		{"zero-width joiner", "سارا\u200Dاحمدی", true},
		{"control character", "Ahmadi\x1b[2J", true},
		{"replacement character", "Ahmadi \uFFFD", true},
		{"zero-width non-joiner", "می\u200Cخواهم", false},
		{"Persian name with ZWNJ", "دکتر زهرا محمدی\u200Cنیا", false},
	} {
		for _, f := range fields {
			t.Run(tc.name+" in "+f.field, func(t *testing.T) {
				s := testpki.Subject(f.kind, "sub_1", now)
				f.set(s, tc.value)
				s.Normalize()
				err := s.Validate()
				if !tc.refused {
					if err != nil {
						t.Fatal(err)
					}
					return
				}
				var e *errs.Error
				if !errors.As(err, &e) || e.Field != f.field || e.Code != errs.Invalid {
					t.Fatalf("got %v, want %s on field %s", err, errs.Invalid, f.field)
				}
			})
		}
	}
}

func TestNormalize(t *testing.T) {
	s := testpki.Subject(pki.RolePractitioner, "sub_1", now)
	s.Name = "  دكتر  علي   "
	s.NationalID = "۰۴۹۹۳۷۰۸۹۹"
	s.CouncilNumber = " ۱۲۳۴۵ "
	s.Specialty = " Cardiology "
	s.Normalize()
	if s.Name != "دکتر علی" || s.NationalID != "0499370899" || s.CouncilNumber != "12345" || s.Specialty != "cardiology" {
		t.Fatalf("normalised to %q %q %q %q", s.Name, s.NationalID, s.CouncilNumber, s.Specialty)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestCanBeCertified(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(s *registry.Subject)
		code errs.Code
	}{
		{"active and in date", func(s *registry.Subject) {}, ""},
		{"expired", func(s *registry.Subject) { s.LicenceValidUntil = now.Add(-time.Second) }, errs.LicenceExpired},
		{"expires exactly now", func(s *registry.Subject) { s.LicenceValidUntil = now }, errs.LicenceExpired},
		{"not yet valid", func(s *registry.Subject) { s.LicenceValidFrom = now.Add(time.Hour) }, errs.LicenceNotYetValid},
		{"suspended", func(s *registry.Subject) { s.LicenceStatus = registry.Suspended }, errs.LicenceSuspended},
		{"revoked", func(s *registry.Subject) { s.LicenceStatus = registry.Revoked }, errs.LicenceSuspended},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testpki.Subject(pki.RolePractitioner, "sub_1", now)
			tc.mod(s)
			err := s.CanBeCertified(now)
			if tc.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, errs.Of(tc.code)) {
				t.Fatalf("got %v, want %s", err, tc.code)
			}
		})
	}
}

func TestIdentityHasNoNationalID(t *testing.T) {
	s := testpki.Subject(pki.RolePractitioner, "sub_1", now)
	id := s.Identity()
	if id.RegistrationNumber != s.CouncilNumber || id.Role != pki.RolePractitioner || id.Profession != "physician" {
		t.Fatalf("identity %+v", id)
	}
	der, _ := id.Marshal()
	if bytes.Contains(der, []byte(s.NationalID)) {
		t.Fatal("national id in the identity extension")
	}
}

// A licence runs over whole days in Iran: valid from 00:00 Tehran time on
// the first day until 24:00 on the last, shown as those days.
func TestLicencePeriod(t *testing.T) {
	first := time.Date(2024, 3, 20, 0, 0, 0, 0, time.UTC) // 1403-01-01
	last := time.Date(2025, 3, 20, 0, 0, 0, 0, time.UTC)  // 1403-12-30
	s := testpki.Subject(pki.RolePractitioner, "sub_1", now)
	s.LicenceValidFrom, s.LicenceValidUntil = registry.LicencePeriod(first, last)
	tehran := persian.Tehran
	for _, tc := range []struct {
		name string
		at   time.Time
		code errs.Code
	}{
		{"the evening before, in Tehran", time.Date(2024, 3, 19, 23, 59, 0, 0, tehran), errs.LicenceNotYetValid},
		{"the first minute of the first day", time.Date(2024, 3, 20, 0, 0, 0, 0, tehran), ""},
		{"the last minute of the last day", time.Date(2025, 3, 20, 23, 59, 59, 0, tehran), ""},
		{"the next day in Tehran, still the last day in UTC", time.Date(2025, 3, 21, 0, 0, 0, 0, tehran), errs.LicenceExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.CanBeCertified(tc.at)
			if (tc.code == "" && err != nil) || (tc.code != "" && errs.CodeOf(err) != tc.code) {
				t.Fatalf("got %v, want %q", err, tc.code)
			}
		})
	}
	err := s.CanBeCertified(last.AddDate(0, 1, 0))
	if e := new(errs.Error); !errors.As(err, &e) || e.Detail != "the subject's licence was valid through 2025-03-20 (1403-12-30)" {
		t.Fatalf("expiry message: %v", err)
	}
	// As the API writes it (problem.JSON): HTML escaping off, which
	// MarshalJSON must honour too.
	s.Organization = "Ahmadi & Sons <Pharma>"
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	for _, want := range []string{`"organization":"Ahmadi & Sons <Pharma>"`, `"licence_valid_from":"2024-03-20"`, `"licence_valid_from_hijri":"1403-01-01"`,
		`"licence_valid_until":"2025-03-20"`, `"licence_valid_until_hijri":"1403-12-30"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("JSON lacks %s: %s", want, b)
		}
	}
}

// TestRegistryAcceptsWhatIssuanceAccepts: the registry refuses, at
// registration, every subject that issuance would refuse at approval —
// otherwise an enrolment is approved and no certificate comes of it. For each
// kind, the longest subject accepted issues, under every profile of its kind,
// a certificate that lints clean; a field one character longer is refused
// by the registry, naming the limit, and (where it reaches the certificate)
// by the linter. So are other things the linter refuses.
func TestRegistryAcceptsWhatIssuanceAccepts(t *testing.T) {
	issuedAt := time.Now()
	p := testpki.New(t, nil, func() time.Time { return issuedAt })
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	profilesOf := func(kind registry.Kind) []string {
		var out []string
		for _, name := range p.Profiles.Names() {
			prof, _ := p.Profiles.Get(name)
			if slices.Contains(prof.SubjectKinds, kind) {
				out = append(out, name)
			}
		}
		if len(out) == 0 {
			t.Fatalf("no profile for %s", kind)
		}
		return out
	}
	issue := func(profileName string, s *registry.Subject) (*x509.Certificate, error) {
		prof, _ := p.Profiles.Get(profileName)
		return p.TryIssue(t, profileName, s, key, issuedAt.Add(-time.Minute), issuedAt.Add(prof.Validity))
	}
	// Names of exactly n characters, as zlint counts them (code points,
	// the ZWNJ among them), that normalisation leaves as they are.
	persianName := func(n int) string {
		r := []rune(strings.Repeat("زهرا محمدی\u200cنیا ", n))[:n]
		r[0], r[n-1] = 'د', 'ا'
		return string(r)
	}
	latinName := func(n int) string { return "A" + strings.Repeat("b&c (d) e-f. ", n)[:n-2] + "Z" }
	longestDNS := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61)
	code := func(n int) string { return "A" + strings.Repeat("7/-", n)[:n-2] + "9" }

	longest := func(kind registry.Kind) *registry.Subject {
		s := testpki.Subject(kind, "sub_"+string(kind), issuedAt)
		s.Name, s.Organization = persianName(64), latinName(64)
		switch kind {
		case pki.RolePractitioner:
			s.CouncilNumber, s.Profession, s.Specialty = code(32), registry.Physician, "a"+strings.Repeat("b._-", 8)[:31]
		case pki.RolePharmacy, pki.RoleParaclinic:
			s.LicenceNumber, s.ResponsibleCouncilNumber, s.Province = code(32), code(32), "IR-17" // the longest province name
			s.ResponsibleName = persianName(128)
		case pki.RoleVendor, pki.RoleService:
			s.DNSNames = []string{longestDNS, "xn--mgba3a4f16a.example", "127.0.0.1", "::1"}
		}
		return s
	}
	for _, kind := range registry.Kinds {
		t.Run("longest "+string(kind), func(t *testing.T) {
			s := longest(kind)
			s.Normalize()
			if n := len([]rune(s.Name)); n != 64 {
				t.Fatalf("the test's name has %d characters after normalisation", n)
			}
			if err := s.Validate(); err != nil {
				t.Fatal(err)
			}
			for _, name := range profilesOf(kind) {
				cert, err := issue(name, s)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				findings, err := p.Linter.Certificate(cert.Raw)
				if err != nil || len(findings) > 0 || cert.Subject.CommonName != s.Name {
					t.Fatalf("%s: findings %v, %v; common name %q", name, findings, err, cert.Subject.CommonName)
				}
			}
		})
	}

	for _, tc := range []struct {
		name  string
		kinds []registry.Kind
		mod   func(s *registry.Subject)
		field string
		limit string // in the registry's message
		// lint: issuance would refuse the subject too (under at least one
		// profile of the kind); false where the field is not in certificates.
		lint bool
	}{
		{"name of 65 characters", registry.Kinds, func(s *registry.Subject) { s.Name = persianName(65) }, "name", "64", true},
		{"Latin name of 65 characters", registry.Kinds, func(s *registry.Subject) { s.Name = latinName(65) }, "name", "64", true},
		{"organization of 65 characters", []registry.Kind{pki.RoleVendor, pki.RoleService, pki.RoleOfficer}, func(s *registry.Subject) { s.Organization = latinName(65) }, "organization", "64", true},
		{"organization of 65 characters, not in the certificate", []registry.Kind{pki.RolePractitioner}, func(s *registry.Subject) { s.Organization = latinName(65) }, "organization", "64", false},
		{"responsible name of 129 characters", []registry.Kind{pki.RolePharmacy, pki.RoleParaclinic}, func(s *registry.Subject) { s.ResponsibleName = persianName(129) }, "responsible_name", "128", false},
		{"DNS name of 254 characters", []registry.Kind{pki.RoleVendor, pki.RoleService}, func(s *registry.Subject) { s.DNSNames[0] += "e" }, "dns_names", "", true},
		{"council number of 33 characters", []registry.Kind{pki.RolePractitioner}, func(s *registry.Subject) { s.CouncilNumber = code(33) }, "council_number", "32", false},
		{"UTF-8 read as Latin-1 in the name", []registry.Kind{pki.RoleVendor}, func(s *registry.Subject) { s.Name = "JosÃ© Health" }, "name", "", true},
		{"UTF-8 read as Latin-1 in the organization", []registry.Kind{pki.RoleService}, func(s *registry.Subject) { s.Organization = "MÃ¼ller GmbH" }, "organization", "", true},
		{"malformed IDN label", []registry.Kind{pki.RoleVendor}, func(s *registry.Subject) { s.DNSNames = []string{"xn--zz.example"} }, "dns_names", "", true},
	} {
		for _, kind := range tc.kinds {
			t.Run(tc.name+" for "+string(kind), func(t *testing.T) {
				s := longest(kind)
				tc.mod(s)
				s.Normalize()
				err := s.Validate()
				var e *errs.Error
				if !errors.As(err, &e) || e.Field != tc.field || e.Code != errs.Invalid || !strings.Contains(e.Detail, tc.limit) {
					t.Fatalf("registration: got %v, want %s on field %s naming %q", err, errs.Invalid, tc.field, tc.limit)
				}
				if !tc.lint {
					return
				}
				var refusals []string
				for _, name := range profilesOf(kind) {
					if _, err := issue(name, s); errs.CodeOf(err) == errs.LintFailed {
						refusals = append(refusals, name+": "+err.Error())
					}
				}
				if len(refusals) == 0 {
					t.Fatal("issuance accepts what the registry refuses: the limit is stricter than the certificate's")
				}
				t.Log(refusals)
			})
		}
	}
}
