package shard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	fetchapi "github.com/segmentio/kafka-go/protocol/fetch"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/failure"
)

// KafkaOptions tune how a shard fetches from Kafka.
type KafkaOptions struct {
	// FetchMaxBytes bounds one fetch response, and so the memory a fetch holds.
	FetchMaxBytes int
	// FetchMaxWait is how long the broker may hold a fetch that has no data yet.
	FetchMaxWait time.Duration
	// DialTimeout bounds each connection attempt to a broker.
	DialTimeout time.Duration
}

// DefaultKafkaOptions suit pieces of hundreds of MiB: few round trips, bounded memory.
func DefaultKafkaOptions() KafkaOptions {
	return KafkaOptions{FetchMaxBytes: 4 << 20, FetchMaxWait: 500 * time.Millisecond, DialTimeout: 10 * time.Second}
}

// KafkaReader reads exact offset ranges at read_committed isolation.
//
// It speaks the Fetch API through kafka-go's Transport rather than kafka-go's Conn or Reader:
// those hand back transaction markers and records of aborted transactions as if they were
// data, while the raw fetch response says which batches are control batches and which
// producers' transactions were aborted, so the filtering the Java consumer does can be done
// here.
type KafkaReader struct {
	client    *kafka.Client
	transport *kafka.Transport
	opts      KafkaOptions
}

var _ RecordReader = (*KafkaReader)(nil)

// NewKafkaReader returns a reader for the cluster behind brokers. Close releases its
// connections.
func NewKafkaReader(brokers []string, opts KafkaOptions) *KafkaReader {
	t := &kafka.Transport{ClientID: "karch-shard", DialTimeout: opts.DialTimeout, MetadataTTL: time.Minute}
	return &KafkaReader{
		client:    &kafka.Client{Addr: kafka.TCP(brokers...), Transport: t},
		transport: t,
		opts:      opts,
	}
}

// Close releases the reader's connections.
func (k *KafkaReader) Close() { k.transport.CloseIdleConnections() }

// ReadRange calls fn, in offset order, for every committed record of topic/partition whose
// offset is in [first, end). It returns once it has proved that no record below end remains:
// offsets that hold transaction markers, aborted records or compacted-away records are passed
// over, so the count of records may be smaller than end-first.
func (k *KafkaReader) ReadRange(ctx context.Context, topic string, partition int32, first, end int64, fn func(*archive.Record) error) error {
	if first >= end {
		return nil
	}
	if err := k.checkPartition(ctx, topic, partition); err != nil {
		return err
	}
	for pos := first; pos < end; {
		res, err := k.fetch(ctx, topic, partition, pos)
		if err != nil {
			return err
		}
		next, err := consume(res, topic, partition, pos, end, fn)
		if err != nil {
			return err
		}
		if next == pos {
			if next, err = k.passGap(ctx, topic, partition, pos, end, res); err != nil {
				return err
			}
		}
		pos = next
	}
	return nil
}

// checkPartition turns a missing topic or partition into a permanent error: kafka-go calls an
// unknown topic temporary, since it may be being created, but a plan names existing ones.
func (k *KafkaReader) checkPartition(ctx context.Context, topic string, partition int32) error {
	md, err := k.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return fmt.Errorf("read metadata of topic %s: %w", topic, err)
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
			return failure.Permanent(fmt.Errorf("topic %s does not exist", topic))
		}
		if t.Error != nil {
			return fmt.Errorf("read metadata of topic %s: %w", topic, t.Error)
		}
		for _, p := range t.Partitions {
			if p.ID == int(partition) {
				return nil
			}
		}
		return failure.Permanent(fmt.Errorf("topic %s has no partition %d", topic, partition))
	}
	return failure.Permanent(fmt.Errorf("topic %s does not exist", topic))
}

