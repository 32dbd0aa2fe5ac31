package tlog

import (
	"bytes"
	"context"
	"testing"
)

// countingTiles counts the tiles read through it.
type countingTiles struct {
	r     TileReader
	reads map[TileID]int
}

func (c *countingTiles) ReadTiles(ctx context.Context, ids []TileID) (map[TileID][]byte, error) {
	for _, id := range ids {
		c.reads[id]++
	}
	return c.r.ReadTiles(ctx, ids)
}

// TestTileCache: proofs read through the cache are the proofs read
// without it; a full tile is read once however many proofs use it, a
// partial one every time (it grows), and the cache keeps no more than
// asked, forgetting the least recently used first.
func TestTileCache(t *testing.T) {
	ctx := context.Background()
	m := newMemTiles()
	var entries [][]byte
	for i := range 3*TileWidth + 17 {
		entries = append(entries, leaf(i))
	}
	m.add(t, entries)
	size := m.state.Size
	counted := &countingTiles{r: m, reads: map[TileID]int{}}
	c := NewTileCache(counted, 2)
	for round := range 3 {
		for _, idx := range []uint64{0, TileWidth + 5, 2*TileWidth + 200, size - 1} {
			want, err := InclusionProof(ctx, m, idx, size)
			if err != nil {
				t.Fatal(err)
			}
			got, err := InclusionProof(ctx, c, idx, size)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("round %d, entry %d: %d hashes, want %d", round, idx, len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("round %d, entry %d: hash %d differs", round, idx, i)
				}
			}
		}
	}
	if c.Len() != 2 {
		t.Errorf("%d tiles cached, want the 2 allowed", c.Len())
	}
	partial := TileID{0, 3} // 17 entries
	// Every proof of this tree needs the partial tile's entries.
	if n := counted.reads[partial]; n != 12 {
		t.Errorf("the partial tile was read %d times by 12 proofs, want 12 (never cached)", n)
	}
	// Three full level-0 tiles take turns in a cache of two: each is read
	// again after it was forgotten, but no tile is read on every proof of
	// every round only because the cache is of no use.
	for id, n := range counted.reads {
		if len(m.tiles[id]) == fullTile && (n < 1 || n > 3) {
			t.Errorf("tile %v read %d times", id, n)
		}
	}

	big := NewTileCache(counted, 100)
	clear(counted.reads)
	for range 5 {
		if _, err := InclusionProof(ctx, big, TileWidth+5, size); err != nil {
			t.Fatal(err)
		}
	}
	for id, n := range counted.reads {
		full := len(m.tiles[id]) == fullTile
		if full && n != 1 || !full && n != 5 {
			t.Errorf("with room for all: tile %v (full %v) read %d times in 5 proofs", id, full, n)
		}
	}
}
