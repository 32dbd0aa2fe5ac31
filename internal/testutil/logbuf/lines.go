package logbuf

import (
	"encoding/json"
	"slices"
	"sync"
)

// Lines is a JSON log (slog's JSONHandler, one line per Write) in a test:
// every line, and channels closed when a message has been logged so many
// times, to wait on what a daemon running in other goroutines does.
type Lines struct {
	mu      sync.Mutex
	lines   []map[string]any
	count   map[string]int
	waiters []waiter
}

type waiter struct {
	msg string
	n   int
	c   chan struct{}
}

// NewLines is an empty log.
func NewLines() *Lines { return &Lines{count: map[string]int{}} }

// Logged is closed once msg has been logged n times.
func (l *Lines) Logged(msg string, n int) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := make(chan struct{})
	if l.count[msg] >= n {
		close(c)
	} else {
		l.waiters = append(l.waiters, waiter{msg, n, c})
	}
	return c
}

func (l *Lines) Write(p []byte) (int, error) {
	var line map[string]any
	if json.Unmarshal(p, &line) == nil {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, line)
		msg, _ := line["msg"].(string)
		l.count[msg]++
		l.waiters = slices.DeleteFunc(l.waiters, func(w waiter) bool {
			if w.msg == msg && l.count[msg] >= w.n {
				close(w.c)
				return true
			}
			return false
		})
	}
	return len(p), nil
}

// Find returns the lines with msg, in the order they were logged.
func (l *Lines) Find(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range l.lines {
		if line["msg"] == msg {
			out = append(out, line)
		}
	}
	return out
}
