package shard_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/karch-archive/karch/internal/testenv"
)

// The log cleaner of a compacted transactional topic removes a commit marker once the
// transaction's records are gone, but keeps the marker's batch, empty, while its producer
// is still active. The shard passes over that batch and archives what Kafka holds.
func TestShardEmptyControlBatch(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 1, "cleanup.policy=compact", "segment.ms=100", "min.cleanable.dirty.ratio=0.001",
		"min.compaction.lag.ms=0", "delete.retention.ms=100")
	p := txnProducer(t, addr, topic, topic+"-p") // stays open: the broker keeps its state
	if err := p.BeginTransaction(); err != nil {
		t.Fatalf("begin transaction: %v", err)
	}
	for i := range 5 {
		r := &kgo.Record{Key: []byte(fmt.Sprintf("txn-%d", i)), Value: []byte("in a transaction")}
		if err := p.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatalf("produce in transaction: %v", err)
		}
	}
	endTxn(t, p, kgo.TryCommit)

	empty := waitEmptyControlBatch(t, addr, topic)
	end := testenv.EndOffsets(t, addr, topic, 1)[0]
	kafkaHolds := waitCompacted(t, addr, topic, end)
	got := archiveAll(t, addr, topic, []int64{end}, 1_000)[0]
	if len(got) != len(kafkaHolds) {
		t.Fatalf("archived %d records of [0, %d) (empty control batch at %d); Kafka holds %d", len(got), end, empty, len(kafkaHolds))
	}
	for i, w := range kafkaHolds {
		compareWithKafka(t, got[i], w)
	}
	if stillEmpty(t, addr, topic) < 0 {
		t.Fatal("the empty control batch is gone: the test did not read over one")
	}
}

// waitEmptyControlBatch appends plain records over the transaction's keys, so that the
// cleaner may remove the transaction's records and then its marker, rolling segments, until the cleaner has left an empty control batch; it returns the batch's offset.
func waitEmptyControlBatch(t *testing.T, addr, topic string) int64 {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for round := 0; time.Now().Before(deadline); round++ {
		var msgs []kafka.Message
		for i := range 5 {
			msgs = append(msgs, kafka.Message{Value: []byte(fmt.Sprintf("txn-%d", i)), Key: []byte(fmt.Sprintf("txn-%d", i))},
				kafka.Message{Key: []byte("roll"), Value: []byte(fmt.Sprint(round))})
		}
		testenv.Produce(t, addr, topic, msgs)
		if off := stillEmpty(t, addr, topic); off >= 0 {
			return off
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("the log cleaner left no empty control batch in %s within 3 minutes", topic)
	return -1
}

// stillEmpty returns the offset of the first control batch with no record in partition 0,
// or -1, reading batch headers through franz-go's own Fetch (at a version that names topics).
func stillEmpty(t *testing.T, addr, topic string) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.MaxVersions(kversion.V3_0_0()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID, req.MaxWaitMillis, req.MaxBytes, req.IsolationLevel, req.SessionEpoch = -1, 100, 64<<20, 1, -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.PartitionMaxBytes = 64 << 20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	res, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatalf("franz-go fetch: %v", err)
	}
	return firstEmptyControl(t, res.Topics[0].Partitions[0].RecordBatches)
}

func firstEmptyControl(t *testing.T, raw []byte) int64 {
	t.Helper()
	for len(raw) >= 12 {
		size := 12 + int(binary.BigEndian.Uint32(raw[8:]))
		if size > len(raw) {
			break
		}
		var b kmsg.RecordBatch
		if err := b.ReadFrom(raw[:size]); err != nil {
			t.Fatalf("franz-go reads a batch header: %v", err)
		}
		if b.Attributes&0x20 != 0 && b.NumRecords == 0 {
			return b.FirstOffset
		}
		raw = raw[size:]
	}
	return -1
}
