// Command trustd is Nuskha's trust service: the CA whose issuing key lives in
// an HSM, the identity registry, and enrolment under dual control.
//
//	trustd init  -dir DIR -officer NAME -officer NAME [flags]   the CA ceremony
//	trustd serve -config DIR/trustd.json                        run the service
//	trustd sign-arl -config DIR/trustd.json -root-key URI       re-sign the root's ARL (root key present)
//	trustd add-officer -config … -root-key URI -officer NAME    restore a lost officer quorum (root key present)
package main

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nuskha/nuskha/internal/cli"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/lifecycle"
	"github.com/nuskha/nuskha/internal/pki/ceremony"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/trustd"
)

func main() {
	os.Exit(cli.Exit("trustd", run(context.Background(), os.Args[1:], os.Stdout, os.Stderr), os.Stderr))
}

const usage = `usage:
  trustd init  -dir DIR -officer NAME -officer NAME [flags]   create the CA, first officers and config
  trustd serve -config FILE                                  run the service
  trustd check -config FILE                                  validate the config and open keys and database
  trustd sign-arl -config FILE -root-key URI [-revoke-intermediate CERT -reason R]
                                                             re-sign the root's ARL (yearly), or revoke an intermediate
  trustd add-officer -config FILE -root-key URI -officer NAME…
                                                             add officers when fewer than two can act (recovery)
  trustd record-certificate -config FILE -cert FILE           record a certificate signed but lost with the database (from the log)
  trustd backup -config FILE -out FILE                       copy the SQLite database, while trustd runs, to a new file
  trustd audit-export -config FILE (-before-index N | -before TIME) -out FILE [-prune]
                                                             archive old audit log entries (and prune them)
  trustd version                                             which build this is: version, commit, Go version
Run "trustd <command> -h" for a command's flags.`

type command func(ctx context.Context, args []string, stdout, stderr io.Writer) error

