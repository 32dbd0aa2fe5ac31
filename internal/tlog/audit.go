package tlog

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/transparency-dev/merkle/compact"
)

// AuditSource is what an auditor with database access reads: the stored
// tiles, and the stored entries in index order.
type AuditSource interface {
	TileReader
	// ScanEntries calls f with every stored entry from index first on, in
	// index order, as stored (gaps and all); f's error stops the scan and
	// is returned.
	ScanEntries(ctx context.Context, first uint64, f func(index uint64, entry []byte) error) error
	// Pruned is how many entries, from the first, were archived and
	// removed (their tiles stay).
	Pruned(ctx context.Context) (uint64, error)
}

// TamperError reports where the stored log stops matching what was
// signed. Index is the first entry found wrong — edited, deleted,
// inserted or moved; when only the roots tell (entries and tiles changed
// together), Exact is false and the entry is somewhere in [Index, Before).
type TamperError struct {
	Index  uint64
	Before uint64
	Exact  bool
	Reason string
}

func (e *TamperError) Error() string {
	if e.Exact {
		return fmt.Sprintf("tlog: entry %d: %s", e.Index, e.Reason)
	}
	return fmt.Sprintf("tlog: an entry in [%d, %d): %s", e.Index, e.Before, e.Reason)
}

// AuditReport says what an audit covered.
type AuditReport struct {
	// Checked is how many entries the largest checkpoint covers, every
	// one of them checked.
	Checked uint64
	// Beyond is how many entries are stored after it (sequenced since,
	// covered by no checkpoint given).
	Beyond uint64
	// Pruned is how many entries, from the first, were archived and
	// removed: the tree over them is taken from the stored tiles, and
	// held to the checkpoints like the rest; their bytes are checked
	// against their archives (Archive.Verify).
	Pruned uint64
}

// Audit recomputes the tree from the stored entries and checks it against
// checkpoints the auditor trusts (verified with VerifyCheckpoint: ones it
// remembers, or every one the log stored). Each entry must be there, at
// its index, decode canonically, and hash to the leaf the stored tree
// holds; the root of the entries at each checkpoint's size must be that
// checkpoint's. The first failure is returned as a *TamperError.
func Audit(ctx context.Context, src AuditSource, checkpoints ...Checkpoint) (*AuditReport, error) {
	if len(checkpoints) == 0 {
		return nil, errors.New("tlog: audit needs a checkpoint")
	}
	cps := slices.Clone(checkpoints)
	slices.SortFunc(cps, func(a, b Checkpoint) int { return cmp.Compare(a.Size, b.Size) })
	size := cps[len(cps)-1].Size

	pruned, err := src.Pruned(ctx)
	if err != nil {
		return nil, err
	}
	cr := rangeFactory.NewEmptyRange(0)
	if pruned > 0 {
		// The pruned entries' subtrees, from the tiles: the roots below
		// hold them to the checkpoints.
		hashes, err := nodes(ctx, src, compact.RangeNodes(0, pruned, nil))
		if err != nil {
			return nil, &TamperError{Index: 0, Before: pruned, Reason: "the tiles over the pruned entries are missing: " + err.Error()}
		}
		if cr, err = rangeFactory.NewRange(0, pruned, hashes); err != nil {
			return nil, err
		}
		for len(cps) > 0 && cps[0].Size < pruned {
			root, err := RootAt(ctx, src, cps[0].Size)
			if err != nil || !bytes.Equal(root, cps[0].Root) {
				return nil, &TamperError{Index: 0, Before: cps[0].Size, Reason: "the tiles over the pruned entries do not give the checkpoint's root"}
			}
			cps = cps[1:]
		}
	}
	next, verifiedUpTo := pruned, uint64(0)
	var tile []byte
	tileIndex := ^uint64(0)
	// checkRoots compares the recomputed root with every checkpoint of
	// the size reached.
	checkRoots := func() error {
		for len(cps) > 0 && cps[0].Size == cr.End() {
			root, err := cr.GetRootHash(nil)
			if err != nil {
				return err
			}
			if root == nil {
				root = EmptyRoot()
			}
			if !bytes.Equal(root, cps[0].Root) {
				return &TamperError{Index: verifiedUpTo, Before: cps[0].Size, Reason: "the stored entries do not give the checkpoint's root"}
			}
			verifiedUpTo = cps[0].Size
			cps = cps[1:]
		}
		return nil
	}
	if err := checkRoots(); err != nil {
		return nil, err
	}
	report := &AuditReport{Checked: size, Pruned: pruned}
	err = src.ScanEntries(ctx, pruned, func(idx uint64, entry []byte) error {
		if idx >= size {
			report.Beyond++
			return nil
		}
		if idx != next {
			return &TamperError{Index: next, Exact: true, Reason: fmt.Sprintf("missing (the next stored entry is %d)", idx)}
		}
		if _, err := Decode(entry); err != nil {
			return &TamperError{Index: idx, Exact: true, Reason: err.Error()}
		}
		lh := LeafHash(entry)
		if t := idx / TileWidth; t != tileIndex {
			got, err := src.ReadTiles(ctx, []TileID{{0, t}})
			if err != nil {
				return err
			}
			tile, tileIndex = got[TileID{0, t}], t
		}
		off := idx % TileWidth * HashSize
		if uint64(len(tile)) < off+HashSize || !bytes.Equal(tile[off:off+HashSize], lh) {
			return &TamperError{Index: idx, Exact: true, Reason: "does not hash to the leaf the stored tree holds"}
		}
		if err := cr.Append(lh, nil); err != nil {
			return err
		}
		next++
		return checkRoots()
	})
	if err != nil {
		return nil, err
	}
	if next < size {
		return nil, &TamperError{Index: next, Exact: true, Reason: fmt.Sprintf("missing (the log stops at %d)", next)}
	}
	return report, nil
}
