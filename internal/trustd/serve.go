package trustd

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/certs"
	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/httpedge"
	"github.com/nuskha/nuskha/internal/lifecycle"
	"github.com/nuskha/nuskha/internal/netcap"
	"github.com/nuskha/nuskha/internal/observe"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/bundle"
	"github.com/nuskha/nuskha/internal/pki/ca"
	"github.com/nuskha/nuskha/internal/pki/lint"
	"github.com/nuskha/nuskha/internal/pki/profile"
	"github.com/nuskha/nuskha/internal/pki/responder"
	"github.com/nuskha/nuskha/internal/publish"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/truststore"
	"github.com/nuskha/nuskha/internal/tlog"
	"github.com/nuskha/nuskha/internal/trustapi"
)

// Service is a running-ready trustd: everything built from the config.
type Service struct {
	pub       *publish.Publisher
	resp      *responder.Responder
	refusals  *audit.Tally
	creds     *credentials
	auditLog  *tlog.Log // nil when none is configured
	ocspTpl   string
	bundleTpl string
	renew     time.Duration

	cfg    *Config
	log    *slog.Logger
	now    func() time.Time
	keys   *hsm.Manager
	store  *truststore.Store
	api    *trustapi.API
	admin  *tls.Config
	public *tls.Config
	inter  *x509.Certificate

	certs   *httpedge.Certificates
	reg     *prometheus.Registry
	ready   *observe.Readiness
	signers *observe.Signers
	ocspKey atomic.Pointer[crypto.Signer] // the responder's, wrapped, for readiness
	// The credentials' certificates in use, under credMu (RenewCredentials).
	credMu               sync.Mutex
	ocspCert, bundleCert *x509.Certificate
}

// Deps are what a Service takes from its process.
type Deps struct {
	Log *slog.Logger
	Now func() time.Time
	// Keys is the process's one key manager (one per process: PKCS#11
	// modules are opened once).
	Keys *hsm.Manager
	// Metrics is the process's registry [a new one, observe.NewRegistry].
	Metrics *prometheus.Registry
}

// OpenStore opens the configured database and migrates it.
//
// Only init makes a new embedded database (create): anything else that
// finds none at the configured path refuses, rather than run a CA whose
// registry, certificates and revocations are silently empty.
func OpenStore(ctx context.Context, cfg *Config, create bool) (*truststore.Store, error) {
	dsn := cfg.Path(cfg.Store.Path)
	if cfg.Store.Driver != sqlstore.Postgres && !create {
		if _, err := os.Stat(dsn); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("there is no trustd database at %s (store.path in the config): restore it from backup; only trustd init makes a new one", dsn)
		}
	}
	if cfg.Store.Driver == sqlstore.Postgres {
		b, err := os.ReadFile(cfg.Path(cfg.Store.DSNFile))
		if err != nil {
			return nil, fmt.Errorf("store.dsn_file: %w", err)
		}
		dsn = strings.TrimSpace(string(b))
	}
	return truststore.Open(ctx, cfg.Store.Driver, dsn)
}

// Profiles loads the configured or built-in certificate profiles.
func Profiles(cfg *Config) (*profile.Set, error) {
	var fsys fs.FS = certs.Profiles()
	if cfg.ProfilesDir != "" {
		fsys = os.DirFS(cfg.Path(cfg.ProfilesDir))
	}
	return profile.Load(fsys)
}

