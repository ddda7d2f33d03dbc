package faults

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// ErrClosed is returned by the methods of a closed proxy.
var ErrClosed = errors.New("faults: proxy closed")

// HalfOpenEnd says what HalfOpen does when its time is up.
type HalfOpenEnd int

const (
	// ThenResume lets the held data through again: nothing is lost, as after a network
	// partition that heals before TCP gives up.
	ThenResume HalfOpenEnd = iota
	// ThenReset resets the connections that are open at the end, as a peer does that
	// gave up on the partition; new connections work again.
	ThenReset
)

// TCPProxy is a TCP proxy to one upstream server (a Kafka broker, Redis) that injects
// network faults into the connections through it. Each accepted connection gets its own
// connection upstream. All methods are safe for concurrent use.
//
// Latency, Bandwidth and HalfOpen shape every connection, present and future, until Clear;
// ResetPeer and CutAll hit the connections open at the time of the call.
type TCPProxy struct {
	name     string
	upstream string
	dice     *dice
	events   events

	mu       sync.Mutex
	addr     string       // where the proxy listens, with its port
	ln       net.Listener // nil while disabled
	closed   bool
	links    map[*link]bool
	shape    shape
	halfOpen *halfOpen // non-nil while connections are held
	wg       sync.WaitGroup
}

// shape is the toxics applied to the data of every connection.
type shape struct {
	latency, jitter time.Duration
	rate            int // bytes per second, 0 for no limit
}

// halfOpen is one HalfOpen period: resume is closed when the data may flow again.
type halfOpen struct {
	resume chan struct{}
	timer  *time.Timer
}

// NewTCPProxy starts a proxy named name (it labels events) on 127.0.0.1 at a free port in
// front of upstream (host:port). seed seeds the latency jitter.
func NewTCPProxy(name, upstream string, seed uint64) (*TCPProxy, error) {
	return NewTCPProxyAt(name, "127.0.0.1:0", upstream, seed)
}

// NewTCPProxyAt is NewTCPProxy at a given listen address, which must be on 127.0.0.1: a
// Kafka broker advertises a fixed address, which the proxy must hold.
func NewTCPProxyAt(name, listen, upstream string, seed uint64) (*TCPProxy, error) {
	if err := checkLoopback(listen); err != nil {
		return nil, err
	}
	p := &TCPProxy{name: name, upstream: upstream, dice: newDice(seed), addr: listen, links: map[*link]bool{}}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.listenLocked(); err != nil {
		return nil, err
	}
	return p, nil
}

