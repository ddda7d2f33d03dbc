package coordinator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/failure"
)

// OffsetLister is what the coordinator asks of Kafka.
type OffsetLister interface {
	// Partitions lists the topic's partitions; a missing topic is a permanent error.
	Partitions(ctx context.Context, topic string) ([]int32, error)
	// OffsetsAt returns, per partition, the first offset whose timestamp is at or after
	// t, or -1 where no record is.
	OffsetsAt(ctx context.Context, topic string, partitions []int32, t time.Time) (map[int32]int64, error)
	// StableEnds returns each partition's last stable offset: nothing at or past it is
	// committed yet.
	StableEnds(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error)
	// LogStarts returns each partition's log start offset: records below it are gone
	// (retention, deleted records).
	LogStarts(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error)
}

// KafkaOffsets is the OffsetLister of a Kafka cluster, through kafka-go.
type KafkaOffsets struct{ client *kafka.Client }

var _ OffsetLister = (*KafkaOffsets)(nil)

// NewKafkaOffsets returns the OffsetLister of the cluster behind brokers.
func NewKafkaOffsets(brokers []string) *KafkaOffsets {
	return &KafkaOffsets{client: &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second,
		Transport: &kafka.Transport{ClientID: "karch-coordinator", DialTimeout: 10 * time.Second}}}
}

// Partitions lists topic's partitions in order.
func (k *KafkaOffsets) Partitions(ctx context.Context, topic string) ([]int32, error) {
	md, err := k.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("read metadata of topic %s: %w", topic, err)
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
			return nil, failure.Permanent(fmt.Errorf("topic %s does not exist", topic))
		}
		if t.Error != nil {
			return nil, fmt.Errorf("read metadata of topic %s: %w", topic, t.Error)
		}
		ps := make([]int32, len(t.Partitions))
		for i, p := range t.Partitions {
			ps[i] = int32(p.ID)
		}
		slices.Sort(ps)
		return ps, nil
	}
	return nil, failure.Permanent(fmt.Errorf("topic %s does not exist", topic))
}

// OffsetsAt looks offsets up by timestamp.
func (k *KafkaOffsets) OffsetsAt(ctx context.Context, topic string, partitions []int32, t time.Time) (map[int32]int64, error) {
	req := make([]kafka.OffsetRequest, len(partitions))
	for i, p := range partitions {
		req[i] = kafka.TimeOffsetOf(int(p), t)
	}
	parts, err := k.list(ctx, topic, req, kafka.ReadCommitted)
	if err != nil {
		return nil, err
	}
	out := make(map[int32]int64, len(parts))
	for _, p := range parts {
		out[int32(p.Partition)] = -1 // kafka-go reports "no such record" as LastOffset -1
		for off := range p.Offsets {
			out[int32(p.Partition)] = off
		}
	}
	return out, nil
}

// StableEnds lists each partition's last stable offset (read_committed "latest").
func (k *KafkaOffsets) StableEnds(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error) {
	req := make([]kafka.OffsetRequest, len(partitions))
	for i, p := range partitions {
		req[i] = kafka.LastOffsetOf(int(p))
	}
	parts, err := k.list(ctx, topic, req, kafka.ReadCommitted)
	if err != nil {
		return nil, err
	}
	out := make(map[int32]int64, len(parts))
	for _, p := range parts {
		out[int32(p.Partition)] = p.LastOffset
	}
	return out, nil
}

// LogStarts lists each partition's log start offset ("earliest").
func (k *KafkaOffsets) LogStarts(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error) {
	req := make([]kafka.OffsetRequest, len(partitions))
	for i, p := range partitions {
		req[i] = kafka.FirstOffsetOf(int(p))
	}
	parts, err := k.list(ctx, topic, req, kafka.ReadCommitted)
	if err != nil {
		return nil, err
	}
	out := make(map[int32]int64, len(parts))
	for _, p := range parts {
		out[int32(p.Partition)] = p.FirstOffset
	}
	return out, nil
}

func (k *KafkaOffsets) list(ctx context.Context, topic string, req []kafka.OffsetRequest, iso kafka.IsolationLevel) ([]kafka.PartitionOffsets, error) {
	resp, err := k.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: req}, IsolationLevel: iso})
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	parts := resp.Topics[topic]
	for _, p := range parts {
		if p.Error != nil {
			return nil, fmt.Errorf("list offsets of %s/%d: %w", topic, p.Partition, p.Error)
		}
	}
	if len(parts) != len(req) {
		return nil, fmt.Errorf("list offsets of %s: %d partitions answered, %d asked", topic, len(parts), len(req))
	}
	return parts, nil
}
