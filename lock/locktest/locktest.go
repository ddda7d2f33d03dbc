// Package locktest is the acceptance suite that every lock.Locker passes.
package locktest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/karch-archive/karch/lock"
)

// Acceptance runs the suite against a Locker from newLocker.
func Acceptance(t *testing.T, newLocker func(t *testing.T) lock.Locker) {
	for _, tc := range []struct {
		name string
		test func(t *testing.T, l lock.Locker, name string)
	}{
		{"ExclusiveUntilReleased", testExclusive},
		{"FencingTokensGrow", testFencing},
		{"NamesAreIndependent", testIndependent},
		{"OneOfManyWins", testConcurrent},
		{"ParentContextEndsLease", testParentCancel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.test(t, newLocker(t), fmt.Sprintf("karch-test:%s:%d", t.Name(), time.Now().UnixNano()))
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

func testExclusive(t *testing.T, l lock.Locker, name string) {
	lease := acquire(t, l, name)
	if _, err := l.Acquire(context.Background(), name); !errors.Is(err, lock.ErrHeld) {
		t.Fatalf("second acquire: %v, want ErrHeld", err)
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
	acquire(t, l, name).Release(context.Background())
}

func testFencing(t *testing.T, l lock.Locker, name string) {
	var last int64
	for range 3 {
		lease := acquire(t, l, name)
		if lease.Token() <= last {
			t.Fatalf("token %d after %d: fencing tokens must grow", lease.Token(), last)
		}
		last = lease.Token()
		lease.Release(context.Background())
	}
}

func testIndependent(t *testing.T, l lock.Locker, name string) {
	a := acquire(t, l, name+":a")
	b := acquire(t, l, name+":b")
	a.Release(context.Background())
	b.Release(context.Background())
}

func testConcurrent(t *testing.T, l lock.Locker, name string) {
	var wg sync.WaitGroup
	leases := make([]lock.Lease, 8)
	errs := make([]error, 8)
	for i := range leases {
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

func testParentCancel(t *testing.T, l lock.Locker, name string) {
	ctx, cancel := context.WithCancel(context.Background())
	lease, err := l.Acquire(ctx, name)
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
	acquire(t, l, name).Release(context.Background())
}
