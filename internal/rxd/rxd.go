// Package rxd is the exchange daemon's composition root: from a Config it
// opens rxd's store and TLS key, builds the caller checks (the identity
// extension and online revocation checking), eligibility, the catalogue,
// the rules engine and its file watch, the prescription exchange (its
// store, verifiers, signing key and purge) and the vendors' API, and
// serves them until told to stop, ending in order. cmd/rxd only parses flags
// into a Config.
package rxd

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/internal/adjudicate"
	"github.com/nuskha/nuskha/internal/catalogue"
	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/httpedge"
	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/lifecycle"
	"github.com/nuskha/nuskha/internal/netcap"
	"github.com/nuskha/nuskha/internal/observe"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/revocation"
	"github.com/nuskha/nuskha/internal/rules"
	"github.com/nuskha/nuskha/internal/rules/watch"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/rxapi"
	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/tlogstore"
	"github.com/nuskha/nuskha/internal/tlog"
)

// Config is what rxd serve is told. A zero field takes the default given
// in brackets.
type Config struct {
	Store Store
	// Listen is the HTTPS address [127.0.0.1:8543]; port 0 lets the
	// kernel choose (the address is logged).
	Listen string
	// TLSCert is the server certificate chain (PEM); TLSKey its key, a key
	// URI (softkey:…, pkcs11:…) or an unencrypted PEM file; ClientCA the
	// root certificates (PEM) that callers' certificates must chain to.
	// All three are required: every caller is authenticated.
	TLSCert, TLSKey, ClientCA string
	// Arc is the OID arc of the identity extension, as trustd's
	// [pki.DefaultArc].
	Arc string
	// StatusMaxAge is the oldest OCSP evidence accepted for a caller's
	// certificate [24h]; Recheck how long a "good" answer is reused (0:
	// ask on every call).
	StatusMaxAge time.Duration
	Recheck      time.Duration
	// RulesFile is the rule set (YAML), watched every RulesPoll [5s];
	// without it, the starter set.
	RulesFile string
	RulesPoll time.Duration
	// Conns caps the open connections [netcap's defaults].
	Conns netcap.Limits
	// ReadTimeout bounds the reading of one request, header and body
	// [30s; 1s to 10m]: a client that sends its body slower, or stops,
	// has its connection cut off rather than hold a handler and a
	// connection for as long as it likes.
	ReadTimeout time.Duration
	// Limits are each caller's request and lookup budgets
	// [rxapi.DefaultLimits].
	Limits rxapi.Limits
	// Audit is rxd's audit log: required, every action is recorded.
	Audit Audit
	// ExchangeKey is the exchange's signing key for acknowledgements and
	// receipts, a key URI (pkcs11:… in the HSM, softkey:… for tests);
	// ExchangeCert its certificate (profile exchange-receipt-signing)
	// with the intermediate(s), PEM, leaf first. Without both, rxd
	// serves no exchange: its routes answer unavailable.
	ExchangeKey, ExchangeCert string
	// PurgeEvery is how often expired sessions and idempotency records
	// are deleted [1h].
	PurgeEvery time.Duration
	// MetricsListen is the operations listener's address: plain HTTP
	// serving /metrics, /healthz and /readyz, with no credential and no
	// personal data. Keep it on loopback or a management network. Empty:
	// none (the main listener still serves /healthz and /readyz).
	MetricsListen string
}

// Audit names rxd's audit log (docs/audit-log.md): its keys, made by
// "rxd audit-keys" (CreateAuditKeys), and its name.
type Audit struct {
	// PseudonymKey is the HMAC-SHA256 key patients' pseudonyms are made
	// with, a key URI (pkcs11:… on the HSM, softkey:… for the embedded
	// default). It also keys the seal of the answers kept for
	// Idempotency-Key retries. Every rxd over one database MUST use the
	// same, and it is never changed (a new key makes new pseudonyms).
	PseudonymKey string
	// SealKey is the AES-256-GCM key NoteKeyFile is sealed under, a key
	// URI; NoteKeyFile the sealed Ed25519 key checkpoints are signed with
	// (tlog.GenerateNoteKey).
	SealKey, NoteKeyFile string
	// Origin is the log's name in its checkpoints, e.g.
	// "rxd.example.ir/audit": fixed for the life of the log.
	Origin string
	// Witnesses cosign the log's checkpoints (C2SP tlog-witness); none:
	// checkpoints carry the log's signature alone.
	Witnesses []tlog.Witness
}

