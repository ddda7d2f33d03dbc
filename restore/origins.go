package restore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/karch-archive/karch/failure"
)

// partitionCount is the target topic's number of partitions; a missing topic is permanent.
func partitionCount(ctx context.Context, cl *kgo.Client, topic string) (int32, error) {
	details, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("read metadata of topic %s: %w", topic, err)
	}
	d, ok := details[topic]
	switch {
	case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
		return 0, failure.Permanent(fmt.Errorf("topic %s does not exist: create it first, with as many partitions as the mapping needs", topic))
	case d.Err != nil:
		return 0, fmt.Errorf("read metadata of topic %s: %w", topic, d.Err)
	}
	return int32(len(d.Partitions)), nil
}

// scanOrigins reads the target topic through, at read_committed, up to its end when the
// restore starts, and records for every route the last source offset it finds there.
// Records without an origin header (not karch's) are passed over.
func (r *restorer) scanOrigins(ctx context.Context) error {
	adm := kadm.NewClient(r.cl)
	ends, err := adm.ListEndOffsets(ctx, r.opts.ToTopic)
	if err != nil {
		return fmt.Errorf("list end offsets of %s: %w", r.opts.ToTopic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, r.opts.ToTopic)
	if err != nil {
		return fmt.Errorf("list start offsets of %s: %w", r.opts.ToTopic, err)
	}
	todo := map[int32]kgo.Offset{}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok && o.Offset > s.Offset {
			todo[o.Partition], left[o.Partition] = kgo.NewOffset().At(s.Offset), o.Offset
		}
	})
	if len(todo) == 0 {
		return nil
	}
	return r.consume(ctx, todo, left)
}

// consume reads the given partitions from their offsets until each reaches its end, or
// until the broker has nothing more to give (transaction markers end a partition's log
// without a record to read).
func (r *restorer) consume(ctx context.Context, from map[int32]kgo.Offset, ends map[int32]int64) error {
	cl, err := kgo.NewClient(append(slices.Clone(r.opts.Client), kgo.SeedBrokers(r.opts.Brokers...), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(time.Second), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.opts.ToTopic: from}))...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	for idle := 0; len(ends) > 0 && idle < 3; {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		fetches := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, fe := range fetches.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				return fmt.Errorf("read %s/%d for restored origins: %w", fe.Topic, fe.Partition, fe.Err)
			}
		}
		idle++
		fetches.EachRecord(func(rec *kgo.Record) {
			idle = 0
			r.originOf(rec)
			if rec.Offset+1 >= ends[rec.Partition] {
				delete(ends, rec.Partition)
			}
		})
	}
	r.log.Info("found what earlier restores wrote", "topic", r.opts.ToTopic, "routes", len(r.done))
	return nil
}

// originOf notes the origin of one record of the target.
func (r *restorer) originOf(rec *kgo.Record) {
	for _, h := range rec.Headers {
		if h.Key != OriginHeader {
			continue
		}
		tp, off, err := ParseOrigin(h.Value)
		if err != nil {
			return
		}
		if r.seen != nil {
			r.seen(rec, tp, off)
			return
		}
		rt := route{source: tp, target: rec.Partition}
		if last, ok := r.done[rt]; !ok || off > last {
			r.done[rt] = off
		}
	}
}
