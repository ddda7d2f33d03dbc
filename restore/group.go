package restore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/failure"
)

// GroupOffsets reads the offsets a consumer group has committed on topic; client are the
// cluster's TLS and SASL options.
func GroupOffsets(ctx context.Context, brokers []string, group, topic string, client ...kgo.Opt) (_ map[archive.TopicPartition]int64, err error) {
	defer func() { err = classify(err) }()
	cl, err := kgo.NewClient(append(slices.Clone(client), kgo.SeedBrokers(brokers...))...)
	if err != nil {
		return nil, failure.Permanent(fmt.Errorf("kafka client: %w", err))
	}
	defer cl.Close()
	offsets, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("read the offsets of group %s: %w", group, err)
	}
	out := map[archive.TopicPartition]int64{}
	offsets.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil && o.At >= 0 {
			out[archive.TopicPartition{Topic: topic, Partition: o.Partition}] = o.At
		}
	})
	if len(out) == 0 {
		return nil, failure.Permanent(fmt.Errorf("group %s has no committed offset on topic %s", group, topic))
	}
	return out, nil
}

// TranslateGroup maps a consumer group's committed source offsets (the next record each
// source partition would give it) onto the restored topic: for each target partition, the
// offset of the first restored record the group has not consumed yet, read from the origin
// headers. Where several source partitions share a target partition, the earliest such
// record wins: the group may see again some records it had consumed, never miss one.
func TranslateGroup(ctx context.Context, opts Options, committed map[archive.TopicPartition]int64, log *slog.Logger) (_ map[int32]int64, err error) {
	defer func() { err = classify(err) }()
	cl, err := kgo.NewClient(append(slices.Clone(opts.Client), kgo.SeedBrokers(opts.Brokers...))...)
	if err != nil {
		return nil, failure.Permanent(fmt.Errorf("kafka client: %w", err))
	}
	defer cl.Close()
	n, err := partitionCount(ctx, cl, opts.ToTopic)
	if err != nil {
		return nil, err
	}
	t := &translation{committed: committed, first: map[route]int64{}, after: map[route]int64{}}
	r := &restorer{cl: cl, opts: opts, log: log, partitions: n, seen: t.seen}
	if err := r.scanOrigins(ctx); err != nil {
		return nil, err
	}
	return t.result(), nil
}

// translation collects, per route, the first target offset the group has not consumed and
// the offset after the route's last record.
type translation struct {
	committed    map[archive.TopicPartition]int64
	first, after map[route]int64
}

func (t *translation) seen(rec *archive.Record, source archive.TopicPartition, offset int64) {
	next, ok := t.committed[source]
	if !ok {
		return // a partition the group never consumed: not its business
	}
	rt := route{source: source, target: rec.Partition}
	if _, found := t.first[rt]; !found && offset >= next {
		t.first[rt] = rec.Offset
	}
	t.after[rt] = rec.Offset + 1
}

func (t *translation) result() map[int32]int64 {
	out := map[int32]int64{}
	for rt, after := range t.after {
		at := after // everything of the route consumed: resume after its last record
		if first, ok := t.first[rt]; ok {
			at = first
		}
		if cur, ok := out[rt.target]; !ok || at < cur {
			out[rt.target] = at
		}
	}
	return out
}

// CommitGroup commits offsets for group on the target topic; client are the cluster's TLS and
// SASL options.
func CommitGroup(ctx context.Context, brokers []string, group, topic string, offsets map[int32]int64, client ...kgo.Opt) (err error) {
	defer func() { err = classify(err) }()
	cl, err := kgo.NewClient(append(slices.Clone(client), kgo.SeedBrokers(brokers...))...)
	if err != nil {
		return failure.Permanent(fmt.Errorf("kafka client: %w", err))
	}
	defer cl.Close()
	var commit kadm.Offsets
	for p, at := range offsets {
		commit.AddOffset(topic, p, at, -1)
	}
	resp, err := kadm.NewClient(cl).CommitOffsets(ctx, group, commit)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("commit the offsets of group %s on %s: %w", group, topic, err)
	}
	return nil
}

// classify marks what no retry cures permanent: a Kafka error the protocol calls not
// retriable (failed authentication, denied access, a request the broker refuses) and a
// refused TLS handshake. Errors already marked, and all others, pass as they are.
func classify(err error) error {
	var ke *kerr.Error
	if err != nil && !failure.IsPermanent(err) && (errors.As(err, &ke) && !ke.Retriable || failure.IsTLSRefusal(err)) {
		return failure.Permanent(err)
	}
	return err
}
