package coordinator_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/compress"
	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/lock"
)

var karchBin string

func TestMain(m *testing.M) { testenv.MainWithKarch(m, &karchBin) }

var t0 = time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)

// pipeline is one pipeline on the test servers, writing to a fresh S3 prefix.
type pipeline struct {
	cfg  coordinator.Config
	deps coordinator.Deps
	s3   blob.S3Config
}

func newPipeline(t *testing.T, topic string, partitions int) *pipeline {
	t.Helper()
	addr := testenv.Kafka(t)
	s3cfg := testenv.S3Config(t)
	b, err := blob.NewS3(context.Background(), s3cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := coordinator.DefaultConfig()
	cfg.Pipeline, cfg.Brokers, cfg.Topic = fmt.Sprintf("cdr-%d", time.Now().UnixNano()%1e12), []string{addr}, topic
	cfg.Start, cfg.Lateness, cfg.PieceRecords, cfg.Shards = t0, time.Minute, 700, 3
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	return &pipeline{cfg: cfg, s3: s3cfg, deps: coordinator.Deps{
		Bucket: b, StoreURL: fmt.Sprintf("s3://%s/%s", s3cfg.Bucket, s3cfg.Prefix), Locker: lock.NewLocal(),
		Offsets: coordinator.NewKafkaOffsets(cfg.Brokers), Logger: logger, Version: "test",
		Now: func() time.Time { return t0.Add(3*time.Hour + 2*time.Minute) },
		Runner: &coordinator.LocalRunner{Karch: karchBin, Parallelism: 2, Retries: 1, Logger: logger, Env: []string{
			"KARCH_S3_ENDPOINT=" + s3cfg.Endpoint, "KARCH_S3_PATH_STYLE=true", "AWS_ACCESS_KEY_ID=" + s3cfg.AccessKeyID,
			"AWS_SECRET_ACCESS_KEY=" + s3cfg.SecretAccessKey, "KARCH_LOG_LEVEL=warn"}},
	}}
}

// outOfOrder produces n records per partition whose timestamps fall anywhere in the three
// hours from t0, in random order.
func outOfOrder(t *testing.T, addr string, partitions, n int) string {
	t.Helper()
	topic := testenv.Topic(t, addr, partitions)
	rng := rand.New(rand.NewPCG(7, 8))
	var msgs []kafka.Message
	for i := range n * partitions {
		ts := t0.Add(time.Duration(rng.Int64N(int64(3 * time.Hour)))).Truncate(time.Millisecond)
		msgs = append(msgs, kafka.Message{Partition: i % partitions, Time: ts, Value: fmt.Appendf(nil, `{"n":%d}`, i)})
	}
	testenv.Produce(t, addr, topic, msgs)
	return topic
}

func manifests(t *testing.T, p *pipeline) []*archive.Manifest {
	t.Helper()
	var out []*archive.Manifest
	err := p.deps.Bucket.List(context.Background(), p.cfg.Pipeline+"/", func(o blob.ObjectInfo) error {
		if filepath.Base(o.Key) != archive.ManifestName {
			return nil
		}
		rc, err := p.deps.Bucket.Get(context.Background(), o.Key)
		if err != nil {
			return err
		}
		defer rc.Close()
		data, err := io.ReadAll(rc)
		if err != nil {
			return err
		}
		m, err := archive.DecodeManifest(data)
		out = append(out, m)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// assertExactlyOnce decodes every object of every manifest and checks that each offset of
// [0, end) of each partition is archived exactly once, and that consecutive manifests tile
// the log.
func assertExactlyOnce(t *testing.T, p *pipeline, ms []*archive.Manifest, ends []int64) {
	t.Helper()
	seen := map[[2]int64]int{}
	next := map[int32]int64{}
	for _, m := range ms {
		for _, r := range m.Partitions {
			if r.First != next[r.Partition] {
				t.Fatalf("window %s partition %d starts at %d; the previous window ended at %d", m.Window.Start, r.Partition, r.First, next[r.Partition])
			}
			next[r.Partition] = r.End
		}
		dir := archive.WindowDir(m.Pipeline, m.Window.Start, m.Window.End.Sub(m.Window.Start))
		for _, o := range m.Objects {
			for _, rec := range decode(t, p.deps.Bucket, dir+o.Key) {
				seen[[2]int64{int64(rec.Partition), rec.Offset}]++
			}
		}
	}
	for part, end := range ends {
		if next[int32(part)] != end {
			t.Fatalf("partition %d archived up to %d, the log ends at %d", part, next[int32(part)], end)
		}
		for off := range end {
			if n := seen[[2]int64{int64(part), off}]; n != 1 {
				t.Fatalf("partition %d offset %d archived %d times", part, off, n)
			}
		}
	}
}

func decode(t *testing.T, b blob.Bucket, key string) []archive.Record {
	t.Helper()
	rc, err := b.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	zr, err := compress.NewReader(rc)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var out []archive.Record
	dec := archive.NewDecoder(zr)
	for {
		r, err := dec.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("decode %s: %v", key, err)
		}
		out = append(out, r)
	}
}

func TestThreeWindowsOutOfOrderExactlyOnce(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := outOfOrder(t, addr, 3, 2000)
	p := newPipeline(t, topic, 3)
	results, err := coordinator.Run(context.Background(), p.cfg, p.deps)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 3 {
		t.Fatalf("%d windows archived, want 3", len(results))
	}
	ms := manifests(t, p)
	if len(ms) != 3 {
		t.Fatalf("%d manifests, want 3", len(ms))
	}
	assertExactlyOnce(t, p, ms, testenv.EndOffsets(t, addr, topic, 3))

	again, err := coordinator.Run(context.Background(), p.cfg, p.deps)
	if err != nil || len(again) != 0 {
		t.Fatalf("a second run with nothing due: %d windows, %v", len(again), err)
	}
}

func TestNothingDueCommitsNothing(t *testing.T) {
	addr := testenv.Kafka(t)
	p := newPipeline(t, testenv.Topic(t, addr, 1), 1)
	p.deps.Now = func() time.Time { return t0.Add(time.Hour + 30*time.Second) } // before end + lateness
	results, err := coordinator.Run(context.Background(), p.cfg, p.deps)
	if err != nil || len(results) != 0 || len(manifests(t, p)) != 0 {
		t.Fatalf("run before the window is due: %d windows, %d manifests, %v", len(results), len(manifests(t, p)), err)
	}
}

func TestEmptyWindowCommitsZeroRecords(t *testing.T) {
	addr := testenv.Kafka(t)
	p := newPipeline(t, testenv.Topic(t, addr, 2), 2)
	p.cfg.MaxWindows = 1
	if _, err := coordinator.Run(context.Background(), p.cfg, p.deps); err != nil {
		t.Fatal(err)
	}
	ms := manifests(t, p)
	if len(ms) != 1 || ms[0].Records != 0 || len(ms[0].Objects) != 0 || len(ms[0].Partitions) != 2 {
		t.Fatalf("empty window: %+v", ms)
	}
}

// Two coordinators at once on one pipeline, each with its own Redis client: one manifest
// per window, and both succeed.
func TestTwoCoordinatorsAtOnce(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := outOfOrder(t, addr, 2, 1000)
	p := newPipeline(t, topic, 2)
	var g errgroup.Group
	for range 2 {
		q := *p
		client := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
		defer client.Close()
		locker, err := lock.NewRedis(client, 5*time.Second, p.deps.Logger)
		if err != nil {
			t.Fatal(err)
		}
		q.deps.Locker = locker
		q.cfg.Pipeline = p.cfg.Pipeline
		g.Go(func() error {
			_, err := coordinator.Run(context.Background(), q.cfg, q.deps)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("a coordinator failed: %v", err)
	}
	ms := manifests(t, p)
	if len(ms) != 3 {
		t.Fatalf("%d manifests, want one per window (3)", len(ms))
	}
	assertExactlyOnce(t, p, ms, testenv.EndOffsets(t, addr, topic, 2))
}