var commands = map[string]command{
	"init": cmdInit,
	"serve": func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		return cmdServe(ctx, args, stdout, stderr, false)
	},
	"check": func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		return cmdServe(ctx, args, stdout, stderr, true)
	},
	"sign-arl":           cmdSignARL,
	"add-officer":        cmdAddOfficer,
	"record-certificate": cmdRecordCertificate,
	"backup":             cmdBackup,
	"audit-export":       cmdAuditExport,
	"version": func(_ context.Context, args []string, stdout, stderr io.Writer) error {
		return cli.Version("trustd", args, stdout, stderr)
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

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func cmdInit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("trustd init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "empty directory for the CA (required)")
	rootKey := fs.String("root-key", "", "root key URI (pkcs11:… or softkey:…); default: an encrypted file in DIR/ca")
	interKey := fs.String("intermediate-key", "", "issuing key URI, normally pkcs11:…; default: an encrypted file in DIR/ca")
	tlsKey := fs.String("tls-key", "", "trustd TLS key URI; default: an encrypted file in DIR/tls")
	auditKey := fs.String("audit-key", "", "URI of the AES key sealing the audit log's checkpoint key (pkcs11:…); default: an encrypted file in DIR/ca")
	auditOrigin := fs.String("audit-origin", "", "the audit log's origin (default <host of -http-base-url>/trustd-audit)")
	rootAlg := fs.String("root-alg", "EC-P384", "root key algorithm")
	interAlg := fs.String("intermediate-alg", "EC-P256", "issuing key algorithm")
	org := fs.String("org", ceremony.DefaultNames.Organization, "organisation name in CA certificates")
	rootCN := fs.String("root-cn", ceremony.DefaultNames.RootCN, "root CA common name")
	interCN := fs.String("intermediate-cn", ceremony.DefaultNames.IntermediateCN, "issuing CA common name")
	arc := fs.String("oid-arc", "", "OID arc for policies and EKUs (default: the 2.999.1 example arc, development only)")
	storeDriver := fs.String("store", "sqlite", "database: sqlite (embedded) or postgres")
	dsnFile := fs.String("dsn-file", "", "file holding the PostgreSQL URL (with -store postgres)")
	admin := fs.String("admin-listen", "127.0.0.1:8443", "admin API address (mTLS, officers)")
	public := fs.String("public-listen", "127.0.0.1:8444", "public API address (TLS)")
	httpListen := fs.String("http-listen", "127.0.0.1:8080", "plain-HTTP address for certificate URLs (AIA, CRL, OCSP)")
	httpBase := fs.String("http-base-url", "", "base URL certificates point to (default http://<http-listen>)")
	var officers, dns, otherLogs listFlag
	fs.Var(&officers, "officer", "NAME=KEY-URI to make the officer's key on their token, NAME=csr:PATH to certify a CSR made with a key they hold, or NAME alone for a key file to hand over (repeat; at least 2)")
	fs.Var(&dns, "dns", "trustd TLS name or IP (repeat; default localhost and 127.0.0.1)")
	fs.Var(&otherLogs, "other-log", `"ORIGIN VKEY URL": another daemon's audit log (rxd's: its -audit-origin, what rxd audit-keys printed, where it serves /audit) for the trust bundle to name (repeat)`)
	if err := cli.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	if *dir == "" {
		return cli.Usagef("init: -dir is required")
	}
	var others []trustd.LogKeyConfig
	for _, arg := range otherLogs {
		f := strings.Fields(arg)
		if len(f) != 3 {
			return cli.Usagef("-other-log %q: want \"ORIGIN VKEY URL\"", arg)
		}
		l := trustd.LogKeyConfig{Origin: f[0], VerifierKey: f[1], URL: f[2]}
		if err := l.Check(); err != nil {
			return cli.Usagef("-other-log %q: %v", arg, err)
		}
		others = append(others, l)
	}
	if fs.NArg() != 0 {
		return cli.Usagef("init takes no arguments, got %q", fs.Args())
	}
	ra, err := hsm.ParseAlgorithm(*rootAlg)
	if err != nil {
		return err
	}
	ia, err := hsm.ParseAlgorithm(*interAlg)
	if err != nil {
		return err
	}
	opts := trustd.InitOptions{
		Dir: *dir, RootKey: *rootKey, IntermediateKey: *interKey, TLSKey: *tlsKey, AuditKey: *auditKey, AuditOrigin: *auditOrigin, RootAlg: ra, IntermediateAlg: ia,
		Names:    ceremony.Names{Country: "IR", Organization: *org, RootCN: *rootCN, IntermediateCN: *interCN},
		DNSNames: dns, OIDArc: *arc, AdminListen: *admin, PublicListen: *public, HTTPListen: *httpListen, HTTPBaseURL: *httpBase,
		Store: trustd.StoreConfig{Driver: *storeDriver, DSNFile: *dsnFile}, OtherLogs: others,
	}
	if opts.Store.Driver == "sqlite" {
		opts.Store.Path = "trustd.db"
	}
	if opts.HTTPBaseURL == "" && opts.HTTPListen != "" {
		opts.HTTPBaseURL = "http://" + opts.HTTPListen
	}
	for _, arg := range officers {
		o, err := trustd.ParseOfficer(arg)
		if err != nil {
			return cli.Usagef("-officer %s: %v", arg, err)
		}
		opts.Officers = append(opts.Officers, o)
	}
	keys := hsm.NewManager(hsm.NoPrompt)
	defer keys.Close()
	log := slog.New(slog.NewTextHandler(stderr, nil))
	res, err := trustd.Init(ctx, opts, trustd.Deps{Log: log, Now: time.Now, Keys: keys})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "CA created.\n  config:    %s\n  root cert: %s\n  root key:  %s\n", res.ConfigFile, res.RootCert, res.RootKeyURI)
	fmt.Fprintln(stdout, "  The root key is not needed to run trustd: move it offline.")
	fmt.Fprintf(stdout, "  audit log: %s\n  its key:   %s\n", res.AuditOrigin, res.AuditVerifierKey)
	printOfficers(stdout, res.Officers)
	fmt.Fprintf(stdout, "Start it with: trustd serve -config %s\n", res.ConfigFile)
	return nil
}

// printOfficers says what init or add-officer made for each officer, and
// that keys it made must leave the CA host.
func printOfficers(stdout io.Writer, officers []trustd.OfficerCredential) {
	handover := false
	for _, o := range officers {
		switch {
		case o.Handover != "":
			handover = true
			fmt.Fprintf(stdout, "  officer %s (%s): cert %s; key, password and certificate to hand over in %s\n", o.Name, o.SubjectID, o.CertFile, o.Handover)
		case o.KeyURI != "":
			fmt.Fprintf(stdout, "  officer %s (%s): cert %s key %s\n", o.Name, o.SubjectID, o.CertFile, o.KeyURI)
		default:
			fmt.Fprintf(stdout, "  officer %s (%s): cert %s, for the key that made the CSR\n", o.Name, o.SubjectID, o.CertFile)
		}
	}
	if handover {
		fmt.Fprintln(stdout, "  Hand each officer their directory under handover/ and remove it from this host:")
		fmt.Fprintln(stdout, "  whoever can read an officer's key and password acts as that officer. In production,")
		fmt.Fprintln(stdout, "  officers bring their own keys: -officer NAME=pkcs11:… or -officer NAME=csr:FILE.")
	}
}

