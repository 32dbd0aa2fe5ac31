package tlog

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Tiles (C2SP tlog-tiles): a tile of level L holds up to TileWidth
// consecutive hashes of tree level TileHeight·L; tile N of that level
// starts at node N·TileWidth. A tile is stored as its hashes, concatenated;
// it only ever grows, and is full at TileWidth hashes.
const (
	HashSize   = sha256.Size
	TileHeight = 8
	TileWidth  = 1 << TileHeight
)

// TileID names a tile.
type TileID struct {
	Level int
	Index uint64
}

// TileReader reads stored tiles: for each id, the hashes stored for it
// (HashSize bytes each); an id of which nothing is stored is absent.
type TileReader interface {
	ReadTiles(ctx context.Context, ids []TileID) (map[TileID][]byte, error)
}

var hasher = rfc6962.DefaultHasher

// LeafHash is the RFC 9162 hash of an encoded entry.
func LeafHash(entry []byte) []byte { return hasher.HashLeaf(entry) }

// EmptyRoot is the root of the empty tree.
func EmptyRoot() []byte { return hasher.EmptyRoot() }

var rangeFactory = &compact.RangeFactory{Hash: hasher.HashChildren}

// ErrTree is wrapped when stored tiles cannot give what a tree of the
// size asked must have: storage lost or damaged, or a size beyond it.
var ErrTree = errors.New("tlog: stored tree")

// nodes returns the hashes of complete nodes (each in a tree that has
// them), read from the tiles: a node of a level that is a multiple of
// TileHeight is a tile's entry, any other is hashed up from the entries of
// the tile below it that it covers.
func nodes(ctx context.Context, r TileReader, ids []compact.NodeID) ([][]byte, error) {
	type want struct {
		tile          TileID
		offset, count uint64
	}
	wants := make([]want, len(ids))
	var tiles []TileID
	seen := map[TileID]bool{}
	for i, id := range ids {
		base := id.Level / TileHeight * TileHeight
		first := id.Index << (id.Level - base)
		w := want{TileID{int(base / TileHeight), first / TileWidth}, first % TileWidth, 1 << (id.Level - base)}
		wants[i] = w
		if !seen[w.tile] {
			seen[w.tile] = true
			tiles = append(tiles, w.tile)
		}
	}
	got, err := r.ReadTiles(ctx, tiles)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(ids))
	for i, w := range wants {
		t := got[w.tile]
		if uint64(len(t)) < (w.offset+w.count)*HashSize {
			return nil, fmt.Errorf("%w: tile %d/%d holds %d hashes, node (%d, %d) needs %d", ErrTree, w.tile.Level, w.tile.Index, len(t)/HashSize, ids[i].Level, ids[i].Index, w.offset+w.count)
		}
		out[i] = subtreeRoot(t[w.offset*HashSize : (w.offset+w.count)*HashSize])
	}
	return out, nil
}

// subtreeRoot hashes up a perfect subtree from its bottom row (a power of
// two of hashes, concatenated).
func subtreeRoot(row []byte) []byte {
	if len(row) == HashSize {
		return append([]byte(nil), row...)
	}
	level := make([][]byte, len(row)/HashSize)
	for i := range level {
		level[i] = row[i*HashSize : (i+1)*HashSize]
	}
	for len(level) > 1 {
		next := level[:len(level)/2]
		for i := range next {
			next[i] = hasher.HashChildren(level[2*i], level[2*i+1])
		}
		level = next
	}
	return level[0]
}

// RootAt is the root of the tree of the first size entries, from the
// stored tiles.
func RootAt(ctx context.Context, r TileReader, size uint64) ([]byte, error) {
	if size == 0 {
		return EmptyRoot(), nil
	}
	hashes, err := nodes(ctx, r, compact.RangeNodes(0, size, nil))
	if err != nil {
		return nil, err
	}
	cr, err := rangeFactory.NewRange(0, size, hashes)
	if err != nil {
		return nil, err
	}
	return cr.GetRootHash(nil)
}

