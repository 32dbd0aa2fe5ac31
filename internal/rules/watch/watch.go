// Package watch keeps a rules.Engine in step with a rule set file: it polls
// the file and reloads the engine when the file changes. It is apart from
// package rules because it changes for other reasons (file systems, how
// operators deploy rule files, what is logged) than the rules do, and it
// needs nothing of them but the Engine's public methods.
package watch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nuskha/nuskha/internal/rules"
)

// Run polls path every interval and reloads engine when the file changes;
// it returns nil when ctx is done. A change is noticed by modification time
// and size, and confirmed by the content's hash, so touching the file does
// not reload it. A changed file is read only once it has stayed the same
// for a whole interval, and only if it did not change while being read: a
// file saved in place (truncated, then written) is otherwise seen
// half-written, and a valid prefix of a rule set is a weaker rule set.
// Replace files atomically (write a new file, then rename it) all the same.
// The file is loaded once it has settled unless its content is the set
// already in force.
//
// Reloads are logged at Info; refusals at Error with every problem's
// location, and the running set stays in force; an unreadable file at
// Warn. Each distinct outcome is logged once, not on every poll. A nil
// logger discards.
func Run(ctx context.Context, engine *rules.Engine, path string, interval time.Duration, logger *slog.Logger) error {
	if interval <= 0 {
		return fmt.Errorf("rules: watch interval %v: must be positive", interval)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	newWatcher(engine, path, logger).run(ctx, t.C)
	return nil
}

type fileStamp struct {
	modTime time.Time
	size    int64
}

type watcher struct {
	engine   *rules.Engine
	path     string
	log      *slog.Logger
	stamp    fileStamp // of the last file read
	pending  fileStamp // a new stamp seen once, waiting to settle
	digest   string    // of the last content tried
	lastFail string    // the last read error logged, to log each once
}

func newWatcher(engine *rules.Engine, path string, logger *slog.Logger) *watcher {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &watcher{engine: engine, path: path, log: logger}
}

// run polls at once and then on every tick until ctx is done. The ticks
// are a parameter so that tests drive the polls rather than wait for them.
func (w *watcher) run(ctx context.Context, ticks <-chan time.Time) {
	w.poll()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
			w.poll()
		}
	}
}

// poll looks at the file once and reloads the engine if the file has
// changed and settled.
func (w *watcher) poll() {
	fi, err := os.Stat(w.path)
	if err != nil {
		w.readFailed(err)
		return
	}
	stamp := fileStamp{fi.ModTime(), fi.Size()}
	if stamp == w.stamp {
		return
	}
	if stamp != w.pending {
		w.pending = stamp // still being written, perhaps: look again next time
		return
	}
	data, err := rules.ReadFile(w.path)
	if err != nil {
		w.readFailed(err)
		return
	}
	if fi, err := os.Stat(w.path); err != nil || (fileStamp{fi.ModTime(), fi.Size()}) != stamp {
		return // written to while being read: wait for it to settle
	}
	w.stamp, w.lastFail = stamp, ""
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	if digest == w.digest {
		return
	}
	w.digest = digest
	running := w.engine.Current()
	if running != nil && running.Digest() == digest {
		return
	}
	if err := w.engine.Reload(w.path, data); err != nil {
		w.refused(running, err)
		return
	}
	now := w.engine.Current()
	attrs := []any{"path", w.path, "version", now.Version(), "digest", now.Digest(), "rules", len(now.Rules())}
	if running != nil {
		attrs = append(attrs, "previous_version", running.Version())
	}
	w.log.Info("rule set reloaded", attrs...)
}

// refused logs a file the engine would not load, with every problem's
// location: the author needs them, and rule files hold no secrets.
func (w *watcher) refused(running *rules.Set, err error) {
	attrs := []any{"path", w.path, "error", err}
	if running != nil {
		attrs = append(attrs, "running_version", running.Version())
	}
	var se *rules.SetError
	if errors.As(err, &se) {
		problems := make([]string, len(se.Problems))
		for i, p := range se.Problems {
			problems[i] = p.String()
		}
		attrs = append(attrs, "problems", problems)
	}
	w.log.Error("rule set refused; the running set stays in force", attrs...)
}

func (w *watcher) readFailed(err error) {
	if msg := err.Error(); msg != w.lastFail {
		w.lastFail = msg
		w.log.Warn("cannot read the rule set file; the running set stays in force", "path", w.path, "error", err)
	}
	// Forget the stamp so that the file is read again once it is back,
	// even if it returns with the same time and size.
	w.stamp, w.pending = fileStamp{}, fileStamp{}
}
