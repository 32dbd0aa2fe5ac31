package trustd

import (
	"context"
	"time"
)

// SignARLWith is signARL, for tests that give it their own audit recorder.
var SignARLWith = signARL

// KeepCredentials is the credential-renewal loop with the test's timer.
func (s *Service) KeepCredentials(ctx context.Context, after func(time.Duration) <-chan time.Time) {
	s.keepCredentials(ctx, after)
}

// The renewal loop's schedule.
const (
	RenewEvery = renewEvery
	RenewRetry = renewRetry
)
