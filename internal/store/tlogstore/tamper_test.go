package tlogstore_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/tlogstore"
	"github.com/nuskha/nuskha/internal/tlog"
)

// unguard drops the triggers that keep the log append-only, as a
// database administrator could: what follows is tampering that only the
// checkpoints can catch.
func unguard(t *testing.T, s *tlogstore.Store) {
	t.Helper()
	qs := []string{
		"ALTER TABLE tlog_entries DISABLE TRIGGER USER",
		"ALTER TABLE tlog_tiles DISABLE TRIGGER USER",
	}
	if s.DB().Dialect() == sqlstore.SQLite {
		qs = []string{
			"DROP TRIGGER tlog_entries_no_update", "DROP TRIGGER tlog_entries_pruned_only",
			"DROP TRIGGER tlog_tiles_no_delete", "DROP TRIGGER tlog_tiles_grow",
		}
	}
	for _, q := range qs {
		if _, err := s.DB().SQL().ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func exec(t *testing.T, s *tlogstore.Store, q string, args ...any) {
	t.Helper()
	if _, err := s.DB().SQL().ExecContext(ctx, s.DB().Rebind(q), args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func readEntry(t *testing.T, s *tlogstore.Store, idx int) []byte {
	t.Helper()
	es, err := s.ReadEntries(ctx, uint64(idx), 1)
	if err != nil || len(es) != 1 {
		t.Fatalf("entry %d: %v", idx, err)
	}
	return es[0]
}

// setTile overwrites hash number pos of tile (level, idx).
func setTile(t *testing.T, s *tlogstore.Store, level, idx, pos int, h []byte) {
	t.Helper()
	got, err := s.ReadTiles(ctx, []tlog.TileID{{Level: level, Index: uint64(idx)}})
	if err != nil {
		t.Fatal(err)
	}
	tile := bytes.Clone(got[tlog.TileID{Level: level, Index: uint64(idx)}])
	copy(tile[pos*tlog.HashSize:], h)
	exec(t, s, "UPDATE tlog_tiles SET hashes = $1 WHERE level = $2 AND idx = $3", tile, level, idx)
}

// TestAuditFindsTampering: whatever is done to the stored rows, the audit
// against the signed checkpoints names the first entry wrong.
func TestAuditFindsTampering(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, s *tlogstore.Store)
		index  uint64
		exact  bool
		before uint64
	}{
		{"edited", func(t *testing.T, s *tlogstore.Store) {
			exec(t, s, "UPDATE tlog_entries SET entry = $1 WHERE idx = 260", encoded(t, entry(9999)))
		}, 260, true, 0},
		{"edited to garbage", func(t *testing.T, s *tlogstore.Store) {
			exec(t, s, "UPDATE tlog_entries SET entry = $1 WHERE idx = 17", []byte("anything"))
		}, 17, true, 0},
		{"deleted", func(t *testing.T, s *tlogstore.Store) {
			exec(t, s, "DELETE FROM tlog_entries WHERE idx = 5")
		}, 5, true, 0},
		{"deleted at the end", func(t *testing.T, s *tlogstore.Store) {
			exec(t, s, "DELETE FROM tlog_entries WHERE idx >= 298")
		}, 298, true, 0},
		{"inserted", func(t *testing.T, s *tlogstore.Store) {
			rest, err := s.ReadEntries(ctx, 5, 1000)
			if err != nil {
				t.Fatal(err)
			}
			exec(t, s, "DELETE FROM tlog_entries WHERE idx >= 5")
			exec(t, s, "INSERT INTO tlog_entries (idx, entry) VALUES (5, $1)", encoded(t, entry(7777)))
			for i, e := range rest {
				exec(t, s, "INSERT INTO tlog_entries (idx, entry) VALUES ($1, $2)", 6+i, e)
			}
		}, 5, true, 0},
		{"reordered", func(t *testing.T, s *tlogstore.Store) {
			a, b := readEntry(t, s, 3), readEntry(t, s, 7)
			exec(t, s, "UPDATE tlog_entries SET entry = $1 WHERE idx = 3", b)
			exec(t, s, "UPDATE tlog_entries SET entry = $1 WHERE idx = 7", a)
		}, 3, true, 0},
		// (Under a complete subtree whose hash is stored a level up: the
		// roots do not change, the leaf does not match its entry.)
		{"leaf hash edited", func(t *testing.T, s *tlogstore.Store) {
			setTile(t, s, 0, 0, 2, tlog.LeafHash([]byte("x")))
		}, 2, true, 0},
		// An entry and its leaf changed together: nothing stored is
		// inconsistent with the rest, but the signed roots are not
		// recomputed, and bound where it is.
		{"edited with its leaf", func(t *testing.T, s *tlogstore.Store) {
			forged := encoded(t, entry(4242))
			exec(t, s, "UPDATE tlog_entries SET entry = $1 WHERE idx = 150", forged)
			setTile(t, s, 0, 0, 150, tlog.LeafHash(forged))
		}, 100, false, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			each(t, func(t *testing.T, s *tlogstore.Store) {
				l := newLog(t, s, 64)
				for _, to := range []int{100, 200, 300} {
					fill(t, s, to-100, to)
					publish(t, l)
				}
				all, err := s.Checkpoints(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tlog.Audit(ctx, s, checkpoints(all)...); err != nil {
					t.Fatalf("before tampering: %v", err)
				}
				unguard(t, s)
				tc.tamper(t, s)
				_, err = tlog.Audit(ctx, s, checkpoints(all)...)
				var te *tlog.TamperError
				if !errors.As(err, &te) {
					t.Fatalf("audit after tampering: got %v, want a TamperError", err)
				}
				if te.Index != tc.index || te.Exact != tc.exact || (!tc.exact && te.Before != tc.before) {
					t.Fatalf("audit: %v (index %d exact %v before %d), want index %d exact %v before %d", te, te.Index, te.Exact, te.Before, tc.index, tc.exact, tc.before)
				}
			})
		})
	}
}

// TestPublishRefusesInconsistentTrees: once a checkpoint is signed, the
// log signs no other that the stored tree cannot prove extends it —
// whatever was changed underneath, and however plausible the new state.
func TestPublishRefusesInconsistentTrees(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, s *tlogstore.Store)
	}{
		// (A leaf under a subtree whose hash is stored a level up changes
		// no root; TestAuditFindsTampering catches that one.)
		{"a signed leaf replaced", func(t *testing.T, s *tlogstore.Store) {
			setTile(t, s, 0, 1, 34, tlog.LeafHash([]byte("forged")))
		}},
		{"a signed subtree replaced", func(t *testing.T, s *tlogstore.Store) {
			setTile(t, s, 1, 0, 0, tlog.LeafHash([]byte("forged")))
		}},
		{"the state rolled back", func(t *testing.T, s *tlogstore.Store) {
			exec(t, s, "UPDATE tlog_state SET size = 10")
		}},
		{"the state given another root", func(t *testing.T, s *tlogstore.Store) {
			exec(t, s, "UPDATE tlog_state SET root = $1", tlog.LeafHash([]byte("forged")))
		}},
		// A fork: the tree rebuilt from entry 100 on with other entries,
		// state, tiles and all, consistent in itself.
		{"the tree forked after the checkpoint", func(t *testing.T, s *tlogstore.Store) {
			fork := openStore(t, s.DB().Dialect())
			fl := newLog(t, fork, 64)
			fill(t, fork, 0, 100)
			for i := 100; i < 330; i++ {
				if err := fork.Append(ctx, entry(i+5000)); err != nil {
					t.Fatal(err)
				}
			}
			if err := fl.Step(ctx); err != nil {
				t.Fatal(err)
			}
			copyTree(t, fork, s)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			each(t, func(t *testing.T, s *tlogstore.Store) {
				l := newLog(t, s, 64)
				fill(t, s, 0, 300)
				signed := publish(t, l)
				fill(t, s, 300, 320)
				for n := 1; n > 0; {
					var err error
					if n, err = l.Sequence(ctx); err != nil {
						t.Fatal(err)
					}
				}
				unguard(t, s)
				tc.tamper(t, s)
				if _, err := l.Publish(ctx); !errors.Is(err, tlog.ErrInconsistent) {
					t.Fatalf("publish after tampering: got %v, want ErrInconsistent", err)
				}
				if got := mustLatest(t, s); got.Size != signed.Size || !bytes.Equal(got.Note, signed.Note) {
					t.Fatalf("a checkpoint of size %d was signed after tampering", got.Size)
				}
			})
		})
	}
}

