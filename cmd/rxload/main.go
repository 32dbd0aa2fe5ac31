// Command rxload offers the prescription exchange a load and measures it.
//
//	rxload setup -dir DIR -admin-url URL -ca-file ROOT -requester-cert F -requester-key URI -approver-cert F -approver-key URI
//	rxload run   -dir DIR -url https://localhost:8543 -n 20000 -c 32 [-rate 1000] [-pipeline] [-retry 60s -acked FILE]
//
// setup has trustd (through its admin API, as two officers) certify the
// keys of a vendor, rxd's TLS server, the exchange's receipts, and of
// practitioners and pharmacies, and writes an insured registry and the
// flags rxd serve needs; run pre-signs the prescriptions, submits them,
// then claims, dispenses and closes them, and prints what it measured.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/internal/cli"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Exit("rxload", run(ctx, os.Args[1:], os.Stdout, os.Stderr), os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage:
  rxload setup [flags]   have trustd certify a vendor, rxd, practitioners and pharmacies; write a registry
  rxload run [flags]     submit prescriptions to rxd, then claim, dispense and close them; print the figures
  rxload version         which build this is
Run "rxload <command> -h" for a command's flags; docs/BENCHMARKS.md for a whole run.`

type command func(ctx context.Context, args []string, stdout, stderr io.Writer) error

