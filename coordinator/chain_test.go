package coordinator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/shard"
)

// runAt runs the pipeline as if the clock said now, with fresh Kafka connections, as a new
// coordinator process has (kafka-go caches topic metadata for seconds).
func (p *pipeline) runAt(now time.Time) ([]coordinator.WindowResult, error) {
	p.deps.Now = func() time.Time { return now }
	p.deps.Offsets = coordinator.NewKafkaOffsets(p.cfg.Brokers, shard.KafkaOptions{ClientID: "karch-test"})
	return coordinator.Run(context.Background(), p.cfg, p.deps)
}

// hourly produces n records to each of the partitions, spread over the hours [from, to)
// after t0, in timestamp order.
func hourly(t *testing.T, addr, topic string, partitions []int, n int, from, to int) {
	t.Helper()
	var msgs []kafka.Message
	span := time.Duration(to-from) * time.Hour
	for _, p := range partitions {
		for i := range n {
			ts := t0.Add(time.Duration(from)*time.Hour + span*time.Duration(i)/time.Duration(n)).Truncate(time.Millisecond)
			msgs = append(msgs, kafka.Message{Partition: p, Time: ts, Value: fmt.Appendf(nil, `{"p":%d,"n":%d}`, p, i)})
		}
	}
	testenv.Produce(t, addr, topic, msgs)
}

func addPartitions(t *testing.T, addr, topic string, total int) {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(addr)}
	resp, err := c.CreatePartitions(context.Background(), &kafka.CreatePartitionsRequest{
		Topics: []kafka.TopicPartitionsConfig{{Name: topic, Count: int32(total)}}})
	if err == nil {
		err = resp.Errors[topic]
	}
	if err != nil {
		t.Fatalf("add partitions to %s: %v", topic, err)
	}
	waitPartitions(t, c, topic, total)
}

// waitPartitions waits until the broker's metadata shows topic with n partitions.
func waitPartitions(t *testing.T, c *kafka.Client, topic string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		md, err := c.Metadata(context.Background(), &kafka.MetadataRequest{Topics: []string{topic}})
		if err == nil && len(md.Topics) == 1 && md.Topics[0].Error == nil && len(md.Topics[0].Partitions) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s has not shown %d partitions: %v", topic, n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A partition added to the topic after the chain began is archived from its log start
// offset, whatever its records' timestamps: here 20 records stamped before the next window,
// which a start by time would leave in no window, ever.
func TestPartitionAddedLaterStartsAtItsLogStart(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 1)
	hourly(t, addr, topic, []int{0}, 100, 0, 2)
	p := newPipeline(t, topic, 1)
	if res, err := p.runAt(t0.Add(2*time.Hour + 2*time.Minute)); err != nil || len(res) != 2 {
		t.Fatalf("first two windows: %d committed, %v", len(res), err)
	}
	addPartitions(t, addr, topic, 2)
	hourly(t, addr, topic, []int{1}, 20, 0, 1) // older than the next window
	hourly(t, addr, topic, []int{0, 1}, 10, 2, 3)
	if res, err := p.runAt(t0.Add(3*time.Hour + 2*time.Minute)); err != nil || len(res) != 1 {
		t.Fatalf("third window: %d committed, %v", len(res), err)
	}
	ms := manifests(t, p)
	if got := ms[2].Partitions; len(got) != 2 || got[1].First != 0 || got[1].Records != 30 {
		t.Fatalf("third window's partitions %+v; want partition 1 from offset 0 with 30 records", got)
	}
	assertExactlyOnce(t, p, ms, testenv.EndOffsets(t, addr, topic, 2))
}

// Retention that ran past the chain is found when planning: a permanent error that names
// the partition and the lost range; accept_data_loss for that one window plans from the log
// start and records the gap in the manifest.
func TestRetentionPastTheChain(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 1)
	hourly(t, addr, topic, []int{0}, 100, 0, 2)
	p := newPipeline(t, topic, 1)
	if res, err := p.runAt(t0.Add(time.Hour + 2*time.Minute)); err != nil || len(res) != 1 {
		t.Fatalf("first window: %d committed, %v", len(res), err)
	}
	chainEnd := manifests(t, p)[0].Partitions[0].End
	testenv.DeleteRecords(t, addr, topic, 0, chainEnd+7)
	now := t0.Add(2*time.Hour + 2*time.Minute)
	_, err := p.runAt(now)
	want := fmt.Sprintf("offsets [%d, %d) were deleted by retention", chainEnd, chainEnd+7)
	if !failure.IsPermanent(err) || !strings.Contains(err.Error(), "partition 0") || !strings.Contains(err.Error(), want) {
		t.Fatalf("run past retention: %v; want a permanent error naming partition 0 and %q", err, want)
	}
	if exists(t, p, archive.WindowDir(p.cfg.Pipeline, t0.Add(time.Hour), time.Hour)+archive.PlanName) {
		t.Fatal("a plan was written for the window that cannot be archived")
	}

	p.cfg.AcceptDataLoss = t0.Add(time.Hour)
	if res, err := p.runAt(now); err != nil || len(res) != 1 {
		t.Fatalf("with accept_data_loss: %d committed, %v", len(res), err)
	}
	ms := manifests(t, p)
	gap := archive.Gap{Topic: topic, Partition: 0, First: chainEnd, End: chainEnd + 7, Reason: archive.GapRetention}
	if len(ms) != 2 || len(ms[1].Gaps) != 1 || ms[1].Gaps[0] != gap || ms[1].Partitions[0].First != chainEnd+7 {
		t.Fatalf("second manifest gaps %+v, partitions %+v; want the gap %+v", ms[1].Gaps, ms[1].Partitions, gap)
	}
	seen := map[int64]int{}
	for _, m := range ms {
		for _, o := range m.Objects {
			for _, r := range decode(t, p.deps.Bucket, archive.WindowDir(m.Pipeline, m.Window.Start, time.Hour)+o.Key) {
				seen[r.Offset]++
			}
		}
	}
	for off := range int64(100) {
		if want := map[bool]int{true: 0, false: 1}[off >= chainEnd && off < chainEnd+7]; seen[off] != want {
			t.Fatalf("offset %d archived %d times, want %d", off, seen[off], want)
		}
	}
}

