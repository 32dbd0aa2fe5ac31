package tlog

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Client reads a log served by Handler (or any C2SP tlog-tiles log), for
// the auditor's tool: checkpoints, and tiles and entry bundles of the tree
// of a checkpoint it has verified. It trusts nothing it fetches: every
// proof built from its tiles is checked against a signed root.
type Client struct {
	// Base is the log's URL prefix, e.g. https://rxd.example/audit/.
	Base string
	HTTP *http.Client
}

func (c *Client) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.Base, "/")+"/"+path, nil)
	if err != nil {
		return nil, err
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("tlog: fetching %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("tlog: fetching %s: %s", path, resp.Status)
	}
	// The largest thing served is an entry bundle: 256 entries.
	return io.ReadAll(io.LimitReader(resp.Body, TileWidth*(MaxEntrySize+2)+1))
}

// Checkpoint fetches the latest signed checkpoint (unverified: pass it to
// VerifyCheckpoint).
func (c *Client) Checkpoint(ctx context.Context) ([]byte, error) { return c.get(ctx, "checkpoint") }

// Tiles reads the tiles of the tree of size entries (that of a verified
// checkpoint).
func (c *Client) Tiles(size uint64) TileReader { return clientTiles{c, size} }

type clientTiles struct {
	c    *Client
	size uint64
}

func (t clientTiles) ReadTiles(ctx context.Context, ids []TileID) (map[TileID][]byte, error) {
	out := make(map[TileID][]byte, len(ids))
	for _, id := range ids {
		w := TileWidthAt(id, t.size)
		if w == 0 {
			continue
		}
		b, err := t.c.get(ctx, TilePath(id.Level, id.Index, w))
		if err != nil {
			return nil, err
		}
		if len(b) != w*HashSize {
			return nil, fmt.Errorf("tlog: tile %d/%d of %d bytes, want %d", id.Level, id.Index, len(b), w*HashSize)
		}
		out[id] = b
	}
	return out, nil
}

// Entries fetches the entries of bundle index of the tree of size entries.
func (c *Client) Entries(ctx context.Context, index, size uint64) ([][]byte, error) {
	w := TileWidthAt(TileID{0, index}, size)
	if w == 0 {
		return nil, fmt.Errorf("tlog: no bundle %d in a tree of %d", index, size)
	}
	b, err := c.get(ctx, TilePath(-1, index, w))
	if err != nil {
		return nil, err
	}
	return ParseBundle(b, w)
}

// ParseBundle splits an entry bundle into its width entries.
func ParseBundle(b []byte, width int) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 2 || len(b)-2 < int(binary.BigEndian.Uint16(b)) {
			return nil, fmt.Errorf("tlog: truncated entry bundle")
		}
		n := int(binary.BigEndian.Uint16(b))
		out = append(out, b[2:2+n])
		b = b[2+n:]
	}
	if len(out) != width {
		return nil, fmt.Errorf("tlog: bundle of %d entries, want %d", len(out), width)
	}
	return out, nil
}