// New builds the service: it opens the store and the intermediate key and
// checks that everything fits together before anything listens.
func New(ctx context.Context, cfg *Config, d Deps) (*Service, error) {
	roots, err := readCerts(cfg, cfg.CA.RootCerts...)
	if err != nil {
		return nil, err
	}
	inters, err := readCerts(cfg, cfg.CA.IntermediateCert)
	if err != nil {
		return nil, err
	}
	arc, err := pki.ParseArc(cfg.OIDArc)
	if err != nil {
		return nil, err
	}
	if arc.IsExample() {
		d.Log.Warn("oid_arc is the ITU-T example arc 2.999.1: configure the insurer's own arc before issuing real certificates")
	}
	profiles, err := Profiles(cfg)
	if err != nil {
		return nil, err
	}
	linter, err := lint.New(cfg.Lint.Ignore)
	if err != nil {
		return nil, err
	}
	metrics := d.Metrics
	if metrics == nil {
		metrics = observe.NewRegistry("trustd")
	}
	signers := observe.NewSigners(metrics)
	m := newMetrics(metrics)
	hsmKey, err := d.Keys.OpenKey(ctx, cfg.CA.IntermediateKey)
	if err != nil {
		return nil, fmt.Errorf("opening the intermediate key: %w", err)
	}
	// Certificates and CRLs are signed with it.
	interKey := signers.Wrap("issuing", hsmKey)
	// Before the store is opened and status published: a TLS key that is
	// not the certificate's is refused at once.
	serverCert, err := httpedge.KeyPair(ctx, d.Keys, cfg.Path(cfg.TLS.Cert), cfg.TLS.Key)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	db, err := OpenStore(ctx, cfg, false)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			db.Close()
		}
	}()
	issuer, err := ca.New(ca.Config{Roots: roots, Intermediate: inters[0], Signer: interKey, Linter: linter, Now: d.Now, Certs: certSource{db}})
	if err != nil {
		return nil, err
	}
	auditLog, logs, err := openAuditLog(ctx, cfg, d, db, metrics)
	if err != nil {
		return nil, err
	}
	var auditHandler http.Handler
	if auditLog != nil {
		auditHandler = tlog.Handler(db.AuditLog(), d.Log)
	}
	rec := audit.NewLog(db, d.Log, d.Now)
	// Refused anonymous requests: one summary per minute and reason.
	refusals := audit.NewTally(rec, d.Log, d.Now, time.Minute)
	urls := profile.URLs{CRL: cfg.URLs.CRL, OCSP: cfg.URLs.OCSP, Issuer: cfg.URLs.Issuer}
	// The responder first, without its credential (it answers tryLater
	// until it has one): enrolment tells it of every certificate issued,
	// trustd's own credentials among them, and the publisher feeds it.
	resp, err := responder.New(responder.Config{Issuer: inters[0], Validity: cfg.Status.OCSPValidity.or(4 * time.Hour), Now: d.Now, Log: d.Log,
		Answered: func(status string) { m.ocsp.WithLabelValues(status).Inc() }})
	if err != nil {
		return nil, err
	}
	svc, err := enrol.New(enrol.Config{Notify: countIssued{publish.Issued{Responder: resp}, m.issued}, Store: db, Issuer: issuer, Profiles: profiles, Arc: arc, URLs: urls, Audit: rec, Log: d.Log, Now: d.Now,
		RequestLifetime: cfg.Enrolment.Lifetime()})
	if err != nil {
		return nil, err
	}
	creds := &credentials{db: db, keys: d.Keys, svc: svc, subject: cfg.Status.ServiceSubject, now: d.Now, log: d.Log}
	ocspTpl, err := keyTemplate(cfg.Status.OCSPKey, cfg.CA.IntermediateKey, "ocsp-responder")
	if err != nil {
		return nil, err
	}
	bundleTpl, err := keyTemplate(cfg.Status.BundleKey, cfg.CA.IntermediateKey, "trust-bundle")
	if err != nil {
		return nil, err
	}
	renew := cfg.Status.RenewBefore.or(720 * time.Hour)
	ocspCred, _, err := creds.ensure(ctx, PurposeOCSP, ocspTpl, renew, inters[0])
	if err != nil {
		return nil, err
	}
	ocspKey := signers.Wrap("ocsp", ocspCred.key)
	if err := resp.SetCredential(responder.Credential{Cert: ocspCred.chain[0], Key: ocspKey}); err != nil {
		return nil, err
	}
	bundleCred, _, err := creds.ensure(ctx, PurposeBundle, bundleTpl, renew, inters[0])
	if err != nil {
		return nil, err
	}
	pub, err := publish.New(publish.Config{
		Store: db, Roots: roots, Issuer: issuer, Responder: resp,
		BundleSigner: publish.Signer{Key: signers.Wrap("bundle", bundleCred.key), Chain: bundleCred.chain},
		Audit:        rec, Log: d.Log, Now: d.Now,
		CRLValidity: cfg.Status.CRLValidity.Duration, CRLRefresh: cfg.Status.CRLRefresh.Duration,
		Logs: logs,
	})
	if err != nil {
		return nil, err
	}
	if err := pub.Start(ctx); err != nil {
		return nil, fmt.Errorf("publishing status: %w", err)
	}
	rev, err := revoke.New(revoke.Config{Store: db, Audit: rec, Refusals: refusals, Publisher: countChanges{pub, m.changes}, Log: d.Log, Now: d.Now})
	if err != nil {
		return nil, err
	}
	crlPath, ocspPath, arlPath := urlPath(cfg.URLs.CRL, "/crl/issuing-ca-1.crl"), urlPath(cfg.URLs.OCSP, "/ocsp"), urlPath(cfg.URLs.ARL, arlURLPath)
	reg, err := registry.NewService(registry.Config{Store: db, Quorum: rev, Audit: rec, Log: d.Log, Now: d.Now})
	if err != nil {
		return nil, err
	}
	observe.DB(metrics, db.SQL(), "trustd")
	db.ObserveCommits(observe.Commits(metrics))
	registerCRL(metrics, pub, d.Now)
	s := &Service{cfg: cfg, log: d.Log, now: d.Now, keys: d.Keys, store: db, inter: inters[0],
		pub: pub, resp: resp, refusals: refusals, creds: creds, ocspTpl: ocspTpl, bundleTpl: bundleTpl, renew: renew,
		reg: metrics, signers: signers, certs: httpedge.NewCertificates(serverCert), auditLog: auditLog,
		ocspCert: ocspCred.chain[0], bundleCert: bundleCred.chain[0]}
	s.ocspKey.Store(&ocspKey)
	s.ready = &observe.Readiness{Checks: readiness(db, interKey, &s.ocspKey, pub, d.Now), Log: d.Log}
	w := cfg.AnonymousWrites
	api, err := trustapi.New(trustapi.Config{Store: db, Registry: reg, Enrol: svc, Audit: rec, Refusals: refusals, Roots: roots, Intermediates: inters, Arc: arc, Log: d.Log, Now: d.Now,
		Revoke: rev, Status: pub, OCSP: resp.Handler(ocspPath), CRLPath: crlPath, OCSPPath: ocspPath, ARLPath: arlPath, AuditLog: auditHandler,
		WriteLimits: trustapi.WriteLimits{PerIPPerMinute: w.PerIPPerMinute, PerIPBurst: w.PerIPBurst, PerSecond: w.PerSecond, Burst: w.Burst},
		Metrics:     httpedge.NewMetrics(metrics), Ready: s.ready.Public()})
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	s.api = api
	// Officers only on the admin listener: a client certificate is
	// required there and verified to the roots at the handshake.
	s.admin = s.certs.ServeFrom(httpedge.ServerTLS(serverCert, tls.RequireAndVerifyClientCert, pool))
	s.public = s.certs.ServeFrom(httpedge.ServerTLS(serverCert, tls.NoClientCert, nil))
	if err := s.ReloadARL(); err != nil {
		return nil, err
	}
	if cfg.CA.ARL == "" {
		s.checkARLExpiry()
	}
	ok = true
	return s, nil
}

