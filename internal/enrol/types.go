// Package enrol is certificate enrolment under dual control: one security
// officer enters a request (a CSR made on the subject's token, for a
// registered subject and a profile), a different officer approves it, and
// only then does the issuing key sign. The same person can never do both
// (the two-person rule of 21 CFR 1311.125). Requests, decisions and
// certificates are append-only records.
package enrol

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/registry"
)

// Status of an enrolment, derived from its records.
type Status string

// Statuses.
const (
	Pending  Status = "pending"  // entered, not yet decided
	Approved Status = "approved" // approved, but issuance has not succeeded yet (it may be retried)
	Issued   Status = "issued"   // a certificate exists
	Rejected Status = "rejected" // refused by an officer; final
	// Stale: not issued, and the subject changed after the request was
	// entered. The certificate would not be what was reviewed; final.
	Stale Status = "stale"
	// Expired: undecided for longer than the request lifetime; final.
	Expired Status = "expired"
)

// Statuses lists every status, for filters.
var Statuses = []Status{Pending, Approved, Issued, Rejected, Stale, Expired}

// Request is an enrolment request.
type Request struct {
	ID          string    `json:"id"`
	SubjectID   string    `json:"subject_id"`
	Profile     string    `json:"profile"`
	CSR         []byte    `json:"-"` // DER
	KeyType     string    `json:"key_type"`
	SPKIHash    string    `json:"spki_sha256"`
	RequestedBy string    `json:"requested_by"`
	RequestedAt time.Time `json:"requested_at"`
	// SubjectVersion is the version of the subject the request was entered
	// against; Review is what approving it certifies (see Review), as
	// stored, and ReviewDigest the hex SHA-256 of those bytes. An approver
	// may name the digest they reviewed.
	SubjectVersion int             `json:"subject_version"`
	Review         json.RawMessage `json:"review,omitempty"`
	ReviewDigest   string          `json:"review_digest,omitempty"`

	// Filled in on read.
	Status Status `json:"status"`
	// ExpiresAt is when a pending request expires (or expired).
	ExpiresAt         time.Time `json:"expires_at,omitzero"`
	Decision          *Decision `json:"decision,omitempty"`
	CertificateSerial string    `json:"certificate_serial,omitempty"`
}

// Review is what approving an enrolment certifies: the subject's identity
// as the certificate will carry it, as of the version the request was
// entered against, with the key and the profile. It is stored with the
// request as its JSON (the field order below, no HTML escaping) and shown
// to the approving officer with its SHA-256.
type Review struct {
	V              int      `json:"v"` // 1
	SubjectID      string   `json:"subject_id"`
	SubjectVersion int      `json:"subject_version"`
	Kind           string   `json:"kind"`
	Name           string   `json:"name"`
	CouncilNumber  string   `json:"council_number,omitempty"`
	Profession     string   `json:"profession,omitempty"`
	Specialty      string   `json:"specialty,omitempty"`
	LicenceNumber  string   `json:"licence_number,omitempty"`
	CentreType     string   `json:"centre_type,omitempty"`
	Province       string   `json:"province,omitempty"`
	Organization   string   `json:"organization,omitempty"`
	DNSNames       []string `json:"dns_names,omitempty"`
	// LicenceValidUntil is the last day of the licence, which bounds the
	// certificate's validity.
	LicenceValidUntil string `json:"licence_valid_until"`
	Profile           string `json:"profile"`
	KeyType           string `json:"key_type"`
	SPKIHash          string `json:"spki_sha256"`
}

// NewReview describes the certificate an enrolment of sub, as it is now,
// for a key of the type and SPKI hash under the profile would carry.
func NewReview(sub *registry.Subject, profileName, keyType, spkiHash string) Review {
	_, last := sub.LicenceDays()
	return Review{V: 1, SubjectID: sub.ID, SubjectVersion: sub.Version, Kind: string(sub.Kind), Name: sub.Name,
		CouncilNumber: sub.CouncilNumber, Profession: string(sub.Profession), Specialty: sub.Specialty,
		LicenceNumber: sub.LicenceNumber, CentreType: string(sub.CentreType), Province: sub.Province,
		Organization: sub.Organization, DNSNames: sub.DNSNames, LicenceValidUntil: last.Format(time.DateOnly),
		Profile: profileName, KeyType: keyType, SPKIHash: spkiHash}
}

