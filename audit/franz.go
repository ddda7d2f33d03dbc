package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/karch-archive/karch/archive"
)

// FranzReader reads Kafka's records with franz-go, a client that shares no decoding with
// the kafka-go reader the shards archive with: a record that one client's decoder drops
// without a word (a batch cut short at a record it cannot parse) is still seen by the
// other, so verify --against-kafka finds what the archive lacks.
type FranzReader struct {
	opts []kgo.Opt
}

// NewFranzReader reads the cluster behind brokers; opts carry its TLS and SASL.
func NewFranzReader(brokers []string, opts ...kgo.Opt) *FranzReader {
	return &FranzReader{opts: append(slices.Clone(opts), kgo.SeedBrokers(brokers...))}
}

// readStall bounds how long a read may return nothing before it fails: a broker away that
// long is a retryable failure, never a range read short.
const readStall = 2 * time.Minute

// ReadRange calls fn, in offset order, for every committed record of [first, end), at
// read_committed. It reads until it sees a record or a transaction marker at end-1 or past
// it, so that a range whose last offsets are markers or aborted records is read through.
func (f *FranzReader) ReadRange(ctx context.Context, topic string, partition int32, first, end int64, fn func(*archive.Record) error) error {
	if first >= end {
		return nil
	}
	cl, err := kgo.NewClient(append(slices.Clone(f.opts), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(),
		kgo.FetchMaxWait(time.Second), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(first)}}))...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	for progress, done := time.Now(), false; !done; {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		fetches := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, fe := range fetches.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				return fmt.Errorf("read %s/%d at read_committed: %w", fe.Topic, fe.Partition, fe.Err)
			}
		}
		var ferr error
		fetches.EachRecord(func(r *kgo.Record) {
			progress = time.Now()
			done = done || r.Offset+1 >= end
			if ferr != nil || r.Offset < first || r.Offset >= end || r.Attrs.IsControl() {
				return
			}
			ferr = fn(fromFranz(r))
		})
		if ferr != nil {
			return ferr
		}
		if time.Since(progress) > readStall {
			return fmt.Errorf("read %s/%d [%d, %d): nothing read for %s", topic, partition, first, end, readStall)
		}
	}
	return nil
}

// fromFranz is an archive record of franz-go's: null keys, values and header values stay
// null, empty ones empty.
func fromFranz(r *kgo.Record) *archive.Record {
	rec := &archive.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UTC(),
		LogAppendTime: r.Attrs.TimestampType() == 1, Key: r.Key, Value: r.Value}
	for _, h := range r.Headers {
		rec.Headers = append(rec.Headers, archive.Header{Key: h.Key, Value: h.Value})
	}
	return rec
}
