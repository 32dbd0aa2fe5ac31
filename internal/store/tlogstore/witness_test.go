package tlogstore_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	flog "github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/nuskha/nuskha/internal/store/tlogstore"
	"github.com/nuskha/nuskha/internal/testutil/witnesstest"
	"github.com/nuskha/nuskha/internal/tlog"
)

// testWitness is a witness written from C2SP tlog-witness for these tests
// (the one implementation at hand that is not ours, torchwood's
// litewitness, is a command: cmd/rxctl's test runs it). It checks the
// log's signature, the old size against the size it cosigned last (409
// otherwise) and the consistency proof with transparency-dev's merkle,
// and cosigns with transparency-dev's cosignature/v1 signer. Its mode
// makes it misbehave.
type testWitness struct {
	t       *testing.T
	logKey  note.Verifier
	signer  note.Signer
	wrong   note.Signer // same name, another key
	vkey    string
	verifer note.Verifier

	mu       sync.Mutex
	mode     string // "", "garbage", "wrong-key", "bad-signature", "unavailable", "hang"
	size     uint64
	root     []byte
	requests []string // "old N size M: status"
	inFlight int
	most     int
	arrived  chan struct{} // a request arrived (hang mode)
	release  chan struct{}
}

func newTestWitness(t *testing.T, logKey note.Verifier) (*testWitness, *httptest.Server) {
	w := &testWitness{t: t, logKey: logKey, root: rfc6962.DefaultHasher.EmptyRoot(), arrived: make(chan struct{}, 16), release: make(chan struct{})}
	w.signer, w.vkey = witnesstest.Key(t, "witness.test/w1")
	w.wrong, _ = witnesstest.Key(t, "witness.test/w1")
	var err error
	if w.verifer, err = tlog.WitnessVerifier(w.vkey); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(w)
	t.Cleanup(func() {
		close(w.release)
		srv.Close()
	})
	return w, srv
}

func (w *testWitness) setMode(m string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mode = m
}

func (w *testWitness) log(s string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s != "" {
		w.requests = append(w.requests, s)
	}
	return append([]string(nil), w.requests...)
}

func (w *testWitness) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w.mu.Lock()
	w.inFlight++
	w.most = max(w.most, w.inFlight)
	mode := w.mode
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.inFlight--
		w.mu.Unlock()
	}()
	if mode == "hang" {
		w.arrived <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-w.release:
		}
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/add-checkpoint" {
		http.Error(rw, "not found", http.StatusNotFound)
		return
	}
	if mode == "unavailable" {
		http.Error(rw, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	body, _ := io.ReadAll(r.Body)
	status, answer := w.add(body, mode)
	if status == http.StatusConflict {
		rw.Header().Set("Content-Type", "text/x.tlog.size")
	}
	rw.WriteHeader(status)
	rw.Write(answer)
}

// add is add-checkpoint, as the spec says it.
func (w *testWitness) add(body []byte, mode string) (int, []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	head, signed, ok := bytes.Cut(body, []byte("\n\n"))
	if !ok {
		return http.StatusBadRequest, nil
	}
	lines := strings.Split(string(head), "\n")
	oldText, ok := strings.CutPrefix(lines[0], "old ")
	old, err := strconv.ParseUint(oldText, 10, 64)
	if !ok || err != nil || strconv.FormatUint(old, 10) != oldText || len(lines)-1 > 63 {
		return http.StatusBadRequest, nil
	}
	var hashes [][]byte
	for _, l := range lines[1:] {
		h, err := base64.StdEncoding.DecodeString(l)
		if err != nil || len(h) != 32 {
			return http.StatusBadRequest, nil
		}
		hashes = append(hashes, h)
	}
	cp, _, n, err := flog.ParseCheckpoint(signed, w.logKey.Name(), w.logKey)
	if err != nil {
		return http.StatusForbidden, []byte(err.Error())
	}
	report := func(status int) int {
		w.requests = append(w.requests, fmt.Sprintf("old %d size %d: %d", old, cp.Size, status))
		return status
	}
	switch {
	case old > cp.Size:
		return report(http.StatusBadRequest), nil
	case old != w.size:
		return report(http.StatusConflict), fmt.Appendf(nil, "%d\n", w.size)
	case old == 0 && len(hashes) != 0:
		return report(http.StatusUnprocessableEntity), nil
	case old == cp.Size && !bytes.Equal(w.root, cp.Hash):
		return report(http.StatusUnprocessableEntity), nil
	case old > 0 && old < cp.Size:
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, old, cp.Size, hashes, w.root, cp.Hash); err != nil {
			return report(http.StatusUnprocessableEntity), []byte(err.Error())
		}
	}
	signer := w.signer
	if mode == "wrong-key" {
		signer = w.wrong
	}
	cosigned, err := note.Sign(&note.Note{Text: n.Text}, signer)
	if err != nil {
		w.t.Error(err)
		return http.StatusInternalServerError, nil
	}
	sig := cosigned[len(n.Text)+1:]
	switch mode {
	case "garbage":
		return report(http.StatusOK), []byte("cosigned, trust me\n")
	case "bad-signature":
		name, b64, _ := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(string(sig), "— "), "\n"), " ")
		raw, _ := base64.StdEncoding.DecodeString(b64)
		raw[len(raw)-1] ^= 1
		return report(http.StatusOK), []byte("— " + name + " " + base64.StdEncoding.EncodeToString(raw) + "\n")
	}
	w.size, w.root = cp.Size, cp.Hash
	return report(http.StatusOK), sig
}

