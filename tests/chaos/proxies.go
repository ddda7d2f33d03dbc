package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/karch-archive/karch/tests/chaos/faults"
)

// openProxies puts a fault proxy on each of karch's connections: S3, Kafka (at the port the
// broker's proxied listener advertises) and Redis. Each draws from the trial's seed.
func (t *Trial) openProxies() error {
	var err error
	if t.s3, err = faults.NewS3Proxy(t.srv.S3.Endpoint, t.Seed); err != nil {
		return err
	}
	if t.kafka, err = faults.NewTCPProxyAt("kafka", t.srv.KafkaProxy, t.srv.KafkaProxied, t.Seed+1); err != nil {
		return err
	}
	t.redis, err = faults.NewTCPProxy("redis", t.srv.Redis, t.Seed+2)
	return err
}

func (t *Trial) closeProxies() {
	for _, c := range []interface{ Close() error }{t.s3, t.kafka, t.redis} {
		if c != nil {
			_ = c.Close()
		}
	}
}

// clearFaults ends every proxy fault, for the runs that follow the fault phase.
func (t *Trial) clearFaults() {
	t.s3.ClearRules()
	for _, p := range []*faults.TCPProxy{t.kafka, t.redis} {
		p.Clear()
		_ = p.Enable() // an error: it was never disabled
	}
}

// writeFaults writes every fault event of the trial to faults.log in its folder, hooks
// included, for the diagnosis of a failure.
func (t *Trial) writeFaults() {
	var b strings.Builder
	for _, events := range [][]faults.Event{t.s3.Events(), t.kafka.Events(), t.redis.Events()} {
		for _, e := range events {
			fmt.Fprintln(&b, e)
		}
	}
	t.mu.Lock()
	for _, e := range t.events {
		fmt.Fprintln(&b, e)
	}
	t.mu.Unlock()
	_ = os.WriteFile(filepath.Join(t.dir, "faults.log"), []byte(b.String()), 0o644)
}

// faults counts the faults that hit: those the proxies applied, less the hooks (which only
// call the harness, and count there when they do harm) and background rules, and those the
// harness caused.
func (t *Trial) faults() int {
	n := 0
	for _, events := range [][]faults.Event{t.s3.Events(), t.kafka.Events(), t.redis.Events()} {
		for _, e := range events {
			if !strings.Contains(e.Kind, "hook") && !strings.Contains(e.Detail, `rule="`+background+`"`) {
				n++
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return n + len(t.events)
}

// S3Hook calls fn at stage of a seeded fraction p of the S3 requests that match ops and
// kinds (any, when empty), at most max times.
func (t *Trial) S3Hook(stage faults.Stage, ops []faults.Op, kinds []faults.Kind, p float64, max int, fn func(faults.Request)) {
	t.S3Fault(faults.Hook(stage, func(_ context.Context, r faults.Request) error { fn(r); return nil }), ops, kinds, p, max)
}

// S3Kill kills the process that sent an S3 request, at stage, on a seeded fraction p of the
// requests that match ops and kinds and come from a coordinator (coordinators) or a shard
// (!coordinators), at most max times.
func (t *Trial) S3Kill(stage faults.Stage, ops []faults.Op, kinds []faults.Kind, p float64, max int, coordinators bool) {
	from := func(r faults.Request) bool {
		pid, err := faults.PeerPID(r.RemoteAddr)
		return err == nil && t.IsCoordinator(pid) == coordinators
	}
	kill := faults.Hook(stage, func(_ context.Context, r faults.Request) error {
		if pid, err := faults.PeerPID(r.RemoteAddr); err == nil {
			t.Kill(fmt.Sprintf("%s at %s of %s %s", who(coordinators), stage, r.Op, r.Key), pid)
		}
		return nil
	})
	t.addRule(faults.Rule{Ops: ops, Kinds: kinds, Match: from, Probability: p, Max: max, Action: kill})
}

// background names the rules that only set the scene for a scenario's faults, and are not
// counted among them.
const background = "background"

// s3Background applies action to a seeded fraction p of all S3 requests, uncounted.
func (t *Trial) s3Background(action faults.Action, p float64) {
	t.addRule(faults.Rule{Name: background, Probability: p, Action: action})
}

// S3Fault applies action to a seeded fraction p of the S3 requests that match ops and kinds
// (any, when empty), at most max times (no limit: 0).
func (t *Trial) S3Fault(action faults.Action, ops []faults.Op, kinds []faults.Kind, p float64, max int) {
	t.addRule(faults.Rule{Ops: ops, Kinds: kinds, Probability: p, Max: max, Action: action})
}

// addRule adds r to the S3 proxy. A rule it refuses is a scenario's own mistake.
func (t *Trial) addRule(r faults.Rule) {
	if _, err := t.s3.AddRule(r); err != nil {
		panic(errors.Join(errors.New("chaos: a scenario's rule"), err))
	}
}
