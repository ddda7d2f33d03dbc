// Package lock gives the coordinator its lease: at most one coordinator works on a pipeline
// at a time, and each holder carries a fencing token that grows with every acquisition.
//
// The lease only prevents duplicate work. Correctness never depends on it (docs/DESIGN.md):
// a paused process can hold a lease it has already lost, so every write that matters is a
// conditional create that a second writer cannot overwrite.
package lock

import (
	"context"
	"errors"
)

// ErrHeld is returned by Acquire when another holder has the lease.
var ErrHeld = errors.New("lock: lease held by another holder")

// Locker hands out leases by name.
type Locker interface {
	// Acquire takes the lease name, or fails with ErrHeld at once when someone else has
	// it. The lease lives until Release, until ctx is done, or until it is lost.
	Acquire(ctx context.Context, name string) (Lease, error)
}

// Lease is a held lease. Its methods are safe for concurrent use.
type Lease interface {
	// Ctx is cancelled the moment the lease is lost, released, or can no longer be
	// renewed before it expires. Work done under the lease derives its context from it,
	// so losing the lease stops that work without further code.
	Ctx() context.Context
	// Done is Ctx().Done().
	Done() <-chan struct{}
	// Token is the fencing token: larger than the token of every earlier holder of the
	// same name.
	Token() int64
	// Release gives the lease up, if it is still ours, and waits for its renewal to stop.
	Release(ctx context.Context) error
}
