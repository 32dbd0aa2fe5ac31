// Package profile loads certificate profiles (certs/profiles) and checks them
// once, at start, into values that issuance uses as they are.
package profile

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"time"

	"go.step.sm/crypto/x509util"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
)

// KeyType names an accepted subject key: EC-P256, EC-P384, RSA-2048, …
type KeyType string

// Profile is one kind of certificate.
type Profile struct {
	Name         string
	Description  string
	Template     string // x509util template text
	SubjectKinds []pki.Role
	Validity     time.Duration
	KeyTypes     []KeyType
	DualControl  bool
}

// AllowsKind reports whether subjects of kind k may hold this profile.
func (p *Profile) AllowsKind(k pki.Role) bool { return slices.Contains(p.SubjectKinds, k) }

// AllowsKey reports whether the profile accepts the key type.
func (p *Profile) AllowsKey(t KeyType) bool { return slices.Contains(p.KeyTypes, t) }

// CATemplate is a root or intermediate template and its validity.
type CATemplate struct {
	Template string
	Validity time.Duration
}

// Set is every profile, keyed by name.
type Set struct {
	profiles     map[string]*Profile
	Root         CATemplate
	Intermediate CATemplate
}

type fileProfile struct {
	Description  string   `json:"description"`
	Template     string   `json:"template"`
	SubjectKinds []string `json:"subject_kinds"`
	Validity     string   `json:"validity"`
	KeyTypes     []string `json:"key_types"`
	DualControl  *bool    `json:"dual_control"`
}

type fileCA struct {
	Template string `json:"template"`
	Validity string `json:"validity"`
}

type file struct {
	Version  int                    `json:"version"`
	Profiles map[string]fileProfile `json:"profiles"`
	CA       struct {
		Root         fileCA `json:"root"`
		Intermediate fileCA `json:"intermediate"`
	} `json:"ca"`
}

var knownKinds = []pki.Role{pki.RolePractitioner, pki.RolePharmacy, pki.RoleParaclinic, pki.RoleVendor, pki.RoleService, pki.RoleOfficer}
var knownKeys = []KeyType{"EC-P256", "EC-P384", "RSA-2048", "RSA-3072", "RSA-4096"}

// Load reads profiles.json and the templates it names from fsys and checks
// every field. Errors name the profile and field.
func Load(fsys fs.FS) (*Set, error) {
	raw, err := fs.ReadFile(fsys, "profiles.json")
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var f file
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("profile: profiles.json: %w", err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("profile: profiles.json version %d not supported (want 1)", f.Version)
	}
	if len(f.Profiles) == 0 {
		return nil, fmt.Errorf("profile: profiles.json defines no profiles")
	}
	s := &Set{profiles: map[string]*Profile{}}
	for name, fp := range f.Profiles {
		p, err := loadProfile(fsys, name, fp)
		if err != nil {
			return nil, err
		}
		if err := dryRun(p); err != nil {
			return nil, err
		}
		s.profiles[name] = p
	}
	if s.Root, err = loadCA(fsys, "root", f.CA.Root); err != nil {
		return nil, err
	}
	if s.Intermediate, err = loadCA(fsys, "intermediate", f.CA.Intermediate); err != nil {
		return nil, err
	}
	return s, nil
}

func loadProfile(fsys fs.FS, name string, fp fileProfile) (*Profile, error) {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("profile %q: %s: %s", name, field, fmt.Sprintf(format, args...))
	}
	p := &Profile{Name: name, Description: fp.Description}
	if fp.Template == "" {
		return nil, bad("template", "missing")
	}
	tpl, err := fs.ReadFile(fsys, fp.Template)
	if err != nil {
		return nil, bad("template", "%v", err)
	}
	p.Template = string(tpl)
	if len(fp.SubjectKinds) == 0 {
		return nil, bad("subject_kinds", "missing")
	}
	for _, k := range fp.SubjectKinds {
		if !slices.Contains(knownKinds, pki.Role(k)) {
			return nil, bad("subject_kinds", "unknown kind %q (known: %v)", k, knownKinds)
		}
		p.SubjectKinds = append(p.SubjectKinds, pki.Role(k))
	}
	if p.Validity, err = time.ParseDuration(fp.Validity); err != nil || p.Validity < time.Hour {
		return nil, bad("validity", "%q is not a duration of at least 1h", fp.Validity)
	}
	if len(fp.KeyTypes) == 0 {
		return nil, bad("key_types", "missing")
	}
	for _, k := range fp.KeyTypes {
		if !slices.Contains(knownKeys, KeyType(k)) {
			return nil, bad("key_types", "unknown key type %q (known: %v)", k, knownKeys)
		}
		p.KeyTypes = append(p.KeyTypes, KeyType(k))
	}
	// Two-person control is the safe default; a profile must opt out.
	p.DualControl = fp.DualControl == nil || *fp.DualControl
	return p, nil
}

