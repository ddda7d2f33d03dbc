package checker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kafkaView is what the checker knows of the topic: its partitions' log start and last
// stable offsets, read once when the check starts.
type kafkaView struct {
	cfg        Config
	cl         *kgo.Client
	start, lso map[int32]int64
}

// openKafka lists the topic's partitions with their log start and last stable offsets.
// A topic that does not exist is an error: there is nothing to check the archive against.
func openKafka(ctx context.Context, c Config) (*kafkaView, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...))
	if err != nil {
		return nil, fmt.Errorf("create Kafka client: %w", err)
	}
	k := &kafkaView{cfg: c, cl: cl}
	adm := kadm.NewClient(cl)
	if k.start, err = listOffsets(ctx, c.Topic, "log start", adm.ListStartOffsets); err == nil {
		k.lso, err = listOffsets(ctx, c.Topic, "last stable", adm.ListCommittedOffsets)
	}
	if err != nil {
		cl.Close()
		return nil, err
	}
	return k, nil
}

// listRetryFor is how long listOffsets retries errors that Kafka says are retriable: a
// broker that a chaos scenario restarted may still be electing leaders.
const listRetryFor = 20 * time.Second

type listFunc func(context.Context, ...string) (kadm.ListedOffsets, error)

// listOffsets lists one kind of offset of every partition of topic, retrying for a while
// what Kafka says is retriable.
func listOffsets(ctx context.Context, topic, what string, list listFunc) (map[int32]int64, error) {
	deadline := time.Now().Add(listRetryFor)
	for {
		out, err := listOffsetsOnce(ctx, topic, what, list)
		if err == nil || !kerr.IsRetriable(err) || time.Now().After(deadline) {
			return out, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (before: %w)", ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func listOffsetsOnce(ctx context.Context, topic, what string, list listFunc) (map[int32]int64, error) {
	listed, err := list(ctx, topic)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list the %s offsets of Kafka topic %s: %w", what, topic, err)
	}
	out := map[int32]int64{}
	for p, o := range listed[topic] {
		out[p] = o.Offset
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("list the %s offsets of Kafka topic %s: no partitions", what, topic)
	}
	return out, nil
}

func (k *kafkaView) close() { k.cl.Close() }

func (k *kafkaView) partitions() []int32 { return sortedKeys(k.start) }

func (k *kafkaView) has(p int32) bool {
	_, ok := k.start[p]
	return ok
}

// from is where the coverage of partition p must begin: From, or its log start.
func (k *kafkaView) from(p int32) int64 {
	if off, ok := k.cfg.From[p]; ok {
		return off
	}
	return k.start[p]
}

// bounds returns the offsets [lo, hi) of partition p that the checker reads from Kafka:
// from From (or the log start) to To (or the last stable offset). What Kafka no longer
// holds cannot be checked: a problem.
func (k *kafkaView) bounds(p int32, rep *Report) (lo, hi int64) {
	start, ok := k.start[p]
	if !ok {
		rep.problem("partition %d is not a partition of Kafka topic %s", p, k.cfg.Topic)
		return 0, 0
	}
	lo, hi = k.from(p), k.lso[p]
	if to, ok := k.cfg.To[p]; ok {
		hi = to
	}
	if lo < start {
		rep.problem("partition %d: coverage begins at %d, but Kafka's log starts at %d: [%d, %d) cannot be checked", p, lo, start, lo, start)
		lo = start
	}
	if hi < lo {
		rep.problem("partition %d: coverage ends at %d, before it begins at %d", p, hi, lo)
		hi = lo
	}
	return lo, hi
}

// idleLimit is how long consume waits for Kafka to return anything past the last offset
// it returned before it gives up.
const idleLimit = 30 * time.Second

// consume calls fn with every record of partition p in [lo, hi) that Kafka holds at
// read_committed, in offset order, and with the transaction markers among them (control
// records): with the markers, the last offset below the last stable offset is always
// returned, so the read knows where it ends.
func (k *kafkaView) consume(ctx context.Context, p int32, lo, hi int64, fn func(*kgo.Record)) error {
	if lo >= hi {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.cfg.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{k.cfg.Topic: {p: kgo.NewOffset().At(lo)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		return fmt.Errorf("create Kafka consumer: %w", err)
	}
	defer cl.Close()
	last, progressed := lo-1, time.Now()
	for last < hi-1 {
		pollCtx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pollCtx)
		cancel()
		if err := fetchError(ctx, fs); err != nil {
			return fmt.Errorf("read %s/%d at read_committed: %w", k.cfg.Topic, p, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset > last {
				last, progressed = r.Offset, time.Now()
			}
			if r.Offset >= lo && r.Offset < hi {
				fn(r)
			}
		})
		if time.Since(progressed) > idleLimit {
			return fmt.Errorf("read %s/%d at read_committed: nothing past offset %d in %s; the end is %d", k.cfg.Topic, p, last, idleLimit, hi)
		}
	}
	return nil
}

// fetchError returns the first error of a poll that is not its own timeout.
func fetchError(ctx context.Context, fs kgo.Fetches) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, e := range fs.Errors() {
		if !errors.Is(e.Err, context.DeadlineExceeded) && !errors.Is(e.Err, context.Canceled) {
			return e.Err
		}
	}
	return nil
}

// compare reads partition p from Kafka and compares each record with the archived ones.
func (ch *check) compare(ctx context.Context, ps *partState, lo, hi int64) error {
	return ch.kafka.consume(ctx, ps.p, lo, hi, func(r *kgo.Record) { ch.kafkaRecord(ps, r) })
}

// kafkaRecord compares one record (or marker) Kafka holds with the lines archived for its
// offset.
func (ch *check) kafkaRecord(ps *partState, r *kgo.Record) {
	s := ps.slots[r.Offset]
	if r.Attrs.IsControl() {
		if s != nil {
			s.held = heldMarker
		}
		return
	}
	ch.rep.Held++
	for _, h := range ps.holes {
		if h.hit < 0 && r.Offset >= h.first && r.Offset < h.end {
			h.hit = r.Offset
		}
	}
	for _, g := range ps.gaps {
		if r.Offset >= g.g.First && r.Offset < g.g.End {
			ps.heldInGap[r.Offset] = true
		}
	}
	if s == nil {
		ch.rep.Lost = append(ch.rep.Lost, Ref{ps.p, r.Offset, ps.whyLost(r.Offset)})
		return
	}
	s.held = heldRecord
	var whys []string
	for _, oc := range s.occ {
		switch {
		case oc.rec == nil:
			whys = append(whys, oc.where+": "+oc.bad)
		default:
			if d := diff(oc.rec, r); d != "" {
				whys = append(whys, oc.where+": "+d)
			}
		}
	}
	if len(whys) > 0 {
		ch.mismatch(ps.p, r.Offset, strings.Join(whys, "; "))
	}
}
