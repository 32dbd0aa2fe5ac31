package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/internal/cli"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/pki/ceremony"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/trustd"
)

// cmdSignARL is the root's ceremony between inits: re-sign the ARL before
// it expires, or revoke an intermediate.
func cmdSignARL(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("trustd sign-arl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "trustd.json (required); the ARL is written to its ca.arl")
	rootKey := fs.String("root-key", "", "root key URI, as printed by init (required; the key is offline between ceremonies)")
	revokeFile := fs.String("revoke-intermediate", "", "PEM certificate of an intermediate this root issued, to list as revoked")
	reasonName := fs.String("reason", "", "with -revoke-intermediate: cACompromise, superseded, cessationOfOperation, affiliationChanged or unspecified")
	validity := fs.Duration("validity", ceremony.ARLValidity, "until the ARL's nextUpdate; the root MUST re-sign before then")
	if err := cli.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	if *path == "" || *rootKey == "" || fs.NArg() != 0 {
		return cli.Usagef("usage: trustd sign-arl -config FILE -root-key URI [-revoke-intermediate CERT.pem -reason REASON] [-validity D]")
	}
	if *validity <= 0 || *validity > 5*ceremony.ARLValidity {
		return cli.Usagef("-validity %s: must be positive and at most %s", *validity, 5*ceremony.ARLValidity)
	}
	o := trustd.ARLOptions{RootKey: *rootKey, Validity: *validity}
	if (*revokeFile == "") != (*reasonName == "") {
		return cli.Usagef("-revoke-intermediate and -reason go together")
	}
	if *revokeFile != "" {
		certs, err := pemutil.ReadCertificateBundle(*revokeFile)
		if err != nil {
			return fmt.Errorf("-revoke-intermediate: %w", err)
		}
		r, ok := revoke.ParseReason(*reasonName)
		if !ok || !slices.Contains(ceremony.ARLReasons, int(r)) {
			return cli.Usagef("-reason %q: a CA is revoked for cACompromise, superseded, cessationOfOperation, affiliationChanged or unspecified", *reasonName)
		}
		o.Revoke, o.Reason = certs[0], int(r)
	}
	cfg, err := trustd.LoadConfig(*path)
	if err != nil {
		return err
	}
	keys := hsm.NewManager(hsm.NoPrompt)
	defer keys.Close()
	list, err := trustd.SignARL(ctx, cfg, o, trustd.Deps{Log: slog.New(slog.NewTextHandler(stderr, nil)), Now: time.Now, Keys: keys})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ARL %s signed: %d revoked CA(s), next update %s (re-sign before then).\n  written to %s; a running trustd serves it within minutes.\n",
		list.Number, len(list.RevokedCertificateEntries), list.NextUpdate.UTC().Format(time.RFC3339), cfg.Path(cfg.CA.ARL))
	return nil
}
