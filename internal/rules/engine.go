package rules

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// Engine holds the rule set in force and swaps it atomically when a new
// one loads. A refused set never replaces the running one. An evaluation
// that has started keeps the set it started with: Evaluate takes the
// current set once, and sets are immutable.
type Engine struct {
	current atomic.Pointer[Set]
}

// NewEngine starts with initial in force. initial MUST NOT be nil (use
// Starter() when no file is configured).
func NewEngine(initial *Set) *Engine {
	e := &Engine{}
	e.current.Store(initial)
	return e
}

// Current is the set in force.
func (e *Engine) Current() *Set { return e.current.Load() }

// Evaluate judges in with the set in force.
func (e *Engine) Evaluate(in *Input) ([]Violation, error) {
	return e.Current().Evaluate(in)
}

// Reload loads data (see Load) and, if it is accepted, puts it in force.
// On error the running set stays in force and the error is returned: a
// *SetError (errs.InvalidRuleSet) for a refused file.
func (e *Engine) Reload(name string, data []byte) error {
	set, err := Load(name, data)
	if err != nil {
		return err
	}
	e.current.Store(set)
	return nil
}

// ReloadFile reads path and reloads from it; problems are reported with
// path as the file name.
func (e *Engine) ReloadFile(path string) error {
	data, err := readRuleFile(path)
	if err != nil {
		return err
	}
	return e.Reload(path, data)
}

func readRuleFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	defer f.Close()
	// One byte over the limit is enough for Load to refuse it by size.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("rules: read %s: %w", path, err)
	}
	return data, nil
}

// Watch polls path every interval and reloads when the file changes; it
// returns nil when ctx is done. A change is noticed by modification time
// and size, and confirmed by the content's hash, so touching the file
// does not reload it. A changed file is read only once it has stayed the
// same for a whole interval, and only if it did not change while being
// read: a file saved in place (truncated, then written) is otherwise seen
// half-written, and a valid prefix of a rule set is a weaker rule set.
// Replace files atomically (write a new file, then rename it) all the same.
// On the first poll the file is loaded unless its content is the set
// already in force.
//
// Reloads are logged at Info; refusals at Error with every problem's
// location, and the running set stays in force; an unreadable file at
// Warn. Each distinct outcome is logged once, not on every poll. A nil
// logger discards.
func (e *Engine) Watch(ctx context.Context, path string, interval time.Duration, logger *slog.Logger) error {
	if interval <= 0 {
		return fmt.Errorf("rules: watch interval %v: must be positive", interval)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &watcher{engine: e, path: path, log: logger}
	w.poll()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			w.poll()
		}
	}
}

type fileStamp struct {
	modTime time.Time
	size    int64
}

type watcher struct {
	engine   *Engine
	path     string
	log      *slog.Logger
	stamp    fileStamp // of the last file read
	pending  fileStamp // a new stamp seen once, waiting to settle
	digest   string    // of the last content tried
	lastFail string    // the last read error logged, to log each once
}

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
	data, err := readRuleFile(w.path)
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
		attrs := []any{"path", w.path, "error", err}
		if running != nil {
			attrs = append(attrs, "running_version", running.Version())
		}
		var se *SetError
		if errors.As(err, &se) {
			problems := make([]string, len(se.Problems))
			for i, p := range se.Problems {
				problems[i] = p.String()
			}
			attrs = append(attrs, "problems", problems)
		}
		w.log.Error("rule set refused; the running set stays in force", attrs...)
		return
	}
	now := w.engine.Current()
	attrs := []any{"path", w.path, "version", now.Version(), "digest", now.Digest(), "rules", len(now.rules)}
	if running != nil {
		attrs = append(attrs, "previous_version", running.Version())
	}
	w.log.Info("rule set reloaded", attrs...)
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
