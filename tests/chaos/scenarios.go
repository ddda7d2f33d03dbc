package chaos

import (
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/karch-archive/karch/tests/chaos/faults"
)

// Shorthands for the requests that scenarios aim at.
var (
	puts     = []faults.Op{faults.OpPutObject}
	uploads  = []faults.Op{faults.OpPutObject, faults.OpUploadPart}
	reads    = []faults.Op{faults.OpGetObject, faults.OpHeadObject}
	anyOp    []faults.Op
	data     = []faults.Kind{faults.KindData}
	receipt  = []faults.Kind{faults.KindReceipt}
	plan     = []faults.Kind{faults.KindPlan}
	manifest = []faults.Kind{faults.KindManifest}
	anyKind  []faults.Kind
)

// small is the usual workload: three partitions of 600 records a window, in transactions
// (some aborted), so that a shard stores a few pieces of each of its partitions.
var small = Workload{Partitions: 3, Records: 600, Transactions: true}

// Scenarios are every chaos scenario, in the order `make chaos` runs them.
func Scenarios() []*Scenario {
	return []*Scenario{
		{Name: "kill-shard-mid-piece", About: "kill -9 of the shard that is uploading a piece, halfway through its body", Workload: small,
			Inject: killAt(faults.MidBody, uploads, data, 0.15, 4, shardsOnly)},
		{Name: "kill-shard-between-pieces", About: "kill -9 of a shard as it begins its next piece, the previous ones stored", Workload: small,
			Inject: killAt(faults.BeforeForward, puts, data, 0.2, 4, shardsOnly)},
		{Name: "kill-shard-piece-stored-unacked", About: "kill -9 of a shard after S3 stored its piece, before the shard heard so", Workload: small,
			Inject: killAt(faults.AfterApplied, puts, data, 0.2, 4, shardsOnly)},
		{Name: "kill-shard-before-receipt", About: "kill -9 of a shard after its last piece, as it writes its receipt", Workload: small,
			Inject: killAt(faults.BeforeForward, puts, receipt, 0.5, 4, shardsOnly)},
		{Name: "kill-shard-receipt-stored-unacked", About: "kill -9 of a shard after S3 stored its receipt, before it exited 0", Workload: small,
			Inject: killAt(faults.AfterApplied, puts, receipt, 0.5, 4, shardsOnly)},
		{Name: "kill-coordinator-before-plan", About: "kill -9 of the coordinator as it creates a window's plan", Workload: small,
			Inject: killAt(faults.BeforeForward, puts, plan, 0.7, 3, coordinatorsOnly)},
		{Name: "kill-coordinator-plan-stored", About: "kill -9 of the coordinator after its plan is stored, before any shard starts", Workload: small,
			Inject: killAt(faults.AfterApplied, puts, plan, 0.7, 3, coordinatorsOnly)},
		{Name: "kill-coordinator-during-verify", About: "kill -9 of the coordinator while it reads receipts and pieces back to verify them", Workload: small,
			Inject: killAt(faults.BeforeForward, reads, anyKind, 0.1, 3, coordinatorsOnly)},
		{Name: "kill-coordinator-mid-manifest", About: "kill -9 of the coordinator halfway through the body of a manifest's create", Workload: small,
			Inject: killAt(faults.MidBody, puts, manifest, 0.7, 3, coordinatorsOnly)},
		{Name: "kill-coordinator-manifest-stored", About: "kill -9 of the coordinator after S3 created its manifest, before it heard so", Workload: small,
			Inject: killAt(faults.AfterApplied, puts, manifest, 0.7, 3, coordinatorsOnly)},
		{Name: "kill-anything-anytime", About: "kill -9 of the coordinator or of a shard at seeded random moments of a run", Workload: small,
			Inject: killAnytime(5)},
		{Name: "sigstop-coordinator-past-lease", About: "SIGSTOP of a coordinator past its lease's TTL, another coordinator started, then SIGCONT while it runs", Workload: small,
			Inject: stopPastLease},
		{Name: "three-coordinators-redis", About: "three coordinators started at once on one Redis lease, twice", Workload: small,
			Inject: coordinatorsAtOnce(3, 2)},
		{Name: "three-coordinators-no-redis", About: "three coordinators started at once with in-process leases (no Redis): only the manifest's create-if-absent keeps them apart", Workload: small,
			Env: []string{"KARCH_REDIS="}, Inject: coordinatorsAtOnce(3, 2)},
		{Name: "s3-500", About: "HTTP 500 InternalError on 12% of S3 requests, 30 at most", Workload: small,
			Inject: s3Errors(faults.Status500, 0.12, 30).inject},
		{Name: "s3-503-slowdown", About: "HTTP 503 ServiceUnavailable and SlowDown on 10% of S3 requests each, 12 of each at most", Workload: small,
			Inject: s3Errors(faults.Status503, 0.1, 12).and(s3Errors(faults.SlowDown, 0.1, 12)).inject},
		{Name: "s3-reset-mid-body", About: "connections reset halfway through uploads' bodies and through downloads' responses", Workload: small,
			Inject: s3Resets},
		{Name: "s3-slow-responses", About: "S3 responses delayed 1 to 3 s", Workload: small,
			Inject: s3Slow},
		{Name: "s3-stalled-requests", About: "S3 requests that the server never answers (held for 10 minutes): karch must give up on them and retry", Workload: small,
			Inject: s3Errors(faults.Delay(10*time.Minute), 0.05, 2).inject},
		{Name: "s3-put-applied-response-lost", About: "PutObject applied by MinIO, its response dropped: the client retries a request that succeeded (pieces, receipts, plans, manifests)", Workload: small,
			Inject: s3Errors(faults.ApplyThenDrop, 0.2, 24).ops(puts).inject},
		{Name: "s3-manifest-applied-response-lost", About: "the manifest's conditional create applied, its response dropped: the retry meets the manifest it created", Workload: small,
			Inject: s3Errors(faults.ApplyThenDrop, 1, 3).ops(puts).kinds(manifest).inject},
		{Name: "s3-complete-multipart-response-lost", About: "CompleteMultipartUpload applied, its response dropped, on pieces of 10 MiB", Workload: Workload{Partitions: 1, Records: 160, ValueSize: 64 << 10},
			Env:    []string{"KARCH_PIECE_RECORDS=1000"},
			Inject: s3Errors(faults.ApplyThenDrop, 0.7, 3).ops([]faults.Op{faults.OpCompleteMultipartUpload}).inject},
		{Name: "s3-clock-skew-ahead", About: "karch's clock 20 minutes ahead of the store's (past SigV4's 15 minutes and the lease's TTL) for every S3 request of the fault phase", Workload: small,
			Inject: clockSkew(20 * time.Minute)},
		{Name: "s3-clock-skew-behind", About: "karch's clock 20 minutes behind the store's for every S3 request of the fault phase", Workload: small,
			Inject: clockSkew(-20 * time.Minute)},
		{Name: "kafka-broker-kill-restart", About: "kill -9 of the Kafka broker while shards read, restarted 1 to 3 s later", Workload: small,
			Inject: serverKill("kafka", 2)},
		{Name: "kafka-slow-link", About: "Kafka connections with 100 ms (±50) latency and 300 KB/s, and reset twice", Workload: small,
			Inject: kafkaSlow},
		{Name: "kafka-connection-resets", About: "every Kafka connection reset at seeded moments", Workload: small,
			Inject: tcpResets(func(t *Trial) *faults.TCPProxy { return t.kafka }, 12)},
		{Name: "kafka-half-open", About: "Kafka connections go silent (open, no bytes either way) for 3 to 10 s", Workload: small,
			Inject: kafkaHalfOpen},
		{Name: "kafka-silent-connections", About: "open Kafka connections go silent for good at seeded moments (a hung broker, a peer gone behind a firewall): karch must give up on them and reconnect", Workload: small,
			Inject: kafkaSilence},
		{Name: "redis-restart", About: "kill -9 of Redis after a plan is stored (the lease vanishes), restarted, and a second coordinator started", Workload: small,
			Inject: redisRestart},
		{Name: "redis-cut-mid-renewal", About: "Redis connections cut at seeded moments while coordinators renew their leases", Workload: small,
			Inject: tcpResets(func(t *Trial) *faults.TCPProxy { return t.redis }, 12)},
		{Name: "redis-silent-connections", About: "open Redis connections go silent for good at seeded moments, lease renewals among them", Workload: small,
			Inject: func(t *Trial) error {
				return t.DuringRuns(3, func() bool {
					t.Sleep(t.Between(200*time.Millisecond, 1500*time.Millisecond))
					return t.redis.Blackhole() > 0
				})
			}},
		{Name: "minio-kill-restart", About: "kill -9 of MinIO halfway through a piece's upload, restarted 1 to 2 s later", Workload: small,
			Inject: serverKill("minio", 2)},
		{Name: "volume-kill-anything-anytime", About: "kill -9 of the coordinator or of a shard at seeded moments, over 144,000 records (about 109,000 committed) in 4 partitions and 3 windows, in transactions", Workload: volume,
			Env: []string{"KARCH_PIECE_RECORDS=3000"}, Inject: killAnytime(6)},
		{Name: "volume-s3-500-and-resets", About: "HTTP 500 on 5% of S3 requests and connections reset mid-upload, over 144,000 records (about 109,000 committed) in 4 partitions and 3 windows", Workload: volume,
			Env: []string{"KARCH_PIECE_RECORDS=3000"}, Inject: func(t *Trial) error {
				t.S3Fault(faults.ResetMidRequest, uploads, data, 0.1, 6)
				return s3Errors(faults.Status500, 0.05, 40).inject(t)
			}},
	}
}

