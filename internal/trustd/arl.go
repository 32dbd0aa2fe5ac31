package trustd

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki/ceremony"
	"github.com/nuskha/nuskha/internal/pki/crl"
	"github.com/nuskha/nuskha/internal/pki/lint"
	"github.com/nuskha/nuskha/internal/store"
	"github.com/nuskha/nuskha/internal/store/truststore"
)

// ARL file and URL path written by init.
const (
	arlFile    = "ca/root.crl"
	arlURLPath = "/crl/root-ca.crl"
	arlAction  = "ceremony.arl" // the audit action of every ARL signed
)

// ARLOptions are a `trustd sign-arl` ceremony's choices.
type ARLOptions struct {
	// RootKey is the root key's URI (the key is offline between ceremonies).
	RootKey string
	// Revoke, if set, is a CA certificate the root issued, added to the
	// ARL with Reason (one of ceremony.ARLReasons).
	Revoke *x509.Certificate
	Reason int
	// Validity of the new ARL [ceremony.ARLValidity].
	Validity time.Duration
}

// SignARL re-signs the root's ARL named by ca.arl: the next CRL number,
// every CA already listed, and o.Revoke if given. It runs with the root key
// present; the file it writes is picked up by a running trustd within
// arlReload. Signing is audited in trustd's database before and after.
func SignARL(ctx context.Context, cfg *Config, o ARLOptions, d Deps) (*x509.RevocationList, error) {
	if cfg.CA.ARL == "" {
		return nil, fmt.Errorf("sign-arl: ca.arl is not set in the config; add \"arl\": %q to \"ca\"", arlFile)
	}
	if o.RootKey == "" {
		return nil, errors.New("sign-arl: the root key is required")
	}
	roots, err := readCerts(cfg, cfg.CA.RootCerts...)
	if err != nil {
		return nil, err
	}
	root, rootKey, err := openRoot(ctx, d, roots, o.RootKey)
	if err != nil {
		return nil, fmt.Errorf("sign-arl: %w", err)
	}
	db, err := OpenStore(ctx, cfg, false)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	// The audit log, not the file, says which ARLs were signed: a lost or
	// replaced file must not quietly restart the numbering or drop the CAs
	// an earlier ARL revoked.
	signed, err := latestARL(ctx, db)
	if err != nil {
		return nil, err
	}
	number := new(big.Int).Add(signed, big.NewInt(1))
	var entries []crl.Entry
	path := cfg.Path(cfg.CA.ARL)
	switch der, err := os.ReadFile(path); {
	case errors.Is(err, os.ErrNotExist):
		if signed.Sign() > 0 {
			return nil, fmt.Errorf("sign-arl: ARL %s was signed (the audit log says so) but %s is missing: restore it from backup; a new ARL without it would drop the CAs it revokes", signed, path)
		}
	case err != nil:
		return nil, err
	default:
		old, err := x509.ParseRevocationList(der)
		if err != nil || old.CheckSignatureFrom(root) != nil || old.Number == nil {
			return nil, fmt.Errorf("sign-arl: %s is not an ARL signed by this root: restore the last one signed from backup", path)
		}
		if old.Number.Cmp(signed) < 0 {
			return nil, fmt.Errorf("sign-arl: %s holds ARL %s, but ARL %s was signed since (the audit log says so): restore the latest from backup", path, old.Number, signed)
		}
		number.Add(old.Number, big.NewInt(1))
		for _, e := range old.RevokedCertificateEntries {
			entries = append(entries, crl.Entry{Serial: e.SerialNumber, RevokedAt: e.RevocationTime, Reason: e.ReasonCode})
		}
	}
	now := d.Now()
	if c := o.Revoke; c != nil {
		if !c.IsCA || !bytes.Equal(c.RawIssuer, root.RawSubject) || c.CheckSignatureFrom(root) != nil {
			return nil, errs.New(errs.Invalid, "sign-arl: the certificate to revoke is not a CA certificate issued by this root")
		}
		if slices.ContainsFunc(entries, func(e crl.Entry) bool { return e.Serial.Cmp(c.SerialNumber) == 0 }) {
			return nil, errs.New(errs.AlreadyRevoked, "sign-arl: %q (serial %x) is already on the ARL", c.Subject.CommonName, c.SerialNumber)
		}
		entries = append(entries, crl.Entry{Serial: c.SerialNumber, RevokedAt: now, Reason: o.Reason})
	}
	linter, err := lint.New(cfg.Lint.Ignore)
	if err != nil {
		return nil, err
	}
	rec := audit.NewLog(db, d.Log, d.Now)
	return signARL(ctx, rec, ceremony.ARLRequest{Number: number, ThisUpdate: now, Validity: o.Validity, Revoked: entries}, root, rootKey, linter, path)
}

