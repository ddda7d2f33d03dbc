package lock

import (
	"context"
	"sync"
)

// Local is an in-process Locker, for a coordinator run without Redis: it keeps two runs in
// one process apart, and nothing more.
type Local struct {
	mu     sync.Mutex
	held   map[string]*localLease
	tokens map[string]int64
}

var _ Locker = (*Local)(nil)

// NewLocal returns an empty in-process Locker.
func NewLocal() *Local {
	return &Local{held: map[string]*localLease{}, tokens: map[string]int64{}}
}

// Acquire takes name if nobody in this process holds it.
func (l *Local) Acquire(ctx context.Context, name string) (Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.held[name]; ok {
		return nil, ErrHeld
	}
	l.tokens[name]++
	lctx, cancel := context.WithCancel(ctx)
	lease := &localLease{ctx: lctx, token: l.tokens[name]}
	lease.release = func() {
		cancel()
		l.drop(name, lease)
	}
	l.held[name] = lease
	// A lease whose parent context ends is given up as if released.
	context.AfterFunc(lctx, lease.release)
	return lease, nil
}

// drop frees name if lease still holds it.
func (l *Local) drop(name string, lease *localLease) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[name] == lease {
		delete(l.held, name)
	}
}

type localLease struct {
	ctx     context.Context
	release func()
	token   int64
}

func (l *localLease) Ctx() context.Context  { return l.ctx }
func (l *localLease) Done() <-chan struct{} { return l.ctx.Done() }
func (l *localLease) Token() int64          { return l.token }

// Release cancels the lease's context and frees the name before it returns.
func (l *localLease) Release(context.Context) error {
	l.release()
	return nil
}
