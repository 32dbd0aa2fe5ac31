// Command rxd is Nuskha's prescription service. It serves the
// prescription exchange, eligibility, the coding catalogue and the rules
// service over HTTPS with client certificates, and imports the insurer's
// registry and catalogue files.
//
//	rxd serve            -db-driver sqlite -db FILE -listen ADDR -tls-cert F -tls-key F -client-ca F [-rules F] [-exchange-key URI -exchange-cert F] [-metrics-listen 127.0.0.1:9543]
//	rxd import-registry  -db-driver sqlite -db FILE -mode full|update FILE.csv
//	rxd import-catalogue -db-driver sqlite -db FILE -valid-from DATE [-drugs F] [-services F]
//	rxd check-rules      FILE.yaml
//	rxd backup           -db FILE -out NEW-FILE
//	rxd audit-keys       -audit-pseudonym-key URI -audit-seal-key URI -audit-note-key F -audit-origin NAME [-name NAME]
//
// rxd serve takes the audit flags too, and -audit-witness "VKEY URL"
// (repeatable) for each witness that cosigns the audit log's checkpoints.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nuskha/nuskha/internal/catalogue"
	"github.com/nuskha/nuskha/internal/cli"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/lifecycle"
	"github.com/nuskha/nuskha/internal/netcap"
	"github.com/nuskha/nuskha/internal/persian"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/rules"
	"github.com/nuskha/nuskha/internal/rxapi"
	"github.com/nuskha/nuskha/internal/rxd"
	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/tlog"
)

func main() {
	os.Exit(cli.Exit("rxd", run(context.Background(), os.Args[1:], os.Stdout, os.Stderr), os.Stderr))
}

const usage = `usage:
  rxd serve           [flags]                      run the service (HTTPS, client certificates)
  rxd import-registry [flags] -mode full|update F  load the insured-person registry from CSV
  rxd import-catalogue [flags] -valid-from DATE    load a catalogue version from drugs and services CSV
  rxd check-rules FILE                            compile and type-check a rule set without loading it
  rxd backup [flags] -out FILE                    copy the SQLite database, while rxd runs, to a new file
  rxd audit-keys      [flags]                      make the audit log's keys; print the checkpoint key's verifier key
  rxd audit-export [flags] -out FILE              archive old audit log entries (and prune them)
  rxd version                                     which build this is: version, commit, Go version
Run "rxd <command> -h" for a command's flags.`

type command func(ctx context.Context, args []string, stdout, stderr io.Writer) error

var commands = map[string]command{
	"serve":            cmdServe,
	"import-registry":  cmdImportRegistry,
	"import-catalogue": cmdImportCatalogue,
	"check-rules":      cmdCheckRules,
	"backup":           cmdBackup,
	"audit-keys":       cmdAuditKeys,
	"audit-export":     cmdAuditExport, // audit_export.go
	"version": func(_ context.Context, args []string, stdout, stderr io.Writer) error {
		return cli.Version("rxd", args, stdout, stderr)
	},
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return cli.Usagef("%s", usage)
	}
	if args[0] == "help" && len(args) > 1 {
		return run(ctx, []string{args[1], "-h"}, stdout, stderr)
	}
	if args[0] == "help" || cli.IsHelp(args[0]) {
		fmt.Fprintln(stdout, usage)
		return nil
	}
	name := args[0]
	if name == "-version" || name == "--version" {
		name = "version"
	}
	cmd, ok := commands[name]
	if !ok {
		return cli.Usagef("unknown command %q\n%s", args[0], usage)
	}
	return cmd(ctx, args[1:], stdout, stderr)
}

// dbFlags are every command's database flags.
type dbFlags struct {
	driver, dsn, dsnFile *string
	create               *bool
}

