package tlog

import (
	"container/list"
	"context"
	"sync"
)

// TileCache keeps full tiles read through it. A full tile never changes —
// the store refuses to change one, and a verifier that is given another
// fails its proof — so a cached one is as good as a fresh read, for ever.
// A partial tile is read every time. Proofs near the tree's top share
// its few upper tiles, so a cache of a few thousand tiles (8 KiB each)
// leaves one read, of the entry's own level-0 tile, per inclusion proof.
type TileCache struct {
	r   TileReader
	max int

	mu    sync.Mutex
	tiles map[TileID]*list.Element
	lru   list.List // of cachedTile, most recently used first
}

type cachedTile struct {
	id     TileID
	hashes []byte
}

// fullTile is the size of a full tile's hashes.
const fullTile = TileWidth * HashSize

// NewTileCache reads through r, keeping at most max full tiles.
func NewTileCache(r TileReader, max int) *TileCache {
	return &TileCache{r: r, max: max, tiles: make(map[TileID]*list.Element)}
}

// ReadTiles implements TileReader. The slices it returns are shared:
// callers must not change them.
func (c *TileCache) ReadTiles(ctx context.Context, ids []TileID) (map[TileID][]byte, error) {
	out := make(map[TileID][]byte, len(ids))
	var missing []TileID
	c.mu.Lock()
	for _, id := range ids {
		if e, ok := c.tiles[id]; ok {
			c.lru.MoveToFront(e)
			out[id] = e.Value.(cachedTile).hashes
			continue
		}
		missing = append(missing, id)
	}
	c.mu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	got, err := c.r.ReadTiles(ctx, missing)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, hashes := range got {
		out[id] = hashes
		if len(hashes) != fullTile || c.max <= 0 {
			continue
		}
		if _, ok := c.tiles[id]; ok {
			continue // cached meanwhile by another reader
		}
		c.tiles[id] = c.lru.PushFront(cachedTile{id, hashes})
		if c.lru.Len() > c.max {
			last := c.lru.Back()
			c.lru.Remove(last)
			delete(c.tiles, last.Value.(cachedTile).id)
		}
	}
	return out, nil
}

// Len is the number of tiles cached.
func (c *TileCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