// copyTree makes dst's tree (tiles, entries, state) src's, rows the
// tampering did not need to touch kept.
func copyTree(t *testing.T, src, dst *tlogstore.Store) {
	t.Helper()
	rows, err := src.DB().SQL().QueryContext(ctx, "SELECT level, idx, hashes FROM tlog_tiles")
	if err != nil {
		t.Fatal(err)
	}
	type tile struct {
		level int
		idx   int64
		h     []byte
	}
	var tiles []tile
	for rows.Next() {
		var x tile
		rows.Scan(&x.level, &x.idx, &x.h)
		tiles = append(tiles, x)
	}
	rows.Close()
	exec(t, dst, "DELETE FROM tlog_tiles")
	for _, x := range tiles {
		exec(t, dst, "INSERT INTO tlog_tiles (level, idx, hashes) VALUES ($1, $2, $3)", x.level, x.idx, x.h)
	}
	var size int64
	var root, edge []byte
	if err := src.DB().SQL().QueryRowContext(ctx, "SELECT size, root, edge FROM tlog_state").Scan(&size, &root, &edge); err != nil {
		t.Fatal(err)
	}
	exec(t, dst, "UPDATE tlog_state SET size = $1, root = $2, edge = $3", size, root, edge)
	es, err := src.ReadEntries(ctx, 0, int(size))
	if err != nil {
		t.Fatal(err)
	}
	exec(t, dst, "DELETE FROM tlog_entries")
	for i, e := range es {
		exec(t, dst, "INSERT INTO tlog_entries (idx, entry) VALUES ($1, $2)", i, e)
	}
	if size <= 300 {
		t.Fatalf("the fork has %d entries, not more than the signed 300", size)
	}
}
