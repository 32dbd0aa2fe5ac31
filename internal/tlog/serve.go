package tlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
)

// Tile paths (C2SP tlog-tiles): tile/<L>/<N>[.p/<W>] for hash tiles and
// tile/entries/<N>[.p/<W>] for entry bundles, <N> written in three-digit
// groups, every group but the last prefixed by "x" (1234067 is
// x001/x234/067), <W> (1-255) only for a partial tile.

// maxTileLevel is the spec's: six levels of tiles cover 2^48 entries.
const maxTileLevel = 5

// TilePath is the path of tile (level, index) of width hashes; level -1
// names the entry bundle.
func TilePath(level int, index uint64, width int) string {
	var b strings.Builder
	b.WriteString("tile/")
	if level < 0 {
		b.WriteString("entries")
	} else {
		b.WriteString(strconv.Itoa(level))
	}
	b.WriteByte('/')
	n := fmt.Sprintf("%03d", index)
	for len(n)%3 != 0 {
		n = "0" + n
	}
	for i := 0; i < len(n); i += 3 {
		if i+3 < len(n) {
			b.WriteString("x" + n[i:i+3] + "/")
		} else {
			b.WriteString(n[i:])
		}
	}
	if width < TileWidth {
		b.WriteString(".p/" + strconv.Itoa(width))
	}
	return b.String()
}

var errTilePath = errors.New("tlog: not a tile path")

// ParseTilePath parses what TilePath writes, and nothing else: level is -1
// for an entry bundle, width TileWidth for a full tile.
func ParseTilePath(p string) (level int, index uint64, width int, err error) {
	rest, ok := strings.CutPrefix(p, "tile/")
	if !ok {
		return 0, 0, 0, errTilePath
	}
	first, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, 0, errTilePath
	}
	if first == "entries" {
		level = -1
	} else {
		l, err := strconv.Atoi(first)
		if err != nil || l < 0 || l > maxTileLevel || strconv.Itoa(l) != first {
			return 0, 0, 0, errTilePath
		}
		level = l
	}
	width = TileWidth
	if body, w, partial := strings.Cut(rest, ".p/"); partial {
		n, err := strconv.Atoi(w)
		if err != nil || n < 1 || n >= TileWidth || strconv.Itoa(n) != w {
			return 0, 0, 0, errTilePath
		}
		rest, width = body, n
	}
	groups := strings.Split(rest, "/")
	if len(groups) > 7 { // 2^64 has 20 digits
		return 0, 0, 0, errTilePath
	}
	var digits strings.Builder
	for i, g := range groups {
		if i < len(groups)-1 {
			var ok bool
			if g, ok = strings.CutPrefix(g, "x"); !ok {
				return 0, 0, 0, errTilePath
			}
		}
		if len(g) != 3 || strings.Trim(g, "0123456789") != "" {
			return 0, 0, 0, errTilePath
		}
		digits.WriteString(g)
	}
	index, err = strconv.ParseUint(digits.String(), 10, 64)
	if err != nil || TilePath(level, index, width) != p {
		return 0, 0, 0, errTilePath
	}
	return level, index, width, nil
}

// Handler serves the log read-only (C2SP tlog-tiles): /checkpoint, the
// latest signed checkpoint, with the cosignature lines of the witnesses
// that cosigned it so far; /tile/<L>/<N>[.p/<W>], hash tiles; and
// /tile/entries/<N>[.p/<W>], entry bundles (each entry a big-endian
// uint16 length then its bytes). Only what the latest checkpoint commits
// to is served. A full tile never changes, and says so to caches; a
// partial one is served only at the width asked for, which the tree must
// have reached.
func Handler(store Store, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &handler{store: store, log: log}
}

type handler struct {
	store Store
	log   *slog.Logger
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ctx := r.Context()
	cp, err := h.store.LatestCheckpoint(ctx)
	if errors.Is(err, ErrNoCheckpoint) {
		http.Error(w, "no checkpoint yet", http.StatusNotFound)
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/")
	if path == "checkpoint" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(cp.Served())
		return
	}
	level, index, width, err := ParseTilePath(path)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	var body []byte
	if level < 0 {
		if TileWidthAt(TileID{0, index}, cp.Size) < width {
			http.NotFound(w, r)
			return
		}
		entries, err := h.store.ReadEntries(ctx, index*TileWidth, width)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		if len(entries) == 0 {
			// Archived and pruned (the tiles stay): the archive has them.
			http.Error(w, "these entries were archived", http.StatusGone)
			return
		}
		if len(entries) != width {
			h.fail(w, r, fmt.Errorf("%w: %d entries of bundle %d, want %d", ErrTree, len(entries), index, width))
			return
		}
		for _, e := range entries {
			body = binary.BigEndian.AppendUint16(body, uint16(len(e)))
			body = append(body, e...)
		}
	} else {
		id := TileID{Level: level, Index: index}
		if TileWidthAt(id, cp.Size) < width {
			http.NotFound(w, r)
			return
		}
		got, err := h.store.ReadTiles(ctx, []TileID{id})
		if err != nil {
			h.fail(w, r, err)
			return
		}
		if len(got[id]) < width*HashSize {
			h.fail(w, r, fmt.Errorf("%w: tile %d/%d holds %d hashes, want %d", ErrTree, level, index, len(got[id])/HashSize, width))
			return
		}
		body = got[id][:width*HashSize]
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if width == TileWidth {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		// Its bytes never change either, but the log may stop serving it
		// once the tile is full.
		w.Header().Set("Cache-Control", "public, max-age=60")
	}
	w.Write(body)
}

func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	h.log.ErrorContext(r.Context(), "audit log read failed", "path", r.URL.Path, "err", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}
