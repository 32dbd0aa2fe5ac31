package trustd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/certs"
	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/ca"
	"github.com/nuskha/nuskha/internal/pki/lint"
	"github.com/nuskha/nuskha/internal/pki/profile"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/trustapi"
)

// Service is a running-ready trustd: everything built from the config.
type Service struct {
	cfg    *Config
	log    *slog.Logger
	keys   *hsm.Manager
	store  *sqlstore.Trust
	api    *trustapi.API
	admin  *tls.Config
	public *tls.Config
	inter  *x509.Certificate
}

// Deps are what a Service takes from its process.
type Deps struct {
	Log *slog.Logger
	Now func() time.Time
	// Keys is the process's one key manager (one per process: PKCS#11
	// modules are opened once).
	Keys *hsm.Manager
}

// OpenStore opens the configured database and migrates it.
func OpenStore(ctx context.Context, cfg *Config) (*sqlstore.Trust, error) {
	dsn := cfg.Path(cfg.Store.Path)
	if cfg.Store.Driver == sqlstore.Postgres {
		b, err := os.ReadFile(cfg.Path(cfg.Store.DSNFile))
		if err != nil {
			return nil, fmt.Errorf("store.dsn_file: %w", err)
		}
		dsn = strings.TrimSpace(string(b))
	}
	return sqlstore.OpenTrust(ctx, cfg.Store.Driver, dsn)
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
	interKey, err := d.Keys.OpenKey(ctx, cfg.CA.IntermediateKey)
	if err != nil {
		return nil, fmt.Errorf("opening the intermediate key: %w", err)
	}
	db, err := OpenStore(ctx, cfg)
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
	rec := audit.NewLog(db, d.Log, d.Now)
	svc, err := enrol.New(enrol.Config{
		Store: db, Issuer: issuer, Profiles: profiles, Arc: arc,
		URLs:  profile.URLs{CRL: cfg.URLs.CRL, OCSP: cfg.URLs.OCSP, Issuer: cfg.URLs.Issuer},
		Audit: rec, Log: d.Log, Now: d.Now,
	})
	if err != nil {
		return nil, err
	}
	api, err := trustapi.New(trustapi.Config{Store: db, Enrol: svc, Audit: rec, Roots: roots, Intermediates: inters, Arc: arc, Log: d.Log, Now: d.Now})
	if err != nil {
		return nil, err
	}
	serverCert, err := serverCertificate(ctx, cfg, d.Keys)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{serverCert}}
	admin := base.Clone()
	admin.ClientAuth = tls.RequireAndVerifyClientCert
	admin.ClientCAs = pool
	ok = true
	return &Service{cfg: cfg, log: d.Log, keys: d.Keys, store: db, api: api, admin: admin, public: base, inter: inters[0]}, nil
}

// Store is the service's database (for the CLI's offline commands).
func (s *Service) Store() *sqlstore.Trust { return s.store }

// API is the HTTP API (tests serve it on their own listeners).
func (s *Service) API() *trustapi.API { return s.api }

// AdminTLS and PublicTLS are the listeners' TLS configurations.
func (s *Service) AdminTLS() *tls.Config  { return s.admin }
func (s *Service) PublicTLS() *tls.Config { return s.public }

// Close releases the store.
func (s *Service) Close() error { return s.store.Close() }

type certSource struct{ db *sqlstore.Trust }

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

func serverCertificate(ctx context.Context, cfg *Config, keys *hsm.Manager) (tls.Certificate, error) {
	chain, err := readCerts(cfg, cfg.TLS.Cert)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := keys.OpenKey(ctx, cfg.TLS.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("opening the TLS key: %w", err)
	}
	c := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c, nil
}

// Serve listens on the configured addresses until ctx is done, then shuts
// down gracefully.
func (s *Service) Serve(ctx context.Context) error {
	type srv struct {
		name string
		ln   net.Listener
		http *http.Server
	}
	var servers []srv
	listen := func(name, addr string, tcfg *tls.Config, h http.Handler) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s listener: %w", name, err)
		}
		if tcfg != nil {
			ln = tls.NewListener(ln, tcfg)
		}
		servers = append(servers, srv{name, ln, &http.Server{
			Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second,
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}})
		s.log.Info("listening", "listener", name, "addr", ln.Addr().String())
		return nil
	}
	closeAll := func() {
		for _, sv := range servers {
			sv.ln.Close()
		}
	}
	if err := listen("admin", s.cfg.Admin.Listen, s.admin, s.api.AdminHandler()); err != nil {
		return err
	}
	if err := listen("public", s.cfg.Public.Listen, s.public, s.api.PublicHandler()); err != nil {
		closeAll()
		return err
	}
	if s.cfg.HTTP.Listen != "" {
		if err := listen("http", s.cfg.HTTP.Listen, nil, s.api.RelyingPartyHandler()); err != nil {
			closeAll()
			return err
		}
	}
	errc := make(chan error, len(servers))
	for _, sv := range servers {
		go func() {
			if err := sv.http.Serve(sv.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", sv.name, err)
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, sv := range servers {
		_ = sv.http.Shutdown(shutdown)
	}
	return err
}
