package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// LoggedRequest is one request that went through an S3Proxy, as the proxy saw it end.
type LoggedRequest struct {
	Time time.Time // when the request arrived
	Request
	// Fault is the name of the rule that fired on the request, "" if none did.
	Fault string
	// Status is the status the client was sent; 0 if it got none (its connection was reset).
	Status int
	// Upstream is the status the server answered; 0 if the request did not reach it or
	// failed on the way.
	Upstream int
}

// S3Proxy is an HTTP reverse proxy in front of an S3 server that injects faults into
// path-style S3 requests by rules. Requests pass through byte for byte: method, path, query,
// headers (the Host header too, as the client signed it) and body, so SigV4 signatures,
// aws-chunked and unsigned payloads and multipart uploads work.
//
// Rules are checked in the order they were added; at most one fires on a request. All
// methods are safe for concurrent use.
type S3Proxy struct {
	target    *url.URL
	ln        net.Listener
	srv       *http.Server
	transport *http.Transport
	dice      *dice
	events    events

	ctx    context.Context // cancelled by Close, ends hooks and delays
	cancel context.CancelFunc

	mu       sync.Mutex
	closed   bool
	rules    rules
	log      []LoggedRequest
	handlers sync.WaitGroup
}

// NewS3Proxy starts a proxy on 127.0.0.1 at a free port in front of target, the S3 server's
// base URL ("http://127.0.0.1:19000"). seed seeds every random choice of its rules.
func NewS3Proxy(target string, seed uint64) (*S3Proxy, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("faults: S3 target %q: want http(s)://host:port", target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for S3 proxy: %w", err)
	}
	p := &S3Proxy{target: u, ln: ln, transport: newTransport(), dice: newDice(seed)}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.srv = &http.Server{
		Handler: p, ReadHeaderTimeout: 30 * time.Second,
		// Hijacked and cut connections are the point here, not news.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func newTransport() *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
		// Pass bodies through as the server sent them, compressed or not.
		DisableCompression: true,
	}
}

// URL is the proxy's base URL, to use as the S3 endpoint (path-style).
func (p *S3Proxy) URL() string { return "http://" + p.ln.Addr().String() }

// Close stops the proxy: it closes the listener and every connection, ends running hooks'
// contexts and waits for the requests in flight to return.
func (p *S3Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	err := p.srv.Close()
	p.handlers.Wait()
	p.transport.CloseIdleConnections()
	return err
}

// AddRule adds r after the rules already there and returns its id.
func (p *S3Proxy) AddRule(r Rule) (RuleID, error) {
	if err := r.validate(); err != nil {
		return 0, err
	}
	r.Ops, r.Kinds = append([]Op(nil), r.Ops...), append([]Kind(nil), r.Kinds...)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules.next++
	p.rules.list = append(p.rules.list, &rule{Rule: r, id: p.rules.next})
	return p.rules.next, nil
}

// RemoveRule removes the rule id; requests already past their rule check are not affected.
// It reports whether the rule was there.
func (p *S3Proxy) RemoveRule(id RuleID) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, r := range p.rules.list {
		if r.id == id {
			p.rules.list = append(p.rules.list[:i:i], p.rules.list[i+1:]...)
			return true
		}
	}
	return false
}

// ClearRules removes every rule: requests from now on pass through unharmed.
func (p *S3Proxy) ClearRules() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules.list = nil
}

// Fired is how many requests the rule id has fired on; 0 for a rule not (or no longer)
// there.
func (p *S3Proxy) Fired(id RuleID) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.rules.list {
		if r.id == id {
			return r.fired
		}
	}
	return 0
}

// Events returns the faults applied so far, in order.
func (p *S3Proxy) Events() []Event { return p.events.all() }

// Requests returns every request that went through the proxy and has ended, in the order
// they ended.
func (p *S3Proxy) Requests() []LoggedRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]LoggedRequest(nil), p.log...)
}

// ServeHTTP handles one S3 request: it finds the rule that fires on it, if any, applies its
// action and logs the request.
func (p *S3Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !p.enter() {
		http.Error(w, "proxy closed", http.StatusServiceUnavailable)
		return
	}
	defer p.handlers.Done()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(p.ctx, cancel)()
	x := &exchange{p: p, w: w, r: r.WithContext(ctx), req: ParseRequest(r), start: time.Now()}
	defer func() { p.record(x.logged()) }() // deferred: resetClient may abort the handler
	p.mu.Lock()
	fired := p.rules.pick(x.req, p.dice)
	p.mu.Unlock()
	if fired == nil {
		x.pass()
	} else {
		x.fault = fired.name()
		x.act(fired.Action)
	}
}

// enter registers a request in flight, unless the proxy is closed.
func (p *S3Proxy) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.handlers.Add(1)
	return true
}

func (p *S3Proxy) record(l LoggedRequest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, l)
}

// errCut is the error a body cut short by ResetMidRequest reads.
var errCut = errors.New("faults: request body cut")
