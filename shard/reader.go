package shard

import (
	"context"

	"github.com/karch-archive/karch/archive"
)

// RecordReader reads one partition's offset range. The Kafka implementation is KafkaReader;
// tests may supply their own.
type RecordReader interface {
	// ReadRangeTally calls fn, in offset order, for every committed record of
	// topic/partition with an offset in [first, end), and returns once no record below end
	// remains, with the account of every offset of the range (Tally.Offsets() == end-first).
	// The record passed to fn is the caller's to keep.
	ReadRangeTally(ctx context.Context, topic string, partition int32, first, end int64, fn func(*archive.Record) error) (Tally, error)
}
