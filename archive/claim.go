package archive

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ClaimFormat is the format tag of a chain claim.
const ClaimFormat = "karch.claim/v1"

// ErrInvalidClaim marks a claim that does not decode or validate.
var ErrInvalidClaim = errors.New("archive: invalid claim")

// Claim records which window continues the chain at one place in it (docs/FORMAT.md,
// "Chain claims"). It is created once, only if absent, before the window's plan, so that
// two coordinators whose settings differ (a window length changed by a rollout while an old
// coordinator still runs) can never both plan, and so commit, a window after the same
// manifest: the second finds the claim and follows it.
type Claim struct {
	Format   string `json:"format"`
	Pipeline string `json:"pipeline"`
	// Window is the window that continues the chain there; its folder holds the plan.
	Window Window `json:"window"`
	RunID  string `json:"run_id"`
}

// ClaimKey returns the key of the claim of slot, relative to the destination prefix:
// "<pipeline>/chain/<slot>.json", outside every dt= folder.
func ClaimKey(pipeline, slot string) string { return pipeline + "/chain/" + slot + ".json" }

// IsClaimKey reports whether key is a chain claim's.
func IsClaimKey(key string) bool {
	pipeline, rest, ok := strings.Cut(key, "/chain/")
	return ok && pipeline != "" && !strings.Contains(pipeline, "/") && !strings.Contains(rest, "/") && strings.HasSuffix(rest, ".json")
}

// SlotFirst is the slot of a pipeline's first window.
const SlotFirst = "first"

// SlotAfter is the slot of the window that follows the committed window w.
func SlotAfter(w Window) string { return "after-" + WindowID(w) }

// SlotFirstBefore is the slot of the first window of a backfill that ends where the
// committed window w begins: the chain's new first window.
func SlotFirstBefore(w Window) string { return "first-before-" + WindowID(w) }

// WindowID names a window in keys outside its folder: its start as YYYYMMDDTHHMMZ and its
// length as in its folder's name ("20261123T0200Z-1h").
func WindowID(w Window) string {
	return w.Start.UTC().Format("20060102T1504Z") + "-" + formatLength(w.End.Sub(w.Start))
}

// DecodeClaim decodes and validates a claim. Unknown fields are errors: a claim directs
// which window is archived next.
func DecodeClaim(data []byte) (*Claim, error) {
	var c Claim
	if err := decodeStrict(data, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidClaim, err)
	}
	switch {
	case c.Format != ClaimFormat:
		return nil, fmt.Errorf("%w: format %q, want %q", ErrInvalidClaim, c.Format, ClaimFormat)
	case c.Pipeline == "":
		return nil, fmt.Errorf("%w: no pipeline", ErrInvalidClaim)
	case !c.Window.End.After(c.Window.Start) || c.Window.Start.UTC().Truncate(time.Minute) != c.Window.Start.UTC():
		return nil, fmt.Errorf("%w: window %s-%s", ErrInvalidClaim, c.Window.Start.Format(time.RFC3339), c.Window.End.Format(time.RFC3339))
	}
	return &c, nil
}
