package lock_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/lock"
	"github.com/karch-archive/karch/lock/locktest"
)

var quiet = slog.New(slog.NewJSONHandler(io.Discard, nil))

// TestLocalAcceptance shares one in-process Locker among the suite's holders: Local keeps
// the coordinators of one process apart, and nothing more.
func TestLocalAcceptance(t *testing.T) {
	locktest.Acceptance(t, func(_ *testing.T, n int) []lock.Locker {
		return slices.Repeat([]lock.Locker{lock.NewLocal()}, n)
	})
}

func redisLocker(t *testing.T, ttl time.Duration, hooks ...redis.Hook) (*lock.Redis, *redis.Client) {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { client.Close() })
	for _, h := range hooks {
		client.AddHook(h)
	}
	l, err := lock.NewRedis(client, ttl, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return l, client
}

// TestRedisAcceptance gives each holder of the suite its own client of the Redis server.
func TestRedisAcceptance(t *testing.T) {
	locktest.Acceptance(t, func(t *testing.T, n int) []lock.Locker {
		ls := make([]lock.Locker, n)
		for i := range ls {
			ls[i], _ = redisLocker(t, 3*time.Second)
		}
		return ls
	})
}

// A lease renewed for several TTLs stays held: the key's remaining TTL goes back up at
// each renewal, nine times, three TTLs' worth, and the lease is never done meanwhile.
func TestRedisRenews(t *testing.T) {
	l, client := redisLocker(t, 300*time.Millisecond)
	name := "karch-test:renew:" + time.Now().String()
	lease, err := l.Acquire(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release(context.Background())
	renewals, last := 0, time.Duration(0)
	testenv.WaitFor(t, "nine renewals", 10*time.Second, func() bool {
		select {
		case <-lease.Done():
			t.Fatalf("the lease was lost while renewed: %v", context.Cause(lease.Ctx()))
		default:
		}
		ttl := client.PTTL(context.Background(), name).Val()
		if ttl <= 0 {
			t.Fatalf("the key has no TTL left: %v", ttl)
		}
		if ttl > last && last > 0 {
			renewals++
		}
		last = ttl
		return renewals >= 9
	})
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

// An acquisition that finds the lease held takes no fencing token: the companion key moves
// only with acquisitions that succeed.
func TestRedisHeldTakesNoToken(t *testing.T) {
	holder, client := redisLocker(t, 3*time.Second)
	other, _ := redisLocker(t, 3*time.Second)
	name := "karch-test:held:" + time.Now().String()
	lease, err := holder.Acquire(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := other.Acquire(context.Background(), name); !errors.Is(err, lock.ErrHeld) {
			t.Fatalf("acquire of a held lease: %v, want ErrHeld", err)
		}
	}
	if fence := client.Get(context.Background(), name+":fence").Val(); fence != strconv.FormatInt(lease.Token(), 10) {
		t.Fatalf("the fencing counter is %s after failed acquisitions; the holder's token is %d", fence, lease.Token())
	}
	lease.Release(context.Background())
	next, err := other.Acquire(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Release(context.Background())
	if next.Token() != lease.Token()+1 {
		t.Fatalf("token %d after %d and five failed acquisitions, want %d", next.Token(), lease.Token(), lease.Token()+1)
	}
}

// A holder that pauses right after its acquisition reached Redis, long enough for the lease
// to expire and a second holder to take it, still has a token below the second holder's:
// the token is taken in the same step as the lease, so tokens follow the order of
// acquisition however the calls interleave.
func TestRedisTokenTakenWithTheLease(t *testing.T) {
	name := "karch-test:atomic:" + time.Now().String()
	pause := &pauseAfter{key: name, reached: make(chan struct{}), resume: make(chan struct{})}
	first, _ := redisLocker(t, 100*time.Millisecond, pause)
	second, client := redisLocker(t, 100*time.Millisecond) // the first client is paused
	var lease lock.Lease
	var err error
	acquired := make(chan struct{})
	go func() {
		defer close(acquired)
		lease, err = first.Acquire(context.Background(), name)
	}()
	select {
	case <-pause.reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the first acquisition never reached Redis")
	}
	testenv.WaitFor(t, "the first lease to expire", 10*time.Second, func() bool { return client.Exists(context.Background(), name).Val() == 0 })
	later, lerr := second.Acquire(context.Background(), name)
	close(pause.resume)
	<-acquired
	if lerr != nil || err != nil {
		t.Fatalf("the second acquisition: %v; the first: %v", lerr, err)
	}
	defer later.Release(context.Background())
	defer lease.Release(context.Background())
	if lease.Token() >= later.Token() {
		t.Fatalf("the first holder has token %d, the later one %d: tokens must grow with acquisitions", lease.Token(), later.Token())
	}
}

// pauseAfter is a go-redis hook that, after the first successful command naming key,
// signals reached and blocks until resume is closed: a process paused between its calls.
type pauseAfter struct {
	key     string
	once    sync.Once
	reached chan struct{}
	resume  chan struct{}
}

func (p *pauseAfter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (p *pauseAfter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (p *pauseAfter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err == nil && slices.Contains(cmd.Args(), any(p.key)) {
			p.once.Do(func() {
				close(p.reached)
				<-p.resume
			})
		}
		return err
	}
}

func TestNewRedisRejectsTinyTTL(t *testing.T) {
	if _, err := lock.NewRedis(redis.NewClient(&redis.Options{}), time.Millisecond, quiet); err == nil {
		t.Fatal("accepted a 1ms TTL")
	}
}

// leaseRules are the lease's commands on its keys.
var leaseRules = append([]string{"~karch-test:*"}, testenv.LeaseCommands...)

func aclLocker(t *testing.T, user, password string, tlsConfig *tls.Config) *lock.Redis {
	t.Helper()
	addr := testenv.Redis(t)
	if tlsConfig != nil {
		addr = testenv.RedisTLS(t)
	}
	client := redis.NewClient(&redis.Options{Addr: addr, Username: user, Password: password, TLSConfig: tlsConfig})
	t.Cleanup(func() { client.Close() })
	l, err := lock.NewRedis(client, 3*time.Second, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// redisTLS trusts caFile, and presents the test client certificate when mutual.
func redisTLS(t *testing.T, caFile string, mutual bool) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	c := &tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}
	c.RootCAs.AppendCertsFromPEM(pem)
	if mutual {
		files := testenv.TLS(t)
		pair, err := tls.LoadX509KeyPair(files.Cert, files.Key)
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c
}

// The acceptance suite over TLS with a client certificate, as an ACL user that may run only
// the lease's commands.
func TestRedisAcceptanceLeastPrivilege(t *testing.T) {
	user, password := testenv.RedisUser(t, leaseRules...)
	tlsConfig := redisTLS(t, testenv.TLS(t).CA, true)
	locktest.Acceptance(t, func(t *testing.T, n int) []lock.Locker {
		ls := make([]lock.Locker, n)
		for i := range ls {
			ls[i] = aclLocker(t, user, password, tlsConfig)
		}
		return ls
	})
}

// A wrong password, a user without EVAL and a server whose certificate no trusted CA signed
// are refused for good (exit 3), with the reason, which names the missing command.
func TestRedisRefusalsArePermanent(t *testing.T) {
	user, password := testenv.RedisUser(t, leaseRules...)
	noEval, noEvalPassword := testenv.RedisUser(t, slices.DeleteFunc(slices.Clone(leaseRules), func(r string) bool { return r == "+eval" || r == "+evalsha" })...)
	ca := testenv.TLS(t).CA
	for _, tc := range []struct {
		name, user, password, want string
		tls                        *tls.Config
	}{
		{"wrong password", user, password + "-not", "WRONGPASS", nil},
		{"no EVAL", noEval, noEvalPassword, "NOPERM", nil},
		{"no EVAL over TLS", noEval, noEvalPassword, "NOPERM", redisTLS(t, ca, false)},
		{"unknown CA", user, password, "certificate signed by unknown authority", redisTLS(t, testenv.StrangerCA(t), false)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := aclLocker(t, tc.user, tc.password, tc.tls).Acquire(context.Background(), "karch-test:refused:"+t.Name())
			if !failure.IsPermanent(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Acquire: %v; want a permanent error with %s", err, tc.want)
			}
		})
	}
}
