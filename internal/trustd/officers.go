package trustd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/ca"
	"github.com/nuskha/nuskha/internal/pki/lint"
	"github.com/nuskha/nuskha/internal/pki/profile"
	"github.com/nuskha/nuskha/internal/revoke"
)

// AddOfficersOptions are a `trustd add-officer` ceremony's choices.
type AddOfficersOptions struct {
	// RootKey is the root key's URI: the ceremony needs the offline root
	// brought back, and its custodians with it.
	RootKey  string
	Officers []Officer
}

// AddOfficers is the recovery ceremony for a lost officer quorum. Officers
// are normally added by two officers (subject add, enrol request, enrol
// approve); when fewer than revoke.Quorum officers can act — the holder of
// an officer's key revoked it after a compromise, say — nothing can be
// approved any more, and only this restores dual control. It runs on the CA
// host, with the issuing key and the database as init did, and with the
// root key present as for `trustd sign-arl`: the day-to-day owner of the CA
// host cannot use it alone. It refuses while the quorum holds, and unless
// the officers it adds restore it. Each new officer is registered and
// certified as at init, and the ceremony is audited.
func AddOfficers(ctx context.Context, cfg *Config, o AddOfficersOptions, d Deps) ([]OfficerCredential, error) {
	if len(o.Officers) == 0 {
		return nil, errors.New("add-officer: name at least one officer")
	}
	if err := checkOfficers(o.Officers); err != nil {
		return nil, fmt.Errorf("add-officer: %w", err)
	}
	if o.RootKey == "" {
		return nil, errors.New("add-officer: the root key is required")
	}
	roots, err := readCerts(cfg, cfg.CA.RootCerts...)
	if err != nil {
		return nil, err
	}
	inters, err := readCerts(cfg, cfg.CA.IntermediateCert)
	if err != nil {
		return nil, err
	}
	root, _, err := openRoot(ctx, d, roots, o.RootKey)
	if err != nil {
		return nil, fmt.Errorf("add-officer: %w", err)
	}
	dir := cfg.Path(".")
	for _, off := range o.Officers {
		for _, p := range []string{filepath.Join(dir, "officers", off.Name+".crt"), filepath.Join(dir, "handover", off.Name)} {
			if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("add-officer: %s exists: choose another name for officer %s", p, off.Name)
			}
		}
	}
	db, err := OpenStore(ctx, cfg, false)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	active, err := revoke.ActiveOfficers(ctx, db, d.Now(), nil)
	if err != nil {
		return nil, err
	}
	switch {
	case len(active) >= revoke.Quorum:
		return nil, errs.New(errs.Conflict, "add-officer: %d officers can act, enough for dual control: enrol new officers through them (rxctl subject add, enrol request, enrol approve); this ceremony is only for a lost quorum", len(active))
	case len(active)+len(o.Officers) < revoke.Quorum:
		return nil, errs.New(errs.OfficerQuorum, "add-officer: %d officer(s) can act; add at least %d to restore dual control", len(active), revoke.Quorum-len(active))
	}
	arc, err := pki.ParseArc(cfg.OIDArc)
	if err != nil {
		return nil, err
	}
	profiles, err := Profiles(cfg)
	if err != nil {
		return nil, err
	}
	linter, err := lint.New(cfg.Lint.Ignore)
	if err != nil {
		return nil, err
	}
	interKey, err := d.Keys.OpenKey(ctx, cfg.CA.IntermediateKey)
	if err != nil {
		return nil, fmt.Errorf("opening the intermediate key: %w", err)
	}
	issuer, err := ca.New(ca.Config{Roots: roots, Intermediate: inters[0], Signer: interKey, Linter: linter, Now: d.Now, Certs: certSource{db}})
	if err != nil {
		return nil, err
	}
	rec := audit.NewLog(db, d.Log, d.Now)
	// A running trustd publishes the new certificates' status at its next
	// sync, as it does for those made at init.
	svc, err := enrol.New(enrol.Config{Notify: enrol.NoNotify{}, Store: db, Issuer: issuer, Profiles: profiles, Arc: arc,
		URLs: profile.URLs{CRL: cfg.URLs.CRL, OCSP: cfg.URLs.OCSP, Issuer: cfg.URLs.Issuer}, Audit: rec, Log: d.Log, Now: d.Now})
	if err != nil {
		return nil, err
	}
	names := make([]string, len(o.Officers))
	for i, off := range o.Officers {
		names[i] = off.Name
	}
	fp := sha256.Sum256(root.Raw)
	detail := map[string]string{"root": hex.EncodeToString(fp[:]), "active_officers": fmt.Sprint(len(active)), "officers": strings.Join(names, ",")}
	if err := rec.Record(ctx, audit.Event{Actor: enrol.Ceremony, Action: "ceremony.officer.add", Object: "officers", Outcome: audit.Intent, Detail: detail}); err != nil {
		return nil, err
	}
	org := ""
	if len(inters[0].Subject.Organization) > 0 {
		org = inters[0].Subject.Organization[0]
	}
	b := bootstrapper{dir: dir, db: db, svc: svc, keys: d.Keys, inter: inters[0], now: d.Now(), org: org}
	var creds []OfficerCredential
	for _, off := range o.Officers {
		cred, err := b.officer(ctx, off, profiles)
		if err != nil {
			return creds, audit.RecordFailure(ctx, rec, audit.Event{Actor: enrol.Ceremony, Action: "ceremony.officer.add", Object: "officers", Code: errs.CodeOf(err), Detail: detail},
				fmt.Errorf("add-officer: officer %s: %w", off.Name, err))
		}
		creds = append(creds, cred)
	}
	if err := rec.Record(ctx, audit.Event{Actor: enrol.Ceremony, Action: "ceremony.officer.add", Object: "officers", Outcome: audit.OK, Detail: detail}); err != nil {
		return creds, err
	}
	d.Log.Info("officers added at a recovery ceremony", "officers", names, "active_before", len(active))
	return creds, nil
}