// volume is the workload of the volume scenarios: 144,000 records (about 109,000 committed), so that faults land
// across many pieces of several windows.
var volume = Workload{Partitions: 4, Records: 12000, Transactions: true}

// BackfillScenarios run `karch backfill` of the trial's windows instead of `karch run`.
func BackfillScenarios() []*Scenario {
	return []*Scenario{
		{Name: "backfill-kill-shard-mid-piece", About: "kill -9 of a backfill's shard halfway through a piece's body", Workload: small, Command: "backfill",
			Inject: killAt(faults.MidBody, uploads, data, 0.15, 4, shardsOnly)},
		{Name: "backfill-kill-coordinator-plan-stored", About: "kill -9 of the backfill after one of its windows' plans is stored, rerun with the same arguments", Workload: small, Command: "backfill",
			Inject: killAt(faults.AfterApplied, puts, plan, 0.5, 3, coordinatorsOnly)},
		{Name: "backfill-kill-coordinator-manifest-stored", About: "kill -9 of the backfill after S3 created one of its windows' manifests, before it heard so; rerun with the same arguments", Workload: small, Command: "backfill",
			Inject: killAt(faults.AfterApplied, puts, manifest, 0.5, 3, coordinatorsOnly)},
		{Name: "backfill-kill-anything-anytime", About: "kill -9 of the backfill or of one of its shards at seeded moments", Workload: small, Command: "backfill",
			Inject: killAnytime(5)},
		{Name: "backfill-sigstop-past-lease", About: "SIGSTOP of a backfill past its lease's TTL, another backfill started, then SIGCONT while it runs", Workload: small, Command: "backfill",
			Inject: stopPastLease},
		{Name: "backfill-two-at-once", About: "two backfills of the same range started at once, twice", Workload: small, Command: "backfill",
			Inject: coordinatorsAtOnce(2, 2)},
		{Name: "backfill-racing-run", About: "a backfill and the CronJob's `karch run` of the same windows started at once, twice", Workload: small, Command: "backfill",
			Inject: backfillRacingRun},
		{Name: "backfill-s3-put-applied-response-lost", About: "PutObject applied, its response dropped, on 20% of a backfill's puts", Workload: small, Command: "backfill",
			Inject: s3Errors(faults.ApplyThenDrop, 0.2, 24).ops(puts).inject},
	}
}

