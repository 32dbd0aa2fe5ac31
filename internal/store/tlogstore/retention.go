package tlogstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nuskha/nuskha/internal/tlog"
)

// ExportFile writes to path (created new, never overwritten, synced) the
// archive of the entries below before or, when cutoff is not zero, of
// those made before cutoff (Export, ExportBefore). With prune it then
// reads the file back, requires it to be the archive made, and prunes the
// entries it holds: what leaves the database is on disk first. What
// `trustd audit export` and `rxd audit export` run.
func (s *Store) ExportFile(ctx context.Context, path string, before uint64, cutoff time.Time, prune bool) (*tlog.Archive, error) {
	var a *tlog.Archive
	var err error
	if !cutoff.IsZero() {
		a, err = s.ExportBefore(ctx, cutoff)
	} else {
		a, err = s.Export(ctx, before)
	}
	if err != nil {
		return nil, err
	}
	if len(a.Entries) == 0 {
		return a, nil
	}
	b, err := a.Marshal()
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if !prune {
		return a, nil
	}
	back, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if _, err := tlog.ParseArchive(back); err != nil || !bytes.Equal(back, b) {
		return nil, errors.Join(fmt.Errorf("tlogstore: %s does not read back as the archive written: nothing pruned", path), err)
	}
	if err := s.Prune(ctx, a.First+uint64(len(a.Entries))); err != nil {
		return nil, err
	}
	return a, nil
}
