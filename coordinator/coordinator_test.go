package coordinator_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/compress"
	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/lock"
	"github.com/karch-archive/karch/shard"
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
		Offsets: coordinator.NewKafkaOffsets(cfg.Brokers, shard.KafkaOptions{ClientID: "karch-test"}), Logger: logger, Version: "test",
		Now: func() time.Time { return t0.Add(3*time.Hour + 2*time.Minute) },
		Runner: &coordinator.LocalRunner{Karch: karchBin, Parallelism: 2, Retries: 1, Logger: logger, Env: []string{
			"KARCH_S3_ENDPOINT=" + s3cfg.Endpoint, "KARCH_S3_PATH_STYLE=true", "AWS_ACCESS_KEY_ID=" + s3cfg.AccessKeyID,
			"AWS_SECRET_ACCESS_KEY=" + s3cfg.SecretAccessKey, "KARCH_LOG_LEVEL=warn"}},
	}}
}

// outOfOrder produces n records per partition whose timestamps fall anywhere in the three
// hours from t0, in random order, with null, binary and text keys and with headers, and
// returns the topic and what it produced.
func outOfOrder(t *testing.T, addr string, partitions, n int) (string, []kafka.Message) {
	t.Helper()
	topic := testenv.Topic(t, addr, partitions)
	rng := rand.New(rand.NewPCG(7, 8))
	var msgs []kafka.Message
	for i := range n * partitions {
		ts := t0.Add(time.Duration(rng.Int64N(int64(3 * time.Hour)))).Truncate(time.Millisecond)
		msgs = append(msgs, kafka.Message{Partition: i % partitions, Time: ts, Key: keyOf(i), Value: fmt.Appendf(nil, `{"n":%d}`, i), Headers: headersOf(i)})
	}
	testenv.Produce(t, addr, topic, msgs)
	return topic, msgs
}

func keyOf(i int) []byte {
	switch i % 3 {
	case 0:
		return nil
	case 1:
		return []byte{0xff, 0x00, byte(i)}
	default:
		return fmt.Appendf(nil, "caller-%d", i%97)
	}
}