// InclusionProof proves, from the stored tiles, that entry index is in the
// tree of size entries.
func InclusionProof(ctx context.Context, r TileReader, index, size uint64) ([][]byte, error) {
	n, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	return rehash(ctx, r, n)
}

// ConsistencyProof proves, from the stored tiles, that the tree of size2
// extends the tree of size1.
func ConsistencyProof(ctx context.Context, r TileReader, size1, size2 uint64) ([][]byte, error) {
	n, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, err
	}
	return rehash(ctx, r, n)
}

func rehash(ctx context.Context, r TileReader, n proof.Nodes) ([][]byte, error) {
	if len(n.IDs) == 0 {
		return [][]byte{}, nil
	}
	h, err := nodes(ctx, r, n.IDs)
	if err != nil {
		return nil, err
	}
	return n.Rehash(h, hasher.HashChildren)
}

// TreeState is the tree after the last sequenced batch: its size, its
// root, and its right edge (the compact range [0, Size): the roots of the
// perfect subtrees it decomposes into, left to right), from which the next
// batch is hashed without reading the tiles.
type TreeState struct {
	Size uint64
	Root []byte
	Edge [][]byte
}

// TileAppend adds Hashes (concatenated) to tile ID from position Offset
// (in hashes): a store MUST refuse it unless the tile holds exactly Offset
// hashes.
type TileAppend struct {
	ID     TileID
	Offset int
	Hashes []byte
}

// Batch is what sequencing writes: entries First… in order, the tiles they
// extend, and the new tree state.
type Batch struct {
	First   uint64
	Entries [][]byte
	Tiles   []TileAppend
	State   TreeState
}

// sequence hashes entries into the tree prev.
func sequence(prev TreeState, entries [][]byte) (*Batch, error) {
	cr, err := rangeFactory.NewRange(0, prev.Size, prev.Edge)
	if err != nil {
		return nil, fmt.Errorf("%w: tree state: %w", ErrTree, err)
	}
	b := &Batch{First: prev.Size, Entries: entries}
	at := map[TileID]int{}
	var visitErr error
	visit := func(id compact.NodeID, hash []byte) {
		if id.Level%TileHeight != 0 {
			return
		}
		t := TileID{int(id.Level / TileHeight), id.Index / TileWidth}
		off := int(id.Index % TileWidth)
		i, ok := at[t]
		if !ok {
			at[t] = len(b.Tiles)
			b.Tiles = append(b.Tiles, TileAppend{ID: t, Offset: off})
			i = at[t]
		}
		ta := &b.Tiles[i]
		if ta.Offset+len(ta.Hashes)/HashSize != off {
			visitErr = fmt.Errorf("tlog: node (%d, %d) out of order", id.Level, id.Index)
		}
		ta.Hashes = append(ta.Hashes, hash...)
	}
	for _, e := range entries {
		if err := cr.Append(LeafHash(e), visit); err != nil {
			return nil, err
		}
	}
	if visitErr != nil {
		return nil, visitErr
	}
	root, err := cr.GetRootHash(nil)
	if err != nil {
		return nil, err
	}
	if root == nil {
		root = EmptyRoot()
	}
	b.State = TreeState{Size: cr.End(), Root: root, Edge: cr.Hashes()}
	return b, nil
}

// TileWidthAt is how many hashes tile id has in the tree of size entries
// (0 if it has none yet).
func TileWidthAt(id TileID, size uint64) int {
	if id.Level < 0 || id.Level*TileHeight >= 64 {
		return 0
	}
	nodes := size >> (uint(id.Level) * TileHeight)
	if id.Index > nodes/TileWidth || nodes <= id.Index*TileWidth {
		return 0
	}
	return int(min(nodes-id.Index*TileWidth, TileWidth))
}
