// Package pki holds the vocabulary that issuers and verifiers share: the OID
// arc under which our certificate policies, extended key usages and the
// subject-identity extension live, and the encoding of that extension.
//
// Layout under the configured arc A:
//
//	A.1.n  certificate policies (one per profile family)
//	A.2.n  extended key usages (what a signature by the key means)
//	A.3.1  the subject-identity extension
//
// The default arc is 2.999.1, under the ITU-T "example" arc: safe for
// development, never for production, where the insurer's own private
// enterprise number MUST be configured.
package pki

import (
	"encoding/asn1"
	"fmt"
	"strconv"
	"strings"
)

// DefaultArc is for development and tests only.
const DefaultArc = "2.999.1"

// Arc is the root of our OIDs.
type Arc struct {
	base asn1.ObjectIdentifier
}

// ParseArc parses a dotted OID such as 1.3.6.1.4.1.12345.
func ParseArc(s string) (Arc, error) {
	oid, err := ParseOID(s)
	if err != nil {
		return Arc{}, fmt.Errorf("pki: OID arc: %w", err)
	}
	if len(oid) < 2 {
		return Arc{}, fmt.Errorf("pki: OID arc %q is too short", s)
	}
	return Arc{base: oid}, nil
}

// MustArc is ParseArc for constants in tests and defaults.
func MustArc(s string) Arc {
	a, err := ParseArc(s)
	if err != nil {
		panic(err)
	}
	return a
}

// ParseOID parses a dotted-decimal object identifier.
func ParseOID(s string) (asn1.ObjectIdentifier, error) {
	parts := strings.Split(s, ".")
	oid := make(asn1.ObjectIdentifier, 0, len(parts))
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || (len(p) > 1 && p[0] == '0') {
			return nil, fmt.Errorf("bad component %q in OID %q", p, s)
		}
		oid = append(oid, n)
	}
	if len(oid) < 2 || oid[0] > 2 || (oid[0] < 2 && oid[1] > 39) {
		return nil, fmt.Errorf("OID %q is not valid", s)
	}
	return oid, nil
}

// IsExample reports whether the arc is the development default.
func (a Arc) IsExample() bool { return a.String() == DefaultArc }

func (a Arc) String() string { return a.base.String() }

func (a Arc) sub(n ...int) asn1.ObjectIdentifier {
	oid := make(asn1.ObjectIdentifier, 0, len(a.base)+len(n))
	oid = append(oid, a.base...)
	return append(oid, n...)
}

// Role is what a certificate's subject is in the prescribing system.
type Role string

// Roles, one per kind of registry subject that holds certificates.
const (
	RolePractitioner Role = "practitioner"
	RolePharmacy     Role = "pharmacy"
	RoleParaclinic   Role = "paraclinic"
	RoleVendor       Role = "vendor"
	RoleService      Role = "service"
	RoleOfficer      Role = "officer"
)

// Policy OIDs (A.1.n). A certificate carries exactly the policy of its profile.
func (a Arc) PolicyPractitionerSigning() asn1.ObjectIdentifier    { return a.sub(1, 1) }
func (a Arc) PolicyPharmacySigning() asn1.ObjectIdentifier        { return a.sub(1, 2) }
func (a Arc) PolicyParaclinicSigning() asn1.ObjectIdentifier      { return a.sub(1, 3) }
func (a Arc) PolicyServiceTLS() asn1.ObjectIdentifier             { return a.sub(1, 4) }
func (a Arc) PolicyOCSPResponder() asn1.ObjectIdentifier          { return a.sub(1, 5) }
func (a Arc) PolicyOfficer() asn1.ObjectIdentifier                { return a.sub(1, 6) }
func (a Arc) PolicyTrustBundleSigning() asn1.ObjectIdentifier     { return a.sub(1, 7) }
func (a Arc) PolicyExchangeReceiptSigning() asn1.ObjectIdentifier { return a.sub(1, 8) }

// Extended key usages (A.2.n): what a signature by the key may mean.
func (a Arc) EKUPrescriptionSigning() asn1.ObjectIdentifier { return a.sub(2, 1) }
func (a Arc) EKUDispenseSigning() asn1.ObjectIdentifier     { return a.sub(2, 2) }
func (a Arc) EKUParaclinicSigning() asn1.ObjectIdentifier   { return a.sub(2, 3) }
func (a Arc) EKUOfficer() asn1.ObjectIdentifier             { return a.sub(2, 4) }
func (a Arc) EKUTrustBundleSigning() asn1.ObjectIdentifier  { return a.sub(2, 5) }

// EKUExchangeReceiptSigning marks the exchange's (rxd's) key: what it signs
// (acknowledgements of accepted prescriptions, receipts of closed visits)
// commits the exchange to having accepted or recorded it.
func (a Arc) EKUExchangeReceiptSigning() asn1.ObjectIdentifier { return a.sub(2, 6) }

// IdentityExtension is the OID of the subject-identity extension (A.3.1).
func (a Arc) IdentityExtension() asn1.ObjectIdentifier { return a.sub(3, 1) }

// OIDs renders every OID for certificate templates (see certs/README.md).
func (a Arc) OIDs() map[string]any {
	s := func(o asn1.ObjectIdentifier) string { return o.String() }
	return map[string]any{
		"Arc": a.String(),
		"Policy": map[string]string{
			"PractitionerSigning":    s(a.PolicyPractitionerSigning()),
			"PharmacySigning":        s(a.PolicyPharmacySigning()),
			"ParaclinicSigning":      s(a.PolicyParaclinicSigning()),
			"ServiceTLS":             s(a.PolicyServiceTLS()),
			"OCSPResponder":          s(a.PolicyOCSPResponder()),
			"Officer":                s(a.PolicyOfficer()),
			"TrustBundleSigning":     s(a.PolicyTrustBundleSigning()),
			"ExchangeReceiptSigning": s(a.PolicyExchangeReceiptSigning()),
		},
		"EKU": map[string]string{
			"PrescriptionSigning":    s(a.EKUPrescriptionSigning()),
			"DispenseSigning":        s(a.EKUDispenseSigning()),
			"ParaclinicSigning":      s(a.EKUParaclinicSigning()),
			"Officer":                s(a.EKUOfficer()),
			"TrustBundleSigning":     s(a.EKUTrustBundleSigning()),
			"ExchangeReceiptSigning": s(a.EKUExchangeReceiptSigning()),
		},
		"IdentityExtension": s(a.IdentityExtension()),
	}
}
