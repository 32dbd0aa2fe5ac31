package revocation

import "time"

// AwaitWaiting returns true once n checks wait for an OCSP answer, or
// false if that has not happened within timeout (a bound for a failing
// test, not a wait the test relies on).
func (c *Checker) AwaitWaiting(n int, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		ok, changed := c.waiting.is(n)
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-deadline:
			return false
		}
	}
}
