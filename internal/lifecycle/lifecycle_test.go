package lifecycle_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/lifecycle"
)

// events is the order in which things happened, across goroutines.
type events struct {
	mu   sync.Mutex
	list []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, s)
}

func (e *events) get() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.list)
}

// logSignal is a log sink that closes a channel when a message is logged.
type logSignal struct {
	mu      sync.Mutex
	waiting map[string]chan struct{}
	ev      *events
}

func newLogSignal(ev *events) *logSignal {
	return &logSignal{waiting: map[string]chan struct{}{}, ev: ev}
}

// seen is closed once msg has been logged.
func (l *logSignal) seen(msg string) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.channel(msg)
}

// channel is msg's channel; l.mu is held.
func (l *logSignal) channel(msg string) chan struct{} {
	if l.waiting[msg] == nil {
		l.waiting[msg] = make(chan struct{})
	}
	return l.waiting[msg]
}

func (l *logSignal) Write(p []byte) (int, error) {
	var line struct{ Msg, Task string }
	if json.Unmarshal(p, &line) == nil {
		l.ev.add(strings.TrimSpace("log: " + line.Msg + " " + line.Task))
		l.mu.Lock()
		defer l.mu.Unlock()
		c := l.channel(line.Msg)
		select {
		case <-c:
		default:
			close(c)
		}
	}
	return len(p), nil
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// recordingTask notes when its context ends and when it returns.
func recordingTask(ev *events, name string) lifecycle.Task {
	return lifecycle.Task{Name: name, Run: func(ctx context.Context) {
		ev.add(name + " started")
		<-ctx.Done()
		ev.add(name + " told to stop")
	}}
}

// TestShutdownInOrder: a request in flight when the context ends is
// served to the end while the listener no longer accepts; background work
// goes on until it has, then is stopped and waited for; Run returns last.
func TestShutdownInOrder(t *testing.T) {
	ev := &events{}
	logs := newLogSignal(ev)
	entered, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		ev.add("request finished")
		io.WriteString(w, "done")
	})
	ln := listen(t)
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := lifecycle.Run(ctx, slog.New(slog.NewJSONHandler(logs, nil)), time.Minute,
			[]lifecycle.Server{{Name: "api", Listener: ln, HTTP: &http.Server{Handler: h}}}, recordingTask(ev, "publisher"))
		ev.add("Run returned")
		done <- err
	}()
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- string(b)
	}()
	<-entered
	cancel()
	<-logs.seen(lifecycle.MsgDraining)
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) with a request in flight", err)
	default:
	}
	// The request holds the shutdown: nothing is stopped yet. Shutdown
	// closes the listener before it waits for the request: a new
	// connection is refused while the one in flight goes on.
	if slices.Contains(ev.get(), "publisher told to stop") {
		t.Fatal("background work was stopped before the requests drained")
	}
	<-logs.seen(lifecycle.MsgRefusing)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("a new connection was accepted while draining")
	}
	close(release)
	if body := <-got; body != "done" {
		t.Fatalf("the request in flight got %q", body)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("the listener still accepts after Run returned")
	}
	want := []string{"request finished", "publisher told to stop", "log: " + lifecycle.MsgTaskStopped + " publisher", "log: " + lifecycle.MsgStopped, "Run returned"}
	var order []string
	for _, e := range ev.get() {
		if slices.Contains(want, e) {
			order = append(order, e)
		}
	}
	if !slices.Equal(order, want) {
		t.Fatalf("order %q, want %q", order, want)
	}
}

// TestDrainBound: a request still running when the drain ends is cut off
// (its context ends) and waited for before the background work stops.
func TestDrainBound(t *testing.T) {
	ev := &events{}
	logs := newLogSignal(ev)
	entered := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done() // a request that never finishes by itself
		ev.add("request cut off")
	})
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- lifecycle.Run(ctx, slog.New(slog.NewJSONHandler(logs, nil)), 50*time.Millisecond,
			[]lifecycle.Server{{Name: "api", Listener: ln, HTTP: &http.Server{Handler: h}}}, recordingTask(ev, "renewal"))
	}()
	failed := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err == nil {
			resp.Body.Close()
		}
		failed <- err
	}()
	<-entered
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-failed; err == nil {
		t.Fatal("a request cut off at the end of the drain got a response")
	}
	list := ev.get()
	cut, stop := slices.Index(list, "request cut off"), slices.Index(list, "renewal told to stop")
	if cut < 0 || stop < cut {
		t.Fatalf("events %q: the request must end before the background work stops", list)
	}
}

// TestServerFailure: a server that cannot serve ends Run with its error,
// after the other servers and the background work have stopped.
func TestServerFailure(t *testing.T) {
	ev := &events{}
	logs := newLogSignal(ev)
	broken := listen(t)
	broken.Close()
	err := lifecycle.Run(context.Background(), slog.New(slog.NewJSONHandler(logs, nil)), time.Second, []lifecycle.Server{
		{Name: "public", Listener: listen(t), HTTP: &http.Server{Handler: http.NotFoundHandler()}},
		{Name: "admin", Listener: broken, HTTP: &http.Server{Handler: http.NotFoundHandler()}},
	}, recordingTask(ev, "publisher"))
	if err == nil || !strings.HasPrefix(err.Error(), "admin: ") {
		t.Fatalf("got %v, want the admin listener's failure", err)
	}
	if !slices.Contains(ev.get(), "publisher told to stop") {
		t.Fatalf("background work still running: %q", ev.get())
	}
}

// TestHungRequestAbandoned: a request that ignores its context (a call to
// a hung HSM) does not hold Run for ever: after the drain and another
// drain once it is cut off, it is logged as abandoned, the background
// work is stopped and Run returns.
func TestHungRequestAbandoned(t *testing.T) {
	ev := &events{}
	logs := newLogSignal(ev)
	entered, hung := make(chan struct{}), make(chan struct{})
	defer close(hung)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-hung
	})
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- lifecycle.Run(ctx, slog.New(slog.NewJSONHandler(logs, nil)), 20*time.Millisecond,
			[]lifecycle.Server{{Name: "api", Listener: ln, HTTP: &http.Server{Handler: h}}}, recordingTask(ev, "publisher"))
	}()
	go func() {
		if resp, err := http.Get("http://" + ln.Addr().String() + "/"); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	list := ev.get()
	abandoned, stop := slices.Index(list, "log: "+lifecycle.MsgAbandoned), slices.Index(list, "publisher told to stop")
	if abandoned < 0 || stop < abandoned {
		t.Fatalf("events %q: the hung request must be logged as abandoned, then the background work stopped", list)
	}
}
