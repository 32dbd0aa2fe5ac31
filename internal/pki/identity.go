package pki

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
)

// Identity is who a certificate's key belongs to, as the registry knows them,
// carried in the certificate so that a verifier can bind a signature to a
// registered person or organisation without a lookup.
//
// It is encoded as the non-critical extension A.3.1:
//
//	NuskhaIdentity ::= SEQUENCE {
//	    version             INTEGER (1),
//	    role                UTF8String,   -- practitioner, pharmacy, ...
//	    subjectId           UTF8String,   -- trustd registry id
//	    registrationNumber  UTF8String,   -- medical-council or licence number
//	    profession      [0] EXPLICIT UTF8String OPTIONAL,
//	    specialty       [1] EXPLICIT UTF8String OPTIONAL,  -- or centre type
//	    province        [2] EXPLICIT UTF8String OPTIONAL } -- ISO 3166-2:IR
//
// National ids are deliberately absent: certificates travel inside every
// signed prescription.
type Identity struct {
	Role               Role
	SubjectID          string
	RegistrationNumber string
	Profession         string
	Specialty          string
	Province           string
}

const identityVersion = 1

type identityASN1 struct {
	Version            int
	Role               string `asn1:"utf8"`
	SubjectID          string `asn1:"utf8"`
	RegistrationNumber string `asn1:"utf8"`
	Profession         string `asn1:"optional,explicit,tag:0,utf8"`
	Specialty          string `asn1:"optional,explicit,tag:1,utf8"`
	Province           string `asn1:"optional,explicit,tag:2,utf8"`
}

// Marshal encodes the extension value.
func (id Identity) Marshal() ([]byte, error) {
	if id.Role == "" || id.SubjectID == "" {
		return nil, errors.New("pki: identity needs a role and a subject id")
	}
	return asn1.Marshal(identityASN1{
		Version:            identityVersion,
		Role:               string(id.Role),
		SubjectID:          id.SubjectID,
		RegistrationNumber: id.RegistrationNumber,
		Profession:         id.Profession,
		Specialty:          id.Specialty,
		Province:           id.Province,
	})
}

// ErrNoIdentity means the certificate has no identity extension.
var ErrNoIdentity = errors.New("pki: certificate has no subject-identity extension")

// IdentityOf reads the identity extension of cert.
func (a Arc) IdentityOf(cert *x509.Certificate) (Identity, error) {
	oid := a.IdentityExtension()
	var found []byte
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(oid) {
			if found != nil {
				return Identity{}, errors.New("pki: subject-identity extension appears twice")
			}
			found = ext.Value
		}
	}
	if found == nil {
		return Identity{}, ErrNoIdentity
	}
	return ParseIdentity(found)
}

// ParseIdentity decodes an extension value strictly: trailing bytes and
// unknown versions are refused.
func ParseIdentity(der []byte) (Identity, error) {
	var v identityASN1
	rest, err := asn1.Unmarshal(der, &v)
	if err != nil {
		return Identity{}, fmt.Errorf("pki: subject-identity extension: %w", err)
	}
	if len(rest) != 0 {
		return Identity{}, errors.New("pki: subject-identity extension has trailing data")
	}
	if v.Version != identityVersion {
		return Identity{}, fmt.Errorf("pki: subject-identity extension version %d not supported", v.Version)
	}
	if v.Role == "" || v.SubjectID == "" {
		return Identity{}, errors.New("pki: subject-identity extension lacks role or subject id")
	}
	return Identity{
		Role:               Role(v.Role),
		SubjectID:          v.SubjectID,
		RegistrationNumber: v.RegistrationNumber,
		Profession:         v.Profession,
		Specialty:          v.Specialty,
		Province:           v.Province,
	}, nil
}