// openAuditLog opens trustd's audit log: its checkpoint key, unsealed
// with the sealing key, over the log's tables in db. It returns the logs
// the trust bundle names: this one (served under /audit/ at the public
// listener's URL, which the config does not know: auditors are told it)
// and those configured. With no log configured it returns none, and says
// that nothing is signed.
func openAuditLog(ctx context.Context, cfg *Config, d Deps, db *truststore.Store, metrics prometheus.Registerer) (*tlog.Log, []bundle.Log, error) {
	var logs []bundle.Log
	for _, o := range cfg.AuditLog.OtherLogs {
		logs = append(logs, bundle.Log{Origin: o.Origin, VerifierKeys: []string{o.VerifierKey}, URL: o.URL})
	}
	a := cfg.AuditLog
	if a.Origin == "" {
		d.Log.Warn("no audit_log in the config: audit entries are kept but no checkpoint is signed or served; configure one (docs/audit-log.md)")
		return nil, logs, nil
	}
	aead, err := d.Keys.OpenAEAD(ctx, a.SealingKey)
	if err != nil {
		return nil, nil, fmt.Errorf("audit_log.sealing_key: %w", err)
	}
	sealed, err := os.ReadFile(cfg.Path(a.NoteKey))
	if err != nil {
		return nil, nil, fmt.Errorf("audit_log.note_key: %w", err)
	}
	key, err := tlog.OpenNoteKey(aead, sealed)
	if err != nil {
		return nil, nil, fmt.Errorf("audit_log.note_key: %w", err)
	}
	l, err := tlog.New(db.AuditLog(), tlog.Config{Origin: a.Origin, Key: key, Logger: d.Log, Now: d.Now, Witnesses: a.witnesses(), Metrics: metrics})
	if err != nil {
		return nil, nil, err
	}
	own := bundle.Log{Origin: a.Origin, VerifierKeys: []string{key.VerifierKey()}}
	if len(cfg.URLs.Issuer) > 0 {
		if u, err := url.Parse(cfg.URLs.Issuer[0]); err == nil {
			// Served on the relying-party listener too: checkpoints are
			// signed, so plain HTTP is enough.
			own.URL = u.Scheme + "://" + u.Host + trustapi.AuditLogPath
		}
	}
	return l, append([]bundle.Log{own}, logs...), nil
}