func headersOf(i int) []kafka.Header {
	if i%2 == 0 {
		return nil
	}
	return []kafka.Header{{Key: "trace", Value: fmt.Appendf(nil, "%x", i)}, {Key: "bin", Value: []byte{0, 1, 0xfe, byte(i)}}}
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
	topic, produced := outOfOrder(t, addr, 3, 2000)
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
	assertAsProduced(t, p, ms, produced)

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

// Two coordinators on one pipeline, each with its own in-process lease, so that both hold
// a lease at once: they meet after taking it, and again before each manifest's create, so
// that every window's create-if-absent is raced. Each window gets one manifest, created by
// exactly one of them; the other adopts it; every produced record is archived once, as
// produced.
func TestTwoCoordinatorsAtOnce(t *testing.T) {
	addr := testenv.Kafka(t)
	topic, produced := outOfOrder(t, addr, 2, 1000)
	p := newPipeline(t, topic, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	meet := newRendezvous(2)
	results := make([][]coordinator.WindowResult, 2)
	g, gctx := errgroup.WithContext(ctx)
	for i := range results {
		q := *p
		q.deps.Locker = metLocker{Locker: lock.NewLocal(), meet: meet}
		q.deps.Bucket = metBucket{Bucket: p.deps.Bucket, meet: meet}
		q.deps.Offsets = coordinator.NewKafkaOffsets(p.cfg.Brokers, shard.KafkaOptions{ClientID: "karch-test"})
		g.Go(func() (err error) {
			results[i], err = coordinator.Run(gctx, q.cfg, q.deps)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("a coordinator failed: %v", err)
	}
	assertOneCreatorEach(t, results, 3)
	ms := manifests(t, p)
	if len(ms) != 3 {
		t.Fatalf("%d manifests, want one per window (3)", len(ms))
	}
	assertExactlyOnce(t, p, ms, testenv.EndOffsets(t, addr, topic, 2))
	assertAsProduced(t, p, ms, produced)
}

// assertOneCreatorEach checks that every coordinator took each window to its manifest, that
// exactly one of them created it, and that they agree on what it holds.
func assertOneCreatorEach(t *testing.T, results [][]coordinator.WindowResult, windows int) {
	t.Helper()
	for i, rs := range results {
		if len(rs) != windows {
			t.Fatalf("coordinator %d took %d windows to a manifest, want %d", i, len(rs), windows)
		}
	}
	for w := range windows {
		created := 0
		for _, rs := range results {
			if rs[w].Committed {
				created++
			}
			if rs[w].Window != results[0][w].Window || rs[w].Records != results[0][w].Records {
				t.Fatalf("window %d: the coordinators disagree: %+v and %+v", w, rs[w], results[0][w])
			}
		}
		if created != 1 {
			t.Fatalf("window %s: %d coordinators created its manifest, want exactly 1", results[0][w].Window.Start, created)
		}
	}
}

// rendezvous makes n parties wait for each other at named points, so that what follows a
// point starts for all of them at once.
type rendezvous struct {
	n      int
	mu     sync.Mutex
	points map[string]chan struct{}
	counts map[string]int
}

func newRendezvous(n int) *rendezvous {
	return &rendezvous{n: n, points: map[string]chan struct{}{}, counts: map[string]int{}}
}

// wait returns once n parties have called it with name, or with ctx's error.
func (r *rendezvous) wait(ctx context.Context, name string) error {
	r.mu.Lock()
	all, ok := r.points[name]
	if !ok {
		all = make(chan struct{})
		r.points[name] = all
	}
	r.counts[name]++
	if r.counts[name] == r.n {
		close(all)
	}
	r.mu.Unlock()
	select {
	case <-all:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the other coordinators at %s: %w", name, ctx.Err())
	}
}

// metLocker hands out a lease only once every party holds its own.
type metLocker struct {
	lock.Locker
	meet *rendezvous
}

func (l metLocker) Acquire(ctx context.Context, name string) (lock.Lease, error) {
	lease, err := l.Locker.Acquire(ctx, name)
	if err != nil {
		return nil, err
	}
	if err := l.meet.wait(ctx, "lease "+name); err != nil {
		lease.Release(context.WithoutCancel(ctx))
		return nil, err
	}
	return lease, nil
}

// metBucket sends a manifest's create only once every party is about to send it.
type metBucket struct {
	blob.Bucket
	meet *rendezvous
}

func (b metBucket) Put(ctx context.Context, key string, r io.Reader, opts blob.PutOptions) (blob.ObjectInfo, error) {
	if path.Base(key) == archive.ManifestName {
		if err := b.meet.wait(ctx, key); err != nil {
			return blob.ObjectInfo{}, err
		}
	}
	return b.Bucket.Put(ctx, key, r, opts)
}

// assertAsProduced decodes every record of the manifests' objects and checks it against the
// message produced with its value: same partition, key, headers and timestamp; every
// produced message archived exactly once.
func assertAsProduced(t *testing.T, p *pipeline, ms []*archive.Manifest, produced []kafka.Message) {
	t.Helper()
	byValue := make(map[string]kafka.Message, len(produced))
	for _, m := range produced {
		byValue[string(m.Value)] = m
	}
	seen := map[string]bool{}
	for _, m := range ms {
		dir := archive.WindowDir(m.Pipeline, m.Window.Start, m.Window.End.Sub(m.Window.Start))
		for _, o := range m.Objects {
			for _, r := range decode(t, p.deps.Bucket, dir+o.Key) {
				want, ok := byValue[string(r.Value)]
				if !ok || seen[string(r.Value)] {
					t.Fatalf("partition %d offset %d: value %q was never produced, or is archived twice", r.Partition, r.Offset, r.Value)
				}
				seen[string(r.Value)] = true
				if diff := recordDiff(r, want); diff != "" {
					t.Fatalf("partition %d offset %d: %s", r.Partition, r.Offset, diff)
				}
			}
		}
	}
	if len(seen) != len(produced) {
		t.Fatalf("%d of the %d produced records are archived", len(seen), len(produced))
	}
}

// recordDiff says how an archived record differs from the message produced, or "".
func recordDiff(r archive.Record, m kafka.Message) string {
	switch {
	case r.Partition != int32(m.Partition):
		return fmt.Sprintf("archived in partition %d, produced to %d", r.Partition, m.Partition)
	case !sameBytes(r.Key, m.Key):
		return fmt.Sprintf("key %q, produced %q", r.Key, m.Key)
	case r.Timestamp.UnixMilli() != m.Time.UnixMilli():
		return fmt.Sprintf("timestamp %s, produced %s", r.Timestamp, m.Time)
	case len(r.Headers) != len(m.Headers):
		return fmt.Sprintf("%d headers, produced %d", len(r.Headers), len(m.Headers))
	}
	for i, h := range r.Headers {
		if h.Key != m.Headers[i].Key || !sameBytes(h.Value, m.Headers[i].Value) {
			return fmt.Sprintf("header %d is %q=%q, produced %q=%q", i, h.Key, h.Value, m.Headers[i].Key, m.Headers[i].Value)
		}
	}
	return ""
}

// sameBytes is bytes.Equal that tells a Kafka null (nil) from empty bytes.
func sameBytes(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }
