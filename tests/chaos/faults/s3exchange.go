package faults

import (
	"fmt"
	"io"
	"net/http"
	"time"
)

// exchange is one request on its way through the proxy.
type exchange struct {
	p     *S3Proxy
	w     http.ResponseWriter
	r     *http.Request
	req   Request
	start time.Time
	fault string // the rule that fired, if any

	status   int  // sent to the client
	upstream int  // answered by the server
	wrote    bool // response headers sent
}

func (x *exchange) logged() LoggedRequest {
	return LoggedRequest{
		Time: x.start, Request: x.req, Fault: x.fault, Status: x.status, Upstream: x.upstream,
	}
}

// applied records that the fault of action a hit this request.
func (x *exchange) applied(a Action, detail string) {
	d := fmt.Sprintf("rule=%q %s %s %s/%s from %s", x.fault, x.req.Op, x.req.Kind, x.req.Bucket, x.req.Key, x.req.RemoteAddr)
	if detail != "" {
		d += " " + detail
	}
	x.p.events.add("s3."+a.String(), d)
}

// act applies the action of the rule that fired.
func (x *exchange) act(a Action) {
	switch a.kind {
	case actStatus500:
		x.fail(a, http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again.")
	case actStatus503:
		x.fail(a, http.StatusServiceUnavailable, "ServiceUnavailable", "Please reduce your request rate.")
	case actSlowDown:
		x.fail(a, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
	case actResetMidRequest:
		x.resetMidRequest(a)
	case actResetMidResponse:
		x.resetMidResponse(a)
	case actDelay:
		x.delay(a)
	case actApplyThenDrop:
		x.applyThenDrop(a)
	case actHook:
		x.hook(a)
	case actUnconditional:
		x.unconditional(a)
	case actSkew:
		x.skew(a)
	}
}

// pass forwards the request and streams the answer back.
func (x *exchange) pass() {
	resp, err := x.roundTrip(x.r.Body)
	if err != nil {
		x.badGateway(err)
		return
	}
	defer resp.Body.Close()
	x.writeHeader(resp)
	_, _ = io.Copy(x.w, resp.Body)
}

// fail answers an S3 error without forwarding. The body is read first so that the client,
// still sending it, reads the answer rather than a broken pipe.
func (x *exchange) fail(a Action, status int, code, msg string) {
	_, _ = io.Copy(io.Discard, x.r.Body)
	x.applied(a, "")
	x.writeError(status, code, msg)
}

func (x *exchange) delay(a Action) {
	x.applied(a, "")
	t := time.NewTimer(a.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-x.r.Context().Done():
	}
	x.pass()
}

func (x *exchange) resetMidRequest(a Action) {
	if !hasBody(x.r) {
		x.applied(a, "no body: reset before forwarding")
		x.resetClient()
		return
	}
	body := &cutReader{r: x.r.Body, at: half(x.r.ContentLength), on: func() error {
		x.applied(a, "")
		return errCut
	}}
	if resp, err := x.roundTrip(body); err == nil {
		// The server answered before the cut: an early error. The client is reset all the same.
		x.upstream = resp.StatusCode
		_ = resp.Body.Close()
	}
	if fired, _ := body.state(); !fired {
		x.applied(a, "server answered first")
	}
	x.resetClient()
}

func (x *exchange) resetMidResponse(a Action) {
	resp, data, err := x.apply(x.r.Body)
	if err != nil {
		x.badGateway(err)
		return
	}
	x.applied(a, fmt.Sprintf("status=%d sent=%d/%d bytes", resp.StatusCode, len(data)/2, len(data)))
	if len(data) > 0 {
		x.writeHeader(resp)
		_, _ = x.w.Write(data[:len(data)/2])
	}
	x.resetClient()
}

func (x *exchange) applyThenDrop(a Action) {
	resp, _, err := x.apply(x.r.Body)
	if err != nil {
		x.badGateway(err)
		return
	}
	x.applied(a, fmt.Sprintf("status=%d", resp.StatusCode))
	x.resetClient()
}

func (x *exchange) hook(a Action) {
	switch a.stage {
	case BeforeForward:
		x.hookBefore(a)
	case MidBody:
		x.hookMidBody(a)
	case AfterApplied:
		x.hookAfter(a)
	}
}

func (x *exchange) hookBefore(a Action) {
	x.applied(a, "")
	if err := a.hook(x.r.Context(), x.req); err != nil {
		x.resetClient()
		return
	}
	x.pass()
}

func (x *exchange) hookMidBody(a Action) {
	if !hasBody(x.r) {
		x.hookBefore(a)
		return
	}
	body := &cutReader{r: x.r.Body, at: half(x.r.ContentLength), on: func() error {
		x.applied(a, "")
		return a.hook(x.r.Context(), x.req)
	}}
	resp, err := x.roundTrip(body)
	_, hookErr := body.state()
	switch {
	case hookErr != nil:
		if err == nil {
			x.upstream = resp.StatusCode
			_ = resp.Body.Close()
		}
		x.resetClient()
	case err != nil:
		x.badGateway(err)
	default:
		defer resp.Body.Close()
		x.writeHeader(resp)
		_, _ = io.Copy(x.w, resp.Body)
	}
}

func (x *exchange) hookAfter(a Action) {
	resp, data, err := x.apply(x.r.Body)
	if err != nil {
		x.badGateway(err)
		return
	}
	x.applied(a, fmt.Sprintf("status=%d", resp.StatusCode))
	if err := a.hook(x.r.Context(), x.req); err != nil {
		x.resetClient()
		return
	}
	x.writeHeader(resp)
	_, _ = x.w.Write(data)
}
