package tlogstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/nuskha/nuskha/internal/store/tlogstore"
	"github.com/nuskha/nuskha/internal/tlog"
)

// TestConcurrentSequencersNeverFork: several processes' logs sequence and
// sign over one database while appenders append; every entry lands
// exactly once, and every checkpoint signed extends the one before.
func TestConcurrentSequencersNeverFork(t *testing.T) {
	const appenders, perAppender, logs = 8, 40, 4
	each(t, func(t *testing.T, s *tlogstore.Store) {
		runCtx, cancel := context.WithCancel(ctx)
		var wg, seqs sync.WaitGroup
		errc := make(chan error, appenders+logs)
		for a := range appenders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perAppender {
					if err := s.Append(runCtx, entry(a*perAppender+i)); err != nil {
						errc <- err
						return
					}
				}
			}()
		}
		for range logs {
			l := newLog(t, s, 16)
			seqs.Add(1)
			go func() {
				defer seqs.Done()
				for runCtx.Err() == nil {
					if err := l.Step(runCtx); err != nil && runCtx.Err() == nil {
						errc <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		cancel()
		seqs.Wait()
		close(errc)
		for err := range errc {
			t.Fatal(err)
		}
		final := publish(t, newLog(t, s, 16))
		if final.Size != appenders*perAppender {
			t.Fatalf("%d entries sequenced, want %d", final.Size, appenders*perAppender)
		}
		entries, err := s.ReadEntries(ctx, 0, int(final.Size))
		if err != nil {
			t.Fatal(err)
		}
		var got, want []string
		for i, e := range entries {
			got = append(got, string(e))
			want = append(want, string(encoded(t, entry(i))))
		}
		sort.Strings(got)
		sort.Strings(want)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("the log holds a different set of entries than was appended (at %d)", i)
			}
		}
		all, err := s.Checkpoints(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(all); i++ {
			p, err := tlog.ConsistencyProof(ctx, s, all[i-1].Size, all[i].Size)
			if err != nil {
				t.Fatal(err)
			}
			if err := tlog.VerifyExtends(all[i-1].Checkpoint, all[i].Checkpoint, p); err != nil {
				t.Fatalf("checkpoint %d (size %d) does not extend %d (size %d): %v", i, all[i].Size, i-1, all[i-1].Size, err)
			}
		}
		if _, err := tlog.Audit(ctx, s, checkpoints(all)...); err != nil {
			t.Fatal(err)
		}
		t.Logf("%d checkpoints signed by %d racing logs", len(all), logs)
	})
}

// TestRunPublishesOnEveryTick: driven by a ticker, the log signs a new
// checkpoint on each tick that finds new entries, and none on a tick that
// finds none. (An unbuffered tick channel is the synchronisation: a send
// completes only once Run is back waiting, so the previous tick's work
// is done.)
func TestRunPublishesOnEveryTick(t *testing.T) {
	each(t, func(t *testing.T, s *tlogstore.Store) {
		l := newLog(t, s, 64)
		tick := make(chan time.Time)
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { l.Run(runCtx, tick); close(done) }()
		defer func() { cancel(); <-done }()
		step := func() {
			tick <- time.Now()
			tick <- time.Now() // returns once the first tick is handled
		}
		fill(t, s, 0, 5)
		step()
		if cp := mustLatest(t, s); cp.Size != 5 {
			t.Fatalf("after the first tick: size %d, want 5", cp.Size)
		}
		fill(t, s, 5, 300)
		step()
		if cp := mustLatest(t, s); cp.Size != 300 {
			t.Fatalf("after the second tick: size %d, want 300", cp.Size)
		}
		step()
		all, _ := s.Checkpoints(ctx)
		if len(all) != 2 {
			t.Fatalf("%d checkpoints, want 2 (idle ticks sign nothing)", len(all))
		}
	})
}

// TestServedLogVerifiesWithOtherCode: the checkpoint, tiles and entry
// bundles served over HTTP verify with code that is not ours —
// transparency-dev/formats' checkpoint parser with a note verifier, and
// transparency-dev/merkle's proof verifier — fed by an auditor that only
// has the URL and the log's public key.
func TestServedLogVerifiesWithOtherCode(t *testing.T) {
	each(t, func(t *testing.T, s *tlogstore.Store) {
		l := newLog(t, s, 100)
		fill(t, s, 0, 300)
		old := publish(t, l)
		fill(t, s, 300, 777)
		publish(t, l)
		srv := httptest.NewServer(http.StripPrefix("/audit", tlog.Handler(s, nil)))
		defer srv.Close()
		client := &tlog.Client{Base: srv.URL + "/audit/", HTTP: srv.Client()}

		raw, err := client.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cp, _, _, err := log.ParseCheckpoint(raw, origin, noteKey(t).Verifier())
		if err != nil {
			t.Fatalf("formats/log refuses the served checkpoint: %v", err)
		}
		if cp.Size != 777 {
			t.Fatalf("served size %d, want 777", cp.Size)
		}
		tiles := client.Tiles(cp.Size)
		hasher := rfc6962.DefaultHasher
		for _, i := range []uint64{0, 1, 255, 256, 299, 300, 511, 512, 700, 776} {
			bundle, err := client.Entries(ctx, i/tlog.TileWidth, cp.Size)
			if err != nil {
				t.Fatal(err)
			}
			e := bundle[i%tlog.TileWidth]
			if !bytes.Equal(e, encoded(t, entry(int(i)))) {
				t.Fatalf("served entry %d is not the one appended", i)
			}
			p, err := tlog.InclusionProof(ctx, tiles, i, cp.Size)
			if err != nil {
				t.Fatal(err)
			}
			if err := proof.VerifyInclusion(hasher, i, cp.Size, hasher.HashLeaf(e), p, cp.Hash); err != nil {
				t.Fatalf("merkle/proof refuses the inclusion of %d: %v", i, err)
			}
		}
		p, err := tlog.ConsistencyProof(ctx, tiles, old.Size, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyConsistency(hasher, old.Size, cp.Size, p, old.Root, cp.Hash); err != nil {
			t.Fatalf("merkle/proof refuses the consistency %d→%d: %v", old.Size, cp.Size, err)
		}
		// A forged root does not verify: the check can fail.
		forged := bytes.Clone(cp.Hash)
		forged[0] ^= 1
		if err := proof.VerifyConsistency(hasher, old.Size, cp.Size, p, old.Root, forged); err == nil {
			t.Fatal("merkle/proof accepts a forged root")
		}

		for _, tc := range []struct {
			path, cache string
			status      int
		}{
			{"checkpoint", "no-cache", 200},
			{"tile/0/000", "public, max-age=31536000, immutable", 200},
			{"tile/0/001", "public, max-age=31536000, immutable", 200},
			{"tile/0/003.p/9", "public, max-age=60", 200},
			{"tile/0/003.p/10", "", 404}, // beyond the checkpoint
			{"tile/0/003", "", 404},
			{"tile/1/000.p/3", "public, max-age=60", 200},
			{"tile/entries/002", "public, max-age=31536000, immutable", 200},
			{"tile/entries/003.p/9", "public, max-age=60", 200},
			{"tile/0/3", "", 404},
			{"tile/9/000", "", 404},
		} {
			resp, err := srv.Client().Get(srv.URL + "/audit/" + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get("Cache-Control") != tc.cache && tc.status == 200 {
				t.Errorf("%s: %d %q, want %d %q", tc.path, resp.StatusCode, resp.Header.Get("Cache-Control"), tc.status, tc.cache)
			}
		}
		resp, err := srv.Client().Post(srv.URL+"/audit/checkpoint", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST: %d", resp.StatusCode)
		}
	})
}

// TestServingBeforeAnyCheckpoint: nothing is served before the log has
// signed, not even tiles that exist.
func TestServingBeforeAnyCheckpoint(t *testing.T) {
	each(t, func(t *testing.T, s *tlogstore.Store) {
		fill(t, s, 0, 3)
		if _, err := newLog(t, s, 10).Sequence(ctx); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(tlog.Handler(s, nil))
		defer srv.Close()
		for _, p := range []string{"/checkpoint", "/tile/0/000.p/3"} {
			resp, err := srv.Client().Get(srv.URL + p)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s: %d, want 404", p, resp.StatusCode)
			}
		}
		if _, err := s.LatestCheckpoint(ctx); !errors.Is(err, tlog.ErrNoCheckpoint) {
			t.Fatal(err)
		}
	})
}