func witnessLog(t *testing.T, s *tlogstore.Store, srv *httptest.Server, vkey string, reg prometheus.Registerer) *tlog.Log {
	t.Helper()
	l, err := tlog.New(s, tlog.Config{Origin: origin, Key: noteKey(t), Witnesses: []tlog.Witness{{VerifierKey: vkey, URL: srv.URL}},
		WitnessHTTP: srv.Client(), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func grow(t *testing.T, s *tlogstore.Store, l *tlog.Log, from, to int) {
	t.Helper()
	var es []*tlog.Entry
	for i := from; i < to; i++ {
		es = append(es, entry(i))
	}
	if err := s.Append(ctx, es...); err != nil {
		t.Fatal(err)
	}
	if err := l.Step(ctx); err != nil {
		t.Fatal(err)
	}
}

// served fetches the checkpoint the log serves.
func served(t *testing.T, s *tlogstore.Store) []byte {
	t.Helper()
	srv := httptest.NewServer(tlog.Handler(s, nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

func outcomes(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "nuskha_audit_witness_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "outcome" {
					out[lp.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

func TestWitnessCosignsAndTheLogServesIt(t *testing.T) {
	each(t, func(t *testing.T, s *tlogstore.Store) {
		w, srv := newTestWitness(t, noteKey(t).Verifier())
		reg := prometheus.NewRegistry()
		l := witnessLog(t, s, srv, w.vkey, reg)
		grow(t, s, l, 0, 5)
		if err := l.SubmitToWitnesses(ctx); err != nil {
			t.Fatal(err)
		}
		grow(t, s, l, 5, 300)
		if err := l.SubmitToWitnesses(ctx); err != nil {
			t.Fatal(err)
		}
		if got, want := w.log(""), []string{"old 0 size 5: 200", "old 5 size 300: 200"}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("the witness saw %q, want %q", got, want)
		}
		// Nothing new: nothing is sent again.
		if err := l.SubmitToWitnesses(ctx); err != nil || len(w.log("")) != 2 {
			t.Fatalf("a cosigned checkpoint was submitted again (%v): %q", err, w.log(""))
		}
		body := served(t, s)
		// Clients that do not know the witness verify it as before…
		cp, err := tlog.VerifyCheckpoint(body, origin, noteKey(t).Verifier())
		if err != nil || cp.Size != 300 {
			t.Fatalf("the served checkpoint under the log's key: %v (size %d)", err, cp.Size)
		}
		// …and transparency-dev's parser, given the witness's key, finds
		// its cosignature beside the log's signature.
		_, _, n, err := flog.ParseCheckpoint(body, origin, noteKey(t).Verifier(), w.verifer)
		if err != nil || len(n.Sigs) != 2 {
			t.Fatalf("the served checkpoint: %v, %d verified signatures, want 2:\n%s", err, len(n.Sigs), body)
		}
		if k, err := tlog.Cosigners(body, w.verifer); k != 1 || err != nil {
			t.Fatalf("Cosigners = %d, %v", k, err)
		}
		if got := outcomes(t, reg); got[tlog.WitnessCosigned] != 2 {
			t.Fatalf("outcomes %v", got)
		}
	})
}

func TestWitnessConflictIsFollowed(t *testing.T) {
	each(t, func(t *testing.T, s *tlogstore.Store) {
		w, srv := newTestWitness(t, noteKey(t).Verifier())
		first := witnessLog(t, s, srv, w.vkey, nil)
		grow(t, s, first, 0, 5)
		if err := first.SubmitToWitnesses(ctx); err != nil {
			t.Fatal(err)
		}
		// A new process knows nothing of what the witness cosigned: it
		// sends old 0, and the witness's 409 says 5.
		reg := prometheus.NewRegistry()
		second := witnessLog(t, s, srv, w.vkey, reg)
		grow(t, s, second, 5, 9)
		if err := second.SubmitToWitnesses(ctx); err != nil {
			t.Fatal(err)
		}
		want := []string{"old 0 size 5: 200", "old 0 size 9: 409", "old 5 size 9: 200"}
		if got := w.log(""); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("the witness saw %q, want %q", got, want)
		}
		latest, err := s.LatestCheckpoint(ctx)
		if err != nil || latest.Size != 9 || !latest.CosignedBy(w.verifer) {
			t.Fatalf("latest %v: size %d, cosigned %v", err, latest.Size, latest.CosignedBy(w.verifer))
		}
		if got := outcomes(t, reg); got[tlog.WitnessConflict] != 1 || got[tlog.WitnessCosigned] != 1 {
			t.Fatalf("outcomes %v", got)
		}
	})
}

func TestWitnessBadAnswerIsNotStored(t *testing.T) {
	for _, tc := range []struct{ mode, outcome string }{
		{"garbage", tlog.WitnessBadAnswer},
		{"wrong-key", tlog.WitnessBadAnswer},
		{"bad-signature", tlog.WitnessBadAnswer},
		{"unavailable", tlog.WitnessRefused},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			each(t, func(t *testing.T, s *tlogstore.Store) {
				w, srv := newTestWitness(t, noteKey(t).Verifier())
				reg := prometheus.NewRegistry()
				l := witnessLog(t, s, srv, w.vkey, reg)
				w.setMode(tc.mode)
				grow(t, s, l, 0, 7)
				if err := l.SubmitToWitnesses(ctx); err == nil {
					t.Fatal("a bad answer was taken")
				}
				latest, err := s.LatestCheckpoint(ctx)
				if err != nil || len(latest.Cosignatures) != 0 {
					t.Fatalf("stored %v (%v)", latest.Cosignatures, err)
				}
				if body := served(t, s); !bytes.Equal(body, latest.Note) {
					t.Fatalf("served more than the log's note:\n%s", body)
				}
				if got := outcomes(t, reg); got[tc.outcome] != 1 || got[tlog.WitnessCosigned] != 0 {
					t.Fatalf("outcomes %v, want one %s", got, tc.outcome)
				}
				// Once the witness behaves, the same checkpoint is cosigned.
				w.setMode("")
				if err := l.SubmitToWitnesses(ctx); err != nil {
					t.Fatal(err)
				}
				if latest, err = s.LatestCheckpoint(ctx); err != nil || !latest.CosignedBy(w.verifer) {
					t.Fatalf("not cosigned once the witness behaved: %v", err)
				}
			})
		})
	}
}

// A witness that does not answer holds up neither appending nor signing:
// submissions run beside the log, one at a time, and end with it.
func TestWitnessDownDoesNotHoldTheLog(t *testing.T) {
	each(t, func(t *testing.T, s *tlogstore.Store) {
		w, srv := newTestWitness(t, noteKey(t).Verifier())
		w.setMode("hang")
		l := witnessLog(t, s, srv, w.vkey, nil)
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			l.Run(runCtx, nil) // no ticks: the test steps
		}()
		grow(t, s, l, 0, 3)
		select {
		case <-w.arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the checkpoint was never submitted")
		}
		start := time.Now()
		for i := range 5 {
			grow(t, s, l, 3+10*i, 13+10*i)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("5 appends and checkpoints took %s with the witness down", d)
		}
		latest, err := s.LatestCheckpoint(ctx)
		if err != nil || latest.Size != 53 {
			t.Fatalf("latest checkpoint %v, %v", latest, err)
		}
		stop()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return once stopped: a submission outlived it")
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.most != 1 {
			t.Fatalf("%d requests in flight at once, want 1", w.most)
		}
	})
}

func TestWitnessTimeout(t *testing.T) {
	s := openStore(t, "sqlite")
	w, srv := newTestWitness(t, noteKey(t).Verifier())
	w.setMode("hang")
	hc := srv.Client()
	hc.Timeout = 200 * time.Millisecond
	reg := prometheus.NewRegistry()
	l, err := tlog.New(s, tlog.Config{Origin: origin, Key: noteKey(t), Witnesses: []tlog.Witness{{VerifierKey: w.vkey, URL: srv.URL}}, WitnessHTTP: hc, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	grow(t, s, l, 0, 2)
	start := time.Now()
	if err := l.SubmitToWitnesses(ctx); err == nil {
		t.Fatal("a witness that never answered cosigned")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the submission took %s, past its timeout", d)
	}
	if got := outcomes(t, reg); got[tlog.WitnessUnreachable] != 1 {
		t.Fatalf("outcomes %v", got)
	}
}

func TestCosignaturesAreAppendOnly(t *testing.T) {
	each(t, func(t *testing.T, s *tlogstore.Store) {
		w, srv := newTestWitness(t, noteKey(t).Verifier())
		l := witnessLog(t, s, srv, w.vkey, nil)
		grow(t, s, l, 0, 4)
		if err := l.SubmitToWitnesses(ctx); err != nil {
			t.Fatal(err)
		}
		latest, _ := s.LatestCheckpoint(ctx)
		c := latest.Cosignatures[0]
		// A cosignature of a checkpoint that was never signed is refused.
		if err := s.AddCosignature(ctx, 99, c, t0); err == nil {
			t.Fatal("a cosignature of no checkpoint was stored")
		}
		// One that does not say its witness is refused.
		if err := s.AddCosignature(ctx, 4, tlog.Cosignature{Witness: "other.test/w", KeyHash: c.KeyHash, Line: c.Line}, t0); err == nil {
			t.Fatal("a line under another name was stored")
		}
		db := s.DB()
		for _, q := range []string{"UPDATE tlog_cosignatures SET line = line", "DELETE FROM tlog_cosignatures"} {
			if _, err := db.SQL().ExecContext(ctx, q); err == nil {
				t.Fatalf("%s: allowed", q)
			}
		}
	})
}
