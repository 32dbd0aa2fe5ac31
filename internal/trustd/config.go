// Package trustd assembles the trust service from its config file: the
// ceremony that creates a CA (init) and the daemon that serves it (serve).
// cmd/trustd only parses flags and calls in here.
package trustd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/netcap"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/tlog"
)

// Config is trustd.json. Relative file paths are relative to the file's
// directory; key URIs name absolute paths. Secrets (PINs, passwords, database passwords) are never values
// here: they are in files named by key URIs' pin-source or by dsn_file.
type Config struct {
	Store StoreConfig `json:"store"`
	CA    CAConfig    `json:"ca"`
	// OIDArc roots our certificate policies and EKUs. The default 2.999.1
	// is the ITU-T example arc: fine for development, never production.
	OIDArc string `json:"oid_arc"`
	// ProfilesDir holds profiles.json and templates; empty means built in.
	ProfilesDir string `json:"profiles_dir,omitempty"`
	// URLs put into issued certificates.
	URLs URLConfig `json:"urls"`
	// TLS is trustd's own server certificate chain and key.
	TLS    TLSConfig      `json:"tls"`
	Admin  ListenerConfig `json:"admin"`
	Public ListenerConfig `json:"public"`
	// HTTP is the plain-HTTP listener for what relying parties fetch by URL
	// from inside certificates (the issuer certificate; CRL and OCSP).
	HTTP ListenerConfig `json:"http"`
	// Metrics is the optional operations listener: plain HTTP serving
	// /metrics, /healthz and /readyz, with no credential and no personal
	// data. Keep it on loopback or a management network.
	Metrics ListenerConfig `json:"metrics,omitzero"`
	Lint    LintConfig     `json:"lint"`
	Log     LogConfig      `json:"log"`
	// Status is how revocation status is published (OCSP, CRL, bundle).
	Status StatusConfig `json:"status"`
	// AnonymousWrites throttles what anyone may write without a client
	// certificate: holder revocation requests (POST /v1/revocations).
	AnonymousWrites WriteLimitConfig `json:"anonymous_writes,omitzero"`
	// Enrolment tunes enrolment under dual control.
	Enrolment EnrolmentConfig `json:"enrolment,omitzero"`
	// AuditLog is trustd's tamper-evident audit log (docs/audit-log.md).
	AuditLog AuditLogConfig `json:"audit_log,omitzero"`

	dir string
}

// StoreConfig selects the database.
type StoreConfig struct {
	Driver  string `json:"driver"`             // sqlite (default) or postgres
	Path    string `json:"path,omitempty"`     // SQLite file
	DSNFile string `json:"dsn_file,omitempty"` // file holding the PostgreSQL URL (it has a password)
}

// CAConfig names the issuing CA. The root key is not here: day-to-day
// issuance does not need it.
type CAConfig struct {
	RootCerts        []string `json:"root_certs"`
	IntermediateCert string   `json:"intermediate_cert"`
	IntermediateKey  string   `json:"intermediate_key"` // pkcs11: or softkey: URI
	// ARL is the root's authority revocation list (DER), written by init
	// and re-signed by `trustd sign-arl` with the root key, at least
	// yearly. trustd serves it and puts it in the trust bundle, and
	// re-reads the file every few minutes. Without it relying parties
	// cannot check the intermediate and refuse its chains.
	ARL string `json:"arl,omitempty"`
}

// URLConfig are the relying-party URLs in certificates.
type URLConfig struct {
	CRL    []string `json:"crl"`
	OCSP   []string `json:"ocsp"`
	Issuer []string `json:"issuer"`
	// ARL is the intermediate's CRL distribution point (set at init: it
	// is inside the intermediate certificate); its path is where the
	// relying-party listener serves the ARL.
	ARL []string `json:"arl,omitempty"`
}

// TLSConfig is a certificate chain file and a key URI.
type TLSConfig struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// ListenerConfig is one listener. A connection beyond its caps is closed
// as soon as it is accepted; zero means the default in brackets.
type ListenerConfig struct {
	Listen string `json:"listen"`
	// MaxConnections caps the listener's open connections [4096].
	MaxConnections int `json:"max_connections,omitempty"`
	// MaxConnectionsPerIP caps those of one client address (an IPv4
	// address or an IPv6 /64) [256].
	MaxConnectionsPerIP int `json:"max_connections_per_ip,omitempty"`
	// ReadTimeout bounds the reading of one request, header and body
	// [30s]: a client that sends its body slower, or stops, has its
	// connection closed rather than hold it, and a handler, for as long
	// as it likes.
	ReadTimeout Duration `json:"read_timeout,omitzero"`
}

