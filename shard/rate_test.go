package shard_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/shard"
)

// A fetch rate cap holds a reader to its bytes per second: 4 MiB of records at 1 MiB/s,
// with a burst of one 1 MiB fetch, cannot take less than 3 s however fast the broker is.
// (A lower bound only: a slow machine makes it slower, never faster.) Every record still
// arrives, in offset order.
func TestFetchRateCapsBytesPerSecond(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 1)
	value := bytes.Repeat([]byte("x"), 1<<10)
	msgs := make([]kafka.Message, 4<<10)
	for i := range msgs {
		msgs[i] = kafka.Message{Value: value}
	}
	testenv.Produce(t, addr, topic, msgs)
	opts := shard.DefaultKafkaOptions()
	opts.FetchMaxBytes, opts.FetchRate = 1<<20, 1<<20
	r := shard.NewKafkaReader([]string{addr}, opts)
	defer r.Close()
	next := int64(0)
	start := time.Now()
	err := r.ReadRange(context.Background(), topic, 0, 0, int64(len(msgs)), func(rec *archive.Record) error {
		if rec.Offset != next {
			t.Fatalf("offset %d after %d", rec.Offset, next-1)
		}
		next++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); next != int64(len(msgs)) || took < 3*time.Second {
		t.Fatalf("read %d of %d records in %s; want all, in no less than 3 s", next, len(msgs), took)
	}
}