// Encode returns the review's stored form and its digest.
func (r Review) Encode() (raw []byte, digest string, err error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, "", err
	}
	raw = bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	h := sha256.Sum256(raw)
	return raw, hex.EncodeToString(h[:]), nil
}

// Decision is an officer's approval or rejection. There is at most one per
// request.
type Decision struct {
	EnrolmentID string    `json:"enrolment_id"`
	Approved    bool      `json:"approved"`
	By          string    `json:"by"`
	At          time.Time `json:"at"`
	Reason      string    `json:"reason,omitempty"`
}

// Certificate is an issued certificate as recorded.
type Certificate struct {
	Serial      *big.Int  `json:"-"`
	SubjectID   string    `json:"subject_id"`
	Profile     string    `json:"profile"`
	EnrolmentID string    `json:"enrolment_id,omitempty"` // empty for certificates made at init
	DER         []byte    `json:"-"`
	Fingerprint string    `json:"sha256_fingerprint"`
	SPKIHash    string    `json:"spki_sha256"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	IssuedAt    time.Time `json:"issued_at"`
	IssuedBy    string    `json:"issued_by"`
}

// SerialHex is the serial as lower-case hex, the form used in URLs and logs.
func (c *Certificate) SerialHex() string { return pki.SerialHex(c.Serial) }

// NewCertificateRecord describes an issued certificate for the store.
func NewCertificateRecord(cert *x509.Certificate, subjectID, profile, enrolmentID, issuedBy string, at time.Time) *Certificate {
	fp := sha256.Sum256(cert.Raw)
	return &Certificate{
		Serial:      cert.SerialNumber,
		SubjectID:   subjectID,
		Profile:     profile,
		EnrolmentID: enrolmentID,
		DER:         cert.Raw,
		Fingerprint: hex.EncodeToString(fp[:]),
		SPKIHash:    SPKIHash(cert.RawSubjectPublicKeyInfo),
		NotBefore:   cert.NotBefore,
		NotAfter:    cert.NotAfter,
		IssuedAt:    at,
		IssuedBy:    issuedBy,
	}
}

// SPKIHash is the hex SHA-256 of a DER SubjectPublicKeyInfo: the identity of
// a key for the reuse check.
func SPKIHash(spki []byte) string {
	h := sha256.Sum256(spki)
	return hex.EncodeToString(h[:])
}

// Issuance is one attempt to sign an enrolment's certificate, reserved
// (committed to the store) before the issuing key signs. Only the officer
// who reserved an attempt signs in it.
type Issuance struct {
	EnrolmentID string
	// Attempt counts from 1; every attempt of an enrolment has the first
	// one's Serial.
	Attempt   int
	Serial    *big.Int
	NotBefore time.Time
	NotAfter  time.Time
	ClaimedBy string
	ClaimedAt time.Time
	// Outcome is how the attempt ended, if it ended without a recorded
	// certificate; nil while it runs, after it was abandoned, or when it
	// succeeded (then the enrolment has its certificate).
	Outcome *IssuanceOutcome
}

// IssuanceEnd is how an issuance attempt ended without a recorded
// certificate.
type IssuanceEnd string

// Ends of an attempt.
const (
	// IssuanceFailed: nothing was signed (lint, the intent record or the
	// issuing key refused); the enrolment may be approved again at once.
	IssuanceFailed IssuanceEnd = "failed"
	// IssuanceSigned: the issuing key signed but the certificate could not
	// be recorded; DER holds it until an approval or a revocation records it.
	IssuanceSigned IssuanceEnd = "signed"
)

// IssuanceOutcome records how an attempt ended.
type IssuanceOutcome struct {
	EnrolmentID string
	Attempt     int
	End         IssuanceEnd
	DER         []byte    // IssuanceSigned only
	Code        errs.Code // why an attempt failed
	At          time.Time
}

// ServiceCredential is a certificate trustd holds for its own use (the OCSP
// responder, the trust-bundle signer), with where its key is.
type ServiceCredential struct {
	Serial   *big.Int
	Purpose  string
	KeyURI   string
	NotAfter time.Time
}
