package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/internal/cdrgen"
)

const partitions = 4

// dataset is a topic filled with call-detail records.
type dataset struct {
	topic    string
	records  int64
	rawBytes int64 // approximate JSON Lines size, from a sample
	ends     []int64
	lineSize int64
}

// pieces splits each partition into pieces of about o.pieceMiB of JSON Lines.
func (d dataset) pieces(o options) []archive.Piece {
	per := max(1, int64(o.pieceMiB)<<20/d.lineSize)
	var out []archive.Piece
	for p, end := range d.ends {
		for first := int64(0); first < end; first += per {
			pc := archive.Piece{Topic: d.topic, Partition: int32(p), First: first, End: min(first+per, end)}
			pc.Key = archive.PieceKey(pc.Topic, pc.Partition, pc.First)
			out = append(out, pc)
		}
	}
	return out
}

// ensureTopic reuses the topic for this size when an earlier run filled it, and fills it
// otherwise.
func ensureTopic(ctx context.Context, o options) (dataset, error) {
	sample := cdrgen.Records(1000, 1)
	var line []byte
	var sampleBytes int64
	for i := range sample {
		line = archive.AppendLine(line[:0], &sample[i])
		sampleBytes += int64(len(line))
	}
	d := dataset{lineSize: sampleBytes / int64(len(sample))}
	d.records = int64(o.gb*1e9) / d.lineSize
	d.rawBytes = d.records * d.lineSize
	// The records carry the generator's fixed, old timestamps: the topic keeps them forever,
	// or Kafka's time retention empties it within minutes of the fill.
	d.topic = fmt.Sprintf("karch-bench-cdr-%d-kept", d.records)

	client := &kafka.Client{Addr: kafka.TCP(o.brokers), Timeout: 30 * time.Second}
	starts, serr := offsets(ctx, client, d.topic, kafka.FirstOffsetOf)
	ends, err := offsets(ctx, client, d.topic, kafka.LastOffsetOf)
	if err == nil && serr == nil && sum(ends) == d.records && sum(starts) == 0 {
		d.ends = ends
		return d, nil
	}
	if err := fill(ctx, o, client, d); err != nil {
		return d, err
	}
	d.ends, err = offsets(ctx, client, d.topic, kafka.LastOffsetOf)
	return d, err
}

func sum(xs []int64) (s int64) {
	for _, x := range xs {
		s += x
	}
	return s
}

// offsets lists one offset of each partition: FirstOffsetOf (the log start) or LastOffsetOf.
func offsets(ctx context.Context, c *kafka.Client, topic string, of func(int) kafka.OffsetRequest) ([]int64, error) {
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for p := range partitions {
		req.Topics[topic] = append(req.Topics[topic], of(p))
	}
	resp, err := c.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	out := make([]int64, partitions)
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("list offsets of %s/%d: %w", topic, p.Partition, p.Error)
		}
		out[p.Partition] = max(p.FirstOffset, p.LastOffset) // the one asked for; the other is -1
	}
	return out, nil
}

// fill creates the topic (anew) and produces the records, in chunks so memory stays small.
func fill(ctx context.Context, o options, c *kafka.Client, d dataset) error {
	_, _ = c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{d.topic}})
	resp, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: d.topic, NumPartitions: partitions, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: "-1"}}}}})
	if err == nil {
		err = resp.Errors[d.topic]
	}
	if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", d.topic, err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(o.brokers), Topic: d.topic, Balancer: &kafka.RoundRobin{}, RequiredAcks: kafka.RequireOne,
		BatchSize: 5000, BatchBytes: 4 << 20, BatchTimeout: 5 * time.Millisecond, Compression: kafka.Lz4}
	defer w.Close()
	start := time.Now()
	const chunk = 20_000
	for done := int64(0); done < d.records; done += chunk {
		n := min(chunk, d.records-done)
		recs := cdrgen.Records(int(n), uint64(done))
		msgs := make([]kafka.Message, n)
		for i, r := range recs {
			msgs[i] = kafka.Message{Key: r.Key, Value: r.Value, Time: r.Timestamp, Headers: []kafka.Header{{Key: r.Headers[0].Key, Value: r.Headers[0].Value}}}
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			return fmt.Errorf("produce to %s: %w", d.topic, err)
		}
	}
	fmt.Printf("produced %d records to %s in %s\n", d.records, d.topic, time.Since(start).Round(time.Second))
	return nil
}
