// Package lifecycle runs a daemon's HTTP servers and background work, and
// ends them in order: stop accepting, drain the requests in flight, stop
// the background work, and only then return, so that what they all use
// (the database, the keys on the HSM) can be closed by the caller without
// a request or a signature still in progress.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Server is one HTTP server and the listener it serves. With a TLSConfig
// on the server, it serves TLS over the listener (ServeTLS); otherwise the
// listener is served as it is (it may already be a TLS listener).
type Server struct {
	Name     string
	Listener net.Listener
	HTTP     *http.Server
}

// Task is background work: Run MUST return soon after its context ends.
type Task struct {
	Name string
	Run  func(ctx context.Context)
}

// Log messages that mark the steps of a shutdown (tests wait for them).
const (
	MsgDraining    = "shutting down: draining requests in flight"
	MsgRefusing    = "listener closed: new connections are refused"
	MsgTaskStopped = "background work stopped"
	MsgStopped     = "stopped"
	MsgAbandoned   = "requests that did not end after being cut off were abandoned"
)

// Run serves every server and runs every task until ctx ends or a server
// fails. Then, in order: every server stops accepting and its requests in
// flight are given drain to finish (those still running then have their
// connections closed and are waited for); then the tasks are told to stop
// and waited for. Background work thus goes on while requests drain (they
// may need it), and nothing is left running when Run returns — except a
// request that does not end within another drain after it was cut off (a
// call to a hung HSM that ignores its context): it is logged as abandoned
// rather than waited for without end. It returns the first server's
// failure, or nil after ctx ended.
func Run(ctx context.Context, log *slog.Logger, drain time.Duration, servers []Server, tasks ...Task) error {
	reqs := inFlight{running: map[string]int{}}
	for _, s := range servers {
		s.HTTP.Handler = reqs.track(s.Name, s.HTTP.Handler)
		// Shutdown closes the listener before it calls these.
		s.HTTP.RegisterOnShutdown(func() { log.Info(MsgRefusing, "listener", s.Name) })
	}
	// The tasks' context outlives ctx until the requests are drained.
	bg, stopTasks := context.WithCancel(context.WithoutCancel(ctx))
	defer stopTasks()
	var running sync.WaitGroup
	for _, t := range tasks {
		running.Go(func() {
			t.Run(bg)
			log.Info(MsgTaskStopped, "task", t.Name)
		})
	}

	g, gctx := errgroup.WithContext(ctx)
	for _, s := range servers {
		g.Go(func() error {
			var err error
			if s.HTTP.TLSConfig != nil {
				err = s.HTTP.ServeTLS(s.Listener, "", "")
			} else {
				err = s.HTTP.Serve(s.Listener)
			}
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("%s: %w", s.Name, err)
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		log.Info(MsgDraining, "within", drain.String())
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
		defer cancel()
		// All at once: each stops accepting at the start of its Shutdown.
		var wg sync.WaitGroup
		for _, s := range servers {
			wg.Go(func() {
				if err := s.HTTP.Shutdown(shutdown); err != nil {
					log.Warn("requests still running after the drain were cut off", "listener", s.Name, "err", err)
					s.HTTP.Close()
				}
			})
		}
		wg.Wait()
		return nil
	})
	err := g.Wait()
	// Requests cut off at the end of the drain end as soon as they notice
	// their context is done; none may outlive Run.
	if left := reqs.wait(drain); len(left) > 0 {
		log.Error(MsgAbandoned, "running", left)
	}
	stopTasks()
	running.Wait()
	log.Info(MsgStopped)
	return err
}

// inFlight counts the requests being handled, so that Run can wait for
// those whose connections it closed.
type inFlight struct {
	mu      sync.Mutex
	stopped bool
	wg      sync.WaitGroup
	running map[string]int // by server name
}

func (f *inFlight) track(server string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		if f.stopped {
			f.mu.Unlock()
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		f.wg.Add(1)
		f.running[server]++
		f.mu.Unlock()
		defer func() {
			f.mu.Lock()
			f.running[server]--
			f.mu.Unlock()
			f.wg.Done()
		}()
		h.ServeHTTP(w, r)
	})
}

// wait refuses requests from now on and waits for those in flight, for
// at most limit. It returns how many are still running, by server.
func (f *inFlight) wait(limit time.Duration) map[string]int {
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	left := map[string]int{}
	for s, n := range f.running {
		if n > 0 {
			left[s] = n
		}
	}
	return left
}
