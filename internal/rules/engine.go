package rules

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"
)

// Engine holds the rule set in force and swaps it atomically when a new
// one loads. A refused set never replaces the running one. An evaluation
// that has started keeps the set it started with: Evaluate takes the
// current set once, and sets are immutable. Package watch reloads an
// Engine when its file changes.
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
	data, err := ReadFile(path)
	if err != nil {
		return err
	}
	return e.Reload(path, data)
}

// ReadFile reads a rule set file for Load: at most one byte over
// MaxFileSize, which is enough for Load to refuse it by size without
// reading all of a file that is far too big.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("rules: read %s: %w", path, err)
	}
	return data, nil
}
