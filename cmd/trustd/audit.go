package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/nuskha/nuskha/internal/cli"
	"github.com/nuskha/nuskha/internal/tlog"
	"github.com/nuskha/nuskha/internal/trustd"
)

// cmdAuditExport is `trustd audit-export`: the retention of trustd's audit log.
func cmdAuditExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("trustd audit-export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "trustd.json (required)")
	ef := tlog.AddExportFlags(fs)
	if err := cli.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	before, cutoff, err := ef.Selection()
	if err == nil && (*path == "" || fs.NArg() != 0) {
		err = fmt.Errorf("-config is required, and no arguments")
	}
	if err != nil {
		return cli.Usagef("usage: trustd audit-export -config FILE (-before-index N | -before TIME) -out FILE [-prune]: %v", err)
	}
	cfg, err := trustd.LoadConfig(*path)
	if err != nil {
		return err
	}
	db, err := trustd.OpenStore(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer db.Close()
	a, err := db.AuditLog().ExportFile(ctx, *ef.Out, before, cutoff, *ef.Prune)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, a.Report(*ef.Out, *ef.Prune))
	return nil
}
