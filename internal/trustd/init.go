package trustd

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/persian"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/ca"
	"github.com/nuskha/nuskha/internal/pki/ceremony"
	"github.com/nuskha/nuskha/internal/pki/keycheck"
	"github.com/nuskha/nuskha/internal/pki/lint"
	"github.com/nuskha/nuskha/internal/pki/profile"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/truststore"
	"github.com/nuskha/nuskha/internal/tlog"
)

// Officer is one security officer bootstrapped at init. Each officer's key
// should be made where only that officer holds it: on their token (KeyURI
// pkcs11:…) or elsewhere, brought as a CSR. Only with neither does init
// make the key itself, as a password-encrypted file in the officer's
// hand-over directory, <dir>/handover/<name>/, which must be handed to the
// officer and removed from the CA host: whoever can read every officer's key
// and password can act as every officer.
type Officer struct {
	Name string
	// KeyURI is where init makes the officer's key.
	KeyURI string
	// CSR is a request made with a key the officer already holds: init
	// certifies it and writes only the certificate.
	CSR *x509.CertificateRequest
}

// ParseOfficer reads an -officer argument: NAME (a key file made by init,
// to hand over), NAME=KEY-URI (the key made on the officer's token) or
// NAME=csr:PATH (a CSR, PEM or DER, made with a key the officer holds).
func ParseOfficer(arg string) (Officer, error) {
	name, spec, _ := strings.Cut(arg, "=")
	path, isCSR := strings.CutPrefix(spec, "csr:")
	if !isCSR {
		return Officer{Name: name, KeyURI: spec}, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Officer{}, err
	}
	csr, err := keycheck.ParseCSR(b)
	if err != nil {
		return Officer{}, fmt.Errorf("%s: %w", path, err)
	}
	return Officer{Name: name, CSR: csr}, nil
}

// InitOptions are the ceremony's choices.
type InitOptions struct {
	Dir string
	// Key URIs. Empty means a password-encrypted file in Dir, with a
	// generated password in Dir/secrets — the embedded default.
	RootKey, IntermediateKey, TLSKey string
	// AuditKey is the URI of the AES key that seals the audit log's
	// checkpoint key; AuditOrigin the log's origin [<host>/trustd-audit,
	// the host of HTTPBaseURL or the first DNS name].
	AuditKey, AuditOrigin    string
	RootAlg, IntermediateAlg hsm.Algorithm
	Names                    ceremony.Names
	Officers                 []Officer
	// DNSNames are trustd's TLS names (host names and IP addresses).
	DNSNames []string
	Store    StoreConfig
	OIDArc   string
	// Listen addresses, and the base URL of the plain-HTTP listener that
	// certificates point relying parties to.
	AdminListen, PublicListen, HTTPListen, HTTPBaseURL string
	// OtherLogs are other daemons' audit logs (rxd's) the trust bundle
	// names: audit_log.other_logs.
	OtherLogs []LogKeyConfig
}

// OfficerCredential is what init made for each officer.
type OfficerCredential struct {
	Name      string
	SubjectID string
	CertFile  string // leaf + intermediate, PEM, in <dir>/officers
	KeyURI    string // empty for an officer who brought a CSR
	// Handover is the directory holding the key, password and certificate
	// init made for the officer, to be handed over and removed from the CA
	// host; empty when the key is on the officer's token or was never here.
	Handover string
}

// InitResult says where init put things.
type InitResult struct {
	ConfigFile string
	RootCert   string
	RootKeyURI string
	Officers   []OfficerCredential
	// AuditOrigin and AuditVerifierKey name trustd's audit log and the key
	// its checkpoints are signed with (the trust bundle carries both).
	AuditOrigin, AuditVerifierKey string
}