func loadCA(fsys fs.FS, name string, fc fileCA) (CATemplate, error) {
	if fc.Template == "" {
		return CATemplate{}, fmt.Errorf("profile: ca.%s.template missing", name)
	}
	tpl, err := fs.ReadFile(fsys, fc.Template)
	if err != nil {
		return CATemplate{}, fmt.Errorf("profile: ca.%s.template: %w", name, err)
	}
	d, err := time.ParseDuration(fc.Validity)
	if err != nil || d < 24*time.Hour {
		return CATemplate{}, fmt.Errorf("profile: ca.%s.validity %q is not a duration of at least 24h", name, fc.Validity)
	}
	return CATemplate{Template: string(tpl), Validity: d}, nil
}

// Get returns the named profile or an errs.UnknownProfile error.
func (s *Set) Get(name string) (*Profile, error) {
	p, ok := s.profiles[name]
	if !ok {
		return nil, errs.FieldError(errs.UnknownProfile, "profile", "no profile %q (known: %v)", name, s.Names())
	}
	return p, nil
}

// Names lists the profiles in order.
func (s *Set) Names() []string {
	out := make([]string, 0, len(s.profiles))
	for n := range s.profiles {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Data is what a profile template sees (documented in certs/README.md).
type Data struct {
	Identity IdentityData
	// OID is pki.Arc.OIDs(): .OID.Policy.*, .OID.EKU.*, .OID.IdentityExtension.
	OID map[string]any
	URL URLs
}

// IdentityData is the subject as the registry knows it, pre-formatted for
// the certificate.
type IdentityData struct {
	Name         string   // commonName: a person's or organisation's name (Persian allowed)
	Title        string   // X.520 title: profession and specialty
	SerialNumber string   // X.520 serialNumber: registration or licence number with its scheme
	Organization string   // organisation, for services, vendors and officers
	ProvinceName string   // stateOrProvinceName, for pharmacies and centres
	URI          string   // urn:nuskha:subject:<id>, for TLS clients and officers
	DNSNames     []string // for TLS servers
	IPAddresses  []string // for TLS servers
	Extension    []byte   // DER of the subject-identity extension (pki.Identity)
}

// URLs are where relying parties fetch revocation status and the issuer.
type URLs struct {
	CRL    []string
	OCSP   []string
	Issuer []string
}

// TemplateData converts d into x509util template data.
func (d Data) TemplateData() map[string]any {
	return map[string]any{"Identity": d.Identity, "OID": d.OID, "URL": d.URL}
}

// dryRun renders the template once with sample data, so a broken template
// is found when trustd starts rather than at the first enrolment.
func dryRun(p *Profile) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return err
	}
	ext, err := pki.Identity{Role: p.SubjectKinds[0], SubjectID: "sub_sample", RegistrationNumber: "1"}.Marshal()
	if err != nil {
		return err
	}
	sample := Data{
		Identity: IdentityData{Name: "Sample", Title: "physician; general", SerialNumber: "IRMC-1", Organization: "Sample",
			ProvinceName: "Tehran", URI: "urn:nuskha:subject:sub_sample", DNSNames: []string{"sample.test"}, IPAddresses: []string{}, Extension: ext},
		OID: pki.MustArc(pki.DefaultArc).OIDs(),
		URL: URLs{CRL: []string{"http://sample.test/crl"}, OCSP: []string{"http://sample.test/ocsp"}, Issuer: []string{"http://sample.test/ca.crt"}},
	}
	if _, err := x509util.NewCertificate(csr, x509util.WithTemplate(p.Template, sample.TemplateData())); err != nil {
		return fmt.Errorf("profile %q: template does not render: %w", p.Name, err)
	}
	return nil
}
