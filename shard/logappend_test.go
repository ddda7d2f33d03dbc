package shard_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/karch-archive/karch/internal/testenv"
)

// On a LogAppendTime topic Kafka's consumers see the broker's append time, not the create
// time the producer set: the archive stores what franz-go's consumer reports, and says
// which kind of timestamp it is.
func TestShardLogAppendTime(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 1, "message.timestamp.type=LogAppendTime")
	created := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC) // hours (years) before the broker's clock
	n := 0
	for c, codec := range []kgo.CompressionCodec{kgo.NoCompression(), kgo.ZstdCompression()} {
		for batch := range 3 {
			n += produceAt(t, addr, topic, codec, created.Add(time.Duration(n)*time.Second), fmt.Sprintf("codec%d-%d", c, batch), 50)
		}
	}
	seen := consumeWithFranz(t, addr, topic, n)
	got := archiveAll(t, addr, topic, testenv.EndOffsets(t, addr, topic, 1), 70)[0]
	if len(got) != n {
		t.Fatalf("archived %d records, want %d", len(got), n)
	}
	for _, r := range got {
		want := seen[r.Offset]
		if want.Attrs.TimestampType() != 1 {
			t.Fatalf("franz-go reports timestamp type %d at offset %d: the topic is not LogAppendTime", want.Attrs.TimestampType(), r.Offset)
		}
		if r.Timestamp.UnixMilli() != want.Timestamp.UnixMilli() || !r.LogAppendTime || string(r.Value) != string(want.Value) {
			t.Fatalf("offset %d: archived %s (%d ms, log append %v) %q; franz-go reports %s (%d ms) %q",
				r.Offset, r.Timestamp, r.Timestamp.UnixMilli(), r.LogAppendTime, r.Value, want.Timestamp, want.Timestamp.UnixMilli(), want.Value)
		}
		if r.Timestamp.Before(created.Add(24 * time.Hour)) {
			t.Fatalf("offset %d: archived %s, the producer's create time", r.Offset, r.Timestamp)
		}
	}
}

// produceAt writes n records with create times at, at+1ms, ... in one batch, and returns n.
func produceAt(t *testing.T, addr, topic string, codec kgo.CompressionCodec, at time.Time, prefix string, n int) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(codec),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Value: []byte(fmt.Sprintf("%s-%d", prefix, i)), Timestamp: at.Add(time.Duration(i) * time.Millisecond)}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	return n
}

// consumeWithFranz reads the first n records of partition 0 with franz-go's consumer.
func consumeWithFranz(t *testing.T, addr, topic string, n int) map[int64]*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seen := map[int64]*kgo.Record{}
	for len(seen) < n {
		fs := cl.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatalf("franz-go consume: %v", err)
		}
		fs.EachRecord(func(r *kgo.Record) { seen[r.Offset] = r })
	}
	return seen
}
