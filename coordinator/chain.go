package coordinator

import (
	"context"
	"fmt"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/failure"
)

// chain resolves one window's offset ranges, continuing the previous window's.
type chain struct {
	topic string
	// parts are the topic's partitions, as the cluster lists them now.
	parts  []int32
	window archive.Window
	// prev holds the previous window's end offsets; nil for a pipeline's first window.
	prev map[archive.TopicPartition]int64
	// acceptLoss lets this window start past records that retention deleted.
	acceptLoss bool
	// bound, when set, holds the first offsets of a committed window that follows: a
	// backfill before it archives only its partitions and no offset at or past them, and
	// its last window (closes) ends exactly there.
	bound  map[archive.TopicPartition]int64
	closes bool
}

// resolve gives each partition its offsets for the window. A partition the previous window
// covered starts at its end offset, whatever the timestamps say, so windows tile the log. A
// partition the chain never covered starts at its log start offset when the chain exists
// (it was added to the topic: its first records may carry any timestamp), and at the first
// offset at or after the window's start for a pipeline's first window. Every partition ends
// at the first offset at or after the window's end, never past the last stable offset.
//
// Records the chain can no longer reach are a permanent error: a partition of the previous
// window that is gone, a log that now ends below the chain (the topic was recreated), or a
// log that now starts above it (retention ran past the chain), unless acceptLoss declares the
// last as a gap.
func (ch chain) resolve(ctx context.Context, ol OffsetLister) ([]archive.Range, []archive.Gap, error) {
	parts, err := ch.bounded(ch.parts)
	if err != nil {
		return nil, nil, err
	}
	if err := ch.checkCovered(parts); err != nil {
		return nil, nil, err
	}
	stable, err := ol.StableEnds(ctx, ch.topic, parts)
	if err != nil {
		return nil, nil, err
	}
	starts, err := ch.starts(ctx, ol, parts, stable)
	if err != nil {
		return nil, nil, err
	}
	ends, err := ol.OffsetsAt(ctx, ch.topic, parts, ch.window.End)
	if err != nil {
		return nil, nil, err
	}
	ranges := make([]archive.Range, len(parts))
	var gaps []archive.Gap
	for i, p := range parts {
		first, gap, err := ch.first(p, starts, stable[p])
		if err != nil {
			return nil, nil, err
		}
		if gap != nil {
			gaps = append(gaps, *gap)
		}
		end := min(orStable(ends[p], stable[p]), stable[p])
		if first, end, err = ch.clamp(p, first, end); err != nil {
			return nil, nil, err
		}
		ranges[i] = archive.Range{Topic: ch.topic, Partition: p, First: first, End: max(end, first)}
	}
	return ranges, gaps, nil
}

// bounded keeps the partitions of the following window, when there is one: a partition it
// lacks was added after it, and its records belong to the windows after it.
func (ch chain) bounded(parts []int32) ([]int32, error) {
	if ch.bound == nil {
		return parts, nil
	}
	var out []int32
	for _, p := range parts {
		if _, ok := ch.bound[archive.TopicPartition{Topic: ch.topic, Partition: p}]; ok {
			out = append(out, p)
		}
	}
	want := 0
	for tp := range ch.bound {
		if tp.Topic == ch.topic {
			want++
		}
	}
	if len(out) != want {
		return nil, failure.Permanent(fmt.Errorf("topic %s has %d of the %d partitions that the committed window after the backfill archived: the topic was deleted and recreated",
			ch.topic, len(out), want))
	}
	return out, nil
}

// clamp keeps a partition's range below the following window's first offset, and ends the
// last window of a backfill exactly there. A chain that already runs past it means that the
// windows on both sides of the backfill overlap.
func (ch chain) clamp(p int32, first, end int64) (int64, int64, error) {
	tp := archive.TopicPartition{Topic: ch.topic, Partition: p}
	limit, ok := ch.bound[tp]
	if !ok {
		return first, end, nil
	}
	if next, chained := ch.prev[tp]; chained && next > limit {
		return 0, 0, failure.Permanent(fmt.Errorf("topic %s partition %d: the window before the backfill ends at offset %d, past offset %d where the committed window after it begins",
			ch.topic, p, next, limit))
	}
	first = min(first, limit)
	if ch.closes {
		return first, limit, nil
	}
	return first, min(end, limit), nil
}

// checkCovered insists that every partition of the previous window is still there (prev
// holds the topic's partitions only). Kafka never removes a partition: a topic that has
// fewer was deleted and created again, under a broker that gives no topic IDs to tell.
func (ch chain) checkCovered(parts []int32) error {
	have := make(map[int32]bool, len(parts))
	for _, p := range parts {
		have[p] = true
	}
	for tp := range ch.prev {
		if !have[tp.Partition] {
			return failure.Permanent(fmt.Errorf("topic %s has no partition %d, which the previous window archived up to offset %d: the topic was deleted and recreated",
				tp.Topic, tp.Partition, ch.prev[tp]))
		}
	}
	return nil
}

// starts returns where the chain's view of each partition's log begins: the log start
// offset when there is a chain, else the first offset at or after the window's start.
func (ch chain) starts(ctx context.Context, ol OffsetLister, parts []int32, stable map[int32]int64) (map[int32]int64, error) {
	if ch.prev != nil {
		return ol.LogStarts(ctx, ch.topic, parts)
	}
	at, err := ol.OffsetsAt(ctx, ch.topic, parts, ch.window.Start)
	if err != nil {
		return nil, err
	}
	for _, p := range parts {
		at[p] = orStable(at[p], stable[p])
	}
	return at, nil
}

// first is where partition p starts in this window, with the gap it declares, if any.
func (ch chain) first(p int32, starts map[int32]int64, stable int64) (int64, *archive.Gap, error) {
	next, chained := ch.prev[archive.TopicPartition{Topic: ch.topic, Partition: p}]
	logStart := starts[p]
	switch {
	case !chained:
		return logStart, nil, nil
	case stable < next:
		return 0, nil, failure.Permanent(fmt.Errorf("topic %s partition %d: the chain continues at offset %d but the log ends at %d: the topic was deleted and recreated, or its log was truncated",
			ch.topic, p, next, stable))
	case logStart <= next:
		return next, nil, nil
	case !ch.acceptLoss:
		return 0, nil, failure.Permanent(fmt.Errorf("topic %s partition %d: offsets [%d, %d) were deleted by retention before they were archived; "+
			"to archive window %s from the log start and record the gap in its manifest, set accept_data_loss: %[5]s",
			ch.topic, p, next, logStart, ch.window.Start.Format(time.RFC3339)))
	default:
		return logStart, &archive.Gap{Topic: ch.topic, Partition: p, First: next, End: logStart, Reason: archive.GapRetention}, nil
	}
}
