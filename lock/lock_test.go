package lock_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/lock"
	"github.com/karch-archive/karch/lock/locktest"
)

var quiet = slog.New(slog.NewJSONHandler(io.Discard, nil))

func TestLocalAcceptance(t *testing.T) {
	locktest.Acceptance(t, func(*testing.T) lock.Locker { return lock.NewLocal() })
}

func redisLocker(t *testing.T, ttl time.Duration) (*lock.Redis, *redis.Client) {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { client.Close() })
	l, err := lock.NewRedis(client, ttl, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return l, client
}

func TestRedisAcceptance(t *testing.T) {
	locktest.Acceptance(t, func(t *testing.T) lock.Locker {
		l, _ := redisLocker(t, 3*time.Second)
		return l
	})
}

// A lease renewed for several TTLs stays held.
func TestRedisRenews(t *testing.T) {
	l, client := redisLocker(t, 300*time.Millisecond)
	name := "karch-test:renew:" + t.Name() + time.Now().String()
	lease, err := l.Acquire(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release(context.Background())
	time.Sleep(time.Second)
	select {
	case <-lease.Done():
		t.Fatalf("the lease was lost while renewed: %v", context.Cause(lease.Ctx()))
	default:
	}
	if ttl := client.PTTL(context.Background(), name).Val(); ttl <= 0 {
		t.Fatalf("the key has no TTL left: %v", ttl)
	}
}

// A holder whose key was taken over learns it at its next renewal, and does not delete the
// new holder's key on release.
func TestRedisLostToAnotherHolder(t *testing.T) {
	l, client := redisLocker(t, 300*time.Millisecond)
	name := "karch-test:lost:" + time.Now().String()
	lease, err := l.Acquire(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	client.Set(context.Background(), name, "someone-else", time.Minute)
	select {
	case <-lease.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the lease was taken over and its context stayed alive")
	}
	if !errors.Is(context.Cause(lease.Ctx()), lock.ErrLost) {
		t.Fatalf("cause %v, want ErrLost", context.Cause(lease.Ctx()))
	}
	lease.Release(context.Background())
	if v := client.Get(context.Background(), name).Val(); v != "someone-else" {
		t.Fatalf("release removed the new holder's key: %q", v)
	}
}

// A holder that cannot reach Redis gives the lease up when it expires, not later.
func TestRedisUnreachableExpires(t *testing.T) {
	l, client := redisLocker(t, 500*time.Millisecond)
	lease, err := l.Acquire(context.Background(), "karch-test:unreachable:"+time.Now().String())
	if err != nil {
		t.Fatal(err)
	}
	acquired := time.Now()
	client.Close() // every renewal now fails
	select {
	case <-lease.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a lease that cannot be renewed stayed alive")
	}
	// A bound, not a speed target: a lease must not outlive its TTL by more than scheduling.
	if held := time.Since(acquired); held > 500*time.Millisecond+time.Second {
		t.Fatalf("lease context ended %s after acquisition; the TTL is 500ms", held)
	}
}

func TestNewRedisRejectsTinyTTL(t *testing.T) {
	if _, err := lock.NewRedis(redis.NewClient(&redis.Options{}), time.Millisecond, quiet); err == nil {
		t.Fatal("accepted a 1ms TTL")
	}
}
