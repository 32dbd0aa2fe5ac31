package responder

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/ocsp"
)

// x/crypto/ocsp reads only a request's first CertID, and neither request
// extensions nor response extensions, and a nonce lives in both (RFC 6960
// §4.4.1); its CreateResponse also takes producedAt from the wall clock,
// truncated to the minute, and writes one SingleResponse. These few
// structures parse every request and encode every response, with each
// CertID asked, the caller's producedAt and extensions.

var oidNonce = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}

type ocspRequest struct {
	TBSRequest struct {
		Version           int           `asn1:"explicit,tag:0,default:0,optional"`
		RequestorName     asn1.RawValue `asn1:"explicit,tag:1,optional"`
		RequestList       []singleRequest
		RequestExtensions []pkix.Extension `asn1:"explicit,tag:2,optional"`
	}
	OptionalSignature asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

type singleRequest struct {
	Cert       certID
	Extensions []pkix.Extension `asn1:"explicit,tag:0,optional"`
}

// MaxCertIDs bounds the certificates one request may ask about: a
// relying party asks about a chain, and each CertID answered costs a
// SingleResponse in a response signed on demand. More is a
// malformedRequest.
const MaxCertIDs = 20

// query is one CertID of a request. hash is 0 for a hash algorithm this
// responder does not answer for (it is then unauthorized for the CertID).
type query struct {
	hash     crypto.Hash
	nameHash []byte
	keyHash  []byte
	serial   *big.Int
}

// parseRequest reads every CertID of an unsigned request and its nonce
// extension, if any.
func parseRequest(der []byte) ([]query, *pkix.Extension, error) {
	var req ocspRequest
	rest, err := asn1.Unmarshal(der, &req)
	switch {
	case err != nil:
		return nil, nil, err
	case len(rest) > 0:
		return nil, nil, errors.New("trailing data")
	case len(req.OptionalSignature.FullBytes) > 0:
		return nil, nil, errors.New("signed requests are not supported")
	case len(req.TBSRequest.RequestList) == 0 || len(req.TBSRequest.RequestList) > MaxCertIDs:
		return nil, nil, fmt.Errorf("a request asks about 1 to %d certificates", MaxCertIDs)
	}
	qs := make([]query, len(req.TBSRequest.RequestList))
	for i, r := range req.TBSRequest.RequestList {
		h, known := requestHashes[r.Cert.HashAlgorithm.Algorithm.String()]
		if !known {
			return nil, nil, errors.New("unknown CertID hash algorithm")
		}
		if r.Cert.SerialNumber == nil || r.Cert.SerialNumber.Sign() < 0 {
			return nil, nil, errors.New("negative serial")
		}
		if _, answered := hashOIDs[h]; !answered {
			h = 0
		}
		qs[i] = query{hash: h, nameHash: r.Cert.NameHash, keyHash: r.Cert.IssuerKeyHash, serial: r.Cert.SerialNumber}
	}
	nonce, err := findNonce(req.TBSRequest.RequestExtensions)
	return qs, nonce, err
}

// requestHashes are the CertID hash algorithms a request may name (the
// ones x/crypto/ocsp knows), by OID; hashOIDs are those answered.
var requestHashes = map[string]crypto.Hash{
	"1.3.14.3.2.26":          crypto.SHA1,
	"2.16.840.1.101.3.4.2.1": crypto.SHA256,
	"2.16.840.1.101.3.4.2.2": crypto.SHA384,
	"2.16.840.1.101.3.4.2.3": crypto.SHA512,
}

// maxNonce is RFC 8954's limit on a nonce's length.
const maxNonce = 32

// findNonce returns the nonce extension among a request's, or nil.
func findNonce(exts []pkix.Extension) (*pkix.Extension, error) {
	var found *pkix.Extension
	for i, e := range exts {
		if !e.Id.Equal(oidNonce) {
			continue
		}
		if found != nil {
			return nil, errors.New("two nonces")
		}
		var n []byte
		if rest, err := asn1.Unmarshal(e.Value, &n); err != nil || len(rest) > 0 || len(n) == 0 || len(n) > maxNonce {
			return nil, errors.New("nonce is not an OCTET STRING of 1 to 32 octets")
		}
		found = &exts[i]
	}
	if found != nil {
		ext := *found
		ext.Critical = false
		return &ext, nil
	}
	return nil, nil
}

type certID struct {
	HashAlgorithm pkix.AlgorithmIdentifier
	NameHash      []byte
	IssuerKeyHash []byte
	SerialNumber  *big.Int
}

type singleResponse struct {
	CertID     certID
	Good       asn1.Flag   `asn1:"tag:0,optional"`
	Revoked    revokedInfo `asn1:"tag:1,optional"`
	Unknown    asn1.Flag   `asn1:"tag:2,optional"`
	ThisUpdate time.Time   `asn1:"generalized"`
	NextUpdate time.Time   `asn1:"generalized,explicit,tag:0,optional"`
}

type revokedInfo struct {
	RevocationTime time.Time       `asn1:"generalized"`
	Reason         asn1.Enumerated `asn1:"explicit,tag:0,optional"`
}

type responseData struct {
	Version            int `asn1:"optional,default:0,explicit,tag:0"`
	RawResponderID     asn1.RawValue
	ProducedAt         time.Time `asn1:"generalized"`
	Responses          []singleResponse
	ResponseExtensions []pkix.Extension `asn1:"explicit,tag:1,optional"`
}

type basicResponse struct {
	TBSResponseData    asn1.RawValue
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          asn1.BitString
	Certificates       []asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

type responseBytes struct {
	ResponseType asn1.ObjectIdentifier
	Response     []byte
}

type responseASN1 struct {
	Status   asn1.Enumerated
	Response responseBytes `asn1:"explicit,tag:0,optional"`
}

var (
	oidBasicResponse = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}
	hashOIDs         = map[crypto.Hash]asn1.ObjectIdentifier{
		crypto.SHA1:   {1, 3, 14, 3, 2, 26},
		crypto.SHA256: {2, 16, 840, 1, 101, 3, 4, 2, 1},
	}
	sigAlgs = map[x509.SignatureAlgorithm]struct {
		oid  asn1.ObjectIdentifier
		hash crypto.Hash
	}{
		x509.ECDSAWithSHA256: {asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}, crypto.SHA256},
		x509.ECDSAWithSHA384: {asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}, crypto.SHA384},
		x509.SHA256WithRSA:   {asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, crypto.SHA256},
	}
)

