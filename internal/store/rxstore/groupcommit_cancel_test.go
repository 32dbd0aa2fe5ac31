package rxstore

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/exchange/exchangetest"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
)

// TestQueuedCallerHonoursItsContext: while the database stalls (a
// failover; here a table lock), the maxLeaders leaders wait and every
// other prescription queues. A queued caller whose request is gone
// leaves the queue at once, and its prescription is never written (found
// by review: it waited, and was written once the database came back).
func TestQueuedCallerHonoursItsContext(t *testing.T) {
	s := openGroup(t, sqlstore.Postgres)
	bg := context.Background()
	lock, err := s.SQL().BeginTx(bg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.ExecContext(bg, "LOCK TABLE prescriptions IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			_ = lock.Rollback()
		}
	}
	defer release()
	var wg sync.WaitGroup
	for range maxLeaders {
		wg.Go(func() {
			_, _ = s.groupInsert(bg, exchangetest.Entry(), prepared(exchangetest.Prescription(t, item("A", 1))))
		})
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); {
			if time.Now().After(deadline) {
				t.Fatalf("never: %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	state := func() (int, int) {
		s.group.mu.Lock()
		defer s.group.mu.Unlock()
		return s.group.leaders, len(s.group.queue)
	}
	waitFor("every leader busy", func() bool { l, _ := state(); return l == maxLeaders })
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	gone := prepared(exchangetest.Prescription(t, item("A", 1)))
	go func() {
		_, err := s.groupInsert(ctx, exchangetest.Entry(), gone)
		done <- err
	}()
	waitFor("the caller queued", func() bool { _, q := state(); return q == 1 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the cancelled caller: %v", err)
		}
	case <-time.After(2 * time.Second):
		release()
		<-done
		wg.Wait()
		t.Fatal("a queued caller whose context was cancelled was still waiting 2 s later (and its prescription was then stored)")
	}
	release()
	wg.Wait()
	if _, err := s.PrescriptionByID(bg, gone.ID, exchangetest.Now); errs.CodeOf(err) != errs.NotFound {
		t.Errorf("the cancelled caller's prescription: %v, want never stored", err)
	}
}
