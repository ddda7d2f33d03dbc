package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
)

// Kafka is what verify --against-kafka asks of the source cluster.
type Kafka interface {
	// TopicIDs maps every topic of the cluster to its Kafka topic ID ("" where the broker
	// gives none).
	TopicIDs(ctx context.Context) (map[string]string, error)
	Partitions(ctx context.Context, topic string) ([]int32, error)
	// LogStarts returns each partition's log start offset: below it Kafka holds nothing.
	LogStarts(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error)
	// ReadRange calls fn for every committed record of the range, in offset order, at
	// read_committed, as a shard reads it.
	ReadRange(ctx context.Context, topic string, partition int32, first, end int64, fn func(*archive.Record) error) error
}

// maxRecordProblems bounds the problems reported for one partition of one window: the
// first few name the offsets, the count says the rest.
const maxRecordProblems = 10

// checkKafka compares every archived record of the window's ranges that Kafka still holds
// with Kafka's own, offset by offset: no record of a covered range missing from either side,
// and each equal in key, value, headers, timestamp and null-ness. A topic that Kafka no
// longer has, or has under another ID (deleted, created again), is the archive's alone.
func (w *window) checkKafka(ctx context.Context, b blob.Bucket, k Kafka, ids map[string]string) error {
	byTopic := map[string][]int32{}
	for _, p := range w.manifest.Partitions {
		byTopic[p.Topic] = append(byTopic[p.Topic], p.Partition)
	}
	for _, p := range w.manifest.Partitions {
		if !sameTopic(ids, w.manifest, p.Topic) {
			continue
		}
		starts, err := k.LogStarts(ctx, p.Topic, byTopic[p.Topic])
		if err != nil {
			return err
		}
		lo := max(p.First, starts[p.Partition])
		if lo >= p.End {
			continue // retention has taken the range: only the archive holds it now
		}
		if err := w.comparePartition(ctx, b, k, p, lo); err != nil {
			return err
		}
	}
	return nil
}

// comparePartition walks Kafka's records of p from lo and the archive's side by side.
func (w *window) comparePartition(ctx context.Context, b blob.Bucket, k Kafka, p archive.PartitionRange, lo int64) error {
	var readErr error
	archived := func(yield func(*archive.Record) bool) {
		readErr = Records(ctx, b, w.folder.dir, w.manifest, Filter{Topic: p.Topic, Partition: p.Partition, FromOffset: lo, ToOffset: p.End}, func(r *archive.Record) error {
			if !yield(r) {
				return errStop
			}
			return nil
		})
	}
	next, stop := iter.Pull(iter.Seq[*archive.Record](archived))
	defer stop()
	c := &comparison{w: w, p: p}
	pending, ok := next()
	err := k.ReadRange(ctx, p.Topic, p.Partition, lo, p.End, func(kr *archive.Record) error {
		for ok && pending.Offset < kr.Offset {
			c.problem(pending.Offset, "archived, but Kafka has no such record")
			pending, ok = next()
		}
		switch {
		case !ok || pending.Offset > kr.Offset:
			c.problem(kr.Offset, "in Kafka, missing from the archive")
		default:
			if diff := differ(pending, kr); diff != "" {
				c.problem(kr.Offset, "differs from Kafka's record: "+diff)
			}
			pending, ok = next()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read %s/%d [%d, %d) from Kafka: %w", p.Topic, p.Partition, lo, p.End, err)
	}
	for ; ok; pending, ok = next() {
		c.problem(pending.Offset, "archived, but Kafka has no such record")
	}
	if stop(); readErr != nil && !errors.Is(readErr, errStop) {
		return readErr // the archive could not be read: nothing above can be trusted
	}
	c.flush()
	return nil
}

var errStop = errors.New("audit: stop")

// comparison collects one partition's record problems, the first few by offset.
type comparison struct {
	w     *window
	p     archive.PartitionRange
	count int
}

func (c *comparison) problem(offset int64, what string) {
	c.count++
	if c.count > maxRecordProblems {
		return
	}
	off := offset
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	c.w.report.Problems = append(c.w.report.Problems, Problem{Key: fmt.Sprintf("%s/%d", c.p.Topic, c.p.Partition), Offset: &off, What: what})
}

func (c *comparison) flush() {
	if c.count > maxRecordProblems {
		c.w.problem(fmt.Sprintf("%s/%d", c.p.Topic, c.p.Partition), "%d more records differ from Kafka", c.count-maxRecordProblems)
	}
}

// differ names the first field in which an archived record and Kafka's differ, or "".
func differ(a, k *archive.Record) string {
	switch {
	case !a.Timestamp.Equal(k.Timestamp) || a.LogAppendTime != k.LogAppendTime:
		return fmt.Sprintf("timestamp %s, Kafka's %s", a.Timestamp, k.Timestamp)
	case (a.Key == nil) != (k.Key == nil) || !bytes.Equal(a.Key, k.Key):
		return "key"
	case (a.Value == nil) != (k.Value == nil) || !bytes.Equal(a.Value, k.Value):
		return "value"
	case !slices.EqualFunc(a.Headers, k.Headers, func(x, y archive.Header) bool {
		return x.Key == y.Key && (x.Value == nil) == (y.Value == nil) && bytes.Equal(x.Value, y.Value)
	}):
		return "headers"
	}
	return ""
}

// checkTopic reports the partitions of the topic that the newest window does not cover.
func checkTopic(ctx context.Context, k Kafka, newest *window, ids map[string]string) ([]Problem, error) {
	covered := map[archive.TopicPartition]bool{}
	topics := map[string]bool{}
	for _, p := range newest.manifest.Partitions {
		covered[archive.TopicPartition{Topic: p.Topic, Partition: p.Partition}] = true
		topics[p.Topic] = true
	}
	var out []Problem
	for topic := range topics {
		if !sameTopic(ids, newest.manifest, topic) {
			continue // gone since: the next window ends it
		}
		parts, err := k.Partitions(ctx, topic)
		if err != nil {
			return nil, err
		}
		for _, p := range parts {
			if !covered[archive.TopicPartition{Topic: topic, Partition: p}] {
				out = append(out, Problem{What: fmt.Sprintf("partition %s/%d of the topic is in no window up to the newest, %s", topic, p, newest.report.Manifest)})
			}
		}
	}
	return out, nil
}

// sameTopic reports whether Kafka's topic of that name is the one the manifest archived: by
// ID, where both know it.
func sameTopic(ids map[string]string, m *archive.Manifest, topic string) bool {
	id, ok := ids[topic]
	if !ok {
		return false
	}
	for _, t := range m.Topics {
		if t.Active() && t.Topic == topic {
			return t.ID == "" || id == "" || t.ID == id
		}
	}
	return true
}
