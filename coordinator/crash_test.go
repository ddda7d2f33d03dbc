package coordinator_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/internal/testenv"
)

// A shard that panics (Go's exit 2) is retried like a retryable failure, not failed for good:
// the real karch binary crashes through its test hook on its first attempt, and the window
// still commits with every record once.
func TestShardCrashIsRetried(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 1)
	hourly(t, addr, topic, []int{0}, 50, 0, 1)
	p := newPipeline(t, topic, 1)
	marker := filepath.Join(t.TempDir(), "crashed")
	runner := *p.deps.Runner.(*coordinator.LocalRunner)
	runner.Env = append(append([]string(nil), runner.Env...), "KARCHTEST_PANIC_ONCE="+marker)
	p.deps.Runner = &runner
	if res, err := p.runAt(t0.Add(time.Hour + 2*time.Minute)); err != nil || len(res) != 1 {
		t.Fatalf("run with a crashing shard: %d committed, %v", len(res), err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the shard never crashed: %v", err)
	}
	assertExactlyOnce(t, p, manifests(t, p), testenv.EndOffsets(t, addr, topic, 1))
}
