package tlogstore_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nuskha/nuskha/internal/store/tlogstore"
)

// A witness whose 409 claims a size the log never signed holds a
// checkpoint of this origin the log does not have: a split view, or a
// witness gone wrong. The log MUST say so (an error, not a silent
// success), and MUST NOT stop submitting to that witness for good: once
// it answers its real size the checkpoint is cosigned.
func TestWitnessConflictBeyondTheLog(t *testing.T) {
	each(t, func(t *testing.T, s *tlogstore.Store) {
		w, _ := newTestWitness(t, noteKey(t).Verifier())
		var lie atomic.Bool
		lie.Store(true)
		front := httptest.NewTLSServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if lie.Load() {
				rw.Header().Set("Content-Type", "text/x.tlog.size")
				rw.WriteHeader(http.StatusConflict)
				fmt.Fprint(rw, "1000000\n")
				return
			}
			w.ServeHTTP(rw, r)
		}))
		defer front.Close()
		l := witnessLog(t, s, front, w.vkey, prometheus.NewRegistry())
		grow(t, s, l, 0, 5)
		if err := l.SubmitToWitnesses(ctx); err == nil {
			t.Errorf("a witness claiming size 1000000 of a log of 5 entries: no error")
		}
		lie.Store(false)
		if err := l.SubmitToWitnesses(ctx); err != nil {
			t.Fatalf("the witness answers honestly again: %v", err)
		}
		latest, err := s.LatestCheckpoint(ctx)
		if err != nil || !latest.CosignedBy(w.verifer) {
			t.Fatalf("never cosigned after one bad 409 (witness saw %q): %v", w.log(""), err)
		}
	})
}

// The witness's URL is where checkpoints go: a redirect (307/308 re-POST
// the body) MUST NOT send the log's requests elsewhere, e.g. to a plain
// http or internal address of the witness's choosing.
func TestWitnessRedirectIsNotFollowed(t *testing.T) {
	s := openStore(t, "sqlite")
	w, _ := newTestWitness(t, noteKey(t).Verifier())
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		http.Error(rw, "internal", http.StatusTeapot)
	}))
	defer other.Close()
	front := httptest.NewTLSServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		http.Redirect(rw, r, other.URL+"/admin", http.StatusTemporaryRedirect)
	}))
	defer front.Close()
	l := witnessLog(t, s, front, w.vkey, nil)
	grow(t, s, l, 0, 3)
	_ = l.SubmitToWitnesses(ctx)
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the log followed the witness's redirect: %d requests to %s", n, other.URL)
	}
}
