// Package locktest is the acceptance suite that every lock.Locker passes.
package locktest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/karch-archive/karch/lock"
)

// NewLockers returns n Lockers over one shared backend, as n coordinator processes have
// them: n clients of one Redis server, or one in-process Locker n times.
type NewLockers func(t *testing.T, n int) []lock.Locker

// lockers is how many Lockers each test of the suite gets.
const lockers = 8

// Acceptance runs the suite against the Lockers from newLockers.
func Acceptance(t *testing.T, newLockers NewLockers) {
	for _, tc := range []struct {
		name string
		test func(t *testing.T, ls []lock.Locker, name string)
	}{
		{"ExclusiveUntilReleased", testExclusive},
		{"FencingTokensGrow", testFencing},
		{"TokensFollowAcquisitionOrder", testTokenOrder},
		{"NamesAreIndependent", testIndependent},
		{"OneOfManyWins", testConcurrent},
		{"ParentContextEndsLease", testParentCancel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.test(t, newLockers(t, lockers), fmt.Sprintf("karch-test:%s:%d", t.Name(), time.Now().UnixNano()))
		})
	}
}

func acquire(t *testing.T, l lock.Locker, name string) lock.Lease {
	t.Helper()
	lease, err := l.Acquire(context.Background(), name)
	if err != nil {
		t.Fatalf("acquire %s: %v", name, err)
	}
	return lease
}

func testExclusive(t *testing.T, ls []lock.Locker, name string) {
	lease := acquire(t, ls[0], name)
	for _, l := range ls {
		if _, err := l.Acquire(context.Background(), name); !errors.Is(err, lock.ErrHeld) {
			t.Fatalf("second acquire: %v, want ErrHeld", err)
		}
	}
	select {
	case <-lease.Done():
		t.Fatal("a held lease is done")
	default:
	}
	if err := lease.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lease.Ctx().Done():
	default:
		t.Fatal("a released lease's context is not done")
	}
	acquire(t, ls[1], name).Release(context.Background())
}

// testFencing acquires and releases in turn through every Locker: each token is larger than
// the one before, whoever held it.
func testFencing(t *testing.T, ls []lock.Locker, name string) {
	var last int64
	for i := range 3 * len(ls) {
		lease := acquire(t, ls[i%len(ls)], name)
		if lease.Token() <= last {
			t.Fatalf("token %d after %d: fencing tokens must grow", lease.Token(), last)
		}
		last = lease.Token()
		lease.Release(context.Background())
	}
}

// testTokenOrder has several holders contend for the lease over many acquire-release
// cycles: in the order in which they held it, their tokens strictly increase.
func testTokenOrder(t *testing.T, ls []lock.Locker, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h := &history{want: 60}
	var g errgroup.Group
	for i, l := range ls[:4] {
		g.Go(func() error { return h.contend(ctx, l, i, name) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	holders := map[int]bool{}
	for i, turn := range h.turns {
		holders[turn.holder] = true
		if i > 0 && turn.token <= h.turns[i-1].token {
			t.Fatalf("turn %d: holder %d has token %d after holder %d's %d", i, turn.holder, turn.token, h.turns[i-1].holder, h.turns[i-1].token)
		}
	}
	if len(holders) < 2 {
		t.Fatalf("one holder took all %d turns: the holders did not interleave", len(h.turns))
	}
}

// history records who held a lease, in the order they held it.
type history struct {
	mu    sync.Mutex
	want  int
	turns []turn
}

type turn struct {
	holder int
	token  int64
}

func (h *history) held(holder int, token int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.turns = append(h.turns, turn{holder, token})
}

func (h *history) done() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.turns) >= h.want
}

// contend takes name through l whenever it is free, records the turn while holding it, and
// gives it up, until the history has all the turns it wants.
func (h *history) contend(ctx context.Context, l lock.Locker, holder int, name string) error {
	retry := time.NewTicker(time.Millisecond)
	defer retry.Stop()
	for !h.done() {
		lease, err := l.Acquire(ctx, name)
		switch {
		case err == nil:
			h.held(holder, lease.Token())
			if err := lease.Release(context.Background()); err != nil {
				return err
			}
		case !errors.Is(err, lock.ErrHeld):
			return fmt.Errorf("holder %d: %w", holder, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("holder %d: %w", holder, ctx.Err())
		case <-retry.C:
		}
	}
	return nil
}

func testIndependent(t *testing.T, ls []lock.Locker, name string) {
	a := acquire(t, ls[0], name+":a")
	b := acquire(t, ls[1], name+":b")
	a.Release(context.Background())
	b.Release(context.Background())
}

func testConcurrent(t *testing.T, ls []lock.Locker, name string) {
	var wg sync.WaitGroup
	leases := make([]lock.Lease, len(ls))
	errs := make([]error, len(ls))
	for i, l := range ls {
		wg.Go(func() { leases[i], errs[i] = l.Acquire(context.Background(), name) })
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
			defer leases[i].Release(context.Background())
		case !errors.Is(err, lock.ErrHeld):
			t.Fatalf("a losing acquire: %v, want ErrHeld", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d acquires won, want 1", won)
	}
}

func testParentCancel(t *testing.T, ls []lock.Locker, name string) {
	ctx, cancel := context.WithCancel(context.Background())
	lease, err := ls[0].Acquire(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-lease.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the lease outlived its parent context")
	}
	lease.Release(context.Background())
	acquire(t, ls[1], name).Release(context.Background())
}
