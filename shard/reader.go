package shard

import (
	"context"

	"github.com/karch-archive/karch/archive"
)

// RecordReader reads one partition's offset range. The Kafka implementation is KafkaReader;
// tests may supply their own.
type RecordReader interface {
	// ReadRange calls fn, in offset order, for every committed record of topic/partition
	// with an offset in [first, end), and returns once no record below end remains. The
	// record passed to fn is the caller's to keep.
	ReadRange(ctx context.Context, topic string, partition int32, first, end int64, fn func(*archive.Record) error) error
}
