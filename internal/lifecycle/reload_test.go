package lifecycle_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/lifecycle"
)

// within fails the test unless c is closed within a bound far above what
// the step takes.
func within(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not happen", what)
	}
}

func hangup(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
}

// TestReloadOnHangup: every SIGHUP the process receives calls reload; a
// failed reload is logged and the next SIGHUP calls it again; stop
// cancels a reload in progress and returns only after it did.
func TestReloadOnHangup(t *testing.T) {
	ev := &events{}
	logs := newLogSignal(ev)
	var calls atomic.Int32
	second, third := make(chan struct{}), make(chan struct{})
	reload := func(ctx context.Context) error {
		switch calls.Add(1) {
		case 1:
			return errors.New("rules.yaml: line 2: broken")
		case 2:
			close(second)
			return nil
		default:
			close(third)
			<-ctx.Done()
			ev.add("reload cancelled")
			return ctx.Err()
		}
	}
	stop := lifecycle.ReloadOnHangup(context.Background(), slog.New(slog.NewJSONHandler(logs, nil)), reload)
	defer stop()

	hangup(t)
	within(t, logs.seen(lifecycle.MsgReloadFailed), "a failed reload logged")
	hangup(t)
	within(t, second, "a second reload after a failed one")
	hangup(t)
	within(t, third, "a third reload")
	stop()
	ev.add("stop returned")
	stop() // a second call is harmless
	if got, want := ev.get(), []string{"log: " + lifecycle.MsgReloadFailed, "reload cancelled", "stop returned"}; !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q (the cancelled reload is not logged as a failure)", got, want)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("reload called %d times, want 3", n)
	}
}