// Addr is the proxy's listen address, host:port.
func (p *TCPProxy) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// Close stops listening, closes every connection and waits for the proxy's goroutines.
func (p *TCPProxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.stopListeningLocked()
	for l := range p.links {
		p.dropLocked(l, false)
	}
	p.endHalfOpenLocked()
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

// Events returns the faults applied so far, in order.
func (p *TCPProxy) Events() []Event { return p.events.all() }

// Latency delays every chunk of data in each direction by d plus a jitter drawn uniformly
// from [-jitter, +jitter], so that a request and its answer take about 2d more. Order is kept.
// The seed fixes the sequence of jitters; which chunk gets which depends on the order in
// which chunks arrive. d = 0 and jitter = 0 remove the latency.
func (p *TCPProxy) Latency(d, jitter time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.shape.latency, p.shape.jitter = max(d, 0), max(jitter, 0)
	if d > 0 || jitter > 0 {
		p.events.add("tcp.latency", fmt.Sprintf("%s: %v ±%v", p.name, d, jitter))
	}
}

// Bandwidth limits each direction of every connection to kBps kilobytes (1000 bytes) per
// second, as Toxiproxy's bandwidth toxic does; 0 removes the limit.
func (p *TCPProxy) Bandwidth(kBps int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.shape.rate = max(kBps, 0) * 1000
	if kBps > 0 {
		p.events.add("tcp.bandwidth", fmt.Sprintf("%s: %d kB/s", p.name, kBps))
	}
}

// ResetPeer resets every open connection now, both ends, with an RST: the client sees
// "connection reset by peer" whether or not it was sending. It returns how many connections
// it reset, and records an event if there were any.
func (p *TCPProxy) ResetPeer() int {
	return p.breakAll("tcp.reset-peer", true)
}

// CutAll closes every open connection now, both ends, with a FIN: the client reads an end
// of stream. It returns how many connections it closed, and records an event if there were
// any.
func (p *TCPProxy) CutAll() int {
	return p.breakAll("tcp.cut-all", false)
}

func (p *TCPProxy) breakAll(kind string, rst bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.breakAllLocked(kind, rst)
}

func (p *TCPProxy) breakAllLocked(kind string, rst bool) int {
	n := 0
	for l := range p.links {
		if p.dropLocked(l, rst) {
			n++
		}
	}
	if n > 0 {
		p.events.add(kind, fmt.Sprintf("%s: %d connections", p.name, n))
	}
	return n
}

// HalfOpen stops all data in both directions, on open and new connections alike, while
// keeping the connections open, for d; then end says whether the data flows again or the
// connections are reset. It returns at once. A HalfOpen during another replaces it.
func (p *TCPProxy) HalfOpen(d time.Duration, end HalfOpenEnd) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// A new period keeps the data held since the one it replaces, whose end no longer counts.
	h := &halfOpen{resume: make(chan struct{})}
	if old := p.halfOpen; old != nil {
		old.timer.Stop()
		h.resume = old.resume
	}
	p.halfOpen = h
	h.timer = time.AfterFunc(d, func() { p.endHalfOpen(h, end) })
	p.events.add("tcp.half-open", fmt.Sprintf("%s: %v, then %s, %d connections", p.name, d, end, len(p.links)))
}

// String names the end, "resume" or "reset".
func (e HalfOpenEnd) String() string {
	if e == ThenReset {
		return "reset"
	}
	return "resume"
}

// endHalfOpen ends the period h, unless Clear or another period's end came first.
func (p *TCPProxy) endHalfOpen(h *halfOpen, end HalfOpenEnd) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.halfOpen != h {
		return
	}
	if end == ThenReset {
		p.breakAllLocked("tcp.half-open-reset", true)
	}
	p.endHalfOpenLocked()
}

func (p *TCPProxy) endHalfOpenLocked() {
	if p.halfOpen != nil {
		p.halfOpen.timer.Stop()
		close(p.halfOpen.resume)
		p.halfOpen = nil
	}
}

// Blackhole silences the connections open now, for good: they stay open and pass no more
// data either way, as when a broker hangs or a peer vanishes behind a stateful firewall,
// until the client gives up on them (or Clear). New connections work. It returns how many
// connections it silenced, and records an event if there were any.
func (p *TCPProxy) Blackhole() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for l := range p.links {
		if l.silenced == nil {
			l.silenced = make(chan struct{})
			n++
		}
	}
	if n > 0 {
		p.events.add("tcp.blackhole", fmt.Sprintf("%s: %d connections", p.name, n))
	}
	return n
}

// Clear removes every toxic: latency, bandwidth, a HalfOpen and Blackhole (the held data
// flows again).
// It does not re-enable a disabled proxy.
func (p *TCPProxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.shape = shape{}
	p.endHalfOpenLocked()
	for l := range p.links {
		if l.silenced != nil {
			close(l.silenced)
			l.silenced = nil
		}
	}
}

// Disable stops listening, so that new connections are refused; open ones go on, but those
// still in the listen queue, which the proxy has not accepted yet, are reset.
func (p *TCPProxy) Disable() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.stopListeningLocked()
		p.events.add("tcp.disable", p.name)
	}
}

// Enable listens again at the same address after Disable.
func (p *TCPProxy) Enable() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return ErrClosed
	case p.ln != nil:
		return nil
	}
	return p.listenLocked()
}
