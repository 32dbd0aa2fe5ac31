package tlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"
)

// Retention: entries past their keeping period are exported to an archive
// and their bytes pruned from the daemon's database; the tree's tiles stay,
// so every checkpoint and proof still verifies, and the archive proves
// each of its entries against a checkpoint the log signed.

// ArchiveVersion is an archive's format.
const ArchiveVersion = "nuskha-audit-archive/v1"

// Archive holds entries [First, First+len(Entries)) of a log, each with its
// inclusion proof in the tree of Checkpoint (a signed note). JSON, byte
// strings in standard base64.
type Archive struct {
	Version    string     `json:"version"`
	Origin     string     `json:"origin"`
	Checkpoint []byte     `json:"checkpoint"`
	First      uint64     `json:"first"`
	Entries    [][]byte   `json:"entries"`
	Proofs     [][][]byte `json:"proofs"`
}

// ErrArchive is wrapped by every refusal of an archive.
var ErrArchive = errors.New("tlog: bad archive")

// BuildArchive archives entries (the log's entries from first on) with
// their inclusion proofs, from tiles, in the tree of cp, which MUST cover
// them.
func BuildArchive(ctx context.Context, tiles TileReader, cp *SignedCheckpoint, first uint64, entries [][]byte) (*Archive, error) {
	if first+uint64(len(entries)) > cp.Size {
		return nil, fmt.Errorf("%w: entries to %d, the checkpoint has %d", ErrArchive, first+uint64(len(entries)), cp.Size)
	}
	a := &Archive{Version: ArchiveVersion, Origin: cp.Origin, Checkpoint: cp.Note, First: first, Entries: entries, Proofs: make([][][]byte, len(entries))}
	for i, e := range entries {
		p, err := InclusionProof(ctx, tiles, first+uint64(i), cp.Size)
		if err != nil {
			return nil, err
		}
		// Checked before it is written: an archive that does not verify
		// is worse than none, once the entries are pruned.
		if err := VerifyEntry(cp.Checkpoint, first+uint64(i), e, p); err != nil {
			return nil, fmt.Errorf("%w: entry %d: %w", ErrArchive, first+uint64(i), err)
		}
		a.Proofs[i] = p
	}
	return a, nil
}

// Marshal encodes the archive.
func (a *Archive) Marshal() ([]byte, error) { return json.MarshalIndent(a, "", " ") }

// ParseArchive decodes an archive strictly.
func ParseArchive(b []byte) (*Archive, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var a Archive
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrArchive, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrArchive)
	}
	if a.Version != ArchiveVersion {
		return nil, fmt.Errorf("%w: version %q", ErrArchive, a.Version)
	}
	if len(a.Proofs) != len(a.Entries) {
		return nil, fmt.Errorf("%w: %d entries, %d proofs", ErrArchive, len(a.Entries), len(a.Proofs))
	}
	return &a, nil
}

// Verify checks the archive's checkpoint under the log's keys and every
// entry's inclusion in it, and returns the checkpoint: the caller proves it
// consistent with the log's published one (VerifyExtends).
func (a *Archive) Verify(origin string, verifiers ...note.Verifier) (Checkpoint, error) {
	cp, err := VerifyCheckpoint(a.Checkpoint, origin, verifiers...)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %w", ErrArchive, err)
	}
	for i, e := range a.Entries {
		idx := a.First + uint64(i)
		if _, err := Decode(e); err != nil {
			return Checkpoint{}, fmt.Errorf("%w: entry %d: %w", ErrArchive, idx, err)
		}
		if err := VerifyEntry(cp, idx, e, a.Proofs[i]); err != nil {
			return Checkpoint{}, fmt.Errorf("%w: entry %d: %w", ErrArchive, idx, err)
		}
	}
	return cp, nil
}