// Init runs the CA ceremony into an empty directory: root and intermediate,
// the root's ARL, trustd's TLS certificate, the first officers'
// certificates, the database and trustd.json. Every certificate and CRL is
// linted before it is signed and the whole ceremony is audited. The root key is created but not referenced by
// the config: move it offline after init.
func Init(ctx context.Context, o InitOptions, d Deps) (*InitResult, error) {
	if len(o.Officers) < revoke.Quorum {
		return nil, errors.New("init: at least two officers are needed (dual control)")
	}
	if err := checkOfficers(o.Officers); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	if err := emptyDir(o.Dir); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	// The CA's state is its owner's alone: keys, passwords, the registry
	// with national ids. An empty directory made beforehand (by packaging,
	// say) is made private too.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	for _, sub := range []string{"ca", "secrets", "officers", "tls"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	keyURI := func(given, name string) (string, error) {
		if given != "" {
			return given, nil
		}
		pass, err := writeSecret(filepath.Join(dir, "secrets", name+".pass"))
		if err != nil {
			return "", err
		}
		return hsm.SoftKeyURI(filepath.Join(dir, "ca", name+".key"), pass), nil
	}
	if o.RootAlg == "" {
		o.RootAlg = hsm.ECP384
	}
	if o.IntermediateAlg == "" {
		o.IntermediateAlg = hsm.ECP256
	}
	if o.Names == (ceremony.Names{}) {
		o.Names = ceremony.DefaultNames
	}
	if o.OIDArc == "" {
		o.OIDArc = pki.DefaultArc
	}
	arc, err := pki.ParseArc(o.OIDArc)
	if err != nil {
		return nil, err
	}
	now := d.Now()

	rootURI, err := keyURI(o.RootKey, "root")
	if err != nil {
		return nil, err
	}
	interURI, err := keyURI(o.IntermediateKey, "intermediate")
	if err != nil {
		return nil, err
	}
	rootKey, err := d.Keys.CreateKey(ctx, rootURI, o.RootAlg)
	if err != nil {
		return nil, fmt.Errorf("init: root key: %w", err)
	}
	interKey, err := d.Keys.CreateKey(ctx, interURI, o.IntermediateAlg)
	if err != nil {
		return nil, fmt.Errorf("init: intermediate key: %w", err)
	}
	auditLog, vkey, err := createAuditLogKey(ctx, d.Keys, dir, o, keyURI)
	if err != nil {
		return nil, err
	}
	auditLog.OtherLogs = o.OtherLogs
	cfg := &Config{
		AuditLog: auditLog,
		Store:    o.Store,
		OIDArc:   o.OIDArc,
		CA: CAConfig{
			RootCerts: []string{"ca/root.crt"}, IntermediateCert: "ca/intermediate.crt", IntermediateKey: interKey.URI(), ARL: arlFile,
		},
		TLS:    TLSConfig{Cert: "tls/trustd.crt"},
		Admin:  ListenerConfig{Listen: o.AdminListen},
		Public: ListenerConfig{Listen: o.PublicListen},
		HTTP:   ListenerConfig{Listen: o.HTTPListen},
		dir:    dir,
	}
	if cfg.Store.Driver == "" {
		cfg.Store = StoreConfig{Driver: sqlstore.SQLite, Path: "trustd.db"}
	}
	if o.HTTPBaseURL != "" {
		cfg.URLs = URLConfig{
			CRL:    []string{o.HTTPBaseURL + "/crl/issuing-ca-1.crl"},
			OCSP:   []string{o.HTTPBaseURL + "/ocsp"},
			Issuer: []string{o.HTTPBaseURL + "/ca/intermediate.crt"},
			ARL:    []string{o.HTTPBaseURL + arlURLPath},
		}
	}
	profiles, err := Profiles(cfg)
	if err != nil {
		return nil, err
	}
	linter, err := lint.New(nil)
	if err != nil {
		return nil, err
	}
	root, err := ceremony.CreateRoot(rootKey, profiles.Root, o.Names, now, linter)
	if err != nil {
		return nil, fmt.Errorf("init: root certificate: %w", err)
	}
	inter, err := ceremony.CreateIntermediate(root, rootKey, interKey.Public(), profiles.Intermediate, o.Names, cfg.URLs.ARL, now, linter)
	if err != nil {
		return nil, fmt.Errorf("init: intermediate certificate: %w", err)
	}
	if err := writePEM(filepath.Join(dir, "ca", "root.crt"), root); err != nil {
		return nil, err
	}
	if err := writePEM(filepath.Join(dir, "ca", "intermediate.crt"), inter); err != nil {
		return nil, err
	}

	db, err := OpenStore(ctx, cfg, true)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rec := audit.NewLog(db, d.Log, d.Now)
	for _, c := range []struct {
		action string
		cert   *x509.Certificate
		key    string
	}{{"ceremony.root", root, rootURI}, {"ceremony.intermediate", inter, interKey.URI()}} {
		fp := sha256.Sum256(c.cert.Raw)
		if err := rec.Record(ctx, audit.Event{Actor: enrol.Ceremony, Action: c.action, Object: "ca:" + hex.EncodeToString(fp[:]), Outcome: audit.OK,
			Detail: map[string]string{"subject": c.cert.Subject.String(), "not_after": c.cert.NotAfter.UTC().Format(time.RFC3339), "key": redactedKeyURI(c.key)}}); err != nil {
			return nil, err
		}
	}
	if err := rec.Record(ctx, audit.Event{Actor: enrol.Ceremony, Action: "ceremony.audit-log", Object: "log:" + auditLog.Origin, Outcome: audit.OK,
		Detail: map[string]string{"vkey": vkey, "sealing_key": redactedKeyURI(auditLog.SealingKey)}}); err != nil {
		return nil, err
	}
	// The root's first ARL, empty: relying parties can check the
	// intermediate from the start.
	if _, err := signARL(ctx, rec, ceremony.ARLRequest{Number: big.NewInt(1), ThisUpdate: now}, root, rootKey, linter, filepath.Join(dir, arlFile)); err != nil {
		return nil, fmt.Errorf("init: the root's ARL: %w", err)
	}
	issuer, err := ca.New(ca.Config{Roots: []*x509.Certificate{root}, Intermediate: inter, Signer: interKey, Linter: linter, Now: d.Now})
	if err != nil {
		return nil, err
	}
	svc, err := enrol.New(enrol.Config{Notify: enrol.NoNotify{}, Store: db, Issuer: issuer, Profiles: profiles, Arc: arc,
		URLs: profile.URLs{CRL: cfg.URLs.CRL, OCSP: cfg.URLs.OCSP, Issuer: cfg.URLs.Issuer}, Audit: rec, Log: d.Log, Now: d.Now})
	if err != nil {
		return nil, err
	}
	b := bootstrapper{dir: dir, db: db, svc: svc, keys: d.Keys, inter: inter, now: now, org: o.Names.Organization}

	// trustd's own TLS identity.
	dns := o.DNSNames
	if len(dns) == 0 {
		dns = []string{"localhost", "127.0.0.1"}
	}
	tlsURI := o.TLSKey
	if tlsURI == "" {
		pass, err := writeSecret(filepath.Join(dir, "secrets", "tls.pass"))
		if err != nil {
			return nil, err
		}
		tlsURI = hsm.SoftKeyURI(filepath.Join(dir, "tls", "trustd.key"), pass)
	}
	svcSubject := &registry.Subject{Kind: pki.RoleService, Name: "trustd", Organization: o.Names.Organization, DNSNames: dns}
	tlsKeyURI, serviceID, err := b.issue(ctx, svcSubject, "service-tls-server", tlsURI, nil, filepath.Join(dir, "tls", "trustd.crt"))
	if err != nil {
		return nil, fmt.Errorf("init: trustd TLS certificate: %w", err)
	}
	cfg.TLS.Key = tlsKeyURI
	cfg.Status.ServiceSubject = serviceID

	res := &InitResult{RootCert: filepath.Join(dir, "ca", "root.crt"), RootKeyURI: rootURI, AuditOrigin: auditLog.Origin, AuditVerifierKey: vkey}
	for _, off := range o.Officers {
		cred, err := b.officer(ctx, off, profiles)
		if err != nil {
			return nil, fmt.Errorf("init: officer %s: %w", off.Name, err)
		}
		res.Officers = append(res.Officers, cred)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("init: the config it wrote is invalid: %w", err)
	}
	res.ConfigFile = filepath.Join(dir, "trustd.json")
	if err := cfg.Save(res.ConfigFile); err != nil {
		return nil, err
	}
	// Starting the service once makes the OCSP-responder and trust-bundle
	// credentials and the first CRL, and proves the config works.
	db.Close()
	started, err := New(ctx, cfg, d)
	if err != nil {
		return nil, fmt.Errorf("init: the new CA does not start: %w", err)
	}
	started.Close()
	d.Log.Info("ceremony complete", "config", res.ConfigFile, "root", res.RootCert)
	return res, nil
}

