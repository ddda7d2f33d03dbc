package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/karch-archive/karch/tests/chaos/checker"
	"github.com/karch-archive/karch/tests/chaos/faults"
)

// Scenario is one kind of trouble: what it injects and into which workload.
type Scenario struct {
	Name string
	// About says what is injected, for the README and the results.
	About    string
	Workload Workload
	// Env holds karch settings beyond a trial's defaults.
	Env []string
	// Command is what the trial's coordinators run: "run" (the default) or "backfill", which
	// archives the trial's windows in one run, as `karch backfill --from --to`.
	Command string
	// Restore makes the fault phase a restore's: the windows are archived without faults
	// first, and Inject starts `karch restore` of them all into a new topic. The trial then
	// restores without faults until a restore succeeds, and checks the target topic too.
	Restore bool
	// Table adds a Parquet copy of each window and an Iceberg table in the sql catalog, which
	// `karch verify --deep --table` checks after the trial.
	Table bool
	// Inject is the fault phase: it starts coordinators, injects faults at seeded points and
	// waits for the coordinators it started. The trial then runs karch without faults until
	// every window is committed, and checks.
	Inject func(t *Trial) error
}

// Trial is one run of a scenario with one seed, on a fresh topic and store prefix.
type Trial struct {
	Scenario *Scenario
	Seed     uint64

	ctx      context.Context
	srv      *Servers
	karch    string
	dir      string
	pipeline string
	topic    string
	target   string // the topic a restore scenario restores into
	prefix   string
	start    time.Time

	s3           *faults.S3Proxy
	kafka, redis *faults.TCPProxy

	mu      sync.Mutex
	rng     *rand.Rand
	coords  []*coordinator
	events  []string
	pending sync.WaitGroup
}

// Result is a trial's line of the results table.
type Result struct {
	Scenario string `json:"scenario"`
	Seed     uint64 `json:"seed"`
	// Faults is how many faults hit: proxy faults applied, processes and servers killed or
	// stopped, coordinators started beside another.
	Faults int `json:"faults"`
	// Runs is how many coordinators ran until every window was committed.
	Runs      int      `json:"runs_until_committed"`
	ExitCodes []int    `json:"exit_codes"`
	Records   int64    `json:"records_archived"`
	Restored  int64    `json:"records_restored"`
	Lost      int      `json:"lost"`
	Dup       int      `json:"duplicated"`
	Mismatch  int      `json:"mismatched"`
	Problems  []string `json:"problems,omitempty"`
	Error     string   `json:"error,omitempty"`
	Seconds   float64  `json:"seconds"`
	Logs      string   `json:"-"`
}

// Passed is true when the trial committed every window, and the checker found every record
// exactly once and the archive sound.
func (r *Result) Passed() bool {
	return r.Error == "" && r.Lost == 0 && r.Dup == 0 && r.Mismatch == 0 && len(r.Problems) == 0
}

// Timeouts of a trial. A coordinator that runs longer than coordinatorTimeout is wedged: the
// pipeline's windows are small, and a healthy run takes seconds.
const (
	coordinatorTimeout = 2 * time.Minute
	cleanRuns          = 6
	leaseTTL           = 4 * time.Second
)

// Harness runs trials against the private servers with one karch binary.
type Harness struct {
	Servers *Servers
	Karch   string
	// Dir keeps each trial's logs.
	Dir string
}

// Run runs sc with seed and reports what the checker found.
func (h *Harness) Run(ctx context.Context, sc *Scenario, seed uint64) *Result {
	began := time.Now()
	t := &Trial{Scenario: sc, Seed: seed, ctx: ctx, srv: h.Servers, karch: h.Karch, rng: rand.New(rand.NewPCG(seed, 0x6b61726368))}
	id := fmt.Sprintf("%s-s%d-%d", sc.Name, seed, time.Now().UnixNano()%1e9)
	t.dir = filepath.Join(h.Dir, id)
	t.pipeline, t.topic, t.prefix = "chaos-"+strconv.FormatUint(uint64(time.Now().UnixNano()%1e12), 36), "chaos."+id, "runs/"+id
	t.target = t.topic + ".restored"
	t.start = pinnedStart()
	res := &Result{Scenario: sc.Name, Seed: seed, Logs: t.dir}
	err := t.run(res)
	if err != nil {
		res.Error = err.Error()
	}
	res.Seconds = time.Since(began).Seconds()
	return res
}