// A topic deleted and created again under the pipeline is another topic, told by its Kafka
// topic ID: the old one ends in the next window's manifest where the chain left it, and the
// new one is archived from its first offset, whatever its partitions.
func TestRecreatedTopicIsANewTopic(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 2)
	hourly(t, addr, topic, []int{0, 1}, 50, 0, 1)
	p := newPipeline(t, topic, 2)
	if res, err := p.runAt(t0.Add(time.Hour + 2*time.Minute)); err != nil || len(res) != 1 {
		t.Fatalf("first window: %d committed, %v", len(res), err)
	}
	recreate(t, addr, topic, 1)
	hourly(t, addr, topic, []int{0}, 5, 1, 2)
	if res, err := p.runAt(t0.Add(2*time.Hour + 2*time.Minute)); err != nil || len(res) != 1 {
		t.Fatalf("the window after the topic was recreated: %d committed, %v", len(res), err)
	}
	ms := manifests(t, p)
	old := ms[0].Topics[0]
	var ended archive.TopicState
	for _, ts := range ms[1].Topics {
		if !ts.Active() {
			ended = ts
		}
	}
	if ended.ID != old.ID || ended.EndReason != archive.EndRecreated ||
		fmt.Sprint(ended.Ends) != fmt.Sprint([]archive.PartitionEnd{{Partition: 0, End: 50}, {Partition: 1, End: 50}}) {
		t.Fatalf("the old topic ended as %+v; want ID %s, recreated, both partitions at 50", ended, old.ID)
	}
	if len(ms[1].Partitions) != 1 || ms[1].Partitions[0].First != 0 || ms[1].Partitions[0].End != 5 {
		t.Fatalf("the new topic's window archives %+v; want partition 0 offsets [0, 5)", ms[1].Partitions)
	}
	if probs := verifyProblems(t, p); len(probs) != 0 {
		t.Fatalf("verify: %q; want none", probs)
	}
}

// Under a chain whose newest manifest names no topic IDs (written before karch recorded
// them), a topic deleted and recreated cannot be told from the old one: its offsets below
// the chain's, or a partition of the previous window gone, are a permanent error that names
// the partition and the offsets, never a silent restart.
func TestRecreatedTopicWithoutIDsIsPermanent(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 2)
	hourly(t, addr, topic, []int{0, 1}, 50, 0, 1)
	p := newPipeline(t, topic, 2)
	if res, err := p.runAt(t0.Add(time.Hour + 2*time.Minute)); err != nil || len(res) != 1 {
		t.Fatalf("first window: %d committed, %v", len(res), err)
	}
	p.withoutTopics(t, archive.WindowDir(p.cfg.Pipeline, t0, time.Hour)+archive.ManifestName)
	recreate(t, addr, topic, 1)
	hourly(t, addr, topic, []int{0}, 5, 1, 2)
	_, err := p.runAt(t0.Add(2*time.Hour + 2*time.Minute))
	if !failure.IsPermanent(err) || !strings.Contains(err.Error(), "has no partition 1") || !strings.Contains(err.Error(), "offset 50") {
		t.Fatalf("run on a recreated topic with fewer partitions: %v", err)
	}
	recreate(t, addr, topic, 2)
	hourly(t, addr, topic, []int{0, 1}, 5, 1, 2)
	_, err = p.runAt(t0.Add(2*time.Hour + 2*time.Minute))
	if !failure.IsPermanent(err) || !strings.Contains(err.Error(), "continues at offset 50 but the log ends at 5") {
		t.Fatalf("run on a recreated topic: %v", err)
	}
}

// withoutTopics rewrites the manifest at key as a karch before topic IDs wrote it.
func (p *pipeline) withoutTopics(t *testing.T, key string) {
	t.Helper()
	data, err := blob.ReadAll(context.Background(), p.deps.Bucket, key)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "topics")
	if data, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	p.remove(t, key)
	if _, err := p.deps.Bucket.Put(context.Background(), key, bytes.NewReader(data), blob.PutOptions{IfAbsent: true}); err != nil {
		t.Fatal(err)
	}
}