func addDB(fs *flag.FlagSet) dbFlags {
	return dbFlags{
		driver:  fs.String("db-driver", "sqlite", "database: sqlite (embedded) or postgres"),
		dsn:     fs.String("db", "var/rxd/rxd.db", "SQLite file (with -db-driver sqlite)"),
		dsnFile: fs.String("dsn-file", "", "file holding the PostgreSQL URL (with -db-driver postgres; kept out of the process list)"),
		create:  fs.Bool("create", false, "make a new SQLite file if there is none at -db (first use); without it a missing file is refused"),
	}
}

// open opens the database and says which one it is (rxd.OpenStore); a
// combination of flags that cannot be opened is a usage error.
func (f dbFlags) open(ctx context.Context) (*sqlstore.DB, string, error) {
	st, err := f.store()
	if err != nil {
		return nil, "", err
	}
	return rxd.OpenStore(ctx, st)
}

func (f dbFlags) store() (rxd.Store, error) {
	st := rxd.Store{Driver: *f.driver, Path: *f.dsn, DSNFile: *f.dsnFile, Create: *f.create}
	if err := st.Validate(); err != nil {
		return rxd.Store{}, cli.Usagef("%v", err)
	}
	return st, nil
}

func cmdImportRegistry(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rxd import-registry", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := addDB(fs)
	mode := fs.String("mode", "", "full (replace the registry with the file) or update (insert or replace the persons in it)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	shrink := fs.Bool("allow-shrink", false, "accept a full import with more than 10% fewer persons than the registry in force")
	asJSON := fs.Bool("json", false, "print the summary (or the bad rows) as JSON")
	if err := cli.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 || (*mode != string(insured.Full) && *mode != string(insured.Update)) {
		return cli.Usagef("usage: rxd import-registry -mode full|update [flags] FILE.csv")
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
	d, where, err := db.open(ctx)
	if err != nil {
		return err
	}
	defer d.Close()
	fmt.Fprintf(stderr, "rxd: importing %s into the %s\n", fs.Arg(0), where)
	s, err := rxstore.NewInsured(ctx, d)
	if err != nil {
		return err
	}
	counted := &countingReader{r: f}
	var bar *progressBar
	if !*quiet {
		bar = &progressBar{w: stderr, total: info.Size(), read: counted, start: time.Now()}
	}
	sum, err := insured.Import(ctx, s, counted, insured.Mode(*mode), time.Now(), insured.Options{Progress: bar.update, AllowShrink: *shrink})
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

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rxd serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := addDB(fs)
	listen := fs.String("listen", "127.0.0.1:8543", "HTTPS address")
	certFile := fs.String("tls-cert", "", "server certificate chain (PEM)")
	keyFile := fs.String("tls-key", "", "server key: a key URI (softkey:path=…?pin-source=…, or pkcs11:… for a key in an HSM) or an unencrypted PEM file")
	clientCA := fs.String("client-ca", "", "CA certificates (PEM) that client certificates must chain to")
	arc := fs.String("oid-arc", pki.DefaultArc, "OID arc of the identity extension in our certificates (as trustd's)")
	statusAge := fs.Duration("status-max-age", 24*time.Hour, "oldest OCSP evidence accepted for a caller's certificate")
	recheck := fs.Duration("revocation-recheck", time.Minute, "how long an OCSP answer that a caller's certificate is good is reused: a caller revoked at trustd is refused within this (0: ask on every call)")
	rulesFile := fs.String("rules", "", "rule set file (YAML), watched and reloaded when it changes; default: the starter set")
	rulesPoll := fs.Duration("rules-poll", 5*time.Second, "how often the rule set file is checked for changes")
	maxConns := fs.Int("max-conns", netcap.DefaultTotal, "open connections at most; more are closed as soon as they are accepted")
	maxConnsPerIP := fs.Int("max-conns-per-ip", netcap.DefaultPerIP, "open connections at most from one client address (an IPv4 address or an IPv6 /64)")
	defaults := rxapi.DefaultLimits()
	perSecond := fs.Float64("caller-rate", defaults.PerSecond, "requests a second each client certificate may make, after its burst")
	burst := fs.Int("caller-burst", defaults.Burst, "requests each client certificate may make at once")
	dailyLookups := fs.Int("daily-lookups", defaults.DailyLookups, "eligibility lookups (and rules checks) each client certificate may make per day")
	audit := addAudit(fs)
	audit.witnesses = addWitnesses(fs)
	exchangeKey := fs.String("exchange-key", "", "the exchange's signing key for acknowledgements and receipts: a key URI (pkcs11:… for a key in an HSM); with -exchange-cert. Without both, the prescription exchange is not served")
	exchangeCert := fs.String("exchange-cert", "", "the exchange's certificate (profile exchange-receipt-signing) and its intermediate, PEM, leaf first")
	metricsListen := fs.String("metrics-listen", "", "operations address, plain HTTP: /metrics (Prometheus), /healthz, /readyz; no credential, no personal data — keep it on loopback (e.g. 127.0.0.1:9543) or a management network. Empty: none")
	if err := cli.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return cli.Usagef("serve takes no arguments, got %q", fs.Args())
	}
	if *perSecond <= 0 || *burst < 1 || *dailyLookups < 1 {
		return cli.Usagef("-caller-rate, -caller-burst and -daily-lookups must be positive")
	}
	if *recheck < 0 {
		return cli.Usagef("-revocation-recheck must be 0 (ask on every call) or more, not %s", *recheck)
	}
	if (*exchangeKey == "") != (*exchangeCert == "") {
		return cli.Usagef("-exchange-key and -exchange-cert go together: the exchange's signing key and its certificate chain")
	}
	if *certFile == "" || *keyFile == "" || *clientCA == "" {
		return cli.Usagef("rxd serve needs -tls-cert, -tls-key and -client-ca: every caller is authenticated by its certificate")
	}
	if err := audit.check(); err != nil {
		return err
	}
	conns := netcap.Limits{Total: *maxConns, PerIP: *maxConnsPerIP}
	if *maxConns <= 0 || *maxConnsPerIP <= 0 {
		return cli.Usagef("-max-conns and -max-conns-per-ip must be positive")
	}
	if err := conns.Validate(); err != nil {
		return cli.Usagef("%v", err)
	}
	st, err := db.store()
	if err != nil {
		return err
	}
	cfg := rxd.Config{
		Store: st, Listen: *listen, TLSCert: *certFile, TLSKey: *keyFile, ClientCA: *clientCA, Arc: *arc,
		StatusMaxAge: *statusAge, Recheck: *recheck, RulesFile: *rulesFile, RulesPoll: *rulesPoll, Conns: conns,
		Limits: rxapi.Limits{PerSecond: *perSecond, Burst: *burst, DailyLookups: *dailyLookups}, Audit: audit.config(),
		ExchangeKey: *exchangeKey, ExchangeCert: *exchangeCert, MetricsListen: *metricsListen,
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Once a shutdown has begun, a second signal ends the process at
	// once (the default action) rather than being swallowed.
	context.AfterFunc(ctx, stop)
	keys := hsm.NewManager(hsm.NoPrompt)
	defer keys.Close()
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	svc, err := rxd.New(ctx, cfg, rxd.Deps{Log: log, Now: time.Now, Keys: keys})
	if err != nil {
		return err
	}
	// SIGHUP reloads the rule set file and the TLS certificate (Reload).
	// It is waited for before the keys are closed.
	stopReloads := lifecycle.ReloadOnHangup(ctx, log, svc.Reload)
	// Serve returns once the requests in flight are drained and the rules
	// watch has stopped: only then are the database and the keys closed.
	serveErr := svc.Serve(ctx)
	stopReloads()
	return errors.Join(serveErr, svc.Close())
}

func cmdImportCatalogue(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rxd import-catalogue", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := addDB(fs)
	label := fs.String("label", "", "the version's name, e.g. \"1405 Mehr tariffs\" (required)")
	from := fs.String("valid-from", "", "first day the version is in force (Gregorian or Solar Hijri; required)")
	to := fs.String("valid-to", "", "first day it is no longer in force (optional)")
	drugs := fs.String("drugs", "", "drugs CSV")
	services := fs.String("services", "", "services CSV (lab, imaging, procedure)")
	asJSON := fs.Bool("json", false, "print the result (or the bad rows) as JSON")
	if err := cli.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	if *from == "" || (*drugs == "" && *services == "") || fs.NArg() != 0 {
		return cli.Usagef("usage: rxd import-catalogue -label L -valid-from DATE [-valid-to DATE] [-drugs F] [-services F]")
	}
	spec := catalogue.ImportSpec{Label: *label}
	var err error
	if spec.ValidFrom, err = persian.ParseDate(*from); err != nil {
		return fmt.Errorf("-valid-from: %w", err)
	}
	if *to != "" {
		if spec.ValidTo, err = persian.ParseDate(*to); err != nil {
			return fmt.Errorf("-valid-to: %w", err)
		}
	}
	open := func(p string) (io.Reader, func(), error) {
		if p == "" {
			return nil, func() {}, nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil, nil, err
		}
		return f, func() { f.Close() }, nil
	}
	dr, closeD, err := open(*drugs)
	if err != nil {
		return err
	}
	defer closeD()
	sr, closeS, err := open(*services)
	if err != nil {
		return err
	}
	defer closeS()
	d, where, err := db.open(ctx)
	if err != nil {
		return err
	}
	defer d.Close()
	fmt.Fprintf(stderr, "rxd: importing catalogue version %q into the %s\n", *label, where)
	cstore, err := rxstore.NewCatalogue(ctx, d)
	if err != nil {
		return err
	}
	cat, err := catalogue.New(catalogue.Config{Store: cstore})
	if err != nil {
		return err
	}
	res, err := cat.Import(ctx, spec, dr, sr)
	var ie *catalogue.ImportError
	if errors.As(err, &ie) {
		if *asJSON {
			_ = json.NewEncoder(stdout).Encode(ie)
		} else {
			for _, r := range ie.Rows {
				fmt.Fprintln(stdout, r.String())
			}
			if ie.Total > len(ie.Rows) {
				fmt.Fprintf(stdout, "… and %d more\n", ie.Total-len(ie.Rows))
			}
		}
		return fmt.Errorf("%d problem(s): nothing was imported", ie.Total)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "imported catalogue version %s (%q): %d drugs, %d services, in force from %s\n",
		res.Version.ID, res.Version.Label, res.Drugs, res.Services, res.Version.ValidFrom.Format(time.DateOnly))
	return nil
}

// cmdBackup copies the embedded SQLite database to a new file while rxd
// serves from it (sqlstore.Backup: one consistent snapshot, checked). A
// PostgreSQL database is backed up with pgBackRest.
func cmdBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rxd backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := addDB(fs)
	out := fs.String("out", "", "the copy: a new file (one already there is refused), private to its owner")
	if err := cli.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	switch {
	case fs.NArg() != 0 || *out == "":
		return cli.Usagef("usage: rxd backup -db FILE -out NEW-FILE")
	case *db.driver != sqlstore.SQLite:
		return cli.Usagef("rxd backup copies the embedded SQLite database; back PostgreSQL up with pgBackRest (docs/operations-ha.md)")
	case *db.create:
		return cli.Usagef("-create makes a database; a backup copies one that exists")
	}
	d, where, err := db.open(ctx)
	if err != nil {
		return err
	}
	defer d.Close()
	start := time.Now()
	if err := d.Backup(ctx, *out); err != nil {
		return err
	}
	info, err := os.Stat(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backed up the %s to %s: %d bytes in %s, integrity check ok\n", where, *out, info.Size(), time.Since(start).Round(time.Millisecond))
	return nil
}

// cmdCheckRules is for the insurer's staff: does this file load, and if
// not, where is each problem.
func cmdCheckRules(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rxd check-rules", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := cli.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return cli.Usagef("usage: rxd check-rules FILE.yaml")
	}
	file := fs.Arg(0)
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	set, err := rules.Load(file, data)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: rule set %s, %d rules, compiled and type-checked\n", file, set.Version(), len(set.Rules()))
	return nil
}

// auditFlags name rxd's audit log: its keys and its origin.
type auditFlags struct {
	pseudonym, seal, note, origin *string
	witnesses                     *witnessList // serve's only
}

// witnessList is the repeatable -audit-witness.
type witnessList []tlog.Witness

func (l *witnessList) String() string { return fmt.Sprint(len(*l), " witnesses") }
func (l *witnessList) Set(v string) error {
	w, err := tlog.ParseWitness(v)
	if err != nil {
		return err
	}
	*l = append(*l, w)
	return nil
}

func addAudit(fs *flag.FlagSet) auditFlags {
	return auditFlags{
		pseudonym: fs.String("audit-pseudonym-key", "", "the audit log's pseudonym key (HMAC-SHA256), a key URI: pkcs11:… on the HSM, softkey:path=…?pin-source=… for the embedded default; the same for every rxd on one database, never changed. It also keys the seal of the answers kept for Idempotency-Key retries"),
		seal:      fs.String("audit-seal-key", "", "the AES-256-GCM key (a key URI) the audit log's checkpoint key is sealed under"),
		note:      fs.String("audit-note-key", "", "the audit log's sealed checkpoint key (a file made by rxd audit-keys)"),
		origin:    fs.String("audit-origin", "", "the audit log's name in its checkpoints, e.g. rxd.example.ir/audit: never changed"),
	}
}

func addWitnesses(fs *flag.FlagSet) *witnessList {
	l := &witnessList{}
	fs.Var(l, "audit-witness", "a witness that cosigns the audit log's checkpoints (C2SP tlog-witness): \"VKEY URL\", its cosignature/v1 verifier key and its URL prefix (repeat for each; docs/audit-log.md). None: checkpoints carry the log's signature alone")
	return l
}

func (f auditFlags) config() rxd.Audit {
	a := rxd.Audit{PseudonymKey: *f.pseudonym, SealKey: *f.seal, NoteKeyFile: *f.note, Origin: *f.origin}
	if f.witnesses != nil {
		a.Witnesses = *f.witnesses
	}
	return a
}

func (f auditFlags) check() error {
	if *f.pseudonym == "" || *f.seal == "" || *f.note == "" || *f.origin == "" {
		return cli.Usagef("rxd records every action in its audit log: -audit-pseudonym-key, -audit-seal-key, -audit-note-key and -audit-origin are required (rxd audit-keys makes the keys)")
	}
	return nil
}

// cmdAuditKeys makes the audit log's keys — the pseudonym key and the
// sealing key where they do not exist yet, and a new checkpoint key
// sealed into -audit-note-key — and prints the checkpoint key's verifier
// key, which operators give to auditors and to trustd's trust bundle.
// Rotating the checkpoint key is running it again with a new file and a
// new -name (the origin stays).
func cmdAuditKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rxd audit-keys", flag.ContinueOnError)
	fs.SetOutput(stderr)
	audit := addAudit(fs)
	name := fs.String("name", "", "the checkpoint key's name (default: the origin); a rotated key takes a new one, e.g. rxd.example.ir/audit/k2")
	if err := cli.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return cli.Usagef("audit-keys takes no arguments, got %q", fs.Args())
	}
	if err := audit.check(); err != nil {
		return err
	}
	if *name == "" {
		*name = *audit.origin
	}
	keys := hsm.NewManager(hsm.NoPrompt)
	defer keys.Close()
	vkey, err := rxd.CreateAuditKeys(ctx, keys, audit.config(), *name)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, vkey)
	return nil
}