// Limits are the listener's connection caps.
func (l ListenerConfig) Limits() netcap.Limits {
	return netcap.Limits{Total: l.MaxConnections, PerIP: l.MaxConnectionsPerIP}
}

// StatusConfig tunes OCSP, CRL and trust-bundle publishing. Zero values
// mean the defaults in brackets.
type StatusConfig struct {
	// ServiceSubject is trustd's own registry id (written by init); its
	// OCSP-responder and trust-bundle certificates are issued to it.
	ServiceSubject string `json:"service_subject"`
	// OCSPKey and BundleKey are key URI templates for those credentials;
	// "{n}" is replaced by a fresh suffix at each rotation. [the
	// intermediate key's custody: same token or directory]
	OCSPKey   string `json:"ocsp_key,omitempty"`
	BundleKey string `json:"bundle_key,omitempty"`
	// OCSPValidity is each OCSP response's lifetime [4h].
	OCSPValidity Duration `json:"ocsp_validity,omitempty"`
	// CRLValidity is nextUpdate - thisUpdate [24h]; CRLRefresh how often a
	// new CRL is made even without changes [1h].
	CRLValidity Duration `json:"crl_validity,omitempty"`
	CRLRefresh  Duration `json:"crl_refresh,omitempty"`
	// RenewBefore is how long before expiry trustd replaces its own
	// credentials [720h].
	RenewBefore Duration `json:"renew_before,omitempty"`
}

// WriteLimitConfig bounds anonymous writes per client address (an IPv4
// address or an IPv6 /64) and from all addresses together. Zero values
// mean the defaults in brackets. Behind a reverse proxy every request
// comes from the proxy's address: give the proxy its own per-address
// limits, or raise these.
type WriteLimitConfig struct {
	PerIPPerMinute float64 `json:"per_ip_per_minute,omitempty"` // [10]
	PerIPBurst     int     `json:"per_ip_burst,omitempty"`      // [10]
	PerSecond      float64 `json:"per_second,omitempty"`        // all addresses [50]
	Burst          int     `json:"burst,omitempty"`             // all addresses [100]
}

// EnrolmentConfig tunes enrolment. Zero values mean the defaults in
// brackets.
type EnrolmentConfig struct {
	// RequestLifetime is how long an enrolment request waits for its
	// second officer; then it expires and leaves the pending list [168h].
	RequestLifetime Duration `json:"request_lifetime,omitzero"`
}

// Lifetime is the request lifetime in force.
func (e EnrolmentConfig) Lifetime() time.Duration {
	return e.RequestLifetime.or(enrol.DefaultRequestLifetime)
}

// AuditLogConfig is trustd's tamper-evident audit log: its entries are
// in trustd's database; it signs checkpoints with a note key kept sealed
// under a secret key in custody. trustd init writes it. Without it (a CA
// made before the log), entries are kept but no checkpoint is signed or
// served, and trustd says so at every start.
type AuditLogConfig struct {
	// Origin names the log in its checkpoints, e.g.
	// "trustd.example/trustd-audit". It MUST NOT change for the log's life.
	Origin string `json:"origin"`
	// SealingKey is the URI of the AES-256-GCM key (pkcs11: or softkey:)
	// that seals the note key.
	SealingKey string `json:"sealing_key"`
	// NoteKey is the sealed checkpoint-signing key's file.
	NoteKey string `json:"note_key"`
	// OtherLogs are the logs of other daemons (rxd's) whose verifier keys
	// the trust bundle carries, so that auditors holding the bundle can
	// check their checkpoints too.
	OtherLogs []LogKeyConfig `json:"other_logs,omitempty"`
	// Witnesses cosign the log's checkpoints (C2SP tlog-witness): each new
	// checkpoint is submitted to each, and their cosignatures are served
	// with it. None: checkpoints carry the log's signature alone.
	Witnesses []WitnessConfig `json:"witnesses,omitempty"`
}