func (a Audit) validate() error {
	if a.PseudonymKey == "" || a.SealKey == "" || a.NoteKeyFile == "" || a.Origin == "" {
		return errors.New("rxd records every action in its audit log: -audit-pseudonym-key, -audit-seal-key, -audit-note-key and -audit-origin are required (rxd audit-keys makes the keys)")
	}
	if strings.ContainsAny(a.Origin, " \t\r\n+") {
		return fmt.Errorf("-audit-origin %q: one word, no spaces or '+' (e.g. rxd.example.ir/audit)", a.Origin)
	}
	if err := tlog.CheckWitnesses(a.Witnesses); err != nil {
		return fmt.Errorf("-audit-witness: %w", err)
	}
	return nil
}

// CreateAuditKeys makes what Audit names that does not exist yet: the
// pseudonym key and the sealing key (in custody, where their URIs say;
// a key already there is kept), and a new checkpoint key called name
// sealed into a.NoteKeyFile (which MUST NOT exist: a new name is a new
// key, as rotation wants). It returns the checkpoint key's verifier key,
// for the auditors and for trustd's trust bundle.
func CreateAuditKeys(ctx context.Context, keys *hsm.Manager, a Audit, name string) (vkey string, err error) {
	if err := a.validate(); err != nil {
		return "", err
	}
	if _, err := os.Stat(a.NoteKeyFile); err == nil {
		return "", fmt.Errorf("-audit-note-key %s exists: a new checkpoint key goes into a new file, under a new name", a.NoteKeyFile)
	}
	for _, k := range []struct {
		flag, uri string
		kind      hsm.SecretKind
	}{{"-audit-pseudonym-key", a.PseudonymKey, hsm.HMACSHA256}, {"-audit-seal-key", a.SealKey, hsm.AES256GCM}} {
		if err := keys.CreateSecret(ctx, k.uri, k.kind); err != nil && !errors.Is(err, hsm.ErrKeyExists) {
			return "", fmt.Errorf("%s: %w", k.flag, err)
		}
	}
	if _, err := keys.OpenMAC(ctx, a.PseudonymKey); err != nil {
		return "", fmt.Errorf("-audit-pseudonym-key: %w", err)
	}
	aead, err := keys.OpenAEAD(ctx, a.SealKey)
	if err != nil {
		return "", fmt.Errorf("-audit-seal-key: %w", err)
	}
	sealed, vkey, err := tlog.GenerateNoteKey(aead, name)
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(a.NoteKeyFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("-audit-note-key: %w", err)
	}
	if _, err := f.Write(sealed); err != nil {
		f.Close()
		return "", fmt.Errorf("-audit-note-key: %w", err)
	}
	return vkey, f.Close()
}

// auditLog is rxd's audit log, opened from its Audit.
type auditLog struct {
	store      *tlogstore.Store
	log        *tlog.Log
	pseudonyms *tlog.Pseudonyms
	// sealKey seals the answers kept for Idempotency-Key retries:
	// derived from the pseudonym key, the one secret every instance
	// over the database shares.
	sealKey []byte
}

// auditKeys are the audit log's keys, opened.
type auditKeys struct {
	pseudonyms *tlog.Pseudonyms
	note       *tlog.NoteKey
	seal       []byte
}