// RestoreScenarios archive the trial's windows without faults, then restore them into a new
// topic under faults; the checker compares the two topics record by record, by origin.
func RestoreScenarios() []*Scenario {
	return []*Scenario{
		{Name: "restore-kill-anytime", About: "kill -9 of `karch restore` at seeded moments while it writes, then rerun", Workload: small, Restore: true,
			Inject: func(t *Trial) error {
				return t.RestoreDuring(4, func(r *coordinator) bool {
					t.Sleep(t.Between(200*time.Millisecond, 1500*time.Millisecond))
					return t.Kill("the restore at a random moment", r.pid())
				})
			}},
		{Name: "restore-two-at-once", About: "two restores of the same windows into one topic started at once, twice", Workload: small, Restore: true,
			Inject: restoresAtOnce},
		{Name: "restore-kafka-kill-restart", About: "kill -9 of the Kafka broker while a restore writes, restarted 1 to 3 s later", Workload: small, Restore: true,
			Inject: func(t *Trial) error {
				return t.RestoreDuring(2, func(*coordinator) bool {
					t.Sleep(t.Between(200*time.Millisecond, 1500*time.Millisecond))
					if t.srv.Kill("kafka") != nil {
						return false
					}
					t.Fault("kill -9", "kafka")
					t.Sleep(t.Between(time.Second, 3*time.Second))
					return t.srv.Up(t.ctx) == nil
				})
			}},
		{Name: "restore-kafka-connection-resets", About: "every Kafka connection reset at seeded moments while a restore writes", Workload: small, Restore: true,
			Inject: func(t *Trial) error {
				return t.RestoreDuring(12, func(*coordinator) bool {
					t.Sleep(t.Between(100*time.Millisecond, 800*time.Millisecond))
					return t.kafka.ResetPeer() > 0
				})
			}},
		{Name: "restore-sigstop-past-lease", About: "SIGSTOP of a restore past its lease's TTL, a second restore started, then SIGCONT while the second writes", Workload: small, Restore: true,
			Inject: restoreStopPastLease},
		{Name: "restore-redis-restart", About: "kill -9 of Redis while a restore writes (its lease vanishes), restarted, and a second restore started", Workload: small, Restore: true,
			Inject: restoreRedisRestart},
	}
}

