package coordinator

import (
	"fmt"
	"time"

	"github.com/karch-archive/karch/failure"

	"github.com/karch-archive/karch/archive"
)

// alignDown returns the start of the window that holds t. Windows divide a day, and the
// zero time is a UTC midnight, so Truncate aligns them to UTC midnights.
func alignDown(t time.Time, w time.Duration) time.Time { return t.UTC().Truncate(w) }

// dueWindows returns the windows from next on whose end plus lateness has passed at now,
// oldest first, at most max.
func dueWindows(next time.Time, w, lateness time.Duration, now time.Time, max int) []archive.Window {
	var out []archive.Window
	for s := alignDown(next, w); len(out) < max && !s.Add(w+lateness).After(now); s = s.Add(w) {
		out = append(out, archive.Window{Start: s, End: s.Add(w)})
	}
	return out
}

// checkAligned insists that the chain continues on a window boundary: after a change of
// the window length, the newest manifest may end where no window of the new length starts,
// and restarting the chain by time there would leave a gap or an overlap.
func (c *coordinator) checkAligned(next time.Time) error {
	if alignDown(next, c.cfg.Window).Equal(next) {
		return nil
	}
	boundary := alignDown(next, c.cfg.Window).Add(c.cfg.Window)
	return failure.Permanent(fmt.Errorf("%w: window: the chain ends at %s, which is not a boundary of %s windows; "+
		"keep the previous window length until the chain reaches %s, then change it",
		ErrConfig, next.Format(time.RFC3339), c.cfg.Window, boundary.Format(time.RFC3339)))
}

// clock is the time that decides which windows are due: now, or, with Until set, no later
// than the moment the window that ends at Until becomes due.
func (c *coordinator) clock() time.Time {
	now := c.deps.Now()
	if c.cfg.Until.IsZero() {
		return now
	}
	if limit := alignDown(c.cfg.Until, c.cfg.Window).Add(c.cfg.Lateness); limit.Before(now) {
		return limit
	}
	return now
}

// latestDue is where a pipeline without a start begins: the newest window that is due.
func latestDue(w, lateness time.Duration, now time.Time) time.Time {
	return alignDown(now.Add(-lateness), w).Add(-w)
}
