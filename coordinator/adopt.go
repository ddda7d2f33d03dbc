package coordinator

import (
	"fmt"
	"path"
	"slices"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/failure"
)

// checkAdopted insists that a plan found in the store continues the chain exactly where
// prev ends, partition by partition (or after a gap it declares), and, in a backfill that
// ends at committed windows, stays below their first offsets and, as the last window, ends
// exactly there. A plan left by a crashed run that planned from other offsets (before a
// backfill committed the windows ahead of it, say) would otherwise archive offsets twice or
// leave some in no window.
func (c *coordinator) checkAdopted(key string, p *archive.Plan, w archive.Window, prev *stored) error {
	refuse := func(format string, a ...any) error {
		return failure.Permanent(fmt.Errorf("adopt plan %s: %s; nothing of its window is committed: remove the folder %s and run again",
			key, fmt.Sprintf(format, a...), path.Dir(key)+"/"))
	}
	if !p.Window.Start.Equal(w.Start) || !p.Window.End.Equal(w.End) {
		return refuse("it plans window %s-%s", p.Window.Start.Format(time.RFC3339), p.Window.End.Format(time.RFC3339))
	}
	ranges := make(map[archive.TopicPartition]archive.Range, len(p.Ranges))
	for _, r := range p.Ranges {
		ranges[archive.TopicPartition{Topic: r.Topic, Partition: r.Partition}] = r
	}
	if prev != nil {
		ends, err := archive.Chained(prev.End(), prev.Topics, p.Topics)
		if err != nil {
			return refuse("%v", err)
		}
		if err := continues(ranges, p.Gaps, ends, refuse); err != nil {
			return err
		}
	}
	if c.bound == nil {
		return nil
	}
	return c.withinBound(ranges, w, refuse)
}

// continues checks each partition of the window before against the plan's ranges.
func continues(ranges map[archive.TopicPartition]archive.Range, gaps []archive.Gap, ends map[archive.TopicPartition]int64, refuse func(string, ...any) error) error {
	for tp, end := range ends {
		r, ok := ranges[tp]
		switch {
		case !ok:
			return refuse("it has no range for partition %s/%d, which the window before archived up to offset %d", tp.Topic, tp.Partition, end)
		case r.First == end:
		case slices.Contains(gaps, archive.Gap{Topic: tp.Topic, Partition: tp.Partition, First: end, End: r.First, Reason: archive.GapRetention}):
		case r.First > end:
			return refuse("it starts partition %s/%d at offset %d, but the window before ends at %d: offsets [%d, %d) would be in no window",
				tp.Topic, tp.Partition, r.First, end, end, r.First)
		default:
			return refuse("it starts partition %s/%d at offset %d, but the window before ends at %d: offsets [%d, %d) would be archived twice",
				tp.Topic, tp.Partition, r.First, end, r.First, end)
		}
	}
	return nil
}

// withinBound checks the plan against the first offsets of the committed window that
// follows the backfill.
func (c *coordinator) withinBound(ranges map[archive.TopicPartition]archive.Range, w archive.Window, refuse func(string, ...any) error) error {
	closes := w.End.Equal(c.boundAt)
	for tp, limit := range c.bound {
		r, ok := ranges[tp]
		switch {
		case !ok:
			return refuse("it has no range for partition %s/%d, which the committed window at %s archives from offset %d", tp.Topic, tp.Partition, c.boundAt.Format(time.RFC3339), limit)
		case r.End > limit:
			return refuse("it ends partition %s/%d at offset %d, past offset %d where the committed window at %s begins: offsets [%d, %d) would be archived twice",
				tp.Topic, tp.Partition, r.End, limit, c.boundAt.Format(time.RFC3339), limit, r.End)
		case closes && r.End < limit:
			return refuse("it ends partition %s/%d at offset %d, but the committed window at %s begins at %d: offsets [%d, %d) would be in no window",
				tp.Topic, tp.Partition, r.End, c.boundAt.Format(time.RFC3339), limit, r.End, limit)
		}
	}
	for tp := range ranges {
		if _, ok := c.bound[tp]; !ok {
			return refuse("it has a range for partition %s/%d, which the committed window at %s does not archive: its records belong to the windows after", tp.Topic, tp.Partition, c.boundAt.Format(time.RFC3339))
		}
	}
	return nil
}