func (k *KafkaReader) fetch(ctx context.Context, topic string, partition int32, offset int64) (*fetchapi.ResponsePartition, error) {
	m, err := k.transport.RoundTrip(ctx, k.client.Addr, &fetchapi.Request{
		ReplicaID:      -1,
		MaxWaitTime:    int32(k.opts.FetchMaxWait.Milliseconds()),
		MinBytes:       1,
		MaxBytes:       int32(k.opts.FetchMaxBytes),
		IsolationLevel: int8(kafka.ReadCommitted),
		SessionID:      -1,
		SessionEpoch:   -1,
		Topics: []fetchapi.RequestTopic{{Topic: topic, Partitions: []fetchapi.RequestPartition{{
			Partition: partition, CurrentLeaderEpoch: -1, FetchOffset: offset, LogStartOffset: -1,
			PartitionMaxBytes: int32(k.opts.FetchMaxBytes),
		}}}},
	})
	if err != nil {
		return nil, fmt.Errorf("fetch %s/%d at %d: %w", topic, partition, offset, err)
	}
	res := m.(*fetchapi.Response)
	if len(res.Topics) != 1 || len(res.Topics[0].Partitions) != 1 {
		return nil, fmt.Errorf("fetch %s/%d at %d: response names no partition", topic, partition, offset)
	}
	p := &res.Topics[0].Partitions[0]
	if p.ErrorCode != 0 {
		return nil, fetchError(topic, partition, offset, p, kafka.Error(p.ErrorCode))
	}
	return p, nil
}

func fetchError(topic string, partition int32, offset int64, p *fetchapi.ResponsePartition, err kafka.Error) error {
	if errors.Is(err, kafka.OffsetOutOfRange) {
		// The records were deleted (retention) or never written: archiving the rest would
		// leave a silent hole, so stop for an operator.
		return failure.Permanent(fmt.Errorf("fetch %s/%d at %d: offset not in the log (log start %d, high watermark %d): %w",
			topic, partition, offset, p.LogStartOffset, p.HighWatermark, err))
	}
	return fmt.Errorf("fetch %s/%d at %d: %w", topic, partition, offset, err)
}

// passGap is called when a fetch at pos returned nothing at or past pos. Either the stable
// log ends at pos (the plan reaches past what is committed: retry later), or the batch that
// holds pos lost its last records to compaction. kafka-go does not expose a batch's last
// offset, so the end of such a batch is found by bisection: fetching inside the batch
// returns the batch again, fetching past it returns later data.
func (k *KafkaReader) passGap(ctx context.Context, topic string, partition int32, pos, end int64, res *fetchapi.ResponsePartition) (int64, error) {
	stable := res.LastStableOffset
	if stable <= pos {
		return 0, fmt.Errorf("read %s/%d [%d, %d): the last stable offset is %d; the range is not fully committed yet",
			topic, partition, pos, end, stable)
	}
	if _, ok := firstBatchBase(res); !ok {
		return 0, errEmptyFetch(topic, partition, pos, stable)
	}
	lo, hi := pos, min(end, stable) // the first offset with data at or past pos lies in (lo, hi]
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		r, err := k.fetch(ctx, topic, partition, mid)
		if err != nil {
			return 0, err
		}
		base, ok := firstBatchBase(r)
		switch {
		case !ok:
			return 0, errEmptyFetch(topic, partition, mid, stable)
		case base <= pos:
			lo = mid
		default:
			hi = mid
		}
	}
	return hi, nil
}

// errEmptyFetch reports a fetch below the last stable offset that returned no batch at all.
// Skipping ahead on such an answer could skip records, so it is retried instead.
func errEmptyFetch(topic string, partition int32, offset, stable int64) error {
	return fmt.Errorf("fetch %s/%d at %d: no data below the last stable offset %d", topic, partition, offset, stable)
}

func firstBatchBase(p *fetchapi.ResponsePartition) (int64, bool) {
	stream, ok := p.RecordSet.Records.(*protocol.RecordStream)
	if !ok || len(stream.Records) == 0 {
		return 0, false
	}
	type based interface{ Offset() int64 }
	b, ok := stream.Records[0].(based)
	if !ok {
		return 0, false
	}
	return b.Offset(), true
}

// Addr returns the bootstrap addresses, for log lines.
func (k *KafkaReader) Addr() net.Addr { return k.client.Addr }