var commands = map[string]command{
	"setup": cmdSetup,
	"run":   cmdRun,
	"version": func(_ context.Context, args []string, stdout, stderr io.Writer) error {
		return cli.Version("rxload", args, stdout, stderr)
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
	cmd, ok := commands[args[0]]
	if !ok {
		return cli.Usagef("unknown command %q\n%s", args[0], usage)
	}
	return cmd(ctx, args[1:], stdout, stderr)
}

// RxdArgsFile is where setup writes rxd serve's TLS and exchange flags,
// one a line, for a script: mapfile -t a < DIR/rxd.args; rxd serve "${a[@]}" …
const RxdArgsFile = "rxd.args"

func cmdSetup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rxload setup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "new directory for the keys, certificates, registry and manifest")
	adminURL := fs.String("admin-url", os.Getenv("NUSKHA_ADMIN_URL"), "trustd's admin API (default $NUSKHA_ADMIN_URL)")
	caFile := fs.String("ca-file", os.Getenv("NUSKHA_CA_FILE"), "trustd's root certificate, PEM (default $NUSKHA_CA_FILE)")
	reqCert := fs.String("requester-cert", "", "the officer who enters subjects and enrolments: certificate chain (PEM)")
	reqKey := fs.String("requester-key", "", "that officer's key URI")
	apprCert := fs.String("approver-cert", "", "the other officer, who approves: certificate chain (PEM)")
	apprKey := fs.String("approver-key", "", "that officer's key URI")
	practitioners := fs.Int("practitioners", 16, "practitioners to certify (prescriptions are spread over them)")
	pharmacies := fs.Int("pharmacies", 16, "pharmacies to certify")
	persons := fs.Int("persons", 200000, "insured persons in the registry (a run uses one per prescription)")
	exchangeKey := fs.String("exchange-key", "", "key URI where the exchange's signing key is made (pkcs11:token=…;object=…?module-path=…&pin-source=…, as on an HSM); default: an encrypted key file in -dir")
	if err := cli.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	switch {
	case fs.NArg() != 0:
		return cli.Usagef("setup takes no arguments, got %q", fs.Args())
	case *dir == "" || *adminURL == "" || *caFile == "":
		return cli.Usagef("setup needs -dir, -admin-url and -ca-file")
	case *reqCert == "" || *reqKey == "" || *apprCert == "" || *apprKey == "":
		return cli.Usagef("setup needs two officers: -requester-cert, -requester-key, -approver-cert and -approver-key")
	case *practitioners < 1 || *pharmacies < 1 || *persons < 1:
		return cli.Usagef("-practitioners, -pharmacies and -persons must be positive")
	}
	keys := hsm.NewManager(hsm.NoPrompt)
	defer keys.Close()
	officer := func(certFile, keyURI string) (loadgen.Officer, error) {
		chain, err := pemutil.ReadCertificateBundle(certFile)
		if err != nil {
			return loadgen.Officer{}, err
		}
		k, err := keys.OpenKey(ctx, keyURI)
		return loadgen.Officer{Chain: chain, Key: k}, err
	}
	requester, err := officer(*reqCert, *reqKey)
	if err != nil {
		return err
	}
	approver, err := officer(*apprCert, *apprKey)
	if err != nil {
		return err
	}
	path, err := loadgen.Setup(ctx, loadgen.SetupOptions{Dir: *dir, AdminURL: *adminURL, RootFile: *caFile,
		Requester: requester, Approver: approver, Practitioners: *practitioners, Pharmacies: *pharmacies, Persons: *persons, ExchangeKey: *exchangeKey, Keys: keys})
	if err != nil {
		return err
	}
	m, err := loadgen.ReadManifest(path)
	if err != nil {
		return err
	}
	rxdArgs := []string{"-tls-cert", m.RxdTLS.Chain, "-tls-key", m.RxdTLS.Key, "-client-ca", m.Root,
		"-exchange-key", m.Exchange.Key, "-exchange-cert", m.Exchange.Chain}
	argsFile := filepath.Join(filepath.Dir(path), RxdArgsFile)
	if err := os.WriteFile(argsFile, []byte(strings.Join(rxdArgs, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "manifest: %s\nregistry: rxd import-registry -mode full %s\nrxd serve flags: %s (rxd needs budgets above the load: -caller-rate, -caller-burst, -daily-lookups, -max-conns-per-ip)\n",
		path, m.Registry, argsFile)
	return nil
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rxload run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "the directory setup made")
	url := fs.String("url", os.Getenv("NUSKHA_RXD_URL"), "rxd's address, https://localhost:PORT (default $NUSKHA_RXD_URL)")
	n := fs.Int("n", 10000, "prescriptions to submit, each for a person of its own")
	first := fs.Int("first", 0, "the registry's first person to prescribe for (another run: the persons after the last run's)")
	clients := fs.Int("c", 32, "concurrent clients, each on its own connection")
	rate := fs.Float64("rate", 0, "prescriptions offered per second, open loop (latency then includes queueing for a client); 0: as fast as the clients are answered")
	dispense := fs.Bool("dispense", true, "then claim, dispense and close every accepted prescription")
	pipeline := fs.Bool("pipeline", false, "claim, dispense and close each prescription as soon as it is accepted, by the client that submitted it")
	retry := fs.Duration("retry", 0, "send a prescription again for up to this long while rxd answers 503 or 429 or does not answer (a failover); 0: one attempt")
	ackedFile := fs.String("acked", "", "append a line per acknowledged document to this file as its answer arrives: UNIX-NANOSECONDS OPERATION ID")
	if err := cli.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	switch {
	case fs.NArg() != 0:
		return cli.Usagef("run takes no arguments, got %q", fs.Args())
	case *dir == "" || *url == "":
		return cli.Usagef("run needs -dir (what setup made) and -url (rxd)")
	case *n < 1 || *clients < 1 || *first < 0 || *rate < 0 || *retry < 0:
		return cli.Usagef("-n and -c must be positive, -first, -rate and -retry not negative")
	}
	keys := hsm.NewManager(hsm.NoPrompt)
	defer keys.Close()
	opts := loadgen.RunOptions{Manifest: filepath.Join(*dir, loadgen.ManifestFile), URL: *url, N: *n, First: *first,
		Clients: *clients, Rate: *rate, Dispense: *dispense, Pipeline: *pipeline, Retry: *retry, Keys: keys, Progress: stderr}
	var acked *ackLog
	if *ackedFile != "" {
		f, err := os.OpenFile(*ackedFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		acked = &ackLog{f: f}
		opts.Acked = acked.add
	}
	rep, err := loadgen.Run(ctx, opts)
	if acked != nil {
		err = errors.Join(err, acked.close())
	}
	if err != nil {
		return err
	}
	rep.Print(stdout)
	if ctx.Err() != nil {
		return errors.New("interrupted: the figures above are of the part that ran")
	}
	return nil
}

// ackLog writes each acknowledgement as it arrives, a line at a time, so
// that a fault test reading the file while the load runs sees every
// acknowledgement given so far, and one killed mid-run loses none it saw.
type ackLog struct {
	mu  sync.Mutex
	f   *os.File
	err error
}

func (a *ackLog) add(op, id string) {
	line := fmt.Sprintf("%d %s %s\n", time.Now().UnixNano(), op, id)
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.f.WriteString(line); err != nil && a.err == nil {
		a.err = err
	}
}

func (a *ackLog) close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return errors.Join(a.err, a.f.Close())
}
