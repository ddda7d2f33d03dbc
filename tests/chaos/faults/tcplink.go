package faults

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// dialTimeout bounds the dial upstream for each accepted connection.
const dialTimeout = 5 * time.Second

// link is one proxied connection: the client's and the one the proxy opened upstream. done
// is closed when the proxy drops it.
type link struct {
	client, server net.Conn
	done           chan struct{}
	// silenced, when not nil, holds the link's data until it is closed (by Clear) or the
	// link is dropped: Blackhole. Guarded by the proxy's mutex.
	silenced chan struct{}
}

func (p *TCPProxy) listenLocked() error {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return fmt.Errorf("listen for %s proxy: %w", p.name, err)
	}
	p.ln, p.addr = ln, ln.Addr().String()
	p.wg.Add(1)
	go p.serve(ln)
	return nil
}

func (p *TCPProxy) stopListeningLocked() {
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
}

// serve accepts connections on ln until it is closed.
func (p *TCPProxy) serve(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(10 * time.Millisecond) // out of descriptors, say: let some close
			continue
		}
		p.wg.Add(1)
		go p.connect(c)
	}
}

// connect dials upstream for client and pumps data both ways until both directions end or
// the proxy drops the link. A failed dial resets the client, as a refused connection would.
func (p *TCPProxy) connect(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.upstream, dialTimeout)
	if err != nil {
		reset(client)
		return
	}
	l := &link{client: client, server: server, done: make(chan struct{})}
	if !p.add(l) {
		reset(client)
		reset(server)
		return
	}
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		p.pump(l, server, client)
	}()
	p.pump(l, client, server)
	<-upDone
	p.drop(l, false)
}

func (p *TCPProxy) add(l *link) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.links[l] = true
	return true
}

func (p *TCPProxy) drop(l *link, rst bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropLocked(l, rst)
}

// dropLocked closes both ends of l, with an RST if rst, unless it was dropped already.
func (p *TCPProxy) dropLocked(l *link, rst bool) bool {
	if !p.links[l] {
		return false
	}
	delete(p.links, l)
	close(l.done)
	if rst {
		reset(l.client)
		reset(l.server)
	} else {
		_ = l.client.Close()
		_ = l.server.Close()
	}
	return true
}

// pump copies src to dst through the proxy's toxics. An end of stream is passed on as a
// half-close; a reset or error on either side resets the whole link.
func (p *TCPProxy) pump(l *link, dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.deliver(l, dst, buf[:n], time.Now()) {
			p.drop(l, true)
			return
		}
		switch {
		case err == io.EOF:
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		case err != nil:
			p.drop(l, true)
			return
		}
	}
}

// deliver writes data, read at time at, to dst once latency, bandwidth and any HalfOpen
// allow. It returns false if the link was dropped or the write failed.
func (p *TCPProxy) deliver(l *link, dst net.Conn, data []byte, at time.Time) bool {
	sh := p.currentShape()
	if d := sh.latency + p.dice.jitter(sh.jitter); d > 0 && !l.sleep(time.Until(at.Add(d))) {
		return false
	}
	for len(data) > 0 {
		if !p.waitFlow(l) {
			return false
		}
		n := len(data)
		if sh.rate > 0 {
			n = min(n, max(sh.rate/20, 1)) // a twentieth of a second's worth at a time
		}
		if _, err := dst.Write(data[:n]); err != nil {
			return false
		}
		data = data[n:]
		if sh.rate > 0 && !l.sleep(time.Duration(n)*time.Second/time.Duration(sh.rate)) {
			return false
		}
	}
	return true
}

func (p *TCPProxy) currentShape() shape {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.shape
}

// waitFlow waits while a HalfOpen holds the data. It returns false if the link is dropped
// meanwhile.
func (p *TCPProxy) waitFlow(l *link) bool {
	for {
		p.mu.Lock()
		var wait chan struct{}
		if l.silenced != nil {
			wait = l.silenced
		} else if p.halfOpen != nil {
			wait = p.halfOpen.resume
		}
		p.mu.Unlock()
		if wait == nil {
			return true
		}
		select {
		case <-wait:
		case <-l.done:
			return false
		}
	}
}

// sleep waits d, or less if the link is dropped meanwhile; it returns false in that case.
func (l *link) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.done:
		return false
	}
}
