// Command produce fills a new topic with synthetic call-detail records whose timestamps are
// spread over the last few hours, for `make demo`. Records arrive roughly in time order
// with a few minutes of jitter, as from many switches that each report late by a little.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/internal/cdrgen"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:19092", "Kafka bootstrap address")
	topic := flag.String("topic", "", "topic to create and fill (required)")
	partitions := flag.Int("partitions", 8, "partitions of the new topic")
	records := flag.Int("records", 1_000_000, "records to produce")
	hours := flag.Float64("hours", 3, "timestamps fall in the last this many hours")
	jitter := flag.Duration("jitter", 2*time.Minute, "how far out of order a record's timestamp may be")
	flag.Parse()
	if err := run(context.Background(), *brokers, *topic, *partitions, *records, time.Duration(*hours*float64(time.Hour)), *jitter); err != nil {
		fmt.Fprintln(os.Stderr, "produce:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, brokers, topic string, partitions, n int, span, jitter time.Duration) error {
	if topic == "" || partitions < 1 || n < 0 {
		return fmt.Errorf("need --topic, --partitions >= 1 and --records >= 0")
	}
	c := &kafka.Client{Addr: kafka.TCP(brokers), Timeout: 30 * time.Second}
	resp, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}}})
	if err == nil {
		err = resp.Errors[topic]
	}
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(brokers), Topic: topic, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		BatchSize: 5000, BatchBytes: 4 << 20, BatchTimeout: 5 * time.Millisecond, Compression: kafka.Lz4}
	defer w.Close()
	rng := rand.New(rand.NewPCG(42, 42))
	began := time.Now()
	start := began.Add(-span)
	step := span / time.Duration(max(n, 1))
	const chunk = 20_000
	for done := 0; done < n; done += chunk {
		recs := cdrgen.Records(min(chunk, n-done), uint64(done))
		msgs := make([]kafka.Message, len(recs))
		for i, r := range recs {
			// Calls reach Kafka out of timestamp order, never from the future.
			ts := start.Add(time.Duration(done+i)*step - time.Duration(rng.Int64N(int64(jitter)+1)))
			if ts.After(began) {
				ts = began
			}
			ts = ts.Truncate(time.Millisecond)
			msgs[i] = kafka.Message{Key: r.Key, Value: cdrgen.Value(rng, ts), Time: ts,
				Headers: []kafka.Header{{Key: r.Headers[0].Key, Value: r.Headers[0].Value}}}
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			return fmt.Errorf("produce to %s: %w", topic, err)
		}
	}
	fmt.Printf("produced %d call records to %s (%d partitions) in %s, timestamps over the last %s, up to %s out of order\n",
		n, topic, partitions, time.Since(began).Round(100*time.Millisecond), span, jitter)
	return nil
}
