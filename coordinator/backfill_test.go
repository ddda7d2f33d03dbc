package coordinator_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/shard"
)

// backfillAt runs a backfill of [from, to) hours after t0 as if the clock said now, with
// fresh Kafka connections, batches of at most maxIndexes shards, on the local runner.
func (p *pipeline) backfillAt(ctx context.Context, now time.Time, from, to, maxIndexes int, progress func(coordinator.BackfillProgress)) ([]coordinator.WindowResult, error) {
	p.deps.Now = func() time.Time { return now }
	p.deps.Offsets = coordinator.NewKafkaOffsets(p.cfg.Brokers, shard.KafkaOptions{ClientID: "karch-test"})
	p.deps.Batches = p.deps.Runner.(coordinator.BatchRunner)
	bf := coordinator.Backfill{From: t0.Add(time.Duration(from) * time.Hour), To: t0.Add(time.Duration(to) * time.Hour),
		MaxIndexes: maxIndexes, Poll: 100 * time.Millisecond, Progress: progress}
	return coordinator.RunBackfill(ctx, p.cfg, bf, p.deps)
}

func batchKeys(t *testing.T, p *pipeline) []string {
	t.Helper()
	var keys []string
	err := p.deps.Bucket.List(context.Background(), p.cfg.Pipeline+"/backfill/", func(o blob.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// A day of hourly windows as one backfill: 24 windows of two shards each, run as three
// batches of at most 20 indexes, every offset of every partition archived exactly once, the
// manifests chained.
func TestBackfill24WindowsExactlyOnce(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 3)
	hourly(t, addr, topic, []int{0, 1, 2}, 480, 0, 24)
	p := newPipeline(t, topic, 3)
	p.cfg.Shards, p.cfg.PieceRecords, p.cfg.Parallelism = 2, 10, 4
	var last coordinator.BackfillProgress
	res, err := p.backfillAt(context.Background(), t0.Add(25*time.Hour), 0, 24, 20, func(bp coordinator.BackfillProgress) { last = bp })
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 24 || last.Committed != 24 || last.Windows != 24 || last.Records != 3*480 {
		t.Fatalf("%d results, last progress %+v; want 24 windows of 1440 records in all", len(res), last)
	}
	for _, r := range res {
		if !r.Committed {
			t.Fatalf("window %s: not committed by this run", r.Window.Start)
		}
	}
	if keys := batchKeys(t, p); len(keys) != 3 {
		t.Fatalf("batches %v; want 3 (48 shards, at most 20 a batch, no window split)", keys)
	}
	ms := manifests(t, p)
	assertExactlyOnce(t, p, ms, testenv.EndOffsets(t, addr, topic, 3))
	assertLinked(t, p, ms)
}

// A backfill killed after its fifth commit, with shards in flight, and run again with the
// same arguments carries on from the committed windows, adopting the plans and batches, and
// archives every offset exactly once.
func TestBackfillKilledAndRerun(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 2)
	hourly(t, addr, topic, []int{0, 1}, 240, 0, 12)
	p := newPipeline(t, topic, 2)
	p.cfg.Shards, p.cfg.PieceRecords = 2, 5
	ctx, kill := context.WithCancel(context.Background())
	defer kill()
	_, err := p.backfillAt(ctx, t0.Add(13*time.Hour), 0, 12, 10, func(bp coordinator.BackfillProgress) {
		if bp.Committed == 5 {
			kill()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("killed backfill: %v; want context.Canceled", err)
	}
	if n := len(manifests(t, p)); n < 5 || n == 12 {
		t.Fatalf("%d windows committed by the killed run; want at least 5, not all 12", n)
	}
	res, err := p.backfillAt(context.Background(), t0.Add(13*time.Hour), 0, 12, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 12 || res[0].Committed {
		t.Fatalf("rerun: %d results, first committed by this run: %v; want 12, the first from the killed run", len(res), res[0].Committed)
	}
	ms := manifests(t, p)
	assertExactlyOnce(t, p, ms, testenv.EndOffsets(t, addr, topic, 2))
	assertLinked(t, p, ms)
}

// A backfill before a pipeline's first committed window ends exactly at its first offsets.
// A partition added after that window, whose records carry timestamps from the backfill's
// hours, is left to the windows that archived it from its log start: archiving it by time
// again would store those records twice.
func TestBackfillEndsWhereCommittedWindowsBegin(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 2)
	hourly(t, addr, topic, []int{0, 1}, 120, 0, 6)
	p := newPipeline(t, topic, 2)
	p.cfg.Start = t0.Add(3 * time.Hour)
	if res, err := p.runAt(t0.Add(6*time.Hour + 2*time.Minute)); err != nil || len(res) != 3 {
		t.Fatalf("windows 3-6: %d committed, %v", len(res), err)
	}
	addPartitions(t, addr, topic, 3)
	hourly(t, addr, topic, []int{2}, 30, 1, 2) // stamped inside the backfill's range
	hourly(t, addr, topic, []int{0, 1, 2}, 10, 6, 7)
	if res, err := p.runAt(t0.Add(7*time.Hour + 2*time.Minute)); err != nil || len(res) != 1 {
		t.Fatalf("window 6: %d committed, %v", len(res), err)
	}
	res, err := p.backfillAt(context.Background(), t0.Add(8*time.Hour), 0, 3, 100, nil)
	if err != nil || len(res) != 3 {
		t.Fatalf("backfill 0-3: %d windows, %v", len(res), err)
	}
	ms := manifests(t, p)
	if len(ms) != 7 {
		t.Fatalf("%d manifests; want 7", len(ms))
	}
	assertExactlyOnce(t, p, ms, testenv.EndOffsets(t, addr, topic, 3))
}

// A backfill that would overlap committed windows, or leave a gap beside them, is refused
// as a permanent configuration error, and writes nothing.
func TestBackfillRefusesOverlapsAndGaps(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 1)
	hourly(t, addr, topic, []int{0}, 60, 0, 6)
	p := newPipeline(t, topic, 1)
	p.cfg.Start = t0.Add(3 * time.Hour)
	if res, err := p.runAt(t0.Add(5*time.Hour + 2*time.Minute)); err != nil || len(res) != 2 {
		t.Fatalf("windows 3-5: %d committed, %v", len(res), err)
	}
	for _, tc := range []struct {
		name     string
		from, to int
		says     string
	}{
		{"overlaps the first window", 2, 4, "must not overlap"},
		{"ends an hour before the first window", 0, 2, "must end exactly where"},
		{"starts an hour after the newest window", 6, 7, "would leave a gap"},
	} {
		_, err := p.backfillAt(context.Background(), t0.Add(8*time.Hour), tc.from, tc.to, 100, nil)
		if !failure.IsPermanent(err) || !errors.Is(err, coordinator.ErrConfig) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v; want a permanent config error saying %q", tc.name, err, tc.says)
		}
	}
	if keys := batchKeys(t, p); len(keys) != 0 || len(manifests(t, p)) != 2 {
		t.Fatalf("refused backfills wrote %v", keys)
	}
	for h := range 8 {
		if h < 3 || h > 4 {
			if key := archive.WindowDir(p.cfg.Pipeline, t0.Add(time.Duration(h)*time.Hour), time.Hour) + archive.PlanName; exists(t, p, key) {
				t.Fatalf("a refused backfill planned %s", key)
			}
		}
	}
}
