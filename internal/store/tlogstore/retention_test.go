package tlogstore_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/store/tlogstore"
	"github.com/nuskha/nuskha/internal/tlog"
)

// TestPruneKeepsTheLogVerifiable: entries exported to an archive and
// pruned from the database still verify — from the archive, against the
// checkpoint it carries, which the log's later checkpoints extend; the
// tiles stay, so the audit of the database, proofs and checkpoints go on
// working — and the database refuses to delete anything at or above the
// watermark, to lower it, or to raise it past the last checkpoint.
func TestPruneKeepsTheLogVerifiable(t *testing.T) {
	each(t, func(t *testing.T, s *tlogstore.Store) {
		l := newLog(t, s, 1000)
		fill(t, s, 0, 600)
		publish(t, l)
		path := filepath.Join(t.TempDir(), "archive.json")
		a, err := s.ExportFile(ctx, path, 300, time.Time{}, true)
		if err != nil {
			t.Fatal(err)
		}
		if a.First != 0 || len(a.Entries) != 300 {
			t.Fatalf("archived %d entries from %d", len(a.Entries), a.First)
		}
		if _, err := s.ExportFile(ctx, path, 400, time.Time{}, true); err == nil {
			t.Fatal("an archive was written over")
		}
		if w, err := s.Pruned(ctx); err != nil || w != 300 {
			t.Fatalf("watermark %d, %v", w, err)
		}
		if got, _ := s.ReadEntries(ctx, 0, 10); len(got) != 0 {
			t.Fatalf("%d pruned entries still stored", len(got))
		}
		if got, _ := s.ReadEntries(ctx, 300, 10); len(got) != 10 {
			t.Fatalf("entries above the watermark: %d", len(got))
		}

		// The archive, read back, verifies against the log's key, and the
		// log's next checkpoint extends its checkpoint.
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		back, err := tlog.ParseArchive(raw)
		if err != nil {
			t.Fatal(err)
		}
		acp, err := back.Verify(origin, noteKey(t).Verifier())
		if err != nil {
			t.Fatal(err)
		}
		fill(t, s, 600, 700)
		cp := publish(t, l)
		p, err := tlog.ConsistencyProof(ctx, s, acp.Size, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.VerifyExtends(acp, cp.Checkpoint, p); err != nil {
			t.Fatal(err)
		}
		// Proofs of pruned entries still come from the tiles.
		ip, err := tlog.InclusionProof(ctx, s, 42, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.VerifyEntry(cp.Checkpoint, 42, back.Entries[42], ip); err != nil {
			t.Fatal(err)
		}
		// So does the audit of what is stored, against every checkpoint.
		var cps []tlog.Checkpoint
		stored, _ := s.Checkpoints(ctx)
		for _, c := range stored {
			cps = append(cps, c.Checkpoint)
		}
		rep, err := tlog.Audit(ctx, s, cps...)
		if err != nil || rep.Pruned != 300 || rep.Checked != 700 {
			t.Fatalf("audit after pruning: %+v, %v", rep, err)
		}
		// An archive altered after it was written does not verify.
		back.Entries[7] = encoded(t, entry(8))
		if _, err := back.Verify(origin, noteKey(t).Verifier()); err == nil {
			t.Fatal("an altered archive verified")
		}

		// Served: the pruned bundle is gone, the others are there.
		srv := httptest.NewServer(tlog.Handler(s, nil))
		defer srv.Close()
		for path, want := range map[string]int{"/tile/entries/000": http.StatusGone, "/tile/entries/002.p/188": http.StatusOK, "/tile/0/000": http.StatusOK} {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
			}
		}

		// The database refuses what would lose or hide entries.
		for _, q := range []string{
			"DELETE FROM tlog_entries WHERE idx = 300",
			"DELETE FROM tlog_entries",
			"UPDATE tlog_entries SET entry = entry WHERE idx = 301",
			"UPDATE tlog_prune SET below = 100",
			"UPDATE tlog_prune SET below = 701",
			"DELETE FROM tlog_prune",
		} {
			if _, err := s.DB().SQL().ExecContext(ctx, q); err == nil {
				t.Errorf("%s: accepted", q)
			}
		}
		if err := s.Prune(ctx, 701); err == nil {
			t.Fatal("pruned past the last checkpoint")
		}
		if err := s.Prune(ctx, 200); err == nil {
			t.Fatal("the watermark went down")
		}
		if got, _ := s.ReadEntries(ctx, 300, 1000); len(got) != 400 {
			t.Fatalf("%d entries above the watermark after the refusals, want 400", len(got))
		}
	})
}

// TestExportBeforeACutoff: exporting by time takes the entries, from the
// watermark, made before the cutoff, and no further than the last
// checkpoint.
func TestExportBeforeACutoff(t *testing.T) {
	each(t, func(t *testing.T, s *tlogstore.Store) {
		l := newLog(t, s, 1000)
		fill(t, s, 0, 50)
		publish(t, l)
		fill(t, s, 50, 60) // not checkpointed
		if _, err := l.Sequence(ctx); err != nil {
			t.Fatal(err)
		}
		a, err := s.ExportBefore(ctx, t0.Add(20*time.Millisecond))
		if err != nil || a.First != 0 || len(a.Entries) != 20 {
			t.Fatalf("before entry 20's time: %v, %+v", err, a)
		}
		a, err = s.ExportBefore(ctx, t0.Add(time.Hour))
		if err != nil || len(a.Entries) != 50 {
			t.Fatalf("after every entry: %v, %d entries (the checkpoint covers 50)", err, len(a.Entries))
		}
	})
}