// TableScenarios write a Parquet copy of each window and append it to an Iceberg table in
// the sql catalog; after the trial, `karch verify --deep --table` must find the table holding
// every committed window once, with as many records as the checker read.
func TableScenarios() []*Scenario {
	parquet, table := []faults.Kind{faults.KindParquet}, []faults.Kind{faults.KindTable}
	return []*Scenario{
		{Name: "parquet-kill-shard-mid-piece", About: "kill -9 of a shard halfway through the body of a Parquet piece's upload", Workload: small, Table: true,
			Inject: killAt(faults.MidBody, uploads, parquet, 0.3, 4, shardsOnly)},
		{Name: "table-kill-coordinator-manifest-stored", About: "kill -9 of the coordinator after S3 created a window's manifest, before it appended the window to the table", Workload: small, Table: true,
			Inject: killAt(faults.AfterApplied, puts, manifest, 0.7, 3, coordinatorsOnly)},
		{Name: "table-kill-coordinator-mid-commit", About: "kill -9 of the coordinator as it writes the table's metadata, manifests and manifest lists", Workload: small, Table: true,
			Inject: killAt(faults.AfterApplied, puts, table, 0.3, 3, coordinatorsOnly)},
		{Name: "table-catalog-down", About: "kill -9 of PostgreSQL (the sql catalog) as the table's files are written, restarted 1 to 3 s later", Workload: small, Table: true,
			Inject: serverKillAt("postgres", faults.BeforeForward, puts, table, 2)},
		{Name: "table-three-coordinators-no-redis", About: "three coordinators at once with in-process leases, twice: concurrent appends to one table", Workload: small, Table: true,
			Env: []string{"KARCH_REDIS="}, Inject: coordinatorsAtOnce(3, 2)},
		{Name: "table-s3-put-applied-response-lost", About: "PutObject applied, its response dropped, on 30% of the table's writes", Workload: small, Table: true,
			Inject: s3Errors(faults.ApplyThenDrop, 0.3, 6).ops(puts).kinds(table).inject},
	}
}

// AllScenarios are every scenario, in the order `make chaos` runs them.
func AllScenarios() []*Scenario {
	return slices.Concat(Scenarios(), BackfillScenarios(), RestoreScenarios(), TableScenarios())
}

