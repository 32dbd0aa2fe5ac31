package watch

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/rules"
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

// ruleFile is the watched file. Each write or touch gets a modification
// time of its own, so that the tests do not depend on the file system's
// timestamp resolution.
type ruleFile struct {
	t     *testing.T
	path  string
	stamp time.Time
}

func newRuleFile(t *testing.T) *ruleFile {
	return &ruleFile{t: t, path: filepath.Join(t.TempDir(), "rules.yaml"), stamp: time.Now().Add(-time.Hour)}
}

func (f *ruleFile) write(data []byte) {
	f.t.Helper()
	if err := os.WriteFile(f.path, data, 0o600); err != nil {
		f.t.Fatal(err)
	}
	f.touch()
}

func (f *ruleFile) touch() {
	f.t.Helper()
	f.stamp = f.stamp.Add(time.Second)
	if err := os.Chtimes(f.path, f.stamp, f.stamp); err != nil {
		f.t.Fatal(err)
	}
}

// TestWatch drives the watcher poll by poll: what each poll does is the
// behaviour, and no test needs to guess how long a poll takes.
func TestWatch(t *testing.T) {
	f := newRuleFile(t)
	f.write(versioned("v1", 100))
	e := rules.NewEngine(rules.Starter())
	var logs bytes.Buffer
	w := newWatcher(e, f.path, slog.New(slog.NewTextHandler(&logs, nil)))
	version := func(when, want string) {
		t.Helper()
		if got := e.Current().Version(); got != want {
			t.Fatalf("%s: version %s, want %s\n%s", when, got, want, logs.String())
		}
	}
	starter := rules.Starter().Version()

	// The first poll sees the file; it is loaded over the starter set once
	// it is the same at the next.
	w.poll()
	version("first poll", starter)
	w.poll()
	version("second poll", "v1")

	f.write(versioned("v2", 10))
	w.poll()
	version("a change seen once", "v1")
	w.poll()
	version("the change settled", "v2")
	if !strings.Contains(logs.String(), `msg="rule set reloaded" path=`+f.path+" version=v2") {
		t.Errorf("the reload is not logged:\n%s", logs.String())
	}

	// A broken file is refused and logged once with its locations; v2 stays.
	f.write(broken)
	for range 4 {
		w.poll()
	}
	version("a broken file", "v2")
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), f.path+":7:16: rule limit: expr: CEL 1:5: undefined field") {
		t.Errorf("the refusal is not logged with its location:\n%s", logs.String())
	}
	if n := strings.Count(logs.String(), "rule set refused"); n != 1 {
		t.Errorf("the refusal was logged %d times; once is enough", n)
	}

	// A deleted file is a warning, logged once, and the set stays; its
	// return reloads.
	if err := os.Remove(f.path); err != nil {
		t.Fatal(err)
	}
	w.poll()
	w.poll()
	version("a missing file", "v2")
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("the missing file was logged %d times, want once:\n%s", n, logs.String())
	}
	f.write(versioned("v3", 10))
	w.poll()
	w.poll()
	version("the file back", "v3")

	// Touching the file without changing it does not reload it.
	v3 := e.Current()
	reloads := strings.Count(logs.String(), "rule set reloaded")
	f.touch()
	w.poll()
	w.poll()
	if e.Current() != v3 || strings.Count(logs.String(), "rule set reloaded") != reloads {
		t.Error("a touch reloaded the set")
	}
}

// TestRun: the watcher polls at once and then on every tick, and stops
// when its context ends. The ticks are a channel the test sends on: a
// tick is taken only once the previous poll has ended, so after the
// second send the first tick's poll is done.
func TestRun(t *testing.T) {
	f := newRuleFile(t)
	f.write(versioned("v1", 100))
	e := rules.NewEngine(rules.Starter())
	ticks := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		newWatcher(e, f.path, nil).run(ctx, ticks)
	}()
	ticks <- time.Time{} // the poll at start has seen the file
	ticks <- time.Time{} // the first tick's poll has loaded it
	if v := e.Current().Version(); v != "v1" {
		t.Fatalf("version %s after a poll at start and one tick", v)
	}
	cancel()
	<-done

	// Run with a real ticker returns nil once ctx is done, and refuses an
	// interval that cannot tick.
	if err := Run(ctx, e, f.path, time.Hour, nil); err != nil {
		t.Errorf("Run with its context done: %v", err)
	}
	if err := Run(context.Background(), e, f.path, 0, nil); err == nil {
		t.Error("a zero interval was accepted")
	}
}

// TestWatchWaitsForTheFileToSettle: a file seen in the middle of being
// saved in place (a valid prefix: fewer rules) is not put in force; once
// it stops changing for an interval, the whole file is.
func TestWatchWaitsForTheFileToSettle(t *testing.T) {
	full := rules.StarterYAML()
	cut := bytes.Index(full, []byte("  - id: refill-too-early"))
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, full[:cut], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := rules.Load("prefix", full[:cut]); err != nil {
		t.Fatalf("the prefix must itself be a valid set for this test to mean anything: %v", err)
	}
	initial, err := rules.Load("initial", bytes.Replace(full, []byte(`version: "2026-11-01"`), []byte(`version: "initial"`), 1))
	if err != nil {
		t.Fatal(err)
	}
	e := rules.NewEngine(initial)
	w := newWatcher(e, path, nil)
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
	if e.Current().Digest() != rules.Starter().Digest() || len(e.Current().Rules()) != 15 {
		t.Fatalf("the settled file is not the set in force: %s", e.Current().Version())
	}
}
