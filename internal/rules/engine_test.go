package rules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/testutil/logbuf"
)

// versioned is a one-rule set whose version is v and which allows at most
// limit of an item.
func versioned(v string, limit int) []byte {
	return fmt.Appendf(nil, `version: %q
rules:
  - id: limit
    description: {fa: سقف, en: limit}
    scopes: [dispense]
    per: item
    expr: 'item.quantity <= %d'
    severity: reject
    message: {fa: زیاد, en: too many}
`, v, limit)
}

// broken misspells a field.
var broken = bytes.Replace(versioned("broken", 10), []byte("item.quantity"), []byte("item.quantiy"), 1)

func TestEngineReload(t *testing.T) {
	first, err := Load("v1", versioned("v1", 100))
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(first)
	if e.Current() != first {
		t.Fatal("Current is not the initial set")
	}
	if err := e.Reload("v2", versioned("v2", 10)); err != nil {
		t.Fatal(err)
	}
	if v := e.Current().Version(); v != "v2" {
		t.Fatalf("version %s after reload", v)
	}
	got, err := e.Evaluate(cleanInput(ScopeDispense))
	if err != nil || len(got) != 2 {
		t.Fatalf("v2 should refuse both items: %+v %v", got, err)
	}

	err = e.Reload("broken.yaml", broken)
	if !errors.Is(err, errs.Of(errs.InvalidRuleSet)) {
		t.Fatalf("broken reload: %v", err)
	}
	if !strings.Contains(err.Error(), "broken.yaml:7:16: rule limit: expr: CEL 1:5: undefined field 'quantiy'") {
		t.Errorf("error without location: %v", err)
	}
	if v := e.Current().Version(); v != "v2" {
		t.Errorf("version %s after a refused reload; the running set must stay", v)
	}

	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := e.ReloadFile(path); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if err := os.WriteFile(path, versioned("v3", 10), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.ReloadFile(path); err != nil || e.Current().Version() != "v3" {
		t.Errorf("ReloadFile: %v, version %s", err, e.Current().Version())
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rules.yaml")
	// Each write gets its own modification time, so that the test does
	// not depend on the file system's timestamp resolution.
	stamp := time.Now().Add(-time.Hour)
	write := func(data []byte) {
		t.Helper()
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		stamp = stamp.Add(time.Second)
		if err := os.Chtimes(path, stamp, stamp); err != nil {
			t.Fatal(err)
		}
	}
	write(versioned("v1", 100))

	e := NewEngine(Starter())
	var logs logbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Watch(ctx, path, 10*time.Millisecond, logger) }()

	// The first poll loads the file over the starter set.
	eventually(t, "v1 loaded", func() bool { return e.Current().Version() == "v1" })

	write(versioned("v2", 10))
	eventually(t, "v2 loaded", func() bool { return e.Current().Version() == "v2" })
	eventually(t, "the reload logged", func() bool {
		return strings.Contains(logs.String(), `msg="rule set reloaded" path=`+path+" version=v2")
	})

	// A broken file is refused and logged with its locations; v2 stays.
	write(broken)
	eventually(t, "the refusal logged", func() bool {
		return strings.Contains(logs.String(), "level=ERROR") && strings.Contains(logs.String(), path+":7:16: rule limit: expr: CEL 1:5: undefined field")
	})
	if v := e.Current().Version(); v != "v2" {
		t.Errorf("version %s after a broken file; v2 must stay", v)
	}
	if n := strings.Count(logs.String(), "rule set refused"); n != 1 {
		t.Errorf("the refusal was logged %d times; once is enough", n)
	}

	// A deleted file is a warning and the set stays; its return reloads.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the missing file logged", func() bool { return strings.Contains(logs.String(), "level=WARN") })
	write(versioned("v3", 10))
	eventually(t, "v3 loaded", func() bool { return e.Current().Version() == "v3" })

	// Touching the file without changing it does not reload it.
	v3 := e.Current()
	stamp = stamp.Add(time.Second)
	if err := os.Chtimes(path, stamp, stamp); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if e.Current() != v3 {
		t.Error("a touch reloaded the set")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Watch returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not stop")
	}
	if err := e.Watch(context.Background(), path, 0, nil); err == nil {
		t.Error("a zero interval was accepted")
	}
}

// Evaluations racing reloads each see one whole set: every result is the
// one its set gives, never a mix (run with -race).
func TestEvaluateDuringReload(t *testing.T) {
	strict, lax := versioned("strict", 10), versioned("lax", 1000)
	first, err := Load("lax", lax)
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(first)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			data, name := lax, "lax"
			if i%2 == 0 {
				data, name = strict, "strict"
			}
			if i%5 == 0 {
				data = broken
			}
			_ = e.Reload(name, data)
		}
	}()
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := cleanInput(ScopeDispense)
			for i := 0; i < 300; i++ {
				set := e.Current()
				got, err := set.Evaluate(in)
				if err != nil {
					t.Error(err)
					return
				}
				want := 0
				if set.Version() == "strict" {
					want = 2
				}
				if len(got) != want {
					t.Errorf("set %s gave %d violations, want %d", set.Version(), len(got), want)
					return
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	cancel()
	wg.Wait()
}

// TestWatchWaitsForTheFileToSettle: a file seen in the middle of being
// saved in place (a valid prefix: fewer rules) is not put in force; once
// it stops changing for an interval, the whole file is.
func TestWatchWaitsForTheFileToSettle(t *testing.T) {
	full := StarterYAML()
	cut := bytes.Index(full, []byte("  - id: refill-too-early"))
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, full[:cut], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load("prefix", full[:cut]); err != nil {
		t.Fatalf("the prefix must itself be a valid set for this test to mean anything: %v", err)
	}
	initial, err := Load("initial", bytes.Replace(full, []byte(`version: "2026-11-01"`), []byte(`version: "initial"`), 1))
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(initial)
	w := &watcher{engine: e, path: path, log: slog.New(slog.DiscardHandler)}
	w.poll()
	if v := e.Current().Version(); v != "initial" {
		t.Fatalf("a file seen once, mid-write, was put in force: %s, %d rules", v, len(e.Current().Rules()))
	}
	// The writer finishes (the size changes): still waiting to settle.
	if err := os.WriteFile(path, full, 0o600); err != nil {
		t.Fatal(err)
	}
	w.poll()
	if v := e.Current().Version(); v != "initial" {
		t.Fatalf("after one look at the finished file: %s", v)
	}
	w.poll()
	if e.Current().Digest() != Starter().Digest() || len(e.Current().Rules()) != 15 {
		t.Fatalf("the settled file is not the set in force: %s", e.Current().Version())
	}
}