// backfillRacingRun starts a backfill and `karch run` together, in a seeded order, twice.
func backfillRacingRun(t *Trial) error {
	t.s3Background(faults.Delay(200*time.Millisecond), 0.2) // widens the races
	for range 2 {
		first, second := t.Start, func(...string) (*coordinator, error) { return t.StartCommand([]string{"run"}) }
		if t.Intn(2) == 0 {
			first, second = second, first
		}
		a, err := first()
		if err != nil {
			return err
		}
		b, err := second()
		if err != nil {
			return err
		}
		t.Fault("concurrent command", "karch backfill and karch run started at once")
		if err := t.WaitAll(a, b); err != nil {
			return err
		}
	}
	return nil
}

// restoresAtOnce starts two restores together, twice: the lease lets one write.
func restoresAtOnce(t *Trial) error {
	for range 2 {
		a, err := t.StartRestore()
		if err != nil {
			return err
		}
		b, err := t.StartRestore()
		if err != nil {
			return err
		}
		t.Fault("concurrent restore", "two restores into one topic started at once")
		if err := t.WaitAll(a, b); err != nil {
			return err
		}
		t.afterRestore(a)
	}
	return nil
}

// restoreStopPastLease stops restore A while it writes, waits past its lease's TTL, starts
// restore B, and continues A while B writes: A's lease is B's now, so A must write nothing
// more, and B must write each record A did not.
func restoreStopPastLease(t *Trial) error {
	a, err := t.StartRestore()
	if err != nil {
		return err
	}
	t.Sleep(t.Between(800*time.Millisecond, 1500*time.Millisecond))
	if !t.Stop(a.pid()) {
		return t.Wait(a)
	}
	return t.secondPastLease(a, a.pid(), "second restore", t.StartRestore, 300*time.Millisecond, 1500*time.Millisecond)
}

// secondPastLease waits past the lease of a, stopped (its process pid), starts a second
// process with start, continues a after a seeded lo to hi while the second runs, and waits
// for both.
func (t *Trial) secondPastLease(a *coordinator, pid int, what string, start func() (*coordinator, error), lo, hi time.Duration) error {
	t.Sleep(leaseTTL + time.Second)
	b, err := start()
	if err != nil {
		return err
	}
	t.Fault(what, "started while the first was stopped past its lease")
	t.Sleep(t.Between(lo, hi))
	t.Continue(pid)
	return t.WaitAll(a, b)
}

// restoreRedisRestart kills Redis while restore A writes, so that A's lease vanishes with it,
// restarts it, and starts restore B, which finds no lease: A must stop writing before B
// begins.
func restoreRedisRestart(t *Trial) error {
	a, err := t.StartRestore()
	if err != nil {
		return err
	}
	t.Sleep(t.Between(500*time.Millisecond, 1500*time.Millisecond))
	if t.srv.Kill("redis") != nil {
		return t.Wait(a)
	}
	t.Fault("kill -9", "redis")
	return t.secondOnRestartedRedis(a, "second restore", t.StartRestore)
}

// secondOnRestartedRedis starts Redis again, then a second process beside a, which finds no
// lease there, and waits for both.
func (t *Trial) secondOnRestartedRedis(a *coordinator, what string, start func() (*coordinator, error)) error {
	if err := t.srv.Up(t.ctx); err != nil {
		return err
	}
	b, err := start()
	if err != nil {
		return err
	}
	t.Fault(what, "started on the restarted Redis, which holds no lease")
	return t.WaitAll(a, b)
}

// The processes a kill hook may hit.
const (
	shardsOnly       = false
	coordinatorsOnly = true
)

// killAt kills the process that sent a matching S3 request, at stage, on a seeded fraction p
// of those requests, at most max times; coordinators says whose requests count. Runs repeat
// until every window is committed or the kills are spent.
func killAt(stage faults.Stage, ops []faults.Op, kinds []faults.Kind, p float64, max int, coordinators bool) func(*Trial) error {
	return func(t *Trial) error {
		t.S3Kill(stage, ops, kinds, p, max, coordinators)
		return t.RunWhileFaulting(max + 3)
	}
}