// WitnessConfig is a witness of the audit log.
type WitnessConfig struct {
	// Name is the witness's name, e.g. "witness.example.org/w1";
	// optional, and if given it MUST be its key's name.
	Name string `json:"name,omitempty"`
	// VerifierKey is its cosignature/v1 Ed25519 note verifier key.
	VerifierKey string `json:"vkey"`
	// URL is its submission prefix (checkpoints go to URL/add-checkpoint).
	URL string `json:"url"`
}

// witnesses are the configured witnesses, as the log takes them.
func (a AuditLogConfig) witnesses() []tlog.Witness {
	out := make([]tlog.Witness, len(a.Witnesses))
	for i, w := range a.Witnesses {
		out[i] = tlog.Witness{VerifierKey: w.VerifierKey, URL: w.URL}
	}
	return out
}

// LogKeyConfig names another log and its checkpoint verifier key.
type LogKeyConfig struct {
	Origin string `json:"origin"`
	// VerifierKey is the note verifier key, name+hash+base64 (what `rxd
	// audit-keys` prints).
	VerifierKey string `json:"vkey"`
	// URL is where the log is served (its base URL), if known.
	URL string `json:"url,omitempty"`
}

// Check says what is wrong with l: its origin and key, and its URL if it
// has one.
func (l LogKeyConfig) Check() error {
	if err := tlog.CheckLogKey(l.Origin, l.VerifierKey); err != nil {
		return err
	}
	if l.URL != "" {
		if pu, err := url.Parse(l.URL); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return fmt.Errorf("url: %q is not an http(s) URL", l.URL)
		}
	}
	return nil
}

// Duration is a time.Duration written as "4h" in JSON.
type Duration struct{ time.Duration }

// UnmarshalJSON reads "90m", "24h".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string like \"24h\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes "24h0m0s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

func (d Duration) or(def time.Duration) time.Duration {
	if d.Duration == 0 {
		return def
	}
	return d.Duration
}

// LintConfig tunes pre-issuance linting.
type LintConfig struct {
	// Ignore lists zlint lint names to skip. Each needs a reason, kept
	// next to it in the deployment's change record.
	Ignore []string `json:"ignore,omitempty"`
}

// LogConfig selects the log format and level.
type LogConfig struct {
	Level  string `json:"level,omitempty"`  // debug, info (default), warn, error
	Format string `json:"format,omitempty"` // json (default) or text
}