// latestARL is the number of the latest ARL the audit log records as
// signed (0 if none).
func latestARL(ctx context.Context, db *truststore.Store) (*big.Int, error) {
	latest := new(big.Int)
	var after int64
	for {
		evs, err := db.ListAudit(ctx, store.AuditFilter{AfterSeq: after, Action: arlAction, Limit: 500})
		if err != nil {
			return nil, fmt.Errorf("sign-arl: reading the audit log: %w", err)
		}
		for _, e := range evs {
			n, ok := new(big.Int).SetString(strings.TrimPrefix(e.Object, "arl:"), 10)
			if e.Outcome == audit.OK && ok && n.Cmp(latest) > 0 {
				latest = n
			}
			after = e.Seq
		}
		if len(evs) < 500 {
			return latest, nil
		}
	}
}

// openRoot opens the root key at uri (brought back from offline for a
// ceremony) and returns it with the root certificate it belongs to.
func openRoot(ctx context.Context, d Deps, roots []*x509.Certificate, uri string) (*x509.Certificate, crypto.Signer, error) {
	rootKey, err := d.Keys.OpenKey(ctx, uri)
	if err != nil {
		return nil, nil, fmt.Errorf("opening the root key: %w", err)
	}
	i := slices.IndexFunc(roots, func(r *x509.Certificate) bool {
		pub, ok := r.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
		return ok && pub.Equal(rootKey.Public())
	})
	if i < 0 {
		return nil, nil, errors.New("the key is not the key of any root in ca.root_certs")
	}
	return roots[i], rootKey, nil
}

// signARL signs the ARL, recording the intent (with the linted TBS's hash)
// before the root key signs and the outcome after, and writes it to path.
func signARL(ctx context.Context, rec audit.Recorder, req ceremony.ARLRequest, root *x509.Certificate, rootKey crypto.Signer, l *lint.Linter, path string) (*x509.RevocationList, error) {
	object := "arl:" + req.Number.String()
	der, err := ceremony.SignARL(req, root, rootKey, l, func(tbs []byte) error {
		h := sha256.Sum256(tbs)
		return rec.Record(ctx, audit.Event{Actor: enrol.Ceremony, Action: arlAction, Object: object, Outcome: audit.Intent,
			Detail: map[string]string{"revoked": fmt.Sprint(len(req.Revoked)), "tbs_sha256": hex.EncodeToString(h[:])}})
	})
	if err != nil {
		return nil, audit.RecordFailure(ctx, rec, audit.Event{Actor: enrol.Ceremony, Action: arlAction, Object: object}, err)
	}
	list, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, err
	}
	// Write then rename: a running trustd never reads half a file.
	tmp := path + ".new"
	if err := os.WriteFile(tmp, der, 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, err
	}
	if err := rec.Record(ctx, audit.Event{Actor: enrol.Ceremony, Action: arlAction, Object: object, Outcome: audit.OK,
		Detail: map[string]string{"revoked": fmt.Sprint(len(req.Revoked)), "next_update": list.NextUpdate.UTC().Format(time.RFC3339),
			"file": filepath.Base(path)}}); err != nil {
		return list, err
	}
	return list, nil
}

// arlReload is how often a running trustd looks for a re-signed ARL file.
const arlReload = 5 * time.Minute

// ReloadARL serves the ARL file named by ca.arl if it changed since it
// was read (`trustd sign-arl` rewrites it; Serve looks every arlReload).
// A file that does not verify under a root, or goes back to a lower CRL
// number, is refused and the ARL being served stays.
func (s *Service) ReloadARL() error {
	if s.cfg.CA.ARL == "" {
		return nil
	}
	der, err := os.ReadFile(s.cfg.Path(s.cfg.CA.ARL))
	if err != nil {
		return fmt.Errorf("ca.arl: %w", err)
	}
	if cur := s.pub.ARL(); cur != nil && bytes.Equal(cur.Raw, der) {
		return nil
	}
	list, err := s.pub.SetARL(der)
	if err != nil {
		return fmt.Errorf("ca.arl: %w", err)
	}
	s.log.Info("ARL loaded", "arl", list.Number, "revoked", len(list.RevokedCertificateEntries), "next_update", list.NextUpdate)
	s.checkARLExpiry()
	return nil
}

// checkARLExpiry warns when the ARL is missing, near or past its
// nextUpdate: from then on relying parties refuse every chain through the
// intermediate. It runs at start, at each reload and every few hours.
func (s *Service) checkARLExpiry() {
	list := s.pub.ARL()
	switch now := s.now(); {
	case list == nil:
		s.log.Warn("no ARL (ca.arl): relying parties cannot check the intermediate's status and refuse its chains; sign one with trustd sign-arl and the root key")
	case !now.Before(list.NextUpdate):
		s.log.Error("the root's ARL has expired: relying parties refuse every chain through the intermediate; re-sign it with trustd sign-arl",
			"arl", list.Number, "next_update", list.NextUpdate)
	case now.Add(ceremony.ARLWarnBefore).After(list.NextUpdate):
		s.log.Warn("the root's ARL expires soon; re-sign it with trustd sign-arl before then", "arl", list.Number, "next_update", list.NextUpdate)
	}
}
