package tlog

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
)

// memTiles applies batches the way a store does, in memory, so the tree
// arithmetic can be checked at sizes a database test would take long to
// reach. (The stores run the same checks over PostgreSQL and SQLite.)
type memTiles struct {
	tiles map[TileID][]byte
	state TreeState
}

func newMemTiles() *memTiles {
	return &memTiles{tiles: map[TileID][]byte{}, state: TreeState{Root: EmptyRoot()}}
}

func (m *memTiles) ReadTiles(_ context.Context, ids []TileID) (map[TileID][]byte, error) {
	out := map[TileID][]byte{}
	for _, id := range ids {
		if t, ok := m.tiles[id]; ok {
			out[id] = t
		}
	}
	return out, nil
}

func (m *memTiles) add(t testing.TB, entries [][]byte) {
	t.Helper()
	b, err := sequence(m.state, entries)
	if err != nil {
		t.Fatal(err)
	}
	for _, ta := range b.Tiles {
		if len(m.tiles[ta.ID]) != ta.Offset*HashSize {
			t.Fatalf("tile %v holds %d hashes, append at %d", ta.ID, len(m.tiles[ta.ID])/HashSize, ta.Offset)
		}
		m.tiles[ta.ID] = append(m.tiles[ta.ID], ta.Hashes...)
		if len(m.tiles[ta.ID]) > TileWidth*HashSize {
			t.Fatalf("tile %v overfull", ta.ID)
		}
	}
	m.state = b.State
}

func leaf(i int) []byte { return fmt.Appendf(nil, "entry %d", i) }

// TestTreeAgainstReference: batches of every shape (one entry, a tile's
// worth, across tile boundaries, beyond the second tile level) give the
// roots, inclusion proofs and consistency proofs of merkle's reference
// tree, at every size reached.
func TestTreeAgainstReference(t *testing.T) {
	ctx := context.Background()
	ref := testonly.New(rfc6962.DefaultHasher)
	m := newMemTiles()
	n := 0
	var sizes []uint64
	for _, batch := range []int{1, 1, 3, 250, 1, 256, 513, 1000, 65536, 7, 300} {
		var entries [][]byte
		for range batch {
			entries = append(entries, leaf(n))
			ref.AppendData(leaf(n))
			n++
		}
		m.add(t, entries)
		sizes = append(sizes, uint64(n))
		if !bytes.Equal(m.state.Root, ref.Hash()) {
			t.Fatalf("size %d: state root %x, reference %x", n, m.state.Root, ref.Hash())
		}
	}
	// Every size, not only batch ends: tiles hold what any older tree
	// needs.
	for _, size := range append(sizes, 2, 5, 255, 256, 257, 511, 512, 65535, 65536, 65537, 65792, 66000) {
		root, err := RootAt(ctx, m, size)
		if err != nil {
			t.Fatalf("RootAt(%d): %v", size, err)
		}
		if want := ref.HashAt(size); !bytes.Equal(root, want) {
			t.Fatalf("RootAt(%d) = %x, want %x", size, root, want)
		}
		for _, i := range []uint64{0, size / 2, size - 1, size / 3} {
			p, err := InclusionProof(ctx, m, i, size)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := ref.InclusionProof(i, size)
			if !equalProofs(p, want) {
				t.Fatalf("inclusion %d in %d differs from the reference", i, size)
			}
			if err := VerifyInclusion(i, size, ref.LeafHash(i), p, root); err != nil {
				t.Fatalf("inclusion %d in %d: %v", i, size, err)
			}
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, size, ref.LeafHash(i), p, root); err != nil {
				t.Fatalf("merkle/proof refuses inclusion %d in %d: %v", i, size, err)
			}
		}
		for _, old := range []uint64{1, size / 2, size - 1} {
			if old == 0 || old > size {
				continue
			}
			p, err := ConsistencyProof(ctx, m, old, size)
			if err != nil {
				t.Fatal(err)
			}
			if want, _ := ref.ConsistencyProof(old, size); !equalProofs(p, want) {
				t.Fatalf("consistency %d→%d differs from the reference", old, size)
			}
			if err := VerifyConsistency(old, size, p, ref.HashAt(old), root); err != nil {
				t.Fatalf("consistency %d→%d: %v", old, size, err)
			}
		}
	}
	// Beyond the tree: the tiles cannot say, and RootAt says so.
	if _, err := RootAt(ctx, m, uint64(n+1)); err == nil {
		t.Fatal("RootAt beyond the tree gave a root")
	}
}

