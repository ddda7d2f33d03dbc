package coordinator_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/shard"
)

// sent is a record as produced: where it landed, its timestamp, and whether it counts.
type sent struct {
	offset    int64
	millis    int64
	committed bool
}

// A transaction's commit marker carries the broker's time. With records stamped hours
// earlier (a replay, event time), ListOffsets by time answers the first marker for every
// later time; OffsetsAt answers the first committed data record at or after the time, in
// offset order, as ListOffsets does for data: transaction markers and aborted records never
// count.
func TestOffsetsAtUnderTransactions(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 2)
	base := time.Now().Add(-6 * time.Hour).Truncate(time.Hour)
	at := func(d time.Duration) time.Time { return base.Add(d) }
	cl := txnClient(t, addr, topic)

	var log []sent
	log = append(log, txn(t, cl, kgo.TryCommit, stamps(at(0), 2*time.Minute, 30))...)                        // 0h00 .. 0h58
	log = append(log, txn(t, cl, kgo.TryAbort, stamps(at(time.Hour), time.Minute, 20))...)                   // aborted: 1h00 .. 1h19
	log = append(log, txn(t, cl, kgo.TryCommit, stamps(at(time.Hour+30*time.Minute), 2*time.Minute, 30))...) // 1h30 .. 2h28
	log = append(log, txn(t, cl, kgo.TryCommit, []time.Time{at(4 * time.Hour), at(2*time.Hour + 40*time.Minute)})...)
	log = append(log, txn(t, cl, kgo.TryCommit, stamps(at(2*time.Hour+30*time.Minute), 5*time.Minute, 6))...) // 2h30 .. 2h55
	plain := produceOld(t, addr, topic, stamps(at(0), 10*time.Minute, 18))                                    // partition 1: 0h00 .. 2h50

	ol := coordinator.NewKafkaOffsets([]string{addr}, shard.KafkaOptions{ClientID: "karch-test"})
	for _, d := range []time.Duration{-time.Hour, 0, time.Minute, 59 * time.Minute, time.Hour, 90 * time.Minute,
		2 * time.Hour, 2*time.Hour + 35*time.Minute, 3 * time.Hour, 4 * time.Hour, 4*time.Hour + time.Millisecond, 5 * time.Hour} {
		got, err := ol.OffsetsAt(context.Background(), topic, []int32{0, 1}, at(d))
		if err != nil {
			t.Fatalf("OffsetsAt(%v): %v", d, err)
		}
		want := map[int32]int64{0: firstAt(log, at(d)), 1: firstAt(plain, at(d))}
		if got[0] != want[0] || got[1] != want[1] {
			t.Errorf("OffsetsAt(base%+v) = %v, want %v", d, got, want)
		}
	}
}

// firstAt is OffsetsAt's contract computed from what was produced.
func firstAt(log []sent, t time.Time) int64 {
	for _, s := range log {
		if s.committed && s.millis >= t.UnixMilli() {
			return s.offset
		}
	}
	return -1
}

func stamps(from time.Time, step time.Duration, n int) []time.Time {
	out := make([]time.Time, n)
	for i := range out {
		out[i] = from.Add(time.Duration(i) * step)
	}
	return out
}

func txnClient(t *testing.T, addr, topic string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID(topic+"-txn"), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// txn writes one transaction to partition 0, one record per timestamp, and ends it.
func txn(t *testing.T, cl *kgo.Client, end kgo.TransactionEndTry, ts []time.Time) []sent {
	t.Helper()
	ctx := context.Background()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatalf("begin transaction: %v", err)
	}
	out := make([]sent, len(ts))
	for i, at := range ts {
		r := &kgo.Record{Partition: 0, Value: []byte(fmt.Sprint(i)), Timestamp: at}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce in transaction: %v", err)
		}
		out[i] = sent{offset: r.Offset, millis: at.UnixMilli(), committed: bool(end)}
	}
	if err := cl.EndTransaction(ctx, end); err != nil {
		t.Fatalf("end transaction: %v", err)
	}
	return out
}

// produceOld writes plain records with old timestamps to partition 1.
func produceOld(t *testing.T, addr, topic string, ts []time.Time) []sent {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := make([]sent, len(ts))
	for i, at := range ts {
		r := &kgo.Record{Partition: 1, Value: []byte(fmt.Sprint(i)), Timestamp: at}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		out[i] = sent{offset: r.Offset, millis: at.UnixMilli(), committed: true}
	}
	return out
}

// A missing topic is permanent; a broker that cannot be reached is not.
func TestOffsetsErrorClasses(t *testing.T) {
	addr := testenv.Kafka(t)
	ol := coordinator.NewKafkaOffsets([]string{addr}, shard.KafkaOptions{ClientID: "karch-test"})
	if _, err := ol.Partitions(context.Background(), "karch-no-such-topic"); !failure.IsPermanent(err) {
		t.Errorf("Partitions of a missing topic: %v, want a permanent error", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	down := coordinator.NewKafkaOffsets([]string{"127.0.0.1:1"}, shard.KafkaOptions{ClientID: "karch-test"}) // nothing listens on port 1
	if _, err := down.Partitions(ctx, "t"); err == nil || failure.IsPermanent(err) {
		t.Errorf("Partitions with the broker down: %v, want a retryable error", err)
	}
	if _, err := down.OffsetsAt(ctx, "t", []int32{0}, time.Now()); err == nil || failure.IsPermanent(err) {
		t.Errorf("OffsetsAt with the broker down: %v, want a retryable error", err)
	}
}