// auditNoteKeyFile is where init writes the audit log's sealed checkpoint
// key, relative to the config.
const auditNoteKeyFile = "ca/audit-note.key"

// createAuditLogKey makes the audit log's sealing key (on the token, or an
// encrypted file: keyURI decides as for the CA's keys) and its checkpoint
// key, sealed under it, and returns the log's configuration and the
// checkpoint key's verifier key.
func createAuditLogKey(ctx context.Context, keys *hsm.Manager, dir string, o InitOptions, keyURI func(given, name string) (string, error)) (AuditLogConfig, string, error) {
	origin := o.AuditOrigin
	if origin == "" {
		host := "localhost"
		if len(o.DNSNames) > 0 {
			host = o.DNSNames[0]
		}
		if u, err := url.Parse(o.HTTPBaseURL); err == nil && u.Hostname() != "" {
			host = u.Hostname()
		}
		origin = host + "/trustd-audit"
	}
	uri, err := keyURI(o.AuditKey, "audit-sealing")
	if err != nil {
		return AuditLogConfig{}, "", err
	}
	if err := keys.CreateSecret(ctx, uri, hsm.AES256GCM); err != nil {
		return AuditLogConfig{}, "", fmt.Errorf("init: the audit log's sealing key: %w", err)
	}
	aead, err := keys.OpenAEAD(ctx, uri)
	if err != nil {
		return AuditLogConfig{}, "", fmt.Errorf("init: the audit log's sealing key: %w", err)
	}
	// The key's name says which key it is: a rotation makes …/k2.
	sealed, vkey, err := tlog.GenerateNoteKey(aead, origin+"/k1")
	if err != nil {
		return AuditLogConfig{}, "", fmt.Errorf("init: the audit log's checkpoint key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, auditNoteKeyFile), sealed, 0o600); err != nil {
		return AuditLogConfig{}, "", err
	}
	return AuditLogConfig{Origin: origin, SealingKey: uri, NoteKey: auditNoteKeyFile}, vkey, nil
}

// checkOfficers refuses duplicate names, names that are not plain file
// names (they name the officer's files), and an officer with both a key URI
// and a CSR.
var officerName = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$`)

func checkOfficers(officers []Officer) error {
	seen := map[string]bool{}
	for _, off := range officers {
		// The name becomes file names (officers/NAME.crt, handover/NAME/).
		if !officerName.MatchString(off.Name) || seen[off.Name] {
			return fmt.Errorf("officer names must be unique, of letters, digits, '.', '_' or '-', not starting with '.' (at most 64), got %q", off.Name)
		}
		if off.KeyURI != "" && off.CSR != nil {
			return fmt.Errorf("officer %s: a key URI or a CSR, not both", off.Name)
		}
		seen[off.Name] = true
	}
	return nil
}

type bootstrapper struct {
	dir   string
	db    *truststore.Store
	svc   *enrol.Service
	keys  *hsm.Manager
	inter *x509.Certificate
	now   time.Time
	org   string
}

// officer registers and certifies one of the first officers. Their
// certificate goes into <dir>/officers; a key init makes itself goes, with
// its password and a copy of the certificate, into the officer's hand-over
// directory.
func (b bootstrapper) officer(ctx context.Context, off Officer, profiles *profile.Set) (OfficerCredential, error) {
	cred := OfficerCredential{Name: off.Name, CertFile: filepath.Join(b.dir, "officers", off.Name+".crt")}
	uri := off.KeyURI
	if off.CSR != nil {
		p, err := profiles.Get("officer")
		if err != nil {
			return cred, err
		}
		kt, err := keycheck.Check(off.CSR.PublicKey)
		if err != nil {
			return cred, err
		}
		if !p.AllowsKey(profile.KeyType(kt)) {
			return cred, errs.New(errs.WrongKeyType, "the officer profile accepts %v, the CSR's key is %s", p.KeyTypes, kt)
		}
	} else if uri == "" {
		cred.Handover = filepath.Join(b.dir, "handover", off.Name)
		if err := os.MkdirAll(cred.Handover, 0o700); err != nil {
			return cred, err
		}
		pass, err := writeSecret(filepath.Join(cred.Handover, off.Name+".pass"))
		if err != nil {
			return cred, err
		}
		uri = hsm.SoftKeyURI(filepath.Join(cred.Handover, off.Name+".key"), pass)
	}
	sub := &registry.Subject{Kind: pki.RoleOfficer, Name: off.Name, Organization: b.org}
	keyURI, subjectID, err := b.issue(ctx, sub, "officer", uri, off.CSR, cred.CertFile)
	if err != nil {
		return cred, err
	}
	cred.SubjectID = subjectID
	if off.CSR == nil {
		cred.KeyURI = keyURI
	}
	if cred.Handover != "" {
		chain, err := os.ReadFile(cred.CertFile)
		if err != nil {
			return cred, err
		}
		if err := os.WriteFile(filepath.Join(cred.Handover, off.Name+".crt"), chain, 0o644); err != nil {
			return cred, err
		}
	}
	return cred, nil
}

// issue registers sub and issues and writes its certificate chain: for
// csr, or for a key it makes at keyURI (whose URI it returns).
func (b bootstrapper) issue(ctx context.Context, sub *registry.Subject, profileName, keyURI string, csr *x509.CertificateRequest, certFile string) (string, string, error) {
	sub.ID = "sub_" + randomHex(12)
	sub.LicenceStatus = registry.Active
	// Whole days, as officers enter them: from today through the last
	// day that ends before the issuing certificate does.
	today, end := persian.Day(b.now), persian.Day(b.inter.NotAfter)
	sub.LicenceValidFrom, sub.LicenceValidUntil = registry.LicencePeriod(today, end.AddDate(0, 0, -1))
	sub.CreatedAt, sub.UpdatedAt = b.now, b.now
	sub.Normalize()
	if err := sub.Validate(); err != nil {
		return "", "", err
	}
	e := audit.Event{Time: b.now.UTC(), Actor: enrol.Ceremony, Action: "subject.create", Object: "subject:" + sub.ID, Outcome: audit.OK,
		Detail: map[string]string{"kind": string(sub.Kind)}}
	if err := b.db.CreateSubject(ctx, sub, enrol.Ceremony, e); err != nil {
		return "", "", err
	}
	if csr == nil {
		key, err := b.keys.CreateKey(ctx, keyURI, hsm.ECP256)
		if err != nil {
			return "", "", err
		}
		keyURI = key.URI()
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: sub.Name}}, key)
		if err != nil {
			return "", "", err
		}
		if csr, err = x509.ParseCertificateRequest(der); err != nil {
			return "", "", err
		}
	}
	rec, err := b.svc.Bootstrap(ctx, enrol.Ceremony, sub, profileName, csr)
	if err != nil {
		return "", "", err
	}
	leaf, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		return "", "", err
	}
	if err := writePEM(certFile, leaf, b.inter); err != nil {
		return "", "", err
	}
	return keyURI, sub.ID, nil
}

func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("init: %s is not empty; init never overwrites a CA", dir)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// writeSecret writes a fresh random password (0600) and returns its path.
func writeSecret(path string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(base64.RawURLEncoding.EncodeToString(b)+"\n"), 0o600); err != nil {
		return "", err
	}
	return path, nil
}

func writePEM(path string, certs ...*x509.Certificate) error {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return os.WriteFile(path, out, 0o644)
}

// redactedKeyURI keeps a key URI's address but not how its secret is found.
func redactedKeyURI(uri string) string {
	u, err := hsm.ParseURI(uri)
	if err != nil {
		return "unparseable"
	}
	delete(u.Query, "pin-source")
	return u.String()
}
