// Package faults holds the fault injectors of the chaos harness: an HTTP proxy in front of
// S3 (S3Proxy) and a TCP proxy for Kafka and Redis connections (TCPProxy).
//
// Every random choice is drawn from a math/rand/v2 generator seeded by the caller and guarded
// by a mutex, so that a failing seed replays: the same seed and the same order of requests
// make the same choices. Every fault that is actually applied is recorded as an Event, so the
// harness can report which faults hit.
//
// Both proxies listen on 127.0.0.1 only.
package faults

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// ErrNotLoopback is returned for a listen address that is not on 127.0.0.1: the proxies
// must never be reachable from outside the machine.
var ErrNotLoopback = errors.New("faults: listen address is not 127.0.0.1")

// Event is one fault that was applied.
type Event struct {
	Time time.Time
	// Kind names the fault, such as "s3.apply-then-drop" or "tcp.reset-peer".
	Kind string
	// Detail says where it hit: the request or the proxy and its connections.
	Detail string
}

// String shows the event on one line, for a report.
func (e Event) String() string {
	return fmt.Sprintf("%s %s %s", e.Time.Format("15:04:05.000"), e.Kind, e.Detail)
}

// events is an append-only log of Events, safe for concurrent use.
type events struct {
	mu   sync.Mutex
	list []Event
}

func (l *events) add(kind, detail string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.list = append(l.list, Event{Time: time.Now(), Kind: kind, Detail: detail})
}

func (l *events) all() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.list...)
}

// dice is a seeded random source, safe for concurrent use.
type dice struct {
	mu  sync.Mutex
	rng *rand.Rand
}

func newDice(seed uint64) *dice {
	// The second PCG word only has to differ from the first; any constant does.
	return &dice{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// float returns a number in [0, 1).
func (d *dice) float() float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rng.Float64()
}

// jitter returns a duration uniformly in [-j, +j].
func (d *dice) jitter(j time.Duration) time.Duration {
	if j <= 0 {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return time.Duration(d.rng.Int64N(int64(2*j)+1)) - j
}

// checkLoopback accepts host:port addresses whose host is 127.0.0.1.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("faults: listen address %q: %w", addr, err)
	}
	if host != "127.0.0.1" {
		return fmt.Errorf("%w: %q", ErrNotLoopback, addr)
	}
	return nil
}

// reset closes conn with an RST rather than a FIN (SO_LINGER 0), so that the peer sees
// "connection reset by peer" and any unsent data is discarded.
func reset(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