// openAuditKeys opens the audit log's keys (before the database, so that
// a key that cannot be used stops rxd before anything is made).
func openAuditKeys(ctx context.Context, keys *hsm.Manager, a Audit) (*auditKeys, error) {
	mac, err := keys.OpenMAC(ctx, a.PseudonymKey)
	if err != nil {
		return nil, fmt.Errorf("-audit-pseudonym-key: %w", err)
	}
	aead, err := keys.OpenAEAD(ctx, a.SealKey)
	if err != nil {
		return nil, fmt.Errorf("-audit-seal-key: %w", err)
	}
	sealed, err := os.ReadFile(a.NoteKeyFile)
	if err != nil {
		return nil, fmt.Errorf("-audit-note-key: %w", err)
	}
	noteKey, err := tlog.OpenNoteKey(aead, sealed)
	if err != nil {
		return nil, fmt.Errorf("-audit-note-key %s: %w", a.NoteKeyFile, err)
	}
	seal, err := mac.Sum([]byte("nuskha rxd: idempotency seal v1"))
	if err != nil {
		return nil, fmt.Errorf("-audit-pseudonym-key: %w", err)
	}
	return &auditKeys{pseudonyms: tlog.NewPseudonyms(mac), note: noteKey, seal: seal[:]}, nil
}

// openAudit opens the audit log's tables in db, with its keys.
func openAudit(ctx context.Context, k *auditKeys, a Audit, db *sqlstore.DB, d Deps, metrics prometheus.Registerer) (*auditLog, error) {
	store, err := tlogstore.New(ctx, db)
	if err != nil {
		return nil, err
	}
	check, err := k.pseudonyms.CheckValue()
	if err != nil {
		return nil, fmt.Errorf("-audit-pseudonym-key: %w", err)
	}
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	if err := store.CheckKey(ctx, "pseudonym", check[:], now()); errors.Is(err, tlogstore.ErrKeyChanged) {
		return nil, fmt.Errorf("-audit-pseudonym-key %s is not the key this database's audit log was written with (its check value differs): every patient would get new pseudonyms, and idempotent retries would not open; open the token that holds the log's key", a.PseudonymKey)
	} else if err != nil {
		return nil, err
	}
	l, err := tlog.New(store, tlog.Config{Origin: a.Origin, Key: k.note, Now: d.Now, Logger: d.Log, Witnesses: a.Witnesses, Metrics: metrics})
	if err != nil {
		return nil, err
	}
	return &auditLog{store: store, log: l, pseudonyms: k.pseudonyms, sealKey: k.seal}, nil
}

// Deps are what a Service takes from its process.
type Deps struct {
	Log *slog.Logger
	Now func() time.Time
	// Keys is the process's one key manager; the caller closes it after
	// Close.
	Keys *hsm.Manager
	// Metrics is the process's registry [a new one, observe.NewRegistry].
	Metrics *prometheus.Registry
}

// Service is an rxd ready to serve: everything built from the Config.
type Service struct {
	cfg    Config
	log    *slog.Logger
	db     *sqlstore.DB
	where  string
	engine *rules.Engine
	api    *rxapi.API
	tls    *tls.Config
	certs  *httpedge.Certificates
	keys   *hsm.Manager
	reg    *prometheus.Registry
	ready  *observe.Readiness
	// purge deletes expired sessions and idempotency records; nil when
	// rxd serves no exchange.
	purge func(ctx context.Context, now time.Time) error
	now   func() time.Time
	audit *auditLog
}

func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8543"
	}
	if c.Arc == "" {
		c.Arc = pki.DefaultArc
	}
	if c.StatusMaxAge == 0 {
		c.StatusMaxAge = 24 * time.Hour
	}
	if c.PurgeEvery == 0 {
		c.PurgeEvery = time.Hour
	}
	if c.RulesPoll == 0 {
		c.RulesPoll = 5 * time.Second
	}
	if c.Limits == (rxapi.Limits{}) {
		c.Limits = rxapi.DefaultLimits()
	}
	if c.Conns.Total == 0 {
		c.Conns.Total = netcap.DefaultTotal
	}
	if c.Conns.PerIP == 0 {
		c.Conns.PerIP = netcap.DefaultPerIP
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 30 * time.Second
	}
	return c
}