// AuditLog is trustd's audit log (nil when none is configured).
func (s *Service) AuditLog() *tlog.Log { return s.auditLog }

// urlPath is the path of the first URL, or def.
func urlPath(urls []string, def string) string {
	if len(urls) == 0 {
		return def
	}
	u, err := url.Parse(urls[0])
	if err != nil || u.Path == "" {
		return def
	}
	return u.Path
}

// Publisher is the status publisher (tests drive it directly).
func (s *Service) Publisher() *publish.Publisher { return s.pub }

// Responder is the OCSP responder.
func (s *Service) Responder() *responder.Responder { return s.resp }

// RenewCredentials replaces trustd's OCSP-responder and trust-bundle
// credentials that expire within the renewal window, and installs the
// latest ones — those it made, and those another trustd over the same
// database made (a standby picks up what the active renewed at its next
// check, rather than signing with the old credential until it expires).
func (s *Service) RenewCredentials(ctx context.Context) error {
	s.credMu.Lock()
	defer s.credMu.Unlock()
	c, _, err := s.creds.ensure(ctx, PurposeOCSP, s.ocspTpl, s.renew, s.inter)
	if err != nil {
		return err
	}
	if !c.chain[0].Equal(s.ocspCert) {
		key := s.signers.Wrap("ocsp", c.key)
		if err := s.resp.SetCredential(responder.Credential{Cert: c.chain[0], Key: key}); err != nil {
			return err
		}
		s.ocspKey.Store(&key)
		s.ocspCert = c.chain[0]
		if _, err := s.resp.Refresh(); err != nil {
			return err
		}
	}
	b, _, err := s.creds.ensure(ctx, PurposeBundle, s.bundleTpl, s.renew, s.inter)
	if err != nil {
		return err
	}
	if !b.chain[0].Equal(s.bundleCert) {
		s.pub.SetBundleSigner(publish.Signer{Key: s.signers.Wrap("bundle", b.key), Chain: b.chain})
		s.bundleCert = b.chain[0]
	}
	return nil
}

// Store is the service's database (for the CLI's offline commands).
func (s *Service) Store() *truststore.Store { return s.store }

// API is the HTTP API (tests serve it on their own listeners).
func (s *Service) API() *trustapi.API { return s.api }

// AdminTLS and PublicTLS are the listeners' TLS configurations.
func (s *Service) AdminTLS() *tls.Config  { return s.admin }
func (s *Service) PublicTLS() *tls.Config { return s.public }

// Close records the refusals counted since the last summary and releases
// the store. It MUST NOT be called before Serve has returned: until then
// requests and background work may still use the store.
func (s *Service) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.refusals.Flush(ctx, true); err != nil {
		s.log.Error("recording the last refusal summaries failed", "err", err)
	}
	return s.store.Close()
}

type certSource struct{ db *truststore.Store }

func (c certSource) CertificateBySerial(ctx context.Context, serial *big.Int) (*x509.Certificate, error) {
	rec, err := c.db.CertificateBySerial(ctx, serial)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(rec.DER)
}

func readCerts(cfg *Config, paths ...string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, p := range paths {
		cs, err := pemutil.ReadCertificateBundle(cfg.Path(p))
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		out = append(out, cs...)
	}
	return out, nil
}

