package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/failure"
)

// errClaimed is returned when another window has claimed the place in the chain that a
// window would take.
var errClaimed = errors.New("coordinator: the chain is continued there by another window")

// slot names the place in the chain that the window after prev takes: after prev's window,
// or, for a chain's first window, before the committed window a backfill ends at, or the
// pipeline's first.
func (c *coordinator) slot(prev *stored) string {
	switch {
	case prev != nil:
		return archive.SlotAfter(prev.Window)
	case c.bound != nil:
		return archive.SlotFirstBefore(c.boundWindow)
	default:
		return archive.SlotFirst
	}
}

// readClaim reads the claim of slot, or nil when there is none.
func (c *coordinator) readClaim(ctx context.Context, slot string) (*archive.Claim, error) {
	key := archive.ClaimKey(c.cfg.Pipeline, slot)
	data, err := blob.ReadAll(ctx, c.deps.Bucket, key)
	if blob.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read claim %s: %w", key, err)
	}
	cl, err := archive.DecodeClaim(data)
	if err != nil {
		return nil, failure.Permanent(fmt.Errorf("read claim %s: %w", key, err))
	}
	return cl, nil
}

// claim records that w continues the chain after prev, unless the claim exists already. A
// claim for another window is errClaimed: that window, not w, is the chain's next, and w
// must never be committed.
func (c *coordinator) claim(ctx context.Context, w archive.Window, prev *stored) error {
	slot := c.slot(prev)
	key := archive.ClaimKey(c.cfg.Pipeline, slot)
	data, err := json.MarshalIndent(archive.Claim{Format: archive.ClaimFormat, Pipeline: c.cfg.Pipeline, Window: w, RunID: c.runID}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode claim: %w", err)
	}
	_, err = c.deps.Bucket.Put(ctx, key, bytes.NewReader(append(data, '\n')), blob.PutOptions{IfAbsent: true, ContentType: "application/json"})
	if err == nil {
		return nil
	}
	if !blob.IsExists(err) {
		return fmt.Errorf("put claim %s: %w", key, err)
	}
	theirs, err := c.readClaim(ctx, slot)
	if err != nil {
		return err
	}
	return c.sameWindow(key, theirs, w)
}

// sameWindow insists that the claim at key names w.
func (c *coordinator) sameWindow(key string, cl *archive.Claim, w archive.Window) error {
	if cl.Window.Start.Equal(w.Start) && cl.Window.End.Equal(w.End) {
		return nil
	}
	return fmt.Errorf("%w: %s names window %s-%s (run %s), not %s-%s: a coordinator with other settings (another window length) continues the chain there",
		errClaimed, key, cl.Window.Start.Format(time.RFC3339), cl.Window.End.Format(time.RFC3339), cl.RunID,
		w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339))
}