func (c Config) validate() error {
	if c.TLSCert == "" || c.TLSKey == "" || c.ClientCA == "" {
		return errors.New("rxd serve needs -tls-cert, -tls-key and -client-ca: every caller is authenticated by its certificate")
	}
	if (c.ExchangeKey == "") != (c.ExchangeCert == "") {
		return errors.New("-exchange-key and -exchange-cert go together: the exchange's signing key and its certificate chain")
	}
	if c.PurgeEvery < 0 {
		return fmt.Errorf("-purge-every must be positive, not %s", c.PurgeEvery)
	}
	if c.Recheck < 0 {
		return fmt.Errorf("-revocation-recheck must be 0 (ask on every call) or more, not %s", c.Recheck)
	}
	// As trustd's read_timeout: under a second cuts honest requests off
	// on a slow link, over ten minutes cuts no trickling client off.
	if c.ReadTimeout < time.Second || c.ReadTimeout > 10*time.Minute {
		return fmt.Errorf("the read timeout must be between 1s and 10m, not %s", c.ReadTimeout)
	}
	if c.Limits.PerSecond <= 0 || c.Limits.Burst < 1 || c.Limits.DailyLookups < 1 {
		return errors.New("-caller-rate, -caller-burst and -daily-lookups must be positive")
	}
	if err := c.Audit.validate(); err != nil {
		return err
	}
	if err := c.Conns.Validate(); err != nil {
		return err
	}
	return c.Store.Validate()
}

// New builds the service: it checks the config, loads the TLS key (which
// must be the certificate's), loads the rule set and opens the store, so
// that a mistake is reported before anything listens. On error nothing is
// left open.
func New(ctx context.Context, cfg Config, d Deps) (*Service, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	arc, err := pki.ParseArc(cfg.Arc)
	if err != nil {
		return nil, err
	}
	akeys, err := openAuditKeys(ctx, d.Keys, cfg.Audit)
	if err != nil {
		return nil, err
	}
	tlsCfg, certs, anchors, err := serverTLS(ctx, d.Keys, cfg.TLSCert, cfg.TLSKey, cfg.ClientCA)
	if err != nil {
		return nil, err
	}
	metrics := d.Metrics
	if metrics == nil {
		metrics = observe.NewRegistry("rxd")
	}
	signers := observe.NewSigners(metrics)
	var exchKey exchange.SigningKey
	if cfg.ExchangeKey != "" {
		if exchKey, err = signingKey(ctx, d.Keys, cfg.ExchangeCert, cfg.ExchangeKey); err != nil {
			return nil, err
		}
		exchKey.Signer = signers.Wrap("exchange", exchKey.Signer)
	} else {
		d.Log.Warn("no -exchange-key: rxd serves eligibility, the catalogue and the rules, but not the prescription exchange")
	}
	engine := rules.NewEngine(rules.Starter())
	if cfg.RulesFile != "" {
		// A broken file at start is fatal: the operator is there to see it.
		// Later a broken edit is logged and the running set stays.
		if err := engine.ReloadFile(cfg.RulesFile); err != nil {
			return nil, err
		}
	}
	db, where, err := OpenStore(ctx, cfg.Store)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			db.Close()
		}
	}()
	audit, err := openAudit(ctx, akeys, cfg.Audit, db, d, metrics)
	if err != nil {
		return nil, err
	}
	reg, err := rxstore.NewInsured(ctx, db)
	if err != nil {
		return nil, err
	}
	// Callers' certificates are checked online with the OCSP responder
	// they name; without an answer the call is refused. A "good" answer is
	// reused for Recheck at most: the bound on how long a revoked caller
	// is still served.
	status, err := revocation.New(revocation.Config{MaxAge: cfg.StatusMaxAge, Recheck: cfg.Recheck, Now: d.Now, HTTP: &http.Client{Timeout: 5 * time.Second}})
	if err != nil {
		return nil, err
	}
	cstore, err := rxstore.NewCatalogue(ctx, db)
	if err != nil {
		return nil, err
	}
	// The daily lookup budgets are in the database, shared by every
	// instance over it.
	budgets, err := rxstore.NewBudgets(ctx, db)
	if err != nil {
		return nil, err
	}
	cat, err := catalogue.New(catalogue.Config{Store: cstore})
	if err != nil {
		return nil, err
	}
	elig := &insured.Checker{Registry: reg, Policy: insured.DefaultPolicy()}
	adj := &adjudicate.Adjudicator{Eligibility: elig, Catalogue: cat, Rules: engine, History: reg, Usage: reg, Now: d.Now, Log: d.Log}
	observe.DB(metrics, db.SQL(), "rxd")
	db.ObserveCommits(observe.Commits(metrics))
	registerEvidence(metrics, status, d.Now)
	registerInForce(metrics, engine, cat, d.Now)
	ready := &observe.Readiness{Checks: readiness(db, engine, exchKey.Signer, exchKey.Chain, anchors, status), Log: d.Log}
	api := &rxapi.API{
		Eligibility: elig,
		Adjudicator: adj,
		Catalogue:   cat,
		Rules:       engine,
		Arc:         arc,
		Status:      status,
		DB:          db,
		Log:         d.Log,
		Now:         d.Now,
		Limits:      cfg.Limits,
		Budgets:     budgets,
		Pseudonyms:  audit.pseudonyms,
		AuditLog:    audit.store,
		AuditStore:  audit.store,
		SealKey:     audit.sealKey,
		Ready:       ready.Public(),
		Metrics:     httpedge.NewMetrics(metrics),
	}
	svc := &Service{cfg: cfg, log: d.Log, db: db, where: where, engine: engine, api: api, tls: tlsCfg, certs: certs, keys: d.Keys, reg: metrics, ready: ready, now: d.Now, audit: audit}
	if exchKey.Signer != nil {
		xstore, err := rxstore.NewExchange(ctx, db, audit.store)
		if err != nil {
			return nil, err
		}
		xsvc, err := newExchange(xstore, anchors, arc, status, adj, exchKey, audit, d, newVerifications(metrics))
		if err != nil {
			return nil, err
		}
		api.Exchange, api.Idempotency, svc.purge = newMeteredExchange(metrics, xsvc, arc), xstore, xstore.Purge
	}
	ok = true
	return svc, nil
}

