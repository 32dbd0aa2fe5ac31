package tlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// The verification here is written from RFC 9162 (§2.1.3.2 and §2.1.4.2)
// rather than taken from a library, so that the auditor's tool, which runs
// it, and the independent check, which runs github.com/transparency-dev's,
// are two implementations held to the same RFC vectors.

// ErrProof is wrapped by every proof that does not verify.
var ErrProof = errors.New("tlog: proof does not verify")

func hashChildren(l, r []byte) []byte {
	h := sha256.New()
	h.Write([]byte{1})
	h.Write(l)
	h.Write(r)
	return h.Sum(nil)
}

// VerifyInclusion checks that leafHash is entry index of the tree of size
// entries whose root is root.
func VerifyInclusion(index, size uint64, leafHash []byte, proof [][]byte, root []byte) error {
	if index >= size {
		return fmt.Errorf("%w: index %d not in a tree of %d", ErrProof, index, size)
	}
	if len(leafHash) != HashSize || len(root) != HashSize {
		return fmt.Errorf("%w: hash of the wrong size", ErrProof)
	}
	fn, sn := index, size-1
	r := leafHash
	for _, p := range proof {
		if len(p) != HashSize {
			return fmt.Errorf("%w: proof hash of %d bytes", ErrProof, len(p))
		}
		if sn == 0 {
			return fmt.Errorf("%w: proof too long", ErrProof)
		}
		if fn&1 == 1 || fn == sn {
			r = hashChildren(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = hashChildren(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return fmt.Errorf("%w: proof too short", ErrProof)
	}
	if !bytes.Equal(r, root) {
		return fmt.Errorf("%w: root mismatch", ErrProof)
	}
	return nil
}

// VerifyConsistency checks that the tree of size2 entries with root root2
// extends the tree of size1 entries with root root1.
func VerifyConsistency(size1, size2 uint64, proof [][]byte, root1, root2 []byte) error {
	switch {
	case size1 > size2:
		return fmt.Errorf("%w: size %d is larger than %d", ErrProof, size1, size2)
	case size1 == size2:
		if len(proof) != 0 {
			return fmt.Errorf("%w: a proof between equal sizes must be empty", ErrProof)
		}
		if !bytes.Equal(root1, root2) {
			return fmt.Errorf("%w: two roots for one size", ErrProof)
		}
		if size1 == 0 && !bytes.Equal(root1, EmptyRoot()) {
			return fmt.Errorf("%w: not the root of the empty tree", ErrProof)
		}
		return nil
	case size1 == 0:
		// Every tree extends the empty one: there is nothing to prove, and
		// a caller asking has mistaken what it holds (VerifyExtends knows).
		return fmt.Errorf("%w: consistency with the empty tree proves nothing", ErrProof)
	case len(root1) != HashSize || len(root2) != HashSize:
		return fmt.Errorf("%w: root of the wrong size", ErrProof)
	case len(proof) == 0:
		return fmt.Errorf("%w: empty proof", ErrProof)
	}
	for _, p := range proof {
		if len(p) != HashSize {
			return fmt.Errorf("%w: proof hash of %d bytes", ErrProof, len(p))
		}
	}
	path := proof
	if size1&(size1-1) == 0 { // a power of two: the old root is the first node
		path = append([][]byte{root1}, proof...)
	}
	fn, sn := size1-1, size2-1
	for fn&1 == 1 {
		fn >>= 1
		sn >>= 1
	}
	fr, sr := path[0], path[0]
	for _, c := range path[1:] {
		if sn == 0 {
			return fmt.Errorf("%w: proof too long", ErrProof)
		}
		if fn&1 == 1 || fn == sn {
			fr = hashChildren(c, fr)
			sr = hashChildren(c, sr)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			sr = hashChildren(sr, c)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return fmt.Errorf("%w: proof too short", ErrProof)
	}
	if !bytes.Equal(fr, root1) || !bytes.Equal(sr, root2) {
		return fmt.Errorf("%w: root mismatch", ErrProof)
	}
	return nil
}

// Checkpoint is a C2SP tlog-checkpoint's body: the log's origin, the size
// of its tree and the root.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte
}

// Marshal is the checkpoint's text (the body a note signs), without
// extension lines.
func (c Checkpoint) Marshal() []byte {
	return fmt.Appendf(nil, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root))
}

// ErrCheckpoint is wrapped by every refusal of a checkpoint.
var ErrCheckpoint = errors.New("tlog: bad checkpoint")

// ParseCheckpoint parses a checkpoint body strictly: origin, decimal size
// without leading zeros, standard base64 of a 32-byte root; extension
// lines are refused (this log writes none).
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	lines := strings.SplitAfter(string(text), "\n")
	if len(lines) != 4 || lines[3] != "" {
		return Checkpoint{}, fmt.Errorf("%w: want three lines", ErrCheckpoint)
	}
	origin := strings.TrimSuffix(lines[0], "\n")
	sizeText := strings.TrimSuffix(lines[1], "\n")
	rootText := strings.TrimSuffix(lines[2], "\n")
	if origin == "" || strings.ContainsAny(origin, " \t\r") {
		return Checkpoint{}, fmt.Errorf("%w: origin", ErrCheckpoint)
	}
	size, err := strconv.ParseUint(sizeText, 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != sizeText {
		return Checkpoint{}, fmt.Errorf("%w: size %q", ErrCheckpoint, sizeText)
	}
	root, err := base64.StdEncoding.Strict().DecodeString(rootText)
	if err != nil || len(root) != HashSize || base64.StdEncoding.EncodeToString(root) != rootText {
		return Checkpoint{}, fmt.Errorf("%w: root hash", ErrCheckpoint)
	}
	return Checkpoint{Origin: origin, Size: size, Root: root}, nil
}

// VerifyCheckpoint opens a signed checkpoint: its note MUST carry a valid
// signature by one of verifiers (the log's keys, current and retired),
// and its origin MUST be origin.
func VerifyCheckpoint(signed []byte, origin string, verifiers ...note.Verifier) (Checkpoint, error) {
	n, err := note.Open(signed, note.VerifierList(verifiers...))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != origin {
		return Checkpoint{}, fmt.Errorf("%w: origin %q, want %q", ErrCheckpoint, c.Origin, origin)
	}
	return c, nil
}

// VerifyEntry checks that entry is entry index of the checkpoint's tree.
func VerifyEntry(c Checkpoint, index uint64, entry []byte, proof [][]byte) error {
	return VerifyInclusion(index, c.Size, LeafHash(entry), proof, c.Root)
}

// VerifyExtends checks that checkpoint newer extends older (a checkpoint
// the auditor remembers).
func VerifyExtends(older, newer Checkpoint, proof [][]byte) error {
	if older.Origin != newer.Origin {
		return fmt.Errorf("%w: origins %q and %q", ErrProof, older.Origin, newer.Origin)
	}
	if older.Size == 0 && newer.Size > 0 {
		if !bytes.Equal(older.Root, EmptyRoot()) {
			return fmt.Errorf("%w: not the root of the empty tree", ErrProof)
		}
		if len(proof) != 0 {
			return fmt.Errorf("%w: a proof from the empty tree must be empty", ErrProof)
		}
		return nil
	}
	return VerifyConsistency(older.Size, newer.Size, proof, older.Root, newer.Root)
}

// CheckLogKey checks a log's origin and its note verifier key
// (name+hash+base64, an Ed25519 key), as an auditor configures them.
func CheckLogKey(origin, vkey string) error {
	if origin == "" || strings.ContainsAny(origin, " \t\r\n") {
		return fmt.Errorf("%w: origin %q must be one line without spaces", ErrCheckpoint, origin)
	}
	if _, err := note.NewVerifier(vkey); err != nil {
		return fmt.Errorf("%w: verifier key: %w", ErrCheckpoint, err)
	}
	return nil
}