// LoadConfig reads and validates the file.
func LoadConfig(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	c.dir = filepath.Dir(abs)
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

// Path resolves p against the config file's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

// Validate checks every field and fills safe defaults.
func (c *Config) Validate() error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	switch c.Store.Driver {
	case "", sqlstore.SQLite:
		c.Store.Driver = sqlstore.SQLite
		if c.Store.Path == "" {
			bad("store.path: required for sqlite")
		}
	case sqlstore.Postgres:
		if c.Store.DSNFile == "" {
			bad("store.dsn_file: required for postgres (the URL holds a password, so it lives in a file)")
		}
	default:
		bad("store.driver: %q is not sqlite or postgres", c.Store.Driver)
	}
	if len(c.CA.RootCerts) == 0 {
		bad("ca.root_certs: at least one root certificate file is required")
	}
	if c.CA.IntermediateCert == "" {
		bad("ca.intermediate_cert: required")
	}
	checkURI := func(field, v string) {
		if v == "" {
			bad("%s: required", field)
			return
		}
		if _, err := hsm.ParseURI(v); err != nil {
			bad("%s: %v", field, err)
		}
	}
	checkURI("ca.intermediate_key", c.CA.IntermediateKey)
	checkURI("tls.key", c.TLS.Key)
	if c.TLS.Cert == "" {
		bad("tls.cert: required")
	}
	if c.OIDArc == "" {
		c.OIDArc = pki.DefaultArc
	}
	if _, err := pki.ParseArc(c.OIDArc); err != nil {
		bad("oid_arc: %v", err)
	}
	for _, u := range slices.Concat(c.URLs.CRL, c.URLs.OCSP, c.URLs.Issuer, c.URLs.ARL) {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			bad("urls: %q is not an http(s) URL", u)
		}
	}
	for name, l := range map[string]*ListenerConfig{"admin": &c.Admin, "public": &c.Public, "http": &c.HTTP, "metrics": &c.Metrics} {
		if l.Listen == "" {
			if name == "http" || name == "metrics" {
				continue // optional
			}
			bad("%s.listen: required (host:port)", name)
			continue
		}
		if _, _, err := net.SplitHostPort(l.Listen); err != nil {
			bad("%s.listen: %v", name, err)
		}
		if err := l.Limits().Validate(); err != nil {
			bad("%s: %v", name, err)
		}
		// Under a second cuts honest requests off on a slow link (it
		// bounds the header too); over ten minutes is no cut-off for a
		// client that trickles its body.
		if d := l.ReadTimeout.Duration; d != 0 && (d < time.Second || d > 10*time.Minute) {
			bad("%s.read_timeout: must be between 1s and 10m, not %s", name, d)
		}
	}
	if c.Status.ServiceSubject == "" {
		bad("status.service_subject: required (trustd init writes it)")
	}
	for field, tpl := range map[string]string{"status.ocsp_key": c.Status.OCSPKey, "status.bundle_key": c.Status.BundleKey} {
		if tpl == "" {
			continue
		}
		if !strings.Contains(tpl, "{n}") {
			bad("%s: must contain {n}, replaced by a fresh suffix at each rotation", field)
		} else if _, err := hsm.ParseURI(strings.ReplaceAll(tpl, "{n}", "1")); err != nil {
			bad("%s: %v", field, err)
		}
	}
	if c.Status.CRLRefresh.or(time.Hour) >= c.Status.CRLValidity.or(24*time.Hour) {
		bad("status.crl_refresh must be shorter than status.crl_validity")
	}
	for field, d := range map[string]Duration{"status.ocsp_validity": c.Status.OCSPValidity, "status.crl_validity": c.Status.CRLValidity,
		"status.crl_refresh": c.Status.CRLRefresh, "status.renew_before": c.Status.RenewBefore,
		"enrolment.request_lifetime": c.Enrolment.RequestLifetime} {
		if d.Duration < 0 {
			bad("%s: must not be negative", field)
		}
	}
	if a := c.AuditLog; a.Origin != "" || a.SealingKey != "" || a.NoteKey != "" {
		if a.Origin == "" || strings.ContainsAny(a.Origin, " \t\r\n") {
			bad("audit_log.origin: required, one line without spaces")
		}
		checkURI("audit_log.sealing_key", a.SealingKey)
		if a.NoteKey == "" {
			bad("audit_log.note_key: required (the sealed key file)")
		}
	}
	for i, l := range c.AuditLog.OtherLogs {
		if err := l.Check(); err != nil {
			bad("audit_log.other_logs[%d]: %v", i, err)
		}
	}
	for i, w := range c.AuditLog.Witnesses {
		v, err := tlog.WitnessVerifier(w.VerifierKey)
		if err != nil {
			bad("audit_log.witnesses[%d].vkey: %v", i, err)
		} else if w.Name != "" && w.Name != v.Name() {
			bad("audit_log.witnesses[%d].name: %q, but its key is %q's", i, w.Name, v.Name())
		}
	}
	if len(c.AuditLog.Witnesses) > 0 && c.AuditLog.Origin == "" {
		bad("audit_log.witnesses: the log has no origin: nothing is signed to cosign")
	}
	if err := tlog.CheckWitnesses(c.AuditLog.witnesses()); err != nil {
		bad("audit_log.witnesses: %v", err)
	}
	if w := c.AnonymousWrites; w.PerIPPerMinute < 0 || w.PerIPBurst < 0 || w.PerSecond < 0 || w.Burst < 0 {
		bad("anonymous_writes: limits must not be negative")
	}
	switch c.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		bad("log.level: %q is not debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "", "json", "text":
	default:
		bad("log.format: %q is not json or text", c.Log.Format)
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// Logger builds the process logger from the config.
func (c *Config) Logger(w io.Writer) *slog.Logger {
	level := c.Log.Level
	if level == "" {
		level = "info"
	}
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level)) // Validate accepted only known names
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// Save writes the config as indented JSON (used by init).
func (c *Config) Save(path string) error {
	// Key URIs hold '&' (…?module-path=…&pin-source=…): an operator reads
	// and edits this file, so no \u0026 escapes.
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o600)
}