// reverifyMaxAge is how old a stored prescription's signature may be when
// it is verified again: its last fill's window may end 12 repeats of 365
// days after it was signed (rx's limits), plus the window itself.
const reverifyMaxAge = (12*365 + exchange.DefaultWindowDays + 1) * 24 * time.Hour

// newExchange builds the exchange's service: documents verified as they
// arrive against the callers' roots with revocation now (failing closed),
// stored documents verified again with revocation judged at the time the
// exchange accepted them, sessions' cards checked on every call.
func newExchange(store exchange.Store, anchors []*x509.Certificate, arc pki.Arc, status *revocation.Checker, adj *adjudicate.Adjudicator, key exchange.SigningKey, audit *auditLog, d Deps, verifications *prometheus.CounterVec) (*exchange.Service, error) {
	verifier, err := rx.NewVerifier(rx.Config{Roots: anchors, Arc: arc, Status: status, Now: d.Now})
	if err != nil {
		return nil, err
	}
	reverifier, err := rx.NewVerifier(rx.Config{Roots: anchors, Arc: arc, Status: exchange.AtAcceptance(status), Now: d.Now, MaxAge: reverifyMaxAge})
	if err != nil {
		return nil, err
	}
	return exchange.New(exchange.Config{Store: store, Verifier: meteredVerifier{verifier, verifications}, Reverifier: reverifier, Status: status, Adjudicator: adj,
		Key: key, Arc: arc, Now: d.Now, Log: d.Log, Pseudonyms: audit.pseudonyms, AuditLog: audit.store})
}

// signingKey opens the exchange's key (a key URI) and reads its
// certificate chain, refusing a key that is not the certificate's and a
// chain without its intermediate.
func signingKey(ctx context.Context, keys *hsm.Manager, chainFile, uri string) (exchange.SigningKey, error) {
	chain, err := pemutil.ReadCertificateBundle(chainFile)
	if err != nil {
		return exchange.SigningKey{}, fmt.Errorf("-exchange-cert: %w", err)
	}
	if len(chain) < 2 {
		return exchange.SigningKey{}, fmt.Errorf("-exchange-cert %s holds %d certificate(s); it needs the exchange's certificate and its intermediate, leaf first", chainFile, len(chain))
	}
	k, err := keys.OpenKey(ctx, uri)
	if err != nil {
		return exchange.SigningKey{}, fmt.Errorf("-exchange-key: %w", err)
	}
	pub, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(chain[0].PublicKey) {
		return exchange.SigningKey{}, fmt.Errorf("-exchange-key is not the key of the certificate in %s (%q)", chainFile, chain[0].Subject.CommonName)
	}
	return exchange.SigningKey{Signer: k, Chain: chain}, nil
}

