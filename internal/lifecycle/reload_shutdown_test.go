package lifecycle_test

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/lifecycle"
)

// TestHangupDuringShutdown: the daemons call stop after Serve
// returned and before they close the store and the keys. stop gives
// SIGHUP its default action back, so a SIGHUP in that window (logrotate's
// postrotate, a config push) kills the process before the deferred
// closes run and it exits by signal, where the copies it replaced kept
// catching SIGHUP until the function returned. The child calls stop, gets
// SIGHUP while "closing", and must still exit 0.
func TestHangupDuringShutdown(t *testing.T) {
	if os.Getenv("LIFECYCLE_HUP_CHILD") == "1" {
		stop := lifecycle.ReloadOnHangup(context.Background(), slog.New(slog.DiscardHandler), func(context.Context) error { return nil })
		stop() // Serve returned
		// svc.Close(), keys.Close(): the signal arrives meanwhile.
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			os.Exit(3)
		}
		time.Sleep(200 * time.Millisecond) // the closes' work
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHangupDuringShutdown$")
	cmd.Env = append(os.Environ(), "LIFECYCLE_HUP_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("a SIGHUP during the shutdown ended the process: %v (%s)", err, out)
	}
}