// create is ocsp.CreateResponse for one or more certificates (each
// template's SerialNumber, IssuerHash, status and times), with producedAt
// given and optional responseExtensions (nil: none, as
// ocsp.CreateResponse writes).
func create(issuer, responder *x509.Certificate, ts []ocsp.Response, key crypto.Signer, producedAt time.Time, exts []pkix.Extension) ([]byte, error) {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(issuer.RawSubjectPublicKeyInfo, &spki); err != nil {
		return nil, err
	}
	singles := make([]singleResponse, len(ts))
	for i, t := range ts {
		hashOID, ok := hashOIDs[t.IssuerHash]
		if !ok {
			return nil, errors.New("unsupported CertID hash")
		}
		single := singleResponse{
			CertID: certID{
				HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: hashOID, Parameters: asn1.RawValue{Tag: 5}},
				NameHash:      sum(t.IssuerHash, issuer.RawSubject),
				IssuerKeyHash: sum(t.IssuerHash, spki.PublicKey.RightAlign()),
				SerialNumber:  t.SerialNumber,
			},
			ThisUpdate: t.ThisUpdate.UTC(),
			NextUpdate: t.NextUpdate.UTC(),
		}
		switch t.Status {
		case ocsp.Good:
			single.Good = true
		case ocsp.Revoked:
			single.Revoked = revokedInfo{RevocationTime: t.RevokedAt.UTC(), Reason: asn1.Enumerated(t.RevocationReason)}
		default:
			single.Unknown = true
		}
		singles[i] = single
	}
	tbs, err := asn1.Marshal(responseData{
		RawResponderID:     asn1.RawValue{Class: 2, Tag: 1, IsCompound: true, Bytes: responder.RawSubject},
		ProducedAt:         producedAt.UTC(),
		Responses:          singles,
		ResponseExtensions: exts,
	})
	if err != nil {
		return nil, err
	}
	alg, err := signatureAlgorithm(key.Public())
	if err != nil {
		return nil, err
	}
	sa := sigAlgs[alg]
	h := sa.hash.New()
	h.Write(tbs)
	sig, err := key.Sign(rand.Reader, h.Sum(nil), sa.hash)
	if err != nil {
		return nil, err
	}
	params := asn1.RawValue{}
	if alg == x509.SHA256WithRSA {
		params = asn1.NullRawValue
	}
	basic, err := asn1.Marshal(basicResponse{
		TBSResponseData:    asn1.RawValue{FullBytes: tbs},
		SignatureAlgorithm: pkix.AlgorithmIdentifier{Algorithm: sa.oid, Parameters: params},
		Signature:          asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
		Certificates:       []asn1.RawValue{{FullBytes: responder.Raw}},
	})
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(responseASN1{Status: asn1.Enumerated(ocsp.Success), Response: responseBytes{ResponseType: oidBasicResponse, Response: basic}})
}

// signatureAlgorithm picks the algorithm x/crypto/ocsp would for the key.
func signatureAlgorithm(pub crypto.PublicKey) (x509.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return x509.ECDSAWithSHA256, nil
		case elliptic.P384():
			return x509.ECDSAWithSHA384, nil
		}
	case *rsa.PublicKey:
		return x509.SHA256WithRSA, nil
	}
	return 0, errors.New("unsupported responder key")
}