// serverTLS loads the server's certificate and key (refusing a key that is
// not the certificate's) and the roots that callers must chain to. The
// certificate is served from certs, which Reload replaces.
func serverTLS(ctx context.Context, keys *hsm.Manager, certFile, keyRef, clientCA string) (*tls.Config, *httpedge.Certificates, []*x509.Certificate, error) {
	cert, err := httpedge.KeyPair(ctx, keys, certFile, keyRef)
	if err != nil {
		return nil, nil, nil, err
	}
	pemCA, err := os.ReadFile(clientCA)
	if err != nil {
		return nil, nil, nil, err
	}
	anchors, err := pemutil.ParseCertificateBundle(pemCA)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", clientCA, err)
	}
	pool := x509.NewCertPool()
	for _, c := range anchors {
		// An intermediate as an anchor would never be checked against the
		// root's ARL: only roots are trusted.
		if !revocation.SelfSigned(c) {
			return nil, nil, nil, fmt.Errorf("%s: %q is not a self-signed root; -client-ca takes the root certificate(s) only", clientCA, c.Subject.CommonName)
		}
		pool.AddCert(c)
	}
	certs := httpedge.NewCertificates(cert)
	cfg := rxapi.ServerTLS(cert, pool)
	// Said in the handshake (ALPN), not only by the HTTP server (Serve):
	// a client offering HTTP/2 alone is refused there.
	cfg.NextProtos = []string{"http/1.1"}
	return certs.ServeFrom(cfg), certs, anchors, nil
}

// MsgServing is logged, with the address, once rxd listens.
const MsgServing = "rxd serving"

// drainTimeout bounds how long a shutdown waits for requests in flight.
const drainTimeout = 10 * time.Second

// Serve listens on the configured address until ctx is done, then shuts
// down in order: the listener stops accepting, the requests in flight are
// drained, and the rules file watch is stopped and waited for. When it
// returns nothing uses the store or the keys any more: Close, and then the
// key manager, may be closed.
func (s *Service) Serve(ctx context.Context) error {
	// Bound before serving, so that the address logged (and a port 0's
	// choice) is where rxd answers.
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return err
	}
	// Capped before TLS: a connection over the caps is closed before its
	// handshake costs anything.
	capped := netcap.Wrap(ln, s.cfg.Conns, s.log, "rxd")
	srv := &http.Server{Handler: s.api.Handler(), TLSConfig: s.tls, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: s.cfg.ReadTimeout, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: httpedge.MaxHeaderBytes}
	// HTTP/1.1 only, as trustd. A client offering HTTP/2 as well (Go's,
	// curl, Java's) is given HTTP/1.1; every HTTP stack speaks it. With
	// HTTP/2 the same exchange accepted 11 % fewer prescriptions a second
	// on the same cores, and rxd and PostgreSQL spent 11 % more CPU on
	// each (docs/BENCHMARKS.md, session 11): a vendor's requests are
	// concurrent over a pool of connections either way, and HTTP/2's
	// framing, flow control and stream scheduling only cost here. It
	// would also bring its own ways to tie a server up (streams reset as
	// fast as they are opened, endless CONTINUATION frames).
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	var background []lifecycle.Task
	if s.cfg.RulesFile != "" {
		background = append(background, lifecycle.Task{Name: "rules watch", Run: func(ctx context.Context) {
			if err := watch.Run(ctx, s.engine, s.cfg.RulesFile, s.cfg.RulesPoll, s.log); err != nil && ctx.Err() == nil {
				s.log.Error("rule set watch stopped", "err", err)
			}
		}})
	}
	if s.purge != nil {
		background = append(background, lifecycle.Task{Name: "exchange purge", Run: s.purgeEvery})
	}
	background = append(background, lifecycle.Task{Name: "audit log", Run: s.runAudit})
	servers := []lifecycle.Server{{Name: "rxd", Listener: capped, HTTP: srv}}
	attrs := []any{"listen", capped.Addr().String(), "db", s.where, "rules", s.engine.Current().Version(), "exchange", s.purge != nil,
		"max_connections", s.cfg.Conns.Total, "max_connections_per_ip", s.cfg.Conns.PerIP}
	if s.cfg.MetricsListen != "" {
		ops, err := net.Listen("tcp", s.cfg.MetricsListen)
		if err != nil {
			capped.Close()
			return fmt.Errorf("-metrics-listen: %w", err)
		}
		servers = append(servers, lifecycle.Server{Name: "ops", Listener: ops, HTTP: &http.Server{Handler: s.OpsHandler(),
			ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
			MaxHeaderBytes: httpedge.MaxHeaderBytes}})
		attrs = append(attrs, "metrics", ops.Addr().String())
	}
	s.log.Info(MsgServing, attrs...)
	return lifecycle.Run(ctx, s.log, drainTimeout, servers, background...)
}

