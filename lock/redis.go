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

	"github.com/karch-archive/karch/failure"
)

// acquireScript takes the lease and its fencing token in one atomic step: SET NX PX of the
// lease key (KEYS[1]) to our random token, and only if that succeeds, INCR of the companion
// key (KEYS[2]), whose value it returns; nil when the lease is held. Two separate calls would
// let a holder that pauses between them (or crashes) take its token after a later holder
// took its own, so tokens would not grow with acquisitions.
var acquireScript = redis.NewScript(`if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then return redis.call("INCR", KEYS[2]) end return false`)

// Scripts that act only while the key still holds our token: a lease that expired and
// was taken by another holder must not be extended or deleted by the old one.
var (
	renewScript   = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)
	releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)
)

// Redis is a Locker on a Redis server: SET NX PX with a random token, renewed every TTL/3
// by a compare-and-pexpire script, released by compare-and-delete; the fencing token comes
// from INCR on the companion key name+":fence", in the same script as the SET. On Redis
// Cluster both keys must hash to one slot: give the lease name a hash tag ("{karch:x}").
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
	fence, err := acquireScript.Run(ctx, r.client, []string{name, name + ":fence"}, token, r.ttl.Milliseconds()).Int64()
	if errors.Is(err, redis.Nil) {
		return nil, ErrHeld
	}
	if err != nil {
		r.abandon(ctx, name, token)
		return nil, classify(fmt.Errorf("acquire lease %s: %w", name, err))
	}
	lctx, cancel := context.WithCancelCause(ctx)
	l := &redisLease{r: r, name: name, token: token, fence: fence, ctx: lctx, cancel: cancel, stopped: make(chan struct{})}
	go l.keep(start.Add(r.ttl))
	return l, nil
}

// abandon deletes name if it holds token: an acquisition whose answer was lost may still
// have taken the lease, and nobody would renew or release it.
func (r *Redis) abandon(ctx context.Context, name, token string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.ttl)
	defer cancel()
	_ = releaseScript.Run(ctx, r.client, []string{name}, token).Err()
}

// classify makes the server's refusals permanent: a wrong password (WRONGPASS, NOAUTH) or
// an ACL user without a command the lease runs (NOPERM, which names it) is fixed by an
// operator, not by retrying; everything else (the network, a restart) may pass.
func classify(err error) error {
	if redis.IsAuthError(err) || redis.IsPermissionError(err) || failure.IsTLSRefusal(err) {
		return failure.Permanent(err)
	}
	return err
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
