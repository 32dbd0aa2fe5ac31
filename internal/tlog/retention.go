package tlog

import (
	"errors"
	"flag"
	"fmt"
	"time"
)

// ExportFlags are the flags of `trustd audit export` and `rxd audit
// export`: which entries leave (below an index, or made before a cutoff),
// where their archive goes, and whether they are pruned once it is
// written.
type ExportFlags struct {
	BeforeIndex *uint64
	Before      *string
	Out         *string
	Prune       *bool
}

// AddExportFlags adds the export flags to fs.
func AddExportFlags(fs *flag.FlagSet) ExportFlags {
	return ExportFlags{
		BeforeIndex: fs.Uint64("before-index", 0, "archive the entries below this index"),
		Before:      fs.String("before", "", "archive the entries made before this time (RFC 3339, or a date: midnight UTC)"),
		Out:         fs.String("out", "", "the archive file to write (required; never overwritten)"),
		Prune:       fs.Bool("prune", false, "once the archive is written and read back, remove the archived entries from the database (the tree stays)"),
	}
}

// Selection resolves the flags: an index, or a cutoff (non-zero).
func (f ExportFlags) Selection() (before uint64, cutoff time.Time, err error) {
	switch {
	case *f.Out == "":
		return 0, time.Time{}, errors.New("-out (the archive file) is required")
	case (*f.BeforeIndex == 0) == (*f.Before == ""):
		return 0, time.Time{}, errors.New("give one of -before-index N or -before TIME")
	case *f.Before != "":
		for _, layout := range []string{time.RFC3339Nano, time.DateOnly} {
			if t, err := time.Parse(layout, *f.Before); err == nil {
				return 0, t, nil
			}
		}
		return 0, time.Time{}, fmt.Errorf("-before %q is not RFC 3339 (2026-12-05T00:00:00Z) or a date (2026-12-05)", *f.Before)
	}
	return *f.BeforeIndex, time.Time{}, nil
}

// Report says what an export did, for people.
func (a *Archive) Report(path string, pruned bool) string {
	if len(a.Entries) == 0 {
		return "nothing to archive: no entry in the range is covered by a checkpoint, or it was archived already\n"
	}
	s := fmt.Sprintf("archived entries %d to %d of %s in %s\n", a.First, a.First+uint64(len(a.Entries))-1, a.Origin, path)
	if pruned {
		s += "pruned them from the database; keep the archive: `rxctl audit verify -archive` checks it against the log\n"
	}
	return s
}
