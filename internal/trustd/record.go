package trustd

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/store"
)

// RecordCertificate records a certificate the issuing key signed but that
// never reached the database: the database failed just after the
// signature and the attempt's outcome could not be written either, so its
// DER survives only in trustd's error log ("certificate signed but not
// recorded", certificate_der_base64). Until it is recorded it cannot be
// revoked by its serial, and the enrolment it belongs to may meanwhile have
// gone stale, so no approval will record it. It must be a certificate of
// this CA's issuing key whose serial and validity an issuance attempt
// reserved; anything else is refused.
func RecordCertificate(ctx context.Context, cfg *Config, der []byte, d Deps) (*enrol.Certificate, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("record-certificate: not a certificate: %w", err)
	}
	inters, err := readCerts(cfg, cfg.CA.IntermediateCert)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(inters, func(i *x509.Certificate) bool {
		return bytes.Equal(cert.RawIssuer, i.RawSubject) && cert.CheckSignatureFrom(i) == nil
	}) {
		return nil, errors.New("record-certificate: the certificate is not signed by this CA's issuing key")
	}
	db, err := OpenStore(ctx, cfg, false)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if c, err := db.CertificateBySerial(ctx, cert.SerialNumber); err == nil {
		return c, fmt.Errorf("record-certificate: serial %s is recorded already", c.SerialHex())
	}
	a, subjectID, profile, err := db.UnrecordedAttempt(ctx, cert.SerialNumber)
	if errors.Is(err, store.ErrNotFound) {
		// Signed by our key, yet no issuance reserved it: not a lost
		// record but a key used outside trustd.
		d.Log.ErrorContext(ctx, "a certificate signed by the issuing key matches no issuance attempt", "serial", pki.SerialHex(cert.SerialNumber))
		return nil, fmt.Errorf("record-certificate: no issuance attempt reserved serial %s: this certificate was not issued by trustd; treat the issuing key as compromised", pki.SerialHex(cert.SerialNumber))
	}
	if err != nil {
		return nil, err
	}
	if !cert.NotBefore.Equal(a.NotBefore) || !cert.NotAfter.Equal(a.NotAfter) {
		return nil, fmt.Errorf("record-certificate: serial %s was reserved for %s to %s, the certificate is valid %s to %s",
			pki.SerialHex(cert.SerialNumber), a.NotBefore, a.NotAfter, cert.NotBefore, cert.NotAfter)
	}
	rec := enrol.NewCertificateRecord(cert, subjectID, profile, a.EnrolmentID, a.ClaimedBy, d.Now().UTC())
	e := audit.Event{Time: d.Now().UTC(), Actor: enrol.System, Action: "certificate.issue", Object: "certificate:" + rec.SerialHex(),
		Outcome: audit.OK, Detail: map[string]string{"enrolment": a.EnrolmentID, "recorded_late": "true", "fingerprint_sha256": rec.Fingerprint}}
	if err := db.StoreCertificate(ctx, rec, e); err != nil {
		return nil, fmt.Errorf("record-certificate: %w", err)
	}
	audit.Mirror(ctx, d.Log, e)
	return rec, nil
}
