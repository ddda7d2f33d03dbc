package coordinator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sync/errgroup"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/shard"
)

// OffsetLister is what the coordinator asks of Kafka.
type OffsetLister interface {
	// Topics lists the cluster's topics, with their IDs.
	Topics(ctx context.Context) (map[string]TopicInfo, error)
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

// KafkaOffsets is the OffsetLister of a Kafka cluster, through kafka-go. It passes every
// Kafka error through shard.ClassifyKafkaError: denied access and requests the broker cannot
// serve are permanent, the rest retryable.
type KafkaOffsets struct {
	client *kafka.Client
	// reader reads records the way shards archive them (committed data only, the
	// timestamps Kafka's consumers see), to place window edges on such records.
	reader *shard.KafkaReader
	// franzCl lists topics with their IDs (Topics), made on first use from the brokers, the
	// client id and franzOpts (TLS, SASL).
	brokers   []string
	clientID  string
	franzOpts []kgo.Opt
	franzOnce sync.Once
	franzCl   *kgo.Client
	franzErr  error
}

var _ OffsetLister = (*KafkaOffsets)(nil)

// ClientID is the Kafka client id of every connection a pipeline's coordinator and shards
// make: one name per pipeline, so that broker-side quotas can be set for it.
func ClientID(pipeline string) string { return "karch-" + pipeline }

// NewKafkaOffsets returns the OffsetLister of the cluster behind brokers, whose connections
// carry conn's client id, TLS and SASL settings, with franz the same TLS and SASL for
// franz-go's connection (Topics).
func NewKafkaOffsets(brokers []string, conn shard.KafkaOptions, franz ...kgo.Opt) *KafkaOffsets {
	opts := shard.DefaultKafkaOptions()
	// An edge is usually the first record of the first batch a fetch returns, and a broker
	// returns at least one whole batch whatever the limit: small fetches keep planning cheap.
	opts.ClientID, opts.TLS, opts.SASL, opts.FetchMaxBytes = conn.ClientID, conn.TLS, conn.SASL, 128<<10
	// One transport for metadata, offsets and fetches: each keeps the layout of the whole
	// cluster, which on a cluster of thousands of topics is most of planning's allocations.
	reader := shard.NewKafkaReader(brokers, opts)
	return &KafkaOffsets{
		client:  &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second, Transport: reader.Transport()},
		reader:  reader,
		brokers: brokers, clientID: conn.ClientID, franzOpts: franz,
	}
}

// ReadRange reads committed records as a shard does, with the fetches of planning (small).
func (k *KafkaOffsets) ReadRange(ctx context.Context, topic string, partition int32, first, end int64, fn func(*archive.Record) error) error {
	return k.reader.ReadRange(ctx, topic, partition, first, end, fn)
}

// Partitions lists topic's partitions in order.
func (k *KafkaOffsets) Partitions(ctx context.Context, topic string) ([]int32, error) {
	md, err := k.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, shard.ClassifyKafkaError(fmt.Errorf("read metadata of topic %s: %w", topic, err))
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
			return nil, failure.Permanent(fmt.Errorf("topic %s does not exist", topic))
		}
		if t.Error != nil {
			return nil, shard.ClassifyKafkaError(fmt.Errorf("read metadata of topic %s: %w", topic, t.Error))
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

// OffsetsAt returns, per partition, the offset of the first committed data record, in
// offset order, whose timestamp is at or after t, or -1 where none is committed yet.
//
// ListOffsets by time answers the first offset of any record at or after t, and a
// transaction's marker carries the broker's time: when records carry older timestamps (a
// replay, event time), it answers the first marker for every later t. Its answer is a lower
// bound, though, since data records are records, so each partition is read forward from it,
// at read_committed and as a shard reads it, to the first data record at or after t. The read
// ends there, or at the last stable offset: it is short unless records older than t follow a
// marker newer than t, and then it reads those records.
func (k *KafkaOffsets) OffsetsAt(ctx context.Context, topic string, partitions []int32, t time.Time) (map[int32]int64, error) {
	lower, err := k.listAt(ctx, topic, partitions, t)
	if err != nil {
		return nil, err
	}
	stable, err := k.StableEnds(ctx, topic, partitions)
	if err != nil {
		return nil, err
	}
	out := make(map[int32]int64, len(lower))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for p, from := range lower {
		g.Go(func() error {
			off, err := k.firstDataAt(gctx, topic, p, from, stable[p], t)
			mu.Lock()
			out[p] = off
			mu.Unlock()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// listAt asks ListOffsets for the first offset at or after t, -1 where no record is.
func (k *KafkaOffsets) listAt(ctx context.Context, topic string, partitions []int32, t time.Time) (map[int32]int64, error) {
	return k.list(ctx, topic, partitions, t.UnixMilli())
}

// errFound ends a read at the record it looked for.
var errFound = errors.New("coordinator: record found")

// firstDataAt reads topic/partition from from up to stable and returns the offset of the
// first record the read yields whose timestamp, in milliseconds as Kafka compares them, is at
// or after t; -1 if there is none.
func (k *KafkaOffsets) firstDataAt(ctx context.Context, topic string, partition int32, from, stable int64, t time.Time) (int64, error) {
	if from < 0 {
		return -1, nil
	}
	found, target := int64(-1), t.UnixMilli()
	err := k.reader.ReadRange(ctx, topic, partition, from, stable, func(r *archive.Record) error {
		if r.Timestamp.UnixMilli() < target {
			return nil
		}
		found = r.Offset
		return errFound
	})
	if err != nil && !errors.Is(err, errFound) {
		return -1, fmt.Errorf("find the first record of %s/%d at or after %s: %w", topic, partition, t.UTC().Format(time.RFC3339Nano), err)
	}
	return found, nil
}

// StableEnds lists each partition's last stable offset (read_committed "latest").
func (k *KafkaOffsets) StableEnds(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error) {
	return k.list(ctx, topic, partitions, -1)
}

// LogStarts lists each partition's log start offset ("earliest").
func (k *KafkaOffsets) LogStarts(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error) {
	return k.list(ctx, topic, partitions, -2)
}

// list asks ListOffsets, at read_committed, for the partitions' offsets at timestamp: -1
// the last stable offset, -2 the log start, else the first offset at or after that
// millisecond (-1 where no record is). It goes through franz-go, which sends one request to
// each partition leader; kafka-go sends one per partition, and a planning of a thousand
// partitions then allocates mostly request buffers.
func (k *KafkaOffsets) list(ctx context.Context, topic string, partitions []int32, timestamp int64) (map[int32]int64, error) {
	out := make(map[int32]int64, len(partitions))
	if len(partitions) == 0 {
		return out, nil
	}
	cl, err := k.franz()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req := kmsg.NewPtrListOffsetsRequest()
	req.IsolationLevel = 1 // read_committed
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for _, p := range partitions {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, timestamp
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	for _, sh := range cl.RequestSharded(ctx, req) {
		if sh.Err != nil {
			return nil, classifyFranz(fmt.Errorf("list offsets of %s: %w", topic, sh.Err))
		}
		for _, t := range sh.Resp.(*kmsg.ListOffsetsResponse).Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return nil, classifyFranz(fmt.Errorf("list offsets of %s/%d: %w", topic, p.Partition, err))
				}
				out[p.Partition] = p.Offset
			}
		}
	}
	if len(out) != len(partitions) {
		return nil, fmt.Errorf("list offsets of %s: %d partitions answered, %d asked", topic, len(out), len(partitions))
	}
	return out, nil
}