// Serve listens on the configured addresses until ctx is done, then shuts
// down in order: the listeners stop accepting, the requests in flight are
// drained (for at most drainTimeout), and the background work (CRL and
// OCSP publishing, refusal summaries, credential renewal, ARL reload) is
// stopped and waited for. When it returns nothing uses the store or the
// keys any more: Close, and then the key manager, may be closed.
func (s *Service) Serve(ctx context.Context) error {
	var servers []lifecycle.Server
	listen := func(name string, lc ListenerConfig, tcfg *tls.Config, h http.Handler) error {
		ln, err := net.Listen("tcp", lc.Listen)
		if err != nil {
			return fmt.Errorf("%s listener: %w", name, err)
		}
		// Capped before TLS: a connection over the caps is closed before
		// its handshake costs anything.
		ln = netcap.Wrap(ln, lc.Limits(), s.log, name)
		if tcfg != nil {
			ln = tls.NewListener(ln, tcfg)
		}
		servers = append(servers, lifecycle.Server{Name: name, Listener: ln, HTTP: &http.Server{
			Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: lc.ReadTimeout.or(30 * time.Second),
			WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: httpedge.MaxHeaderBytes,
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}})
		s.log.Info("listening", "listener", name, "addr", ln.Addr().String())
		return nil
	}
	closeAll := func() {
		for _, sv := range servers {
			sv.Listener.Close()
		}
	}
	if err := listen("admin", s.cfg.Admin, s.admin, s.api.AdminHandler()); err != nil {
		return err
	}
	if err := listen("public", s.cfg.Public, s.public, s.api.PublicHandler()); err != nil {
		closeAll()
		return err
	}
	if s.cfg.HTTP.Listen != "" {
		if err := listen("http", s.cfg.HTTP, nil, s.api.RelyingPartyHandler()); err != nil {
			closeAll()
			return err
		}
	}
	if s.cfg.Metrics.Listen != "" {
		if err := listen("ops", s.cfg.Metrics, nil, s.OpsHandler()); err != nil {
			closeAll()
			return err
		}
	}
	tasks := []lifecycle.Task{{Name: "publisher", Run: s.pub.Run},
		{Name: "refusal summaries", Run: s.refusals.Run},
		{Name: "credential renewal", Run: func(ctx context.Context) { s.keepCredentials(ctx, time.After) }},
		{Name: "ARL reload", Run: s.reloadARLs},
	}
	if s.auditLog != nil {
		tasks = append(tasks, lifecycle.Task{Name: "audit log", Run: func(ctx context.Context) {
			// Entries are sequenced and a checkpoint signed every second
			// while they arrive.
			t := time.NewTicker(time.Second)
			defer t.Stop()
			s.auditLog.Run(ctx, t.C)
		}})
	}
	return lifecycle.Run(ctx, s.log, drainTimeout, servers, tasks...)
}

// drainTimeout bounds how long a shutdown waits for requests in flight.
const drainTimeout = 15 * time.Second

// OpsHandler serves the operations listener: /metrics, /healthz, /readyz.
func (s *Service) OpsHandler() http.Handler { return observe.Handler(s.reg, s.ready, s.log) }

// MsgReloaded is logged for each thing Reload loaded again.
const MsgReloaded = "reloaded"

// Reload is what SIGHUP does: trustd's TLS certificate and key are read
// again from tls.cert and tls.key and served to new connections on the
// admin and public listeners, and the ARL file is read again (as it is
// every few minutes anyway), and the OCSP-responder and trust-bundle
// credentials are checked (as every 6 hours: RenewCredentials). What
// fails to load is reported and the running one stays. trustd.json itself, the profiles, the CA
// certificates and keys are not reloaded: they need a restart.
func (s *Service) Reload(ctx context.Context) error {
	var out []error
	cert, err := httpedge.KeyPair(ctx, s.keys, s.cfg.Path(s.cfg.TLS.Cert), s.cfg.TLS.Key)
	if err != nil {
		out = append(out, fmt.Errorf("TLS certificate not reloaded, the running one stays: %w", err))
	} else {
		s.certs.Set(cert)
		s.log.Info(MsgReloaded, "what", "tls", "subject", cert.Leaf.Subject.CommonName, "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if err := s.ReloadARL(); err != nil {
		out = append(out, fmt.Errorf("ARL not reloaded: %w", err))
	}
	// A standby told the active has renewed its credentials installs them
	// now rather than at its next check.
	if err := s.RenewCredentials(ctx); err != nil {
		out = append(out, fmt.Errorf("credentials not checked: %w", err))
	}
	return errors.Join(out...)
}

// renewEvery is how often trustd looks at its own credentials (and warns
// of an ARL near expiry); a failed renewal is tried again after
// renewRetry, doubling up to renewEvery.
const (
	renewEvery = 6 * time.Hour
	renewRetry = time.Minute
)

// keepCredentials renews trustd's own credentials when they near expiry
// until ctx ends; after is time.After (tests drive the clock).
func (s *Service) keepCredentials(ctx context.Context, after func(time.Duration) <-chan time.Time) {
	wait, retry := renewEvery, renewRetry
	for {
		select {
		case <-ctx.Done():
			return
		case <-after(wait):
		}
		if err := s.RenewCredentials(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.ErrorContext(ctx, "renewing trustd's own credentials failed; trying again", "err", err, "in", retry.String())
			wait, retry = retry, min(2*retry, renewEvery)
		} else {
			wait, retry = renewEvery, renewRetry
		}
		s.checkARLExpiry()
	}
}

// reloadARLs serves a re-signed ARL file within arlReload of its writing,
// until ctx ends. A bad file keeps the ARL being served.
func (s *Service) reloadARLs(ctx context.Context) {
	t := time.NewTicker(arlReload)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.ReloadARL(); err != nil {
				s.log.ErrorContext(ctx, "the ARL file was not loaded", "err", err)
			}
		}
	}
}
