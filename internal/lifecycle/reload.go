package lifecycle

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// MsgReloadFailed is logged when a reload on SIGHUP failed; what failed to
// load is in err, and what was running stays in force.
const MsgReloadFailed = "SIGHUP: reload failed"

// ReloadOnHangup calls reload each time the process receives SIGHUP, one
// call at a time, until ctx ends or stop is called. A failed reload is
// logged (MsgReloadFailed) and the daemon goes on with what it had.
//
// stop cancels a reload in progress, waits for it to return and has the
// process ignore SIGHUP from then on: once it has returned, what reload
// uses (the keys, the store) may be closed. A daemon calls it after Serve
// returned; SIGHUP's default action would end the process before it has
// closed its store and keys (a log rotation's SIGHUP during a shutdown),
// and a daemon stopping has nothing to reload.
func ReloadOnHangup(ctx context.Context, log *slog.Logger, reload func(context.Context) error) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	var done sync.WaitGroup
	done.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				// A reload cut short by stop is no failure to report.
				if err := reload(ctx); err != nil && ctx.Err() == nil {
					log.Error(MsgReloadFailed, "err", err)
				}
			}
		}
	})
	return sync.OnceFunc(func() {
		cancel()
		done.Wait()
		signal.Ignore(syscall.SIGHUP)
		signal.Stop(hup)
	})
}