func equalProofs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestTilePaths(t *testing.T) {
	for _, tc := range []struct {
		level int
		index uint64
		width int
		path  string
	}{
		{0, 0, TileWidth, "tile/0/000"},
		{0, 67, 12, "tile/0/067.p/12"},
		{1, 1234067, TileWidth, "tile/1/x001/x234/067"},
		{-1, 1000, 255, "tile/entries/x001/000.p/255"},
		{5, 1<<64 - 1, TileWidth, "tile/5/x018/x446/x744/x073/x709/x551/615"},
	} {
		if got := TilePath(tc.level, tc.index, tc.width); got != tc.path {
			t.Errorf("TilePath(%d, %d, %d) = %q, want %q", tc.level, tc.index, tc.width, got, tc.path)
		}
		l, i, w, err := ParseTilePath(tc.path)
		if err != nil || l != tc.level || i != tc.index || w != tc.width {
			t.Errorf("ParseTilePath(%q) = %d, %d, %d, %v", tc.path, l, i, w, err)
		}
	}
	for _, bad := range []string{
		"tile/0/67", "tile/0/0067", "tile/0/001/234", "tile/0/x001", "tile/6/000", "tile/00/000",
		"tile/0/000.p/0", "tile/0/000.p/256", "tile/0/000.p/012", "tile/0/000.p/", "tile/entries/000.p/x",
		"tile/-1/000", "tile/0/x000/001", "tile/0/x018/x446/x744/x073/x709/x551/616", "checkpoint", "tile/0/+01",
	} {
		if _, _, _, err := ParseTilePath(bad); err == nil {
			t.Errorf("ParseTilePath(%q) accepted", bad)
		}
	}
}

func TestTileWidthAt(t *testing.T) {
	for _, tc := range []struct {
		id   TileID
		size uint64
		want int
	}{
		{TileID{0, 0}, 0, 0},
		{TileID{0, 0}, 5, 5},
		{TileID{0, 0}, 300, 256},
		{TileID{0, 1}, 300, 44},
		{TileID{1, 0}, 300, 1},
		{TileID{1, 0}, 255, 0},
		{TileID{2, 0}, 1 << 16, 1},
	} {
		if got := TileWidthAt(tc.id, tc.size); got != tc.want {
			t.Errorf("TileWidthAt(%v, %d) = %d, want %d", tc.id, tc.size, got, tc.want)
		}
	}
}

// BenchmarkInclusionProofMemory: the proof's own work — reading the
// nodes out of the tiles and hashing up the ones between tile levels —
// with the tiles in memory, at NUSKHA_BENCH_TLOG_SIZE entries (default
// 10,000,000): what a proof costs before the database's read.
func BenchmarkInclusionProofMemory(b *testing.B) {
	size := 10_000_000
	if v := os.Getenv("NUSKHA_BENCH_TLOG_SIZE"); v != "" {
		size, _ = strconv.Atoi(v)
	}
	m := newMemTiles()
	batch := make([][]byte, 0, 4096)
	for i := 0; i < size; i++ {
		batch = append(batch, leaf(i))
		if len(batch) == cap(batch) || i == size-1 {
			m.add(b, batch)
			batch = batch[:0]
		}
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := InclusionProof(ctx, m, uint64(i*7919)%uint64(size), uint64(size)); err != nil {
			b.Fatal(err)
		}
	}
}