func who(coordinator bool) string {
	if coordinator {
		return "coordinator"
	}
	return "shard"
}

// killAnytime kills the coordinator or one of its shards at seeded moments of its runs, n
// times in all.
func killAnytime(n int) func(*Trial) error {
	return func(t *Trial) error {
		return t.DuringRuns(n, func() bool {
			t.Sleep(t.Between(20*time.Millisecond, 800*time.Millisecond))
			if shards := t.Shards(); len(shards) > 0 && t.Intn(3) > 0 {
				return t.Kill("a shard at a random moment", shards[t.Intn(len(shards))])
			}
			cs := t.Coordinators()
			return len(cs) > 0 && t.Kill("the coordinator at a random moment", cs[0].pid())
		})
	}
}

// stopPastLease stops coordinator A once its plan is stored, waits past the lease's TTL,
// starts coordinator B, and continues A while B runs: A's lease is B's now, so A must stop
// before it commits anything, or commit only what B would have.
func stopPastLease(t *Trial) error {
	stopped := make(chan int, 1)
	t.S3Hook(faults.AfterApplied, puts, plan, 1, 1, func(req faults.Request) {
		if pid, err := faults.PeerPID(req.RemoteAddr); err == nil && t.IsCoordinator(pid) && t.Stop(pid) {
			stopped <- pid
		}
	})
	a, err := t.Start()
	if err != nil {
		return err
	}
	var pid int
	select {
	case pid = <-stopped:
	case <-a.done:
		return fmt.Errorf("coordinator A exited before its plan was stored: %d", a.code)
	}
	return t.secondPastLease(a, pid, "second coordinator", func() (*coordinator, error) { return t.Start() }, 500*time.Millisecond, 3*time.Second)
}

// coordinatorsAtOnce starts n coordinators together, rounds times; each coordinator beside
// the first is a fault.
func coordinatorsAtOnce(n, rounds int) func(*Trial) error {
	return func(t *Trial) error {
		t.s3Background(faults.Delay(200*time.Millisecond), 0.2) // widens the races
		for range rounds {
			var cs []*coordinator
			for i := range n {
				c, err := t.Start()
				if err != nil {
					return err
				}
				if i > 0 {
					t.Fault("concurrent coordinator", fmt.Sprintf("%d of %d started at once", i+1, n))
				}
				cs = append(cs, c)
			}
			if err := t.WaitAll(cs...); err != nil {
				return err
			}
		}
		return nil
	}
}

// s3Inject is an S3 fault on a seeded fraction of matching requests, narrowed by ops and
// kinds, combined with others by and.
type s3Inject struct {
	action   faults.Action
	p        float64
	max      int
	opList   []faults.Op
	kindList []faults.Kind
	also     []s3Inject
}

func s3Errors(a faults.Action, p float64, max int) s3Inject {
	return s3Inject{action: a, p: p, max: max}
}

func (s s3Inject) ops(o []faults.Op) s3Inject     { s.opList = o; return s }
func (s s3Inject) kinds(k []faults.Kind) s3Inject { s.kindList = k; return s }
func (s s3Inject) and(o s3Inject) s3Inject        { s.also = append(s.also, o); return s }

func (s s3Inject) install(t *Trial) int {
	t.S3Fault(s.action, s.opList, s.kindList, s.p, s.max)
	n := s.max
	for _, o := range s.also {
		n += o.install(t)
	}
	return n
}

// inject is the fault phase of a scenario of S3 faults: runs until the faults are spent or
// every window is committed.
func (s s3Inject) inject(t *Trial) error { return t.RunWhileFaulting(s.install(t)/2 + 4) }

func s3Resets(t *Trial) error {
	t.S3Fault(faults.ResetMidRequest, uploads, data, 0.15, 5)
	t.S3Fault(faults.ResetMidResponse, []faults.Op{faults.OpGetObject}, anyKind, 0.3, 3)
	return t.RunWhileFaulting(8)
}

func s3Slow(t *Trial) error {
	for range 4 {
		t.S3Fault(faults.Delay(t.Between(time.Second, 3*time.Second)), anyOp, anyKind, 0.05, 2)
	}
	return t.RunWhileFaulting(6)
}

