package faults

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
)

// hopHeaders are the hop-by-hop headers (RFC 9110, 7.6.1), which a proxy does not forward.
// SigV4 never signs them.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// roundTrip sends the request upstream with body as its body and returns the server's
// response headers. Path, query and headers go as the client sent them, the Host header too:
// SigV4 signs it, and S3 servers check the signature against the Host they are sent.
func (x *exchange) roundTrip(body io.Reader) (*http.Response, error) {
	out := x.r.Clone(x.r.Context())
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = x.p.target.Scheme, x.p.target.Host
	out.Host = x.r.Host
	out.Body, out.GetBody = http.NoBody, nil
	if hasBody(x.r) {
		out.Body = io.NopCloser(body)
	}
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	resp, err := x.p.transport.RoundTrip(out)
	if err == nil {
		x.upstream = resp.StatusCode
	}
	return resp, err
}

// apply forwards the request and reads the server's whole answer: once it returns without
// error, the server has applied the request.
func (x *exchange) apply(body io.Reader) (*http.Response, []byte, error) {
	resp, err := x.roundTrip(body)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("read S3 response: %w", err)
	}
	return resp, data, nil
}

// writeHeader sends the client the status and end-to-end headers of resp.
func (x *exchange) writeHeader(resp *http.Response) {
	h := x.w.Header()
	for k, vs := range resp.Header {
		h[k] = append([]string(nil), vs...)
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	x.w.WriteHeader(resp.StatusCode)
	x.status, x.wrote = resp.StatusCode, true
}

var requestIDs atomic.Uint64

// writeError answers an S3 error document, as S3 does.
func (x *exchange) writeError(status int, code, msg string) {
	id := "faults-" + strconv.FormatUint(requestIDs.Add(1), 10)
	h := x.w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("X-Amz-Request-Id", id)
	x.w.WriteHeader(status)
	x.status, x.wrote = status, true
	_, _ = fmt.Fprintf(x.w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<Error><Code>%s</Code><Message>%s</Message><Resource>%s</Resource><RequestId>%s</RequestId></Error>`,
		code, html.EscapeString(msg), html.EscapeString(x.r.URL.Path), id)
}

// badGateway answers a request that could not be forwarded: the server was unreachable, or
// the client went away while sending it.
func (x *exchange) badGateway(err error) {
	x.writeError(http.StatusBadGateway, "BadGateway", "faults proxy: "+err.Error())
}

// resetClient closes the client connection with an RST, after whatever the response has
// written so far. The client sees "connection reset by peer" and no (or a truncated) answer.
func (x *exchange) resetClient() {
	rc := http.NewResponseController(x.w)
	if x.wrote {
		_ = rc.Flush() // Hijack would drop what the response writer still buffers
	} else {
		x.status = 0
	}
	conn, _, err := rc.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // the server closes the connection, without an RST
	}
	reset(conn)
}

// hasBody tells whether the request has a body: a Content-Length above 0, or chunked.
func hasBody(r *http.Request) bool { return r.ContentLength != 0 }

// unknownLengthCut is where a body of unknown length is cut: early, so that an upload of any
// size is cut before its end.
const unknownLengthCut = 64 << 10

// half is the offset in a body of length n (-1 if unknown) where the MidBody stage is.
func half(n int64) int64 {
	if n < 0 {
		return unknownLengthCut
	}
	return n / 2
}

// cutReader passes r through and calls on once at offset at, or at the end of r if it is
// shorter. If on fails, reads fail with its error from then on, and the transport aborts the
// upload: the server sees a truncated request. The transport may read on another goroutine
// than the handler's, hence the lock.
type cutReader struct {
	r  io.Reader
	at int64
	on func() error

	mu    sync.Mutex
	n     int64
	fired bool
	err   error
}

func (c *cutReader) Read(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if !c.fired && c.n >= c.at {
		if err := c.fire(); err != nil {
			return 0, err
		}
	}
	if !c.fired && int64(len(b)) > c.at-c.n {
		b = b[:c.at-c.n]
	}
	n, err := c.r.Read(b)
	c.n += int64(n)
	if err == io.EOF && !c.fired {
		if ferr := c.fire(); ferr != nil {
			return n, ferr
		}
	}
	return n, err
}

// fire calls on; the caller holds c.mu.
func (c *cutReader) fire() error {
	c.fired = true
	c.err = c.on()
	return c.err
}

// state tells whether the cut point was reached and what on returned there.
func (c *cutReader) state() (fired bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fired, c.err
}
