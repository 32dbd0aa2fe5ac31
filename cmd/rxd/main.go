// Command rxd is Nuskha's prescription service. It serves eligibility,
// the coding catalogue and the rules service over HTTPS with client
// certificates, and imports the insurer's registry and catalogue files.
//
//	rxd serve            -db-driver sqlite -db FILE -listen ADDR -tls-cert F -tls-key F -client-ca F
//	rxd import-registry  -db-driver sqlite -db FILE -mode full|update FILE.csv
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/revocation"
	"github.com/nuskha/nuskha/internal/rxapi"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "rxd:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  rxd serve           [flags]                      run the service (HTTPS, client certificates)
  rxd import-registry [flags] -mode full|update F  load the insured-person registry from CSV
Run "rxd <command> -h" for a command's flags.`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "serve":
		return cmdServe(ctx, args[1:], stderr)
	case "import-registry":
		return cmdImportRegistry(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

// dbFlags are every command's database flags.
type dbFlags struct{ driver, dsn, dsnFile *string }

func addDB(fs *flag.FlagSet) dbFlags {
	return dbFlags{
		driver:  fs.String("db-driver", "sqlite", "database: sqlite (embedded) or postgres"),
		dsn:     fs.String("db", "var/rxd/rxd.db", "SQLite file (with -db-driver sqlite)"),
		dsnFile: fs.String("dsn-file", "", "file holding the PostgreSQL URL (with -db-driver postgres; kept out of the process list)"),
	}
}

func (f dbFlags) open(ctx context.Context) (*sqlstore.DB, error) {
	dsn := *f.dsn
	if *f.driver == sqlstore.Postgres {
		if *f.dsnFile == "" {
			return nil, errors.New("-db-driver postgres needs -dsn-file")
		}
		b, err := os.ReadFile(*f.dsnFile)
		if err != nil {
			return nil, err
		}
		dsn = strings.TrimSpace(string(b))
	} else if err := os.MkdirAll(dirOf(dsn), 0o700); err != nil {
		return nil, err
	}
	return sqlstore.Open(ctx, *f.driver, dsn)
}

func dirOf(p string) string {
	if i := strings.LastIndexAny(p, `/\`); i >= 0 {
		return p[:i]
	}
	return "."
}

func cmdImportRegistry(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rxd import-registry", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := addDB(fs)
	mode := fs.String("mode", "", "full (replace the registry with the file) or update (insert or replace the persons in it)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	asJSON := fs.Bool("json", false, "print the summary (or the bad rows) as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || (*mode != string(insured.Full) && *mode != string(insured.Update)) {
		return errors.New("usage: rxd import-registry -mode full|update [flags] FILE.csv")
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	d, err := db.open(ctx)
	if err != nil {
		return err
	}
	defer d.Close()
	s, err := sqlstore.NewInsured(ctx, d)
	if err != nil {
		return err
	}
	counted := &countingReader{r: f}
	var bar *progressBar
	if !*quiet {
		bar = &progressBar{w: stderr, total: info.Size(), read: counted, start: time.Now()}
	}
	sum, err := insured.Import(ctx, s, counted, insured.Mode(*mode), time.Now(), bar.update)
	bar.done()
	var ie *insured.ImportError
	if errors.As(err, &ie) {
		if *asJSON {
			_ = json.NewEncoder(stdout).Encode(ie)
		} else {
			for _, r := range ie.Rows {
				fmt.Fprintln(stdout, r.Error())
			}
			if ie.Total > len(ie.Rows) {
				fmt.Fprintf(stdout, "… and %d more\n", ie.Total-len(ie.Rows))
			}
		}
		return fmt.Errorf("%d bad row(s) in %s: nothing was imported", ie.Total, fs.Arg(0))
	}
	if err != nil {
		var e *errs.Error
		if errors.As(err, &e) {
			return fmt.Errorf("%s: %s", fs.Arg(0), e.Detail)
		}
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(sum)
	}
	fmt.Fprintf(stdout, "imported %s (%s): %d persons — %d main insured, %d dependants — in %s (%.0f rows/s); registry version %d now in force\n",
		fs.Arg(0), sum.Mode, sum.Rows, sum.Main, sum.Dependants, sum.Duration.Round(time.Millisecond), sum.RowsPerSecond(), sum.Generation)
	for _, fund := range insured.Funds {
		if n := sum.ByFund[fund]; n > 0 {
			fmt.Fprintf(stdout, "  %-14s %d\n", fund, n)
		}
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// progressBar draws bytes read against the file's size on one terminal
// line; nil draws nothing.
type progressBar struct {
	w     io.Writer
	total int64
	read  *countingReader
	start time.Time
	last  time.Time
}

func (b *progressBar) update(rows int) {
	if b == nil || time.Since(b.last) < 200*time.Millisecond {
		return
	}
	b.last = time.Now()
	frac := 1.0
	if b.total > 0 {
		frac = min(1, float64(b.read.n)/float64(b.total))
	}
	const width = 30
	filled := int(frac * width)
	rate := float64(rows) / max(time.Since(b.start).Seconds(), 1e-3)
	fmt.Fprintf(b.w, "\r[%s%s] %5.1f%%  %d rows  %.0f rows/s ", strings.Repeat("#", filled), strings.Repeat(".", width-filled), frac*100, rows, rate)
}

func (b *progressBar) done() {
	if b == nil {
		return
	}
	b.last = time.Time{}
	fmt.Fprintln(b.w)
}

func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("rxd serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := addDB(fs)
	listen := fs.String("listen", "127.0.0.1:8543", "HTTPS address")
	certFile := fs.String("tls-cert", "", "server certificate chain (PEM)")
	keyFile := fs.String("tls-key", "", "server private key (PEM)")
	clientCA := fs.String("client-ca", "", "CA certificates (PEM) that client certificates must chain to")
	arc := fs.String("oid-arc", pki.DefaultArc, "OID arc of the identity extension in our certificates (as trustd's)")
	statusAge := fs.Duration("status-max-age", 24*time.Hour, "oldest OCSP evidence accepted for a caller's certificate")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *certFile == "" || *keyFile == "" || *clientCA == "" {
		return errors.New("rxd serve needs -tls-cert, -tls-key and -client-ca: every caller is authenticated by its certificate")
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	tlsCfg, err := serverTLS(*certFile, *keyFile, *clientCA)
	if err != nil {
		return err
	}
	d, err := db.open(ctx)
	if err != nil {
		return err
	}
	defer d.Close()
	reg, err := sqlstore.NewInsured(ctx, d)
	if err != nil {
		return err
	}
	a, err := pki.ParseArc(*arc)
	if err != nil {
		return err
	}
	// Callers' certificates are checked online with the OCSP responder
	// they name; without an answer the call is refused.
	status, err := revocation.New(revocation.Config{MaxAge: *statusAge, Now: time.Now, HTTP: &http.Client{Timeout: 5 * time.Second}})
	if err != nil {
		return err
	}
	api := &rxapi.API{
		Eligibility: &insured.Checker{Registry: reg, Policy: insured.DefaultPolicy()},
		Arc:         a,
		Status:      status,
		Log:         log,
		Now:         time.Now,
	}
	srv := &http.Server{Addr: *listen, Handler: api.Handler(), TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServeTLS("", "") }()
	log.Info("rxd serving", "listen", *listen, "db", *db.driver)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shut)
}

func serverTLS(certFile, keyFile, clientCA string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	pemCA, err := os.ReadFile(clientCA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCA) {
		return nil, fmt.Errorf("%s holds no PEM certificate", clientCA)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}, nil
}
