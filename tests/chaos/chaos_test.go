package chaos

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/karch-archive/karch/internal/testenv"
)

var karchBin string

func TestMain(m *testing.M) { testenv.MainWithKarch(m, &karchBin) }

// subsetSeed and subset are the seeded part of the chaos run that `make test` runs: the
// quicker scenarios of each family (the volume trials, over a minute each, run only in `make
// chaos`), at least minSubsetFaults faults in all. `make chaos` runs every scenario with
// several seeds (CHAOS_FLAGS in the Makefile).
const (
	subsetSeed      = 20261125
	minSubsetFaults = 30
)

var subset = []string{
	"kill-shard-mid-piece",
	"kill-shard-piece-stored-unacked",
	"kill-coordinator-manifest-stored",
	"three-coordinators-no-redis",
	"s3-500",
	"s3-503-slowdown",
	"s3-reset-mid-body",
	"s3-put-applied-response-lost",
	"kafka-connection-resets",
	"redis-restart",
	"minio-kill-restart",
	"backfill-kill-coordinator-manifest-stored",
	"restore-kill-anytime",
	"parquet-kill-shard-mid-piece",
	"table-kill-coordinator-mid-commit",
}

// regressions are the scenarios and seeds that found a bug in karch: each failed before its
// fix, and must pass ever after.
var regressions = []struct {
	scenario string
	seed     uint64
	bug      string
}{
	{"kafka-silent-connections", 1, "a Kafka connection that went silent held a shard for ever (no request timeout)"},
	{"s3-stalled-requests", 1, "an S3 request never answered held a run for ever (no response timeout)"},
	{"restore-redis-restart", 2, "a restore whose lease vanished with Redis wrote on beside the next restore: 104 records twice (no fencing in Kafka)"},
}

// TestChaosSubset runs the subset and fails unless every trial committed every window with
// every record archived exactly once, as the independent checker reads them back.
func TestChaosSubset(t *testing.T) {
	rep := runChaos(t, subsetSeed, subset)
	if rep.Faults < minSubsetFaults {
		t.Fatalf("the subset injected %d faults, want at least %d", rep.Faults, minSubsetFaults)
	}
}

func TestChaosRegressions(t *testing.T) {
	for _, r := range regressions {
		t.Run(r.scenario, func(t *testing.T) {
			t.Logf("seed %d found: %s", r.seed, r.bug)
			if rep := runChaos(t, r.seed, []string{r.scenario}); rep.Faults == 0 {
				t.Fatal("the scenario injected no fault: it proved nothing")
			}
		})
	}
}

func runChaos(t *testing.T, seed uint64, names []string) *Report {
	t.Helper()
	root, err := RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "karch-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	h := &Harness{Servers: PrivateServers(root), Karch: karchBin, Dir: dir}
	if err := h.Servers.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	rep := &Report{Started: time.Now()}
	for _, name := range names {
		r := h.Run(context.Background(), scenarioNamed(t, name), seed)
		t.Logf("%s seed %d: %d faults, %d runs, exit codes %v, %d records, %.1fs", name, seed, r.Faults, r.Runs, r.ExitCodes, r.Records, r.Seconds)
		rep.Add(r)
	}
	rep.Seconds = time.Since(rep.Started).Seconds()
	var table strings.Builder
	rep.Table(&table)
	t.Log("\n" + table.String())
	if !rep.Passed() {
		t.Fatalf("%d trials failed; their logs are kept under %s (replay one: go run ./tests/chaos/cmd/chaos -seeds %d -run '^name$')", rep.Failed, dir, seed)
	}
	os.RemoveAll(dir)
	return rep
}

func scenarioNamed(t *testing.T, name string) *Scenario {
	t.Helper()
	for _, sc := range AllScenarios() {
		if sc.Name == name {
			return sc
		}
	}
	t.Fatalf("no scenario %q", name)
	return nil
}
