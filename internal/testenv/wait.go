package testenv

import (
	"testing"
	"time"
)

// WaitFor calls cond every few milliseconds until it holds, and fails the test, naming what it
// waited for, once timeout has passed: the polls that tests use instead of sleeps.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}
