package e2e

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/karch-archive/karch/internal/testenv"
)

// pushGateway receives what karch pushes, speaking the Pushgateway's protocol. The real
// Pushgateway cannot be built here (the Go module proxy answers 403 for
// github.com/prometheus/pushgateway), so this receiver decodes the pushes with Prometheus'
// own decoder instead.
type pushGateway struct {
	*httptest.Server
	mu     sync.Mutex
	pushes []push
}

type push struct {
	method, path string
	// group is the grouping key from the path: job, and the label pairs after it, which
	// the Pushgateway treats as a set, in any order.
	group    map[string]string
	body     []byte
	families map[string]*dto.MetricFamily
}

// groupOf reads /metrics/job/<job>{/<label>/<value>}; this test's values need no escaping.
func groupOf(path string) map[string]string {
	parts := strings.Split(strings.TrimPrefix(path, "/metrics/"), "/")
	group := map[string]string{}
	for i := 0; i+1 < len(parts); i += 2 {
		group[parts[i]] = parts[i+1]
	}
	return group
}

func newPushGateway(t *testing.T) *pushGateway {
	g := &pushGateway{}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body bytes.Buffer
		body.ReadFrom(r.Body)
		p := push{method: r.Method, path: r.URL.Path, group: groupOf(r.URL.Path), body: body.Bytes(), families: map[string]*dto.MetricFamily{}}
		dec := expfmt.NewDecoder(bytes.NewReader(p.body), expfmt.ResponseFormat(r.Header))
		for {
			var mf dto.MetricFamily
			if err := dec.Decode(&mf); err != nil {
				break
			}
			p.families[mf.GetName()] = &mf
		}
		g.mu.Lock()
		g.pushes = append(g.pushes, p)
		g.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(g.Close)
	return g
}

// take returns and forgets the pushes so far to job whose group has the labels given.
func (g *pushGateway) take(job string, labels map[string]string) []push {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out, rest []push
	for _, p := range g.pushes {
		if p.group["job"] == job && p.has(labels) {
			out = append(out, p)
		} else {
			rest = append(rest, p)
		}
	}
	g.pushes = rest
	return out
}

func (p push) has(labels map[string]string) bool {
	for k, v := range labels {
		if p.group[k] != v {
			return false
		}
	}
	return len(p.group) == len(labels)+1
}

// value is the metric's value, summed over its label sets; ok is false when it was not
// pushed.
func (p push) value(name string) (v float64, ok bool) {
	mf, ok := p.families[name]
	if !ok {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		v += m.GetGauge().GetValue() + m.GetCounter().GetValue()
	}
	return v, true
}

func (p push) must(t *testing.T, name string) float64 {
	t.Helper()
	v, ok := p.value(name)
	if !ok {
		t.Fatalf("%s %s: no %s among %d families", p.method, p.path, name, len(p.families))
	}
	return v
}

// The coordinator and every shard push their metrics when they end: the chain's head, what
// the run committed, the receipts' totals, exit codes and store calls. A run with nothing due
// still reports the head; a gateway that is down does not fail the run.
func TestRunPushesMetrics(t *testing.T) {
	p := newRunPipeline(t, 2, 5_000)
	gw := newPushGateway(t)
	p.env = append(p.env, "KARCH_PUSH_GATEWAY="+gw.URL)
	cmd, out := p.run(t)
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	ms := p.assertCommitted(t)
	var records int64
	for _, m := range ms {
		records += m.Records
	}
	coordGroup := map[string]string{"pipeline": p.name}
	coord := gw.take("karch-coordinator", coordGroup)
	if len(coord) != 1 || coord[0].method != http.MethodPut {
		t.Fatalf("coordinator pushes: %+v", coord)
	}
	c := coord[0]
	for name, want := range map[string]float64{
		"karch_exit_code": 0,
		"karch_last_committed_window_end_timestamp_seconds": float64(ms[2].Window.End.Unix()),
		"karch_run_committed_windows":                       3,
		"karch_run_committed_records":                       float64(records),
	} {
		if got := c.must(t, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if c.must(t, "karch_store_requests_total") == 0 || c.must(t, "karch_run_duration_seconds") <= 0 {
		t.Error("no store calls or no duration counted")
	}

	var shards []push
	for i := range 4 { // KARCH_SHARDS: no window has more

		shards = append(shards, gw.take("karch-shard", map[string]string{"pipeline": p.name, "shard": strconv.Itoa(i)})...)
	}
	var shardRecords float64
	for _, s := range shards {
		if code := s.must(t, "karch_exit_code"); code != 0 {
			t.Errorf("%s: exit code %v", s.path, code)
		}
		shardRecords += s.must(t, "karch_shard_records")
	}
	if len(shards) == 0 || shardRecords != float64(records) {
		t.Fatalf("%d shard pushes hold %v records, the manifests %d:\n%s", len(shards), shardRecords, records, out)
	}
	secret := testenv.S3Server(t).SecretKey
	for _, push := range append(coord, shards...) {
		if bytes.Contains(push.body, []byte(secret)) {
			t.Fatalf("push %s carries the S3 secret", push.path)
		}
	}

	// Nothing more is due (KARCH_UNTIL ends the pipeline): the head is pushed again, and
	// nothing committed.
	again, out := p.run(t)
	if code := exitCode(t, again); code != 0 {
		t.Fatalf("second run exit %d:\n%s", code, out)
	}
	coord = gw.take("karch-coordinator", coordGroup)
	if len(coord) != 1 {
		t.Fatalf("second run: %d coordinator pushes", len(coord))
	}
	if head := coord[0].must(t, "karch_last_committed_window_end_timestamp_seconds"); head != float64(ms[2].Window.End.Unix()) {
		t.Errorf("second run: head %v", head)
	}
	if n := coord[0].must(t, "karch_run_committed_windows"); n != 0 {
		t.Errorf("second run committed %v windows", n)
	}

	// A run that fails before it starts (a bad setting) still reports its exit code.
	bad := *p
	bad.env = append(append([]string(nil), p.env...), "KARCH_WINDOW=7m")
	failed, out := bad.run(t)
	if code := exitCode(t, failed); code != 3 {
		t.Fatalf("a bad window: exit %d:\n%s", code, out)
	}
	coord = gw.take("karch-coordinator", coordGroup)
	if len(coord) != 1 || coord[0].method != http.MethodPut || coord[0].must(t, "karch_exit_code") != 3 {
		t.Fatalf("a run with a bad setting pushed %+v; want one PUT with exit code 3", coord)
	}

	// A gateway that is down costs a log line, not the run.
	p.env = append(p.env, "KARCH_PUSH_GATEWAY=http://127.0.0.1:1")
	down, out := p.run(t)
	if code := exitCode(t, down); code != 0 || !strings.Contains(out.String(), "metrics not pushed") {
		t.Fatalf("with the gateway down: exit %d:\n%s", code, out)
	}
}

// A Pushgateway URL with credentials is refused before anything runs, without repeating the
// password.
func TestRunRefusesCredentialsInPushGateway(t *testing.T) {
	cmd, out := (&runPipeline{}).run(t, "--pipeline", "cdr", "--topic", "cdr", "--brokers", "b:9092", "--store", t.TempDir(),
		"--push-gateway", "http://metrics:hunter2@gateway:9091")
	if code := exitCode(t, cmd); code != 3 {
		t.Fatalf("exit %d, want 3:\n%s", code, out)
	}
	if line := lastLine(out.String()); !strings.Contains(line, "push_gateway") || strings.Contains(out.String(), "hunter2") {
		t.Fatalf("want a line naming push_gateway without the password:\n%s", out)
	}
}
