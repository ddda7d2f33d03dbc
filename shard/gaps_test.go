package shard_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/shard"
)

// txnProducer is a test-only transactional producer: kafka-go has none.
func txnProducer(t *testing.T, addr, topic, id string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID(id), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func produceTxn(t *testing.T, cl *kgo.Client, values ...string) {
	t.Helper()
	ctx := context.Background()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatalf("begin transaction: %v", err)
	}
	for _, v := range values {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("produce in transaction: %v", err)
		}
	}
}

func endTxn(t *testing.T, cl *kgo.Client, commit kgo.TransactionEndTry) {
	t.Helper()
	if err := cl.EndTransaction(context.Background(), commit); err != nil {
		t.Fatalf("end transaction: %v", err)
	}
}

func values(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

// A range of committed and aborted transactions from two interleaved producers, ending on
// a commit marker: the shard archives exactly the committed records and terminates at end.
func TestShardTransactionalTopic(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 1)
	a := txnProducer(t, addr, topic, topic+"-a")
	b := txnProducer(t, addr, topic, topic+"-b")

	var want []string
	produceTxn(t, a, values("a1", 100)...)
	endTxn(t, a, kgo.TryCommit)
	want = append(want, values("a1", 100)...)

	produceTxn(t, a, values("a2-aborted", 50)...)
	produceTxn(t, b, values("b1", 10)...)
	endTxn(t, a, kgo.TryAbort)
	endTxn(t, b, kgo.TryCommit)
	want = append(want, values("b1", 10)...)

	produceTxn(t, b, values("b2", 30)...)
	endTxn(t, b, kgo.TryCommit)
	want = append(want, values("b2", 30)...)

	// 190 records, 50 of them aborted, and 4 markers (a: commit, abort; b: two commits). The
	// broker may write a marker after EndTransaction returns: wait for the last one, so that
	// the range ends just past it.
	const end = 194
	testenv.WaitFor(t, "the last commit marker", 30*time.Second, func() bool { return testenv.EndOffsets(t, addr, topic, 1)[0] == end })
	got, tally := archiveAllTally(t, addr, topic, []int64{end}, 40)
	if len(got[0]) != len(want) {
		t.Fatalf("archived %d records of [0, %d), want the %d committed ones", len(got[0]), end, len(want))
	}
	if wantTally := (shard.Tally{Records: int64(len(want)), Control: 4, Aborted: 50}); tally != wantTally || end != tally.Offsets() {
		t.Fatalf("the receipt accounts for [0, %d) as %+v, want %+v", end, tally, wantTally)
	}
	for i, r := range got[0] {
		if string(r.Value) != want[i] {
			t.Fatalf("record %d (offset %d): value %q, want %q", i, r.Offset, r.Value, want[i])
		}
	}
}

// A compacted topic has offset gaps, possibly at the end of a batch: the shard archives
// exactly what Kafka still holds and terminates at end.
func TestShardCompactedTopic(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 1, "cleanup.policy=compact", "segment.ms=100", "min.cleanable.dirty.ratio=0.001",
		"min.compaction.lag.ms=0", "delete.retention.ms=100")
	for round := range 6 {
		var msgs []kafka.Message
		for i := range 300 {
			msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprintf("key-%d", i%25)), Value: []byte(fmt.Sprintf("round %d value %d", round, i))})
		}
		testenv.Produce(t, addr, topic, msgs)
		time.Sleep(300 * time.Millisecond) // let segment.ms pass so the next append rolls a segment
	}
	end := testenv.EndOffsets(t, addr, topic, 1)[0]
	kafkaHolds := waitCompacted(t, addr, topic, end)

	all, tally := archiveAllTally(t, addr, topic, []int64{end}, 400)
	got := all[0]
	if len(got) != len(kafkaHolds) || int64(len(got)) >= end {
		t.Fatalf("archived %d records of [0, %d); Kafka holds %d", len(got), end, len(kafkaHolds))
	}
	if want := (shard.Tally{Records: int64(len(got)), Compacted: end - int64(len(got))}); tally != want {
		t.Fatalf("the receipt accounts for [0, %d) as %+v, want %+v", end, tally, want)
	}
	for i, w := range kafkaHolds {
		compareWithKafka(t, got[i], w)
	}
}

// waitCompacted waits until the cleaner has removed records and then left the log alone
// for a while, and returns what the log holds.
func waitCompacted(t *testing.T, addr, topic string, end int64) []kafka.Message {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var prev int
	for time.Now().Before(deadline) {
		held := testenv.Consume(t, addr, topic, 0, 0, end)
		if int64(len(held)) < end && len(held) == prev {
			return held
		}
		prev = len(held)
		time.Sleep(2 * time.Second)
	}
	t.Fatalf("the log cleaner did not compact %s within 2 minutes", topic)
	return nil
}

// archiveAll archives [0, ends[p]) of every partition in pieces of per offsets into a local
// directory and returns the archived records by partition, in offset order.
func archiveAll(t *testing.T, addr, topic string, ends []int64, per int64) map[int32][]archive.Record {
	t.Helper()
	got, _ := archiveAllTally(t, addr, topic, ends, per)
	return got
}

// archiveAllTally is archiveAll that also returns the sum of the receipt's accounts.
func archiveAllTally(t *testing.T, addr, topic string, ends []int64, per int64) (map[int32][]archive.Record, shard.Tally) {
	t.Helper()
	b := testenv.LocalBucket(t)
	planKey := putPlan(t, b, planRanges(topic, ends, per, 1, addr))
	r, err := runShard(t, b, planKey, 0)
	if err != nil {
		t.Fatalf("shard: %v", err)
	}
	got := archived(t, b, planKey, []*archive.Receipt{r})
	for p := range got {
		sortByOffset(got[p])
	}
	var sum shard.Tally
	for _, pc := range r.Pieces {
		sum.Records, sum.Control, sum.Aborted, sum.Compacted = sum.Records+pc.Records, sum.Control+pc.Control, sum.Aborted+pc.Aborted, sum.Compacted+pc.Compacted
	}
	return got, sum
}

// Kubernetes may run two pods for one index: both finish, and agree on one receipt.
func TestShardTwoAttemptsAtOnce(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 2)
	testenv.Produce(t, addr, topic, mixedMessages(20_000, 2))
	b := testenv.LocalBucket(t)
	planKey := putPlan(t, b, planRanges(topic, testenv.EndOffsets(t, addr, topic, 2), 2_000, 1, addr))

	receipts := make([]*archive.Receipt, 2)
	var g errgroup.Group
	for i := range receipts {
		g.Go(func() (err error) {
			receipts[i], err = runShard(t, b, planKey, 0)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("an attempt failed: %v", err)
	}
	if !reflect.DeepEqual(receipts[0], receipts[1]) {
		t.Fatalf("the two attempts disagree:\n%+v\n%+v", receipts[0], receipts[1])
	}
	if got := archived(t, b, planKey, receipts[:1]); len(got[0])+len(got[1]) != 20_000 {
		t.Fatalf("archived %d records, want 20000", len(got[0])+len(got[1]))
	}
}