// OpsHandler serves the operations listener: /metrics, /healthz, /readyz.
func (s *Service) OpsHandler() http.Handler { return observe.Handler(s.reg, s.ready, s.log) }

// Reload is what SIGHUP does: the rule set file (if one is configured) is
// loaded again at once rather than at the next poll, and the TLS server
// certificate and key are read again from their files (or key URI) and
// served to new connections. What fails to load is reported and the
// running one stays in force. The catalogue and the insured registry are
// in the database, in force as they are imported: nothing to reload. The
// client CA roots, the exchange's key and the flags are not reloaded:
// they need a restart.
func (s *Service) Reload(ctx context.Context) error {
	var errsOut []error
	if s.cfg.RulesFile != "" {
		if err := s.engine.ReloadFile(s.cfg.RulesFile); err != nil {
			errsOut = append(errsOut, fmt.Errorf("rule set %s not reloaded, the running set stays: %w", s.cfg.RulesFile, err))
		} else {
			s.log.Info(MsgReloaded, "what", "rules", "version", s.engine.Current().Version(), "digest", s.engine.Current().Digest())
		}
	}
	cert, err := httpedge.KeyPair(ctx, s.keys, s.cfg.TLSCert, s.cfg.TLSKey)
	if err != nil {
		errsOut = append(errsOut, fmt.Errorf("TLS certificate not reloaded, the running one stays: %w", err))
	} else {
		s.certs.Set(cert)
		s.log.Info(MsgReloaded, "what", "tls", "subject", cert.Leaf.Subject.CommonName, "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return errors.Join(errsOut...)
}

// MsgReloaded is logged for each thing Reload loaded again.
const MsgReloaded = "reloaded"

// auditEvery is how often the audit log sequences what was appended and
// signs a checkpoint (when it grew): at least one a second while entries
// arrive. Several rxd over one database each run it; the log's lock
// orders them.
const auditEvery = time.Second

// runAudit sequences and publishes the audit log every second until ctx
// is done (requests drained by then), and once more after, so that what
// the last requests appended is in a checkpoint before rxd stops.
func (s *Service) runAudit(ctx context.Context) {
	t := time.NewTicker(auditEvery)
	defer t.Stop()
	s.audit.log.Run(ctx, t.C)
	final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.audit.log.Step(final); err != nil {
		s.log.Warn("the audit log's last step before stopping failed; what is pending is sequenced at the next start", "err", err)
	}
}

// MsgPurged is logged each time expired sessions and idempotency records
// have been deleted.
const MsgPurged = "expired exchange sessions and idempotency records deleted"

// purgeEvery deletes expired sessions and idempotency records now and
// every PurgeEvery until ctx is done. Nothing depends on it for
// correctness (the store never answers an expired one); it keeps the
// tables small.
func (s *Service) purgeEvery(ctx context.Context) {
	t := time.NewTicker(s.cfg.PurgeEvery)
	defer t.Stop()
	for {
		if err := s.purge(ctx, s.now()); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("expired exchange sessions and idempotency records could not be deleted; trying again later", "err", err)
		} else {
			s.log.Debug(MsgPurged)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Close releases the store. It MUST NOT be called before Serve has
// returned: until then requests may still use it.
func (s *Service) Close() error { return s.db.Close() }
