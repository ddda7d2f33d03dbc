package restore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/audit"
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
// restore starts, and records for every route the source offsets it finds there. Records
// without an origin header (not karch's) are passed over. It first waits until no
// transaction is open below the end: a read_committed fetch stops at the first open one, so
// an open transaction of a dead producer (or of another restore) would hide whatever was
// written after it, and a rerun would write it again.
func (r *restorer) scanOrigins(ctx context.Context) error {
	adm := kadm.NewClient(r.cl)
	starts, err := adm.ListStartOffsets(ctx, r.opts.ToTopic)
	if err != nil {
		return fmt.Errorf("list start offsets of %s: %w", r.opts.ToTopic, err)
	}
	ends, err := r.stableEnds(ctx, adm)
	if err != nil {
		return err
	}
	from := map[int32]int64{}
	for p, end := range ends {
		if s, ok := starts.Lookup(r.opts.ToTopic, p); ok && end > s.Offset {
			from[p] = s.Offset
		}
	}
	return r.consume(ctx, from, ends)
}

// stableEnds waits, up to opts.StableWait, until every partition's last stable offset is
// its end (no transaction is open in it), and returns the ends.
func (r *restorer) stableEnds(ctx context.Context, adm *kadm.Client) (map[int32]int64, error) {
	wait := cmp.Or(r.opts.StableWait, DefaultStableWait)
	deadline := time.Now().Add(wait)
	for {
		ends, err := adm.ListEndOffsets(ctx, r.opts.ToTopic)
		if err != nil {
			return nil, fmt.Errorf("list end offsets of %s: %w", r.opts.ToTopic, err)
		}
		stable, err := adm.ListCommittedOffsets(ctx, r.opts.ToTopic)
		if err != nil {
			return nil, fmt.Errorf("list last stable offsets of %s: %w", r.opts.ToTopic, err)
		}
		out, open := map[int32]int64{}, ""
		ends.Each(func(o kadm.ListedOffset) {
			out[o.Partition] = o.Offset
			if s, ok := stable.Lookup(o.Topic, o.Partition); ok && s.Offset < o.Offset && open == "" {
				open = fmt.Sprintf("partition %d: a transaction is open at offset %d, below the end %d", o.Partition, s.Offset, o.Offset)
			}
		})
		if open == "" {
			return out, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("topic %s %s for all of --stable-wait %s: what was written after it cannot be read, so what is there already cannot be known; run again once the transaction ends (its producer's transaction.timeout.ms)",
				r.opts.ToTopic, open, wait)
		}
		r.log.Info("waiting for an open transaction in the target to end", "topic", r.opts.ToTopic, "detail", open)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// consume reads each partition from its offset to its end with audit's franz-go reader,
// which reads through transaction markers to the end by offset: the scan never stops on a
// guess, and a broker away too long is a retryable failure.
func (r *restorer) consume(ctx context.Context, from, ends map[int32]int64) error {
	reader := audit.NewFranzReader(r.opts.Brokers, r.opts.Client...)
	for _, p := range slices.Sorted(maps.Keys(from)) {
		err := reader.ReadRange(ctx, r.opts.ToTopic, p, from[p], ends[p], func(rec *archive.Record) error {
			r.originOf(rec)
			return nil
		})
		if err != nil {
			return fmt.Errorf("read %s/%d for restored origins: %w", r.opts.ToTopic, p, err)
		}
	}
	r.log.Info("found what earlier restores wrote", "topic", r.opts.ToTopic, "routes", len(r.done))
	return nil
}

// originOf notes the origin of one record of the target.
func (r *restorer) originOf(rec *archive.Record) {
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
		p, ok := r.done[rt]
		if !ok {
			p = &present{}
			r.done[rt] = p
		}
		p.add(off)
	}
}
