package checker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// RestoreConfig says which restore to check: Target must hold every record that Source holds
// at read_committed exactly once, in the same partition, byte for byte, with the origin header
// `karch restore` adds last (FORMAT.md's topic/partition/offset), and nothing else.
type RestoreConfig struct {
	Brokers        []string
	Source, Target string
}

// originHeader is the header `karch restore` names a record's origin by.
const originHeader = "karch.origin"

// CheckRestore reads both topics whole at read_committed and reports, by source partition and
// offset, each record the target lacks (Lost), holds twice (Duplicated) or holds altered
// (Mismatched); a target record without a readable origin is a problem. Report.Held counts
// the source's records, Report.Records the target's.
func CheckRestore(ctx context.Context, c RestoreConfig) (*Report, error) {
	if len(c.Brokers) == 0 || c.Source == "" || c.Target == "" {
		return nil, errors.New("checker: a restore check needs Brokers, Source and Target")
	}
	rep := &Report{}
	want := map[position]*kgo.Record{}
	err := ReadCommitted(ctx, c.Brokers, c.Source, func(r *kgo.Record) {
		want[position{r.Partition, r.Offset}] = r
		rep.Held++
	})
	if err != nil {
		return nil, err
	}
	seen := map[position]string{}
	err = ReadCommitted(ctx, c.Brokers, c.Target, func(r *kgo.Record) {
		rep.Records++
		checkRestored(rep, c.Source, r, want, seen)
	})
	if err != nil {
		return nil, err
	}
	for pos := range want {
		if _, ok := seen[pos]; !ok {
			rep.Lost = append(rep.Lost, Ref{pos.partition, pos.offset, "not in the target topic " + c.Target})
		}
	}
	rep.sort()
	return rep, nil
}

// stableWait bounds how long ReadCommitted waits for a topic's open transactions to end.
const stableWait = 30 * time.Second

// stable reports whether every partition's last stable offset is its end.
func (k *kafkaView) stable(ctx context.Context) bool {
	ends, err := kadm.NewClient(k.cl).ListEndOffsets(ctx, k.cfg.Topic)
	if err != nil {
		return false
	}
	open := false
	ends.Each(func(o kadm.ListedOffset) { open = open || k.lso[o.Partition] < o.Offset })
	return !open
}

type position struct {
	partition int32
	offset    int64
}

func (p position) String() string { return fmt.Sprintf("%d@%d", p.partition, p.offset) }

// ReadCommitted calls fn with every data record of topic at read_committed, partition by
// partition in offset order, up to each one's last stable offset once no transaction is open
// in it (or stableWait has passed): a producer's EndTransaction returns before the broker has
// written its markers, so right after a restore exits its last records may not be readable yet.
func ReadCommitted(ctx context.Context, brokers []string, topic string, fn func(*kgo.Record)) error {
	k, err := openKafka(ctx, Config{Brokers: brokers, Topic: topic})
	for deadline := time.Now().Add(stableWait); err == nil && !k.stable(ctx) && time.Now().Before(deadline); {
		k.close()
		time.Sleep(100 * time.Millisecond)
		k, err = openKafka(ctx, Config{Brokers: brokers, Topic: topic})
	}
	if err != nil {
		return err
	}
	defer k.close()
	for _, p := range k.partitions() {
		err := k.consume(ctx, p, k.start[p], k.lso[p], func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				fn(r)
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// checkRestored matches one target record with the source record its origin names.
func checkRestored(rep *Report, source string, r *kgo.Record, want map[position]*kgo.Record, seen map[position]string) {
	at := position{r.Partition, r.Offset}
	topic, pos, err := originOf(r)
	if err != nil {
		rep.problem("target record %s: %v", at, err)
		return
	}
	if topic != source {
		rep.problem("target record %s: its origin is of topic %q, not %q", at, topic, source)
		return
	}
	if first, ok := seen[pos]; ok {
		rep.Duplicated = append(rep.Duplicated, Ref{pos.partition, pos.offset, fmt.Sprintf("restored twice: target records %s and %s", first, at)})
		return
	}
	seen[pos] = at.String()
	src, ok := want[pos]
	if !ok {
		rep.Mismatched = append(rep.Mismatched, Ref{pos.partition, pos.offset, fmt.Sprintf("target record %s names an origin the source does not hold at read_committed", at)})
		return
	}
	if d := diffRestored(src, r); d != "" {
		rep.Mismatched = append(rep.Mismatched, Ref{pos.partition, pos.offset, fmt.Sprintf("target record %s: %s", at, d)})
	}
}

// originOf parses the last header of a restored record, which must be its origin.
func originOf(r *kgo.Record) (string, position, error) {
	if len(r.Headers) == 0 || r.Headers[len(r.Headers)-1].Key != originHeader {
		return "", position{}, fmt.Errorf("its last header is not %s", originHeader)
	}
	v := string(r.Headers[len(r.Headers)-1].Value)
	i := strings.LastIndexByte(v, '/')
	j := strings.LastIndexByte(v[:max(i, 0)], '/')
	if j <= 0 {
		return "", position{}, fmt.Errorf("origin %q is not topic/partition/offset", v)
	}
	p, perr := strconv.ParseInt(v[j+1:i], 10, 32)
	off, oerr := strconv.ParseInt(v[i+1:], 10, 64)
	if perr != nil || oerr != nil {
		return "", position{}, fmt.Errorf("origin %q is not topic/partition/offset", v)
	}
	return v[:j], position{int32(p), off}, nil
}

// diffRestored says how a restored record differs from its source record, its origin header
// aside: partition, timestamp, key, value and headers, null distinct from empty.
func diffRestored(src, r *kgo.Record) string {
	var d []string
	if src.Partition != r.Partition {
		d = append(d, fmt.Sprintf("in partition %d, the source's in %d", r.Partition, src.Partition))
	}
	if a, b := r.Timestamp.UnixMilli(), src.Timestamp.UnixMilli(); a != b {
		d = append(d, fmt.Sprintf("timestamp %d, the source's %d", a, b))
	}
	if s := diffBytes(r.Key, src.Key); s != "" {
		d = append(d, "key "+s)
	}
	if s := diffBytes(r.Value, src.Value); s != "" {
		d = append(d, "value "+s)
	}
	hs := r.Headers[:len(r.Headers)-1]
	if len(hs) != len(src.Headers) {
		return strings.Join(append(d, fmt.Sprintf("%d headers, the source's %d", len(hs), len(src.Headers))), "; ")
	}
	for i, h := range hs {
		if h.Key != src.Headers[i].Key || !bytes.Equal(h.Value, src.Headers[i].Value) || (h.Value == nil) != (src.Headers[i].Value == nil) {
			d = append(d, fmt.Sprintf("header %d differs", i))
		}
	}
	return strings.Join(d, "; ")
}
