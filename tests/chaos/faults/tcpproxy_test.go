package faults_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/tests/chaos/faults"
)

func newRedisProxy(t *testing.T) *faults.TCPProxy {
	t.Helper()
	p, err := faults.NewTCPProxy("redis", testRedis(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// redisConn speaks just enough RESP for the tests.
type redisConn struct {
	net.Conn
	r *bufio.Reader
}

func dialRedis(t *testing.T, addr string) *redisConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &redisConn{Conn: c, r: bufio.NewReader(c)}
}

// do sends a command and reads a one-line answer within timeout.
func (c *redisConn) do(cmd string, timeout time.Duration) (string, error) {
	if _, err := io.WriteString(c, cmd+"\r\n"); err != nil {
		return "", err
	}
	return c.readLine(timeout)
}

func (c *redisConn) readLine(timeout time.Duration) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	line, err := c.r.ReadString('\n')
	return strings.TrimSpace(line), err
}

func (c *redisConn) ping(t *testing.T) {
	t.Helper()
	if got, err := c.do("PING", 5*time.Second); err != nil || got != "+PONG" {
		t.Fatalf("PING: %q, %v", got, err)
	}
}

// TestTCPProxyRedis: Redis works through the proxy; ResetPeer resets the open connection and
// CutAll closes it, while new ones work.
func TestTCPProxyRedis(t *testing.T) {
	p := newRedisProxy(t)
	c := dialRedis(t, p.Addr())
	c.ping(t)
	if n := p.ResetPeer(); n != 1 {
		t.Fatalf("ResetPeer reset %d connections, want 1", n)
	}
	if _, err := c.readLine(5 * time.Second); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after ResetPeer: %v, want a connection reset", err)
	}
	c = dialRedis(t, p.Addr())
	c.ping(t)
	if n := p.CutAll(); n != 1 {
		t.Fatalf("CutAll closed %d connections, want 1", n)
	}
	if _, err := c.readLine(5 * time.Second); err != io.EOF {
		t.Fatalf("read after CutAll: %v, want EOF", err)
	}
	dialRedis(t, p.Addr()).ping(t)
	if ev := p.Events(); len(ev) != 2 || ev[0].Kind != "tcp.reset-peer" || ev[1].Kind != "tcp.cut-all" {
		t.Errorf("events %v, want reset-peer and cut-all", ev)
	}
}

// TestTCPProxyHalfOpen: no data passes while half-open, so a read times out; then the held
// command is answered (ThenResume) or the connection reset (ThenReset).
func TestTCPProxyHalfOpen(t *testing.T) {
	p := newRedisProxy(t)
	c := dialRedis(t, p.Addr())
	c.ping(t)
	p.HalfOpen(time.Second, faults.ThenResume)
	if _, err := c.do("PING", 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("PING while half-open: %v, want a timeout", err)
	}
	if got, err := c.readLine(5 * time.Second); err != nil || got != "+PONG" {
		t.Fatalf("answer after the half-open period: %q, %v", got, err)
	}
	c.ping(t)

	p.HalfOpen(300*time.Millisecond, faults.ThenReset)
	if _, err := c.do("PING", 5*time.Second); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("PING through a half-open period that ends in a reset: %v, want a connection reset", err)
	}
	dialRedis(t, p.Addr()).ping(t)
}

// TestTCPProxyBlackhole: a silenced connection passes nothing, however long one waits, while
// a new connection works; Clear lets the held command through.
func TestTCPProxyBlackhole(t *testing.T) {
	p := newRedisProxy(t)
	c := dialRedis(t, p.Addr())
	c.ping(t)
	if n := p.Blackhole(); n != 1 {
		t.Fatalf("Blackhole silenced %d connections, want 1", n)
	}
	if _, err := c.do("PING", 500*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("PING on a silenced connection: %v, want a timeout", err)
	}
	dialRedis(t, p.Addr()).ping(t)
	if _, err := c.readLine(300 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a silenced connection answered once another connected: %v", err)
	}
	p.Clear()
	if got, err := c.readLine(5 * time.Second); err != nil || got != "+PONG" {
		t.Fatalf("answer after Clear: %q, %v", got, err)
	}
}

// TestTCPProxyLatency: latency slows a round trip by at least the latency; Clear removes it.
func TestTCPProxyLatency(t *testing.T) {
	p := newRedisProxy(t)
	c := dialRedis(t, p.Addr())
	p.Latency(100*time.Millisecond, 10*time.Millisecond)
	start := time.Now()
	c.ping(t)
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("PING took %v with 100ms latency", d)
	}
	p.Clear()
	c.ping(t)
}

// TestTCPProxyBandwidth: a 25 kB command at 50 kB/s takes at least about half a second.
func TestTCPProxyBandwidth(t *testing.T) {
	p := newRedisProxy(t)
	c := dialRedis(t, p.Addr())
	p.Bandwidth(50)
	value := strings.Repeat("v", 25000)
	start := time.Now()
	if got, err := c.do(fmt.Sprintf("*3\r\n$3\r\nSET\r\n$17\r\nfaults-test-bwkey\r\n$%d\r\n%s", len(value), value), 10*time.Second); err != nil || got != "+OK" {
		t.Fatalf("SET: %q, %v", got, err)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("25 kB at 50 kB/s took %v", d)
	}
	p.Clear()
	if _, err := c.do("*2\r\n$3\r\nDEL\r\n$17\r\nfaults-test-bwkey", 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestTCPProxyDisable: a disabled proxy refuses new connections and keeps open ones; enabled
// again, it listens at the same address.
func TestTCPProxyDisable(t *testing.T) {
	p := newRedisProxy(t)
	addr := p.Addr()
	c := dialRedis(t, addr)
	c.ping(t) // accepted: one still in the listen queue would be reset by Disable
	p.Disable()
	if _, err := net.DialTimeout("tcp", addr, time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial a disabled proxy: %v, want refused", err)
	}
	c.ping(t)
	if err := p.Enable(); err != nil {
		t.Fatal(err)
	}
	if p.Addr() != addr {
		t.Fatalf("enabled at %s, want %s", p.Addr(), addr)
	}
	dialRedis(t, addr).ping(t)
}

// TestNewTCPProxyAt: the proxy listens at the address given, which must be on 127.0.0.1.
func TestNewTCPProxyAt(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p, err := faults.NewTCPProxyAt("redis", addr, testRedis(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Addr() != addr {
		t.Fatalf("listening at %s, want %s", p.Addr(), addr)
	}
	dialRedis(t, addr).ping(t)
	for _, bad := range []string{"0.0.0.0:0", ":0", "localhost:0"} {
		if _, err := faults.NewTCPProxyAt("x", bad, testRedis(t), 1); !errors.Is(err, faults.ErrNotLoopback) {
			t.Errorf("NewTCPProxyAt(%q): %v, want ErrNotLoopback", bad, err)
		}
	}
}

// TestTCPProxyKafka: a Kafka client's first connection works through the proxy.
func TestTCPProxyKafka(t *testing.T) {
	p, err := faults.NewTCPProxy("kafka", testKafka(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := (&kafka.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", p.Addr())
	if err != nil {
		t.Fatalf("dial Kafka through the proxy: %v", err)
	}
	defer conn.Close()
	if _, err := conn.ApiVersions(); err != nil {
		t.Fatalf("ApiVersions through the proxy: %v", err)
	}
}