// serverKill kills a server ("kafka" or "minio") halfway through a piece's upload, n times,
// and restarts it 1 to 3 s later while karch runs on.
func serverKill(name string, n int) func(*Trial) error {
	return serverKillAt(name, faults.MidBody, uploads, data, n)
}

// serverKillAt kills a server at stage of a seeded third of the S3 requests that match ops
// and kinds, n times, and restarts it 1 to 3 s later while karch runs on.
func serverKillAt(name string, stage faults.Stage, ops []faults.Op, kinds []faults.Kind, n int) func(*Trial) error {
	return func(t *Trial) error {
		var down atomic.Bool // no second kill before the restart
		t.S3Hook(stage, ops, kinds, 0.3, n, func(faults.Request) {
			if down.Swap(true) {
				return
			}
			if err := t.srv.Kill(name); err != nil {
				down.Store(false)
				return
			}
			t.Fault("kill -9", name)
			t.Go(func() {
				t.Sleep(t.Between(time.Second, 3*time.Second))
				_ = t.srv.Up(t.ctx)
				down.Store(false)
			})
		})
		return t.RunWhileFaulting(n + 4)
	}
}

// clockSkew runs karch with its clock d off the store's, as far as S3 can tell: one fault,
// lasting the whole fault phase.
func clockSkew(d time.Duration) func(*Trial) error {
	return func(t *Trial) error {
		creds := aws.Credentials{AccessKeyID: t.srv.S3.AccessKey, SecretAccessKey: t.srv.S3.SecretKey}
		t.s3Background(faults.SkewClock(d, creds, "us-east-1"), 1)
		t.Fault("clock skew", fmt.Sprintf("karch's clock %s off the store's", d))
		return t.RunWhileFaulting(4)
	}
}

func kafkaSlow(t *Trial) error {
	t.kafka.Latency(100*time.Millisecond, 50*time.Millisecond)
	t.kafka.Bandwidth(300)
	t.Go(func() {
		for range 2 {
			t.Sleep(t.Between(time.Second, 4*time.Second))
			t.kafka.ResetPeer()
		}
	})
	return t.RunWhileFaulting(4)
}

// tcpResets resets every connection through a TCP proxy at seeded moments while a
// coordinator runs, n times in all.
func tcpResets(proxy func(*Trial) *faults.TCPProxy, n int) func(*Trial) error {
	return func(t *Trial) error {
		return t.DuringRuns(n, func() bool {
			t.Sleep(t.Between(100*time.Millisecond, 800*time.Millisecond))
			return proxy(t).ResetPeer() > 0
		})
	}
}

func kafkaHalfOpen(t *Trial) error {
	return t.DuringRuns(3, func() bool {
		t.Sleep(t.Between(200*time.Millisecond, time.Second))
		end := faults.ThenResume
		if t.Intn(2) == 0 {
			end = faults.ThenReset
		}
		d := t.Between(3*time.Second, 10*time.Second)
		t.kafka.HalfOpen(d, end)
		t.Sleep(d)
		return true
	})
}

// kafkaSilence silences the open Kafka connections as a shard uploads a piece, when its
// connection is sure to be open, mid-read or pooled for the next piece's first fetch.
func kafkaSilence(t *Trial) error {
	t.S3Hook(faults.MidBody, uploads, data, 0.3, 1, func(faults.Request) { t.kafka.Blackhole() })
	return t.RunWhileFaulting(5)
}

// redisRestart kills Redis once the first plan is stored, so that the running coordinator's
// lease vanishes with it, restarts it, and starts a second coordinator, which finds no lease.
func redisRestart(t *Trial) error {
	killed := make(chan struct{})
	t.S3Hook(faults.AfterApplied, puts, plan, 1, 1, func(faults.Request) {
		if t.srv.Kill("redis") == nil {
			t.Fault("kill -9", "redis")
		}
		close(killed)
	})
	a, err := t.Start()
	if err != nil {
		return err
	}
	select {
	case <-killed:
	case <-a.done:
		return fmt.Errorf("coordinator exited before its plan was stored: %d", a.code)
	}
	return t.secondOnRestartedRedis(a, "second coordinator", func() (*coordinator, error) { return t.Start() })
}
