package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/nuskha/nuskha/internal/cli"
	"github.com/nuskha/nuskha/internal/store/tlogstore"
	"github.com/nuskha/nuskha/internal/tlog"
)

// cmdAuditExport is `rxd audit-export`: the retention of rxd's audit log, the
// same as trustd's (tlogstore.ExportFile).
func cmdAuditExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rxd audit-export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbf := addDB(fs)
	ef := tlog.AddExportFlags(fs)
	if err := cli.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	before, cutoff, err := ef.Selection()
	if err == nil && fs.NArg() != 0 {
		err = fmt.Errorf("no arguments")
	}
	if err != nil {
		return cli.Usagef("usage: rxd audit-export [db flags] (-before-index N | -before TIME) -out FILE [-prune]: %v", err)
	}
	db, _, err := dbf.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	// The log's tables are rxd's own (its serve migrates them): an export
	// migrates nothing.
	a, err := tlogstore.Attach(db).ExportFile(ctx, *ef.Out, before, cutoff, *ef.Prune)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, a.Report(*ef.Out, *ef.Prune))
	return nil
}
