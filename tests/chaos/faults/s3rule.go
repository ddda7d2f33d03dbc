package faults

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Stage is the moment of a request at which a Hook runs.
type Stage int

const (
	// BeforeForward: nothing of the request has been sent to the server.
	BeforeForward Stage = iota + 1
	// MidBody: half of the request body has been sent to the server (a request without a
	// body: nothing has been sent). The rest follows once the hook returns, as far as the
	// client still sends it: bytes a killed client had already written still arrive.
	MidBody
	// AfterApplied: the server has answered in full; nothing of its answer has been sent to
	// the client.
	AfterApplied
)

// String names the stage, as in event kinds ("mid-body").
func (s Stage) String() string {
	switch s {
	case BeforeForward:
		return "before-forward"
	case MidBody:
		return "mid-body"
	case AfterApplied:
		return "after-applied"
	}
	return fmt.Sprintf("stage(%d)", int(s))
}

// HookFunc is called by a Hook action on the request's handler goroutine; the request waits
// for it. ctx ends when the client goes away or the proxy closes. A non-nil error aborts the
// request at that point as a reset: the client connection is closed with an RST, and at
// MidBody the upload to the server is cut short as well.
type HookFunc func(ctx context.Context, r Request) error

type actionKind int

const (
	actStatus500 actionKind = iota + 1
	actStatus503
	actSlowDown
	actResetMidRequest
	actResetMidResponse
	actDelay
	actApplyThenDrop
	actHook
	actUnconditional
	actSkew
)

// Action is what a rule does to a request it fires on. Use the package's values and
// constructors; the zero Action is invalid.
type Action struct {
	kind  actionKind
	delay time.Duration
	stage Stage
	hook  HookFunc
	// creds and region sign again the requests IgnoreConditional changes.
	creds  aws.Credentials
	region string
}

// The actions without parameters.
var (
	// Status500 answers 500 InternalError without forwarding the request.
	Status500 = Action{kind: actStatus500}
	// Status503 answers 503 ServiceUnavailable without forwarding the request.
	Status503 = Action{kind: actStatus503}
	// SlowDown answers 503 SlowDown (S3's throttling) without forwarding the request.
	SlowDown = Action{kind: actSlowDown}
	// ResetMidRequest forwards half of the request body, then aborts the upload to the server
	// (which sees a truncated request) and resets the client connection. A request without a
	// body is reset before anything is forwarded.
	ResetMidRequest = Action{kind: actResetMidRequest}
	// ResetMidResponse forwards the request, sends the client the response headers and half
	// of the body, then resets the client connection. A response without a body is not sent
	// at all, as with ApplyThenDrop.
	ResetMidResponse = Action{kind: actResetMidResponse}
	// ApplyThenDrop forwards the request in full, reads the server's whole answer (so the
	// server has applied the request), then resets the client connection without answering:
	// the client sees a failure of a request that succeeded, and retries it.
	ApplyThenDrop = Action{kind: actApplyThenDrop}
)

// Delay waits d before forwarding the request (less if the client goes away).
func Delay(d time.Duration) Action { return Action{kind: actDelay, delay: d} }

// SkewClock makes the client's clock run d ahead of the server's (behind, for d < 0): the
// server sees each request signed d later than the client signed it (the proxy signs it again
// with creds for region), and the client sees the server's Date d earlier than it was. An S3
// client that corrects its signing time by the skew it reads from Date gets through; one that
// does not gets 403 RequestTimeTooSkewed once d is past S3's 15 minutes.
func SkewClock(d time.Duration, creds aws.Credentials, region string) Action {
	return Action{kind: actSkew, delay: d, creds: creds, region: region}
}

// Hook calls fn at stage of the request and otherwise forwards it unchanged.
func Hook(stage Stage, fn HookFunc) Action { return Action{kind: actHook, stage: stage, hook: fn} }

// String names the action, as in event kinds ("apply-then-drop") and default rule names.
func (a Action) String() string {
	switch a.kind {
	case actStatus500:
		return "status-500"
	case actStatus503:
		return "status-503"
	case actSlowDown:
		return "slow-down"
	case actResetMidRequest:
		return "reset-mid-request"
	case actResetMidResponse:
		return "reset-mid-response"
	case actDelay:
		return "delay-" + a.delay.String()
	case actApplyThenDrop:
		return "apply-then-drop"
	case actHook:
		return "hook-" + a.stage.String()
	case actUnconditional:
		return "ignore-conditional"
	case actSkew:
		return "clock-skew-" + a.delay.String()
	}
	return "invalid"
}

func (a Action) validate() error {
	switch {
	case a.kind == 0:
		return errors.New("faults: rule has no action")
	case a.kind == actDelay && a.delay < 0:
		return fmt.Errorf("faults: negative delay %v", a.delay)
	case a.kind == actHook && a.hook == nil:
		return errors.New("faults: hook without a function")
	case a.kind == actHook && (a.stage < BeforeForward || a.stage > AfterApplied):
		return fmt.Errorf("faults: hook at unknown %v", a.stage)
	}
	return nil
}

// Rule says which requests get an Action. A request matches when its Op is in Ops (any Op
// when Ops is empty), its Kind is in Kinds (any when empty), and Match, if set, returns true.
type Rule struct {
	// Name labels the rule's events; the action's name when empty.
	Name  string
	Ops   []Op
	Kinds []Kind
	// Match is an extra condition. It is called under the proxy's rule lock: keep it quick
	// and do not call the proxy from it.
	Match func(Request) bool
	// Probability is the chance in (0, 1] that the rule fires on a matching request, drawn
	// from the proxy's seeded generator; 0 means 1, every matching request.
	Probability float64
	// Max is how many times the rule fires at most; 0 means no limit.
	Max    int
	Action Action
}

func (r Rule) validate() error {
	if r.Probability < 0 || r.Probability > 1 {
		return fmt.Errorf("faults: probability %v outside [0, 1]", r.Probability)
	}
	if r.Max < 0 {
		return fmt.Errorf("faults: negative max %d", r.Max)
	}
	return r.Action.validate()
}

func (r Rule) matches(req Request) bool {
	return (len(r.Ops) == 0 || slices.Contains(r.Ops, req.Op)) &&
		(len(r.Kinds) == 0 || slices.Contains(r.Kinds, req.Kind)) &&
		(r.Match == nil || r.Match(req))
}

func (r Rule) name() string {
	if r.Name != "" {
		return r.Name
	}
	return r.Action.String()
}

// RuleID names a rule added to a proxy.
type RuleID int

// rule is a Rule with its id and how often it fired.
type rule struct {
	Rule
	id    RuleID
	fired int
}

// rules is the proxy's ordered rule list. The caller holds the proxy's mutex.
type rules struct {
	list []*rule
	next RuleID
}

// pick returns the first rule that fires on req, counting it, or nil. Each matching rule
// with budget left draws once from d, in rule order, so that the same requests in the same
// order make the same choices for a seed.
func (rs *rules) pick(req Request, d *dice) *rule {
	for _, r := range rs.list {
		if (r.Max > 0 && r.fired >= r.Max) || !r.matches(req) {
			continue
		}
		if r.Probability > 0 && r.Probability < 1 && d.float() >= r.Probability {
			continue
		}
		r.fired++
		return r
	}
	return nil
}
