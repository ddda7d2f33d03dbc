package lock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// Scripts that act only while the key still holds our token: a lease that expired and
// was taken by another holder must not be extended or deleted by the old one.
var (
	renewScript   = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)
	releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)
)

// Redis is a Locker on a Redis server: SET NX PX with a random token, renewed every TTL/3
// by a compare-and-pexpire script, released by compare-and-delete; the fencing token comes
// from INCR on a companion key.
type Redis struct {
	client redis.UniversalClient
	ttl    time.Duration
	log    *slog.Logger
}

var _ Locker = (*Redis)(nil)

// NewRedis returns a Locker whose leases expire ttl after their last renewal.
func NewRedis(client redis.UniversalClient, ttl time.Duration, log *slog.Logger) (*Redis, error) {
	if ttl < 30*time.Millisecond {
		return nil, fmt.Errorf("lock: ttl %s is too short to renew", ttl)
	}
	return &Redis{client: client, ttl: ttl, log: log}, nil
}

// Acquire takes name, or fails with ErrHeld.
func (r *Redis) Acquire(ctx context.Context, name string) (Lease, error) {
	token := newToken()
	start := time.Now()
	ok, err := r.client.SetNX(ctx, name, token, r.ttl).Result()
	if err != nil {
		return nil, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	if !ok {
		return nil, ErrHeld
	}
	fence, err := r.client.Incr(ctx, name+":fence").Result()
	if err != nil {
		_ = releaseScript.Run(context.WithoutCancel(ctx), r.client, []string{name}, token).Err()
		return nil, fmt.Errorf("acquire lease %s: fencing token: %w", name, err)
	}
	lctx, cancel := context.WithCancelCause(ctx)
	l := &redisLease{r: r, name: name, token: token, fence: fence, ctx: lctx, cancel: cancel, stopped: make(chan struct{})}
	go l.keep(start.Add(r.ttl))
	return l, nil
}

func newToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand never fails on Linux
	return hex.EncodeToString(b)
}

// ErrLost is the cause of a lease context cancelled because the lease was lost.
var ErrLost = errors.New("lock: lease lost")

type redisLease struct {
	r       *Redis
	name    string
	token   string
	fence   int64
	ctx     context.Context
	cancel  context.CancelCauseFunc
	stopped chan struct{}
}

func (l *redisLease) Ctx() context.Context  { return l.ctx }
func (l *redisLease) Done() <-chan struct{} { return l.ctx.Done() }
func (l *redisLease) Token() int64          { return l.fence }

// keep renews the lease every TTL/3 until its context ends. expires is when the lease
// lapses if no renewal succeeds; it is measured from before each request is sent, so a
// slow answer can only make the holder give up early, never late.
func (l *redisLease) keep(expires time.Time) {
	defer close(l.stopped)
	expiry := time.NewTimer(time.Until(expires))
	defer expiry.Stop()
	tick := time.NewTicker(l.r.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-expiry.C:
			l.lose("not renewed before it expired")
			return
		case <-tick.C:
		}
		sent := time.Now()
		ok, err := l.renew(expires)
		switch {
		case err != nil:
			l.r.log.Warn("lease renewal failed; retrying until it expires", "lease", l.name, "expires", expires, "err", err)
		case !ok:
			l.lose("another holder has it")
			return
		default:
			expires = sent.Add(l.r.ttl)
			expiry.Reset(time.Until(expires))
		}
	}
}

// renew extends the lease if the key still holds our token; the request gives up when the
// lease would have expired anyway.
func (l *redisLease) renew(expires time.Time) (bool, error) {
	ctx, cancel := context.WithDeadline(l.ctx, expires)
	defer cancel()
	n, err := renewScript.Run(ctx, l.r.client, []string{l.name}, l.token, l.r.ttl.Milliseconds()).Int64()
	return n == 1, err
}

func (l *redisLease) lose(why string) {
	l.r.log.Error("lease lost: stopping the work it covers", "lease", l.name, "fencing_token", l.fence, "reason", why)
	l.cancel(fmt.Errorf("%w: %s", ErrLost, why))
}

// Release stops renewal, waits for it, and deletes the key if it still holds our token.
func (l *redisLease) Release(ctx context.Context) error {
	l.cancel(nil)
	<-l.stopped
	if err := releaseScript.Run(ctx, l.r.client, []string{l.name}, l.token).Err(); err != nil {
		return fmt.Errorf("release lease %s: %w", l.name, err)
	}
	return nil
}
