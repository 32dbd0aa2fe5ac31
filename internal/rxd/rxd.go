// Package rxd is the exchange daemon's composition root: from a Config it
// opens rxd's store and TLS key, builds the caller checks (the identity
// extension and online revocation checking), eligibility, the catalogue,
// the rules engine and its file watch, and the vendors' API, and serves
// them until told to stop, ending in order. cmd/rxd only parses flags
// into a Config.
package rxd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/internal/adjudicate"
	"github.com/nuskha/nuskha/internal/catalogue"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/httpedge"
	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/lifecycle"
	"github.com/nuskha/nuskha/internal/netcap"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/revocation"
	"github.com/nuskha/nuskha/internal/rules"
	"github.com/nuskha/nuskha/internal/rules/watch"
	"github.com/nuskha/nuskha/internal/rxapi"
	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
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
	// Limits are each caller's request and lookup budgets
	// [rxapi.DefaultLimits].
	Limits rxapi.Limits
	// PseudonymKeyFile keys the pseudonyms under which lookups are
	// logged; without it a random key, good for this run only.
	PseudonymKeyFile string
}

// Deps are what a Service takes from its process.
type Deps struct {
	Log *slog.Logger
	Now func() time.Time
	// Keys is the process's one key manager; the caller closes it after
	// Close.
	Keys *hsm.Manager
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
	return c
}

func (c Config) validate() error {
	if c.TLSCert == "" || c.TLSKey == "" || c.ClientCA == "" {
		return errors.New("rxd serve needs -tls-cert, -tls-key and -client-ca: every caller is authenticated by its certificate")
	}
	if c.Recheck < 0 {
		return fmt.Errorf("-revocation-recheck must be 0 (ask on every call) or more, not %s", c.Recheck)
	}
	if c.Limits.PerSecond <= 0 || c.Limits.Burst < 1 || c.Limits.DailyLookups < 1 {
		return errors.New("-caller-rate, -caller-burst and -daily-lookups must be positive")
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
	pseudonyms, err := pseudonyms(cfg.PseudonymKeyFile, d.Log)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := serverTLS(ctx, d.Keys, cfg.TLSCert, cfg.TLSKey, cfg.ClientCA)
	if err != nil {
		return nil, err
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
	cat, err := catalogue.New(catalogue.Config{Store: cstore})
	if err != nil {
		return nil, err
	}
	elig := &insured.Checker{Registry: reg, Policy: insured.DefaultPolicy()}
	api := &rxapi.API{
		Eligibility: elig,
		Adjudicator: &adjudicate.Adjudicator{Eligibility: elig, Catalogue: cat, Rules: engine, History: reg, Usage: reg, Now: d.Now, Log: d.Log},
		Catalogue:   cat,
		Rules:       engine,
		Arc:         arc,
		Status:      status,
		DB:          db,
		Log:         d.Log,
		Now:         d.Now,
		Limits:      cfg.Limits,
		Pseudonyms:  pseudonyms,
	}
	ok = true
	return &Service{cfg: cfg, log: d.Log, db: db, where: where, engine: engine, api: api, tls: tlsCfg}, nil
}

// pseudonyms keys the pseudonyms of looked-up persons from file, or from a
// random key (with a warning) when there is none.
func pseudonyms(file string, log *slog.Logger) (*rxapi.Pseudonyms, error) {
	if file == "" {
		log.Warn("no -pseudonym-key-file: lookups are logged under pseudonyms from a random key, which tell persons apart only within this run")
		return rxapi.RandomPseudonyms(), nil
	}
	key, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("-pseudonym-key-file: %w", err)
	}
	p, err := rxapi.NewPseudonyms(key)
	if err != nil {
		return nil, fmt.Errorf("-pseudonym-key-file %s holds %d bytes; it needs at least %d (head -c 32 /dev/urandom > FILE)", file, len(key), rxapi.MinPseudonymKey)
	}
	return p, nil
}

// serverTLS loads the server's certificate and key (refusing a key that is
// not the certificate's) and the roots that callers must chain to.
func serverTLS(ctx context.Context, keys *hsm.Manager, certFile, keyRef, clientCA string) (*tls.Config, error) {
	cert, err := httpedge.KeyPair(ctx, keys, certFile, keyRef)
	if err != nil {
		return nil, err
	}
	pemCA, err := os.ReadFile(clientCA)
	if err != nil {
		return nil, err
	}
	anchors, err := pemutil.ParseCertificateBundle(pemCA)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", clientCA, err)
	}
	pool := x509.NewCertPool()
	for _, c := range anchors {
		// An intermediate as an anchor would never be checked against the
		// root's ARL: only roots are trusted.
		if !revocation.SelfSigned(c) {
			return nil, fmt.Errorf("%s: %q is not a self-signed root; -client-ca takes the root certificate(s) only", clientCA, c.Subject.CommonName)
		}
		pool.AddCert(c)
	}
	return rxapi.ServerTLS(cert, pool), nil
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
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	var background []lifecycle.Task
	if s.cfg.RulesFile != "" {
		background = append(background, lifecycle.Task{Name: "rules watch", Run: func(ctx context.Context) {
			if err := watch.Run(ctx, s.engine, s.cfg.RulesFile, s.cfg.RulesPoll, s.log); err != nil && ctx.Err() == nil {
				s.log.Error("rule set watch stopped", "err", err)
			}
		}})
	}
	s.log.Info(MsgServing, "listen", capped.Addr().String(), "db", s.where, "rules", s.engine.Current().Version(),
		"max_connections", s.cfg.Conns.Total, "max_connections_per_ip", s.cfg.Conns.PerIP)
	return lifecycle.Run(ctx, s.log, drainTimeout, []lifecycle.Server{{Name: "rxd", Listener: capped, HTTP: srv}}, background...)
}

// Close releases the store. It MUST NOT be called before Serve has
// returned: until then requests may still use it.
func (s *Service) Close() error { return s.db.Close() }