// cmdAddOfficer is the recovery ceremony when fewer than two officers can
// act: with the root key present, it certifies new officers directly.
func cmdAddOfficer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("trustd add-officer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "trustd.json (required)")
	rootKey := fs.String("root-key", "", "root key URI, as printed by init (required: the offline root is brought back for this ceremony)")
	var officers listFlag
	fs.Var(&officers, "officer", "NAME=KEY-URI, NAME=csr:PATH or NAME, as for init (repeat)")
	if err := cli.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	if *path == "" || *rootKey == "" || len(officers) == 0 || fs.NArg() != 0 {
		return cli.Usagef("usage: trustd add-officer -config FILE -root-key URI -officer NAME[=KEY-URI|=csr:PATH] [-officer …]")
	}
	opts := trustd.AddOfficersOptions{RootKey: *rootKey}
	for _, arg := range officers {
		o, err := trustd.ParseOfficer(arg)
		if err != nil {
			return cli.Usagef("-officer %s: %v", arg, err)
		}
		opts.Officers = append(opts.Officers, o)
	}
	cfg, err := trustd.LoadConfig(*path)
	if err != nil {
		return err
	}
	keys := hsm.NewManager(hsm.NoPrompt)
	defer keys.Close()
	made, err := trustd.AddOfficers(ctx, cfg, opts, trustd.Deps{Log: slog.New(slog.NewTextHandler(stderr, nil)), Now: time.Now, Keys: keys})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "Officers added; dual control is restored.")
	printOfficers(stdout, made)
	return nil
}

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer, checkOnly bool) error {
	name := "trustd serve"
	if checkOnly {
		name = "trustd check"
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "trustd.json (required)")
	if err := cli.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	if *path == "" {
		return cli.Usagef("-config is required")
	}
	if fs.NArg() != 0 {
		return cli.Usagef("%s takes no arguments, got %q", name, fs.Args())
	}
	cfg, err := trustd.LoadConfig(*path)
	if err != nil {
		return err
	}
	log := cfg.Logger(stderr)
	keys := hsm.NewManager(hsm.NoPrompt)
	defer keys.Close()
	svc, err := trustd.New(ctx, cfg, trustd.Deps{Log: log, Now: time.Now, Keys: keys})
	if err != nil {
		return err
	}
	defer svc.Close()
	if checkOnly {
		fmt.Fprintln(stderr, "config, keys, profiles and database are usable")
		return nil
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Once a shutdown has begun, a second signal ends the process at
	// once (the default action) rather than being swallowed.
	context.AfterFunc(ctx, stop)
	// SIGHUP reloads the TLS certificate and the ARL (Reload); it is
	// waited for before the service and the keys are closed.
	stopReloads := lifecycle.ReloadOnHangup(ctx, log, svc.Reload)
	err = svc.Serve(ctx)
	stopReloads()
	return err
}

// cmdRecordCertificate records a certificate whose record was lost with
// the database, from trustd's error log, so that it can be revoked.
func cmdRecordCertificate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("trustd record-certificate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "trustd.json (required)")
	certFile := fs.String("cert", "", "the certificate: PEM, DER, or the base64 of certificate_der_base64 in trustd's log (required)")
	if err := cli.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	if *path == "" || *certFile == "" || fs.NArg() != 0 {
		return cli.Usagef("usage: trustd record-certificate -config FILE -cert FILE")
	}
	raw, err := os.ReadFile(*certFile)
	if err != nil {
		return err
	}
	der := raw
	if b, _ := pem.Decode(raw); b != nil {
		der = b.Bytes
	} else if d, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw))); err == nil {
		der = d
	}
	cfg, err := trustd.LoadConfig(*path)
	if err != nil {
		return err
	}
	rec, err := trustd.RecordCertificate(ctx, cfg, der, trustd.Deps{Log: slog.New(slog.NewTextHandler(stderr, nil)), Now: time.Now})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "recorded certificate %s of enrolment %s; revoke it if it should not stand: rxctl cert revoke -serial %s -reason …\n",
		rec.SerialHex(), rec.EnrolmentID, rec.SerialHex())
	return nil
}

// cmdBackup copies the embedded SQLite database to a new file while
// trustd serves from it (sqlstore.Backup: one consistent snapshot,
// checked). A PostgreSQL database is backed up with pgBackRest.
func cmdBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("trustd backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "trustd.json (required)")
	out := fs.String("out", "", "the copy: a new file (one already there is refused), private to its owner")
	if err := cli.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	if *path == "" || *out == "" || fs.NArg() != 0 {
		return cli.Usagef("usage: trustd backup -config FILE -out NEW-FILE")
	}
	cfg, err := trustd.LoadConfig(*path)
	if err != nil {
		return err
	}
	if cfg.Store.Driver == sqlstore.Postgres {
		return cli.Usagef("trustd backup copies the embedded SQLite database; back PostgreSQL up with pgBackRest (docs/operations-ha.md)")
	}
	st, err := trustd.OpenStore(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer st.Close()
	start := time.Now()
	if err := st.Backup(ctx, *out); err != nil {
		return err
	}
	info, err := os.Stat(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backed up %s to %s: %d bytes in %s, integrity check ok\n", cfg.Path(cfg.Store.Path), *out, info.Size(), time.Since(start).Round(time.Millisecond))
	return nil
}
