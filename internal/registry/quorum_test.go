package registry_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/registry"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/truststore"
)

type nopPub struct{}

func (nopPub) StatusChanged(context.Context, revoke.Record) error { return nil }

func quorumHarness(t *testing.T, q func(revoke *revoke.Service) registry.OfficerQuorum) *harness {
	db, err := truststore.Open(ctx, sqlstore.SQLite, filepath.Join(t.TempDir(), "trustd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := &clock{t: time.Now().UTC().Truncate(time.Second)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rec := audit.NewLog(db, log, c.Now)
	rv, err := revoke.New(revoke.Config{Store: db, Audit: rec, Refusals: audit.NewTally(rec, log, c.Now, time.Minute), Publisher: nopPub{}, Log: log, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := registry.NewService(registry.Config{Store: db, Quorum: q(rv), Audit: rec, Log: log, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{svc: svc, db: db, clock: c}
	h.alice, h.bob, h.carol = h.officer(t), h.officer(t), h.officer(t)
	return h
}

func active(t *testing.T, h *harness) int {
	ids, err := revoke.ActiveOfficers(ctx, h.db, h.clock.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return len(ids)
}

// TestShorteningAnOfficersLicenceNeedsTwo: one officer cannot end the
// others' licences early alone (it would take them out of service later,
// unseen by the quorum check at the time): the change awaits a second
// officer, and the officers stay able to act.
func TestShorteningAnOfficersLicenceNeedsTwo(t *testing.T) {
	h := quorumHarness(t, func(r *revoke.Service) registry.OfficerQuorum { return r })
	for _, id := range []string{h.bob, h.carol} {
		cur, _ := h.db.GetSubject(ctx, id)
		next := *cur
		next.LicenceValidUntil = h.clock.Now().Add(time.Hour)
		applied, change, err := h.svc.Update(ctx, h.alice, id, &next, cur.Version)
		if err != nil || applied != nil || change == nil {
			t.Fatalf("shortening %s: applied %v, change %v, %v", id, applied, change, err)
		}
	}
	h.clock.Set(h.clock.Now().Add(2 * time.Hour))
	if n := active(t, h); n != 3 {
		t.Fatalf("%d officer(s) able to act", n)
	}
}

// TestParallelSuspensionsKeepTheQuorum: of three officers, one suspends the
// other two at once; the count and the write are under one lock, so one
// suspension is refused and two officers can still act.
func TestParallelSuspensionsKeepTheQuorum(t *testing.T) {
	h := quorumHarness(t, func(r *revoke.Service) registry.OfficerQuorum { return r })
	start := make(chan struct{})
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, id := range []string{h.bob, h.carol} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cur, _ := h.db.GetSubject(ctx, id)
			sus := *cur
			sus.LicenceStatus = registry.Suspended
			<-start
			_, _, errs[i] = h.svc.Update(ctx, h.alice, id, &sus, cur.Version)
		}()
	}
	close(start)
	wg.Wait()
	if n := active(t, h); n < revoke.Quorum {
		t.Fatalf("two suspensions at once left %d officer(s) able to act (%v)", n, errs)
	}
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("want exactly one suspension refused: %v", errs)
	}
}