// recreate deletes topic and creates it again, empty, with n partitions.
func recreate(t *testing.T, addr, topic string, n int) {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 30 * time.Second}
	if _, err := c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic}}); err != nil {
		t.Fatalf("delete topic %s: %v", topic, err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := c.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
			Topic: topic, NumPartitions: n, ReplicationFactor: 1}}})
		if err == nil {
			err = resp.Errors[topic]
		}
		if err == nil {
			waitPartitions(t, c, topic, n)
			return
		}
		if !errors.Is(err, kafka.TopicAlreadyExists) || time.Now().After(deadline) {
			t.Fatalf("create topic %s again: %v", topic, err)
		}
		time.Sleep(100 * time.Millisecond) // the deletion is still under way
	}
}

// A change of window length continues the chain when the newest window ends on a boundary
// of the new length, whatever length it had; otherwise it is a permanent error that names
// the next boundary.
func TestWindowLengthChange(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 2)
	hourly(t, addr, topic, []int{0, 1}, 120, 0, 4)
	p := newPipeline(t, topic, 2)
	if res, err := p.runAt(t0.Add(2*time.Hour + 2*time.Minute)); err != nil || len(res) != 2 {
		t.Fatalf("two hourly windows: %d committed, %v", len(res), err)
	}
	p.cfg.Window = 15 * time.Minute
	if res, err := p.runAt(t0.Add(2*time.Hour + 15*time.Minute + 2*time.Minute)); err != nil || len(res) != 1 || !res[0].Window.Start.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("after the change to 15m: %+v, %v; want the window at 04:00", res, err)
	}
	p.cfg.Window = time.Hour
	_, err := p.runAt(t0.Add(4*time.Hour + 2*time.Minute))
	next := t0.Add(3 * time.Hour).Format(time.RFC3339)
	if !failure.IsPermanent(err) || !strings.Contains(err.Error(), "window") || !strings.Contains(err.Error(), next) {
		t.Fatalf("back to 1h at 04:15: %v; want a permanent error naming %s", err, next)
	}
	p.cfg.Window, p.cfg.Until = 15*time.Minute, t0.Add(3*time.Hour)
	if res, err := p.runAt(t0.Add(4*time.Hour + 2*time.Minute)); err != nil || len(res) != 3 {
		t.Fatalf("15m windows up to 05:00: %d, %v", len(res), err)
	}
	p.cfg.Window, p.cfg.Until = time.Hour, time.Time{}
	if res, err := p.runAt(t0.Add(4*time.Hour + 2*time.Minute)); err != nil || len(res) != 1 {
		t.Fatalf("1h again from 05:00: %d, %v", len(res), err)
	}
	ms := manifests(t, p)
	if len(ms) != 7 {
		t.Fatalf("%d manifests, want 7", len(ms))
	}
	assertLinked(t, p, ms)
	assertExactlyOnce(t, p, ms, testenv.EndOffsets(t, addr, topic, 2))
}

// A MANIFEST.json or plan.json that does not decode is a permanent error that names its key:
// a committed document is never rewritten, so a retry would read the same bytes.
func TestUndecodableDocumentsArePermanent(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 1)
	for _, tc := range []struct{ name, content string }{
		{archive.ManifestName, "{not json"},
		{archive.ManifestName, `{"format":"karch.manifest/v99"}`},
		{archive.PlanName, "{not json"},
		{archive.PlanName, `{"format":"karch.plan/v99"}`},
	} {
		p := newPipeline(t, topic, 1)
		key := archive.WindowDir(p.cfg.Pipeline, t0, time.Hour) + tc.name
		if _, err := p.deps.Bucket.Put(context.Background(), key, strings.NewReader(tc.content), blob.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err := p.runAt(t0.Add(time.Hour + 2*time.Minute))
		if !failure.IsPermanent(err) || !strings.Contains(err.Error(), key) {
			t.Errorf("%s %q: %v; want a permanent error naming %s", tc.name, tc.content, err, key)
		}
	}
}

// assertLinked checks that each manifest after the first records the key and SHA-256 of the
// stored manifest of the window before it, whatever the windows' lengths.
func assertLinked(t *testing.T, p *pipeline, ms []*archive.Manifest) {
	t.Helper()
	for i, m := range ms {
		if i == 0 {
			if m.Previous != nil {
				t.Fatalf("the first window links to %+v", m.Previous)
			}
			continue
		}
		prev := ms[i-1]
		key := archive.WindowDir(prev.Pipeline, prev.Window.Start, prev.Window.End.Sub(prev.Window.Start)) + archive.ManifestName
		if want := archive.RefOf(key, testenv.ReadObject(t, p.deps.Bucket, key)); m.Previous == nil || *m.Previous != want {
			t.Fatalf("window %s links to %+v, want %+v", m.Window.Start, m.Previous, want)
		}
	}
}

func exists(t *testing.T, p *pipeline, key string) bool {
	t.Helper()
	_, err := p.deps.Bucket.Head(context.Background(), key)
	if err != nil && !blob.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}