// pinnedStart is the first window's start: 02:00 UTC yesterday, so that every window is
// long due and none falls out of Kafka's retention.
func pinnedStart() time.Time {
	return time.Now().UTC().Truncate(24 * time.Hour).Add(-22 * time.Hour)
}

func (t *Trial) run(res *Result) error {
	if err := os.MkdirAll(t.dir, 0o755); err != nil {
		return err
	}
	if err := t.srv.Up(t.ctx); err != nil {
		return err
	}
	if err := t.Scenario.Workload.produce(t.ctx, t.srv.Kafka, t.topic, t.start, t.rng); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	if err := t.openProxies(); err != nil {
		return err
	}
	defer t.closeProxies()
	defer t.killAll()
	if t.Scenario.Restore {
		if err := t.prepareRestore(); err != nil {
			return err
		}
	}
	injectErr := t.Scenario.Inject(t)
	t.pending.Wait()
	res.Faults = t.faults()
	t.writeFaults()
	if injectErr != nil {
		return fmt.Errorf("fault phase: %w", injectErr)
	}
	t.clearFaults()
	if err := t.srv.Up(t.ctx); err != nil { // whatever the faults killed
		return err
	}
	converged := t.converge()
	if converged == nil && t.Scenario.Restore {
		converged = t.convergeRestore()
	}
	res.Runs, res.ExitCodes = len(t.coords), t.exitCodes()
	if converged != nil {
		return converged
	}
	if err := t.check(res); err != nil {
		return err
	}
	if t.Scenario.Restore {
		if err := t.checkRestore(res); err != nil {
			return err
		}
	}
	if t.Scenario.Table {
		if err := t.checkTable(res); err != nil {
			return err
		}
	}
	return t.checkExitCodes()
}

// checkExitCodes fails a trial in which karch called a fault permanent (exit 3): every fault
// the scenarios inject passes, so each is for a rerun to get past.
func (t *Trial) checkExitCodes() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.coords {
		if c.exited() && c.code == 3 {
			return fmt.Errorf("karch %s exited 3 (permanent) under a passing fault (log %s)", c.args[0], c.log)
		}
	}
	return nil
}

// converge runs coordinators without faults until every window is committed. A pipeline that
// cannot commit after cleanRuns of them is wedged.
func (t *Trial) converge() error {
	if err := t.RunWhileFaulting(cleanRuns); err != nil {
		return err
	}
	if done, err := t.committed(); err != nil || done {
		return err
	}
	return fmt.Errorf("wedged: %d runs without faults left windows uncommitted (exit codes %v)", cleanRuns, t.exitCodes())
}

func (t *Trial) check(res *Result) error {
	rep, err := checker.Check(t.ctx, checker.Config{
		Endpoint: t.srv.S3.Endpoint, Region: "us-east-1", Bucket: t.srv.S3.Bucket, Prefix: t.prefix,
		AccessKey: t.srv.S3.AccessKey, SecretKey: t.srv.S3.SecretKey,
		Pipeline: t.pipeline, Brokers: []string{t.srv.Kafka}, Topic: t.topic,
		Start: t.start, Until: t.start.Add(windows * time.Hour),
	})
	if err != nil {
		return fmt.Errorf("checker: %w", err)
	}
	res.Records = rep.Records
	res.Lost, res.Dup, res.Mismatch = len(rep.Lost), len(rep.Duplicated), len(rep.Mismatched)
	res.Problems = rep.Problems
	if !rep.OK() {
		return errors.New(rep.String())
	}
	return nil
}

// Env is the karch configuration of the trial's pipeline: every connection through a fault
// proxy, a short lease so that a killed coordinator's lease soon expires, and small pieces so
// that a shard stores many.
func (t *Trial) Env() []string {
	env := []string{
		"KARCH_PIPELINE=" + t.pipeline, "KARCH_TOPIC=" + t.topic, "KARCH_BROKERS=" + t.srv.KafkaProxy,
		"KARCH_STORE=s3://" + t.srv.S3.Bucket + "/" + t.prefix, "KARCH_S3_ENDPOINT=" + t.s3.URL(), "KARCH_S3_PATH_STYLE=true",
		"KARCH_REDIS=" + t.redis.Addr(), "KARCH_LEASE_TTL=" + leaseTTL.String(), "KARCH_S3_TIMEOUT=5s",
		"KARCH_WINDOW=1h", "KARCH_LATENESS=0s", "KARCH_START=" + t.start.Format(time.RFC3339),
		"KARCH_UNTIL=" + t.start.Add(windows*time.Hour).Format(time.RFC3339),
		"KARCH_SHARDS=3", "KARCH_PARALLELISM=3", "KARCH_PIECE_RECORDS=250", "KARCH_RETRIES=3",
		"KARCH_BINARY=" + t.karch,
		"AWS_ACCESS_KEY_ID=" + t.srv.S3.AccessKey, "AWS_SECRET_ACCESS_KEY=" + t.srv.S3.SecretKey, "AWS_REGION=us-east-1",
	}
	if t.Scenario.Table {
		env = append(env, "KARCH_FORMATS=jsonl,parquet", "KARCH_TABLE="+t.table(), "KARCH_TABLE_CATALOG=sql",
			"KARCH_TABLE_CATALOG_URI="+t.srv.Postgres, "KARCH_TABLE_CATALOG_PASSWORD="+pgPassword)
	}
	return append(env, t.Scenario.Env...)
}

// Start starts a coordinator of the scenario's command; extra settings override the trial's.
func (t *Trial) Start(extra ...string) (*coordinator, error) {
	if t.Scenario.Command == "backfill" {
		return t.StartCommand(t.backfillArgs(), extra...)
	}
	return t.StartCommand([]string{"run"}, extra...)
}

// backfillArgs are those of the backfill of every window of the trial.
func (t *Trial) backfillArgs() []string {
	return []string{"backfill", "--from", t.start.Format(time.RFC3339), "--to", t.start.Add(windows * time.Hour).Format(time.RFC3339)}
}

// StartCommand starts karch with args; extra settings override the trial's.
func (t *Trial) StartCommand(args []string, extra ...string) (*coordinator, error) {
	t.mu.Lock()
	n := len(t.coords)
	t.mu.Unlock()
	c, err := startCoordinator(t.karch, args, filepath.Join(t.dir, fmt.Sprintf("%s-%02d.log", args[0], n+1)), append(t.Env(), extra...))
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.coords = append(t.coords, c)
	t.mu.Unlock()
	return c, nil
}

// Wait waits for c to exit; a coordinator still running after coordinatorTimeout is wedged.
func (t *Trial) Wait(c *coordinator) error {
	if c.wait(coordinatorTimeout) {
		return nil
	}
	c.killGroup()
	return fmt.Errorf("wedged: a coordinator ran past %s (log %s)", coordinatorTimeout, c.log)
}

// WaitAll waits for cs, or for every coordinator started so far when cs is empty.
func (t *Trial) WaitAll(cs ...*coordinator) error {
	if len(cs) == 0 {
		t.mu.Lock()
		cs = slices.Clone(t.coords)
		t.mu.Unlock()
	}
	var errs []error
	for _, c := range cs {
		errs = append(errs, t.Wait(c))
	}
	return errors.Join(errs...)
}

// RunWhileFaulting runs coordinators one after another, with whatever faults are in place,
// until every window is committed or maxRuns have run.
func (t *Trial) RunWhileFaulting(maxRuns int) error {
	for range maxRuns {
		if done, err := t.committed(); err != nil || done {
			return err
		}
		c, err := t.Start()
		if err != nil {
			return err
		}
		if err := t.Wait(c); err != nil {
			return err
		}
		if c.code == killed || c.code == 0 {
			// It kept its lease in dying, or found one a fault had left: wait it out, unless
			// there is nothing left to do.
			if done, err := t.committed(); err != nil || done {
				return err
			}
			t.awaitLease()
		}
	}
	return nil
}

// DuringRuns runs coordinators one after another while it calls inject, again and again
// as long as one runs, until inject has reported n hits or every window is committed.
// inject waits for its moment itself and reports whether its fault hit.
func (t *Trial) DuringRuns(n int, inject func() (hit bool)) error {
	hits := 0
	for run := 0; hits < n && run < n+4; run++ {
		if done, err := t.committed(); err != nil || done {
			return err
		}
		c, err := t.Start()
		if err != nil {
			return err
		}
		for hits < n && !c.exited() {
			if inject() {
				hits++
			}
		}
		if err := t.Wait(c); err != nil {
			return err
		}
		if c.code == killed {
			t.awaitLease()
		}
	}
	return nil
}

// killed is the exit code of a coordinator killed with SIGKILL, as a pod reports it.
const killed = 128 + 9

// awaitLease waits out the lease of a coordinator that was killed: until it expires, the
// next coordinator finds it held and does nothing, as a CronJob's next run would.
func (t *Trial) awaitLease() { t.Sleep(leaseTTL + 500*time.Millisecond) }

// Stop stops pid with SIGSTOP, counting the fault if it hit a live process.
func (t *Trial) Stop(pid int) bool {
	if syscall.Kill(pid, syscall.SIGSTOP) != nil {
		return false
	}
	t.Fault("SIGSTOP", fmt.Sprintf("pid %d", pid))
	return true
}

// Continue resumes a stopped pid.
func (t *Trial) Continue(pid int) { _ = syscall.Kill(pid, syscall.SIGCONT) }

// Fault records a fault that hit.
func (t *Trial) Fault(kind, detail string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events = append(t.events, kind+": "+detail)
}

// Intn is a seeded random number in [0, n).
func (t *Trial) Intn(n int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rng.IntN(n)
}

// Between is a seeded random duration in [lo, hi).
func (t *Trial) Between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(t.Intn(int(hi-lo)/int(time.Millisecond)))*time.Millisecond
}

// Go runs fn beside the fault phase; the trial waits for it before converging.
func (t *Trial) Go(fn func()) {
	t.pending.Add(1)
	go func() {
		defer t.pending.Done()
		fn()
	}()
}

// Sleep waits d, or less when the trial is cancelled.
func (t *Trial) Sleep(d time.Duration) {
	select {
	case <-time.After(d):
	case <-t.ctx.Done():
	}
}

// IsCoordinator is true when pid is one of the trial's coordinators.
func (t *Trial) IsCoordinator(pid int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.coords {
		if c.pid() == pid {
			return true
		}
	}
	return false
}

// Coordinators are the trial's coordinators that are still running.
func (t *Trial) Coordinators() []*coordinator {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*coordinator
	for _, c := range t.coords {
		if !c.exited() {
			out = append(out, c)
		}
	}
	return out
}

// Shards are the running shard processes of every coordinator of the trial.
func (t *Trial) Shards() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []int
	for _, c := range t.coords {
		out = append(out, children(c.pid())...)
	}
	return out
}

// Kill kills pid with SIGKILL and counts the fault if it hit a live process.
func (t *Trial) Kill(what string, pid int) bool {
	if !kill9(pid) {
		return false
	}
	t.Fault("kill -9", fmt.Sprintf("%s (pid %d)", what, pid))
	return true
}

func (t *Trial) exitCodes() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []int
	for _, c := range t.coords {
		if c.exited() {
			out = append(out, c.code)
		}
	}
	return out
}

func (t *Trial) killAll() {
	t.mu.Lock()
	cs := slices.Clone(t.coords)
	t.mu.Unlock()
	for _, c := range cs {
		c.killGroup()
	}
}
