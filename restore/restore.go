// Package restore writes archived records back into a Kafka topic, exactly once at
// read_committed: in transactions under a transactional id of the target topic, which fences
// any earlier restore into it, and resumable, because every restored record carries its
// origin (topic/partition/offset) in a header that a rerun reads back to write only what is
// not there.
package restore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/audit"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/lock"
)

// OriginHeader names the header that carries a restored record's origin,
// "<topic>/<partition>/<offset>".
const OriginHeader = "karch.origin"

// Options say what to restore where.
type Options struct {
	// From and To bound the windows restored by start, [From, To).
	From, To time.Time
	// Filter selects records within the windows (topic, partition, offsets). Its Topic is the
	// source topic, which the windows must archive; empty: the one topic the windows hold
	// records of, and windows with records of several are refused (their records cannot
	// share a target). Nor may the windows hold records of two topics of that name (one
	// deleted, the other created again under its name): their origins would coincide.
	Filter  audit.Filter
	Brokers []string
	// Client are options every Kafka client of the restore starts with: its TLS and SASL.
	Client  []kgo.Opt
	ToTopic string
	// PartitionMap maps source partitions to target partitions; nil keeps each record's
	// partition number. ByKey chooses the target partition from the key's hash instead,
	// as Kafka's default partitioner does.
	PartitionMap map[int32]int32
	ByKey        bool
	// NoOrigin leaves the origin header off: the target gets the records exactly as they
	// were, and a rerun cannot tell what is there already.
	NoOrigin bool
	// Rate bounds the records written per second, RateBytes the bytes of their keys and
	// values; 0: no bound.
	Rate, RateBytes float64
	// DryRun counts what would be written, and writes nothing.
	DryRun bool
	// Locker, when set, gives the restore a lease on its target topic: a second restore
	// into the same topic at the same time is refused (ErrTargetBusy) instead of writing
	// every record again. Nil: the caller vouches that no other restore writes there.
	Locker lock.Locker
	// StableWait bounds the wait for the target's open transactions to end before its
	// records can be read; zero: DefaultStableWait.
	StableWait time.Duration
	// Progress, when set, is told how many records the windows hold, then of each record
	// produced or passed over, with its size.
	Progress Progress
}

// Progress hears how a restore advances.
type Progress interface {
	Total(records int64)
	Record(bytes int)
}

// DefaultStableWait is how long a restore waits for an open transaction in its target: a
// little longer than Kafka's default transaction.timeout.ms (60 s), after which the broker
// aborts a dead producer's transaction.
const DefaultStableWait = 2 * time.Minute

// ErrTargetBusy is returned when another restore holds the lease on the target topic.
var ErrTargetBusy = errors.New("restore: another restore into the target topic is running")

// ErrFenced is returned when another restore into the target topic took its transactional
// id over: that one writes now, and what this one had not committed is aborted.
var ErrFenced = errors.New("restore: another restore into the target topic took it over")

// Stats counts a restore.
type Stats struct {
	// Written counts the records produced in committed transactions (or, in a dry run, that
	// would be).
	Written map[int32]int64
	// Skipped counts records a previous run had written already.
	Skipped int64
}

// Run restores the committed windows of pipeline in b into opts.ToTopic.
func Run(ctx context.Context, b blob.Bucket, pipeline string, opts Options, log *slog.Logger) (_ *Stats, err error) {
	defer func() { err = classify(err) }()
	if opts.StableWait <= 0 {
		opts.StableWait = DefaultStableWait
	}
	windows, err := audit.Windows(ctx, b, pipeline, opts.From, opts.To)
	if err != nil {
		return nil, err
	}
	if len(windows) == 0 {
		return nil, failure.Permanent(fmt.Errorf("no committed window of %s starts in the range given", pipeline))
	}
	if opts.Filter.Topic, err = sourceTopic(windows, opts.Filter.Topic); err != nil {
		return nil, err
	}
	if err := checkIncarnations(windows, opts.Filter.Topic); err != nil {
		return nil, err
	}
	adm, err := kgo.NewClient(append(slices.Clone(opts.Client), kgo.SeedBrokers(opts.Brokers...))...)
	if err != nil {
		return nil, failure.Permanent(fmt.Errorf("kafka client: %w", err))
	}
	defer adm.Close()
	name, err := targetName(ctx, adm, opts.ToTopic)
	if err != nil {
		return nil, err
	}
	ctx, release, err := leaseTarget(ctx, name, opts, log)
	if err != nil {
		return nil, err
	}
	defer release()
	r := &restorer{cl: adm, opts: opts, log: log, stats: &Stats{Written: map[int32]int64{}}, pending: map[int32]int64{}}
	if err := r.prepare(ctx, windows); err != nil {
		return nil, err
	}
	if !opts.DryRun {
		if err := r.fence(ctx, name); err != nil {
			return nil, err
		}
		defer r.producer.Close()
	}
	if err := r.scan(ctx); err != nil {
		return nil, err
	}
	if opts.Progress != nil {
		opts.Progress.Total(total(windows, opts))
	}
	err = r.write(ctx, b, windows)
	if err != nil && !opts.DryRun {
		r.abort(ctx)
	}
	return r.stats, err
}

// fence starts the restore's transactional producer. Its transactional id is the target
// topic's, shared by every restore into it, so taking it fences any earlier restore into the
// topic that still runs (its writes and commits fail from now on) and aborts that one's open
// transaction: a restore whose lease was lost (Redis restarted, a pause past the lease's TTL)
// cannot write beside this one, and the scan that follows sees all that one committed.
func (r *restorer) fence(ctx context.Context, name string) error {
	var err error
	r.producer, err = kgo.NewClient(append(slices.Clone(r.opts.Client), kgo.SeedBrokers(r.opts.Brokers...), kgo.DefaultProduceTopic(r.opts.ToTopic),
		kgo.TransactionalID(name), kgo.TransactionTimeout(transactionTimeout),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.ZstdCompression()),
		kgo.ProducerBatchMaxBytes(r.maxBatch), kgo.MaxBufferedBytes(max(64<<20, 2*int(r.maxBatch))), kgo.ProducerLinger(5*time.Millisecond))...)
	if err != nil {
		return failure.Permanent(fmt.Errorf("kafka client: %w", err))
	}
	if _, _, err := r.producer.ProducerID(ctx); err != nil {
		r.producer.Close()
		return fmt.Errorf("take the transactional id %s of topic %s: %w", name, r.opts.ToTopic, err)
	}
	return nil
}

// Transactions of a restore. Each commits what was written at least every commitEvery (or
// commitRecords records), so that a restore cut short loses seconds of work, and so that no
// transaction nears transactionTimeout, after which the broker would abort it.
const (
	commitEvery        = 5 * time.Second
	commitRecords      = 100_000
	transactionTimeout = time.Minute
)

// abortWait bounds how long a failed restore takes to abort its open transaction.
const abortWait = 30 * time.Second

// abort ends the open transaction of a failed restore, up to abortWait, so that the lease is
// released only once nothing more of this restore can reach the target; a restore that
// cannot abort (fenced, the broker gone) leaves it to the next one, whose fence aborts it.
func (r *restorer) abort(ctx context.Context) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortWait)
	defer cancel()
	err := r.producer.AbortBufferedRecords(actx)
	if err == nil {
		err = r.producer.EndTransaction(actx, kgo.TryAbort) // nil when none is open
	}
	if err != nil {
		r.log.Warn("the failed restore's open transaction is left to the next restore to abort", "topic", r.opts.ToTopic, "err", err)
	}
}

// total counts the records of the windows' partitions that the restore writes.
func total(windows []audit.Stored, opts Options) int64 {
	var n int64
	for _, w := range windows {
		for _, p := range w.Manifest.Partitions {
			if opts.restores(p) {
				n += p.Records
			}
		}
	}
	return n
}

// restorer is one restore under way.
type restorer struct {
	// cl reads the target's metadata and offsets; producer writes, in transactions.
	cl       *kgo.Client
	producer *kgo.Client
	opts     Options
	log      *slog.Logger
	stats    *Stats
	// pending counts per target partition the records of the open transaction, and began
	// is when it began: a commit moves the counts into stats.
	pending map[int32]int64
	began   time.Time
	// partitions is the target topic's partition count.
	partitions int32
	// maxBatch is the largest record batch the target topic takes (max.message.bytes).
	maxBatch int32
	// byKey hashes keys as Kafka's Java producer does (murmur2).
	byKey kgo.TopicPartitioner
	// done is, per source partition and target partition, the source offsets already in
	// the target, exactly: a record is skipped only if that very record is there.
	done map[route]*present
	// seen hears of each record of the target that carries an origin, as scanOrigins
	// reads it; nil: note it in done.
	seen func(rec *archive.Record, source archive.TopicPartition, offset int64)
}

// route is where the records of one source partition go.
type route struct {
	source archive.TopicPartition
	target int32
}

// prepare checks the target before anything is written: it exists with enough partitions
// for the mapping.
func (r *restorer) prepare(ctx context.Context, windows []audit.Stored) error {
	n, err := partitionCount(ctx, r.cl, r.opts.ToTopic)
	if err != nil {
		return err
	}
	r.partitions, r.byKey = n, kgo.StickyKeyPartitioner(nil).ForTopic(r.opts.ToTopic)
	if r.maxBatch, err = maxMessageBytes(ctx, r.cl, r.opts.ToTopic, r.log); err != nil {
		return err
	}
	if err := r.checkMapping(windows, n); err != nil {
		return err
	}
	r.done = map[route]*present{}
	return nil
}

// scan finds what earlier restores wrote, unless the origin is left off.
func (r *restorer) scan(ctx context.Context) error {
	if r.opts.NoOrigin {
		return nil
	}
	if err := r.scanOrigins(ctx); err != nil {
		return err
	}
	for _, p := range r.done {
		p.settle()
	}
	return nil
}

// checkMapping insists that every source partition restored has a target partition.
func (r *restorer) checkMapping(windows []audit.Stored, n int32) error {
	if r.opts.ByKey {
		return nil
	}
	for _, w := range windows {
		for _, p := range w.Manifest.Partitions {
			if !r.opts.restores(p) {
				continue
			}
			target, ok := r.target(p.Partition)
			switch {
			case !ok:
				return failure.Permanent(fmt.Errorf("partition-map: source partition %d of %s has no target", p.Partition, p.Topic))
			case target >= n:
				return failure.Permanent(fmt.Errorf("topic %s has %d partitions, and source partition %s/%d goes to partition %d: give --partition-map or --by-key, or add partitions",
					r.opts.ToTopic, n, p.Topic, p.Partition, target))
			}
		}
	}
	return nil
}

// partitionOf is the target partition of rec: by its key's hash with ByKey (a record without
// a key keeps to its source partition's number, modulo the target's count, so that a rerun
// routes it the same way), else by the mapping.
func (r *restorer) partitionOf(rec *archive.Record) int32 {
	if !r.opts.ByKey {
		t, _ := r.target(rec.Partition)
		return t
	}
	if rec.Key == nil {
		return rec.Partition % r.partitions
	}
	return int32(r.byKey.Partition(&kgo.Record{Key: rec.Key}, int(r.partitions)))
}

// target is the target partition of a source partition, without ByKey.
func (r *restorer) target(source int32) (int32, bool) {
	if r.opts.PartitionMap == nil {
		return source, true
	}
	t, ok := r.opts.PartitionMap[source]
	return t, ok
}

// ParseOrigin reads an origin header's value.
func ParseOrigin(v []byte) (archive.TopicPartition, int64, error) {
	s := string(v)
	i := strings.LastIndexByte(s, '/')
	j := strings.LastIndexByte(s[:max(i, 0)], '/')
	if i < 0 || j < 0 {
		return archive.TopicPartition{}, 0, fmt.Errorf("origin %q: want topic/partition/offset", s)
	}
	p, perr := strconv.ParseInt(s[j+1:i], 10, 32)
	off, oerr := strconv.ParseInt(s[i+1:], 10, 64)
	if err := errors.Join(perr, oerr); err != nil {
		return archive.TopicPartition{}, 0, fmt.Errorf("origin %q: %w", s, err)
	}
	return archive.TopicPartition{Topic: s[:j], Partition: int32(p)}, off, nil
}

func origin(r *archive.Record) []byte {
	return fmt.Appendf(nil, "%s/%d/%d", r.Topic, r.Partition, r.Offset)
}

// write produces every record of the windows that an earlier run has not written, in
// offset order per source partition, in transactions, and commits the last one.
func (r *restorer) write(ctx context.Context, b blob.Bucket, windows []audit.Stored) error {
	limit := limiters{records: limiter(r.opts.Rate), bytes: limiter(r.opts.RateBytes)}
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if err := r.begin(); err != nil {
		return err
	}
	for _, w := range windows {
		err := audit.Records(pctx, b, w.Dir, w.Manifest, r.opts.Filter, func(rec *archive.Record) error {
			if err := r.one(pctx, limit, rec, cancel); err != nil {
				return err
			}
			return r.commitDue(pctx)
		})
		if err != nil {
			return firstCause(pctx, err)
		}
	}
	return r.commit(pctx)
}

func (r *restorer) begin() error {
	if r.producer == nil {
		return nil
	}
	r.began = time.Now()
	if err := r.producer.BeginTransaction(); err != nil {
		return fmt.Errorf("begin a transaction in %s: %w", r.opts.ToTopic, err)
	}
	return nil
}

// commitDue commits the open transaction and begins the next once it is commitEvery old or
// holds commitRecords records.
func (r *restorer) commitDue(ctx context.Context) error {
	var n int64
	for _, c := range r.pending {
		n += c
	}
	if r.producer == nil || n < commitRecords && time.Since(r.began) < commitEvery {
		return nil
	}
	if err := r.commit(ctx); err != nil {
		return err
	}
	return r.begin()
}

// commit waits until the broker has every record of the open transaction and commits it;
// a record that failed fails the restore instead, and the transaction is aborted.
func (r *restorer) commit(ctx context.Context) error {
	if r.producer == nil {
		return nil
	}
	if err := r.producer.Flush(ctx); err != nil {
		return firstCause(ctx, err)
	}
	if err := context.Cause(ctx); err != nil {
		return err
	}
	if err := r.producer.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return r.fenced(fmt.Errorf("commit the restore's transaction in %s: %w", r.opts.ToTopic, err))
	}
	for p, n := range r.pending {
		r.stats.Written[p] += n
	}
	clear(r.pending)
	return nil
}

// fenced names a restore that another took over as such (retryable: the other one writes
// now); Kafka calls the error not retriable, which would make it permanent.
func (r *restorer) fenced(err error) error {
	if errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) {
		return fmt.Errorf("%w: topic %s (%v); what this one had not committed is aborted", ErrFenced, r.opts.ToTopic, err)
	}
	return err
}

// one produces one record, unless an earlier run wrote it; a failed produce cancels the
// restore with its error.
func (r *restorer) one(ctx context.Context, limit limiters, rec *archive.Record, fail context.CancelCauseFunc) error {
	if r.opts.Progress != nil {
		r.opts.Progress.Record(len(rec.Key) + len(rec.Value))
	}
	rt := route{source: archive.TopicPartition{Topic: rec.Topic, Partition: rec.Partition}, target: r.partitionOf(rec)}
	if p, ok := r.done[rt]; ok && p.has(rec.Offset) {
		r.stats.Skipped++
		return nil
	}
	if err := limit.wait(ctx, len(rec.Key)+len(rec.Value)); err != nil {
		return err
	}
	kr := r.record(rec, rt.target)
	if size := batchSize(kr); size > int(r.maxBatch) {
		return failure.Permanent(fmt.Errorf("record %s/%d@%d is %d bytes as a record batch, and topic %s takes at most %d (max.message.bytes): raise the topic's max.message.bytes, then run again",
			rec.Topic, rec.Partition, rec.Offset, size, r.opts.ToTopic, r.maxBatch))
	}
	if r.opts.DryRun {
		r.stats.Written[kr.Partition]++
		return nil
	}
	r.pending[kr.Partition]++
	r.producer.Produce(ctx, kr, func(_ *kgo.Record, err error) {
		if err != nil {
			fail(r.fenced(fmt.Errorf("produce %s/%d@%d to %s: %w", rec.Topic, rec.Partition, rec.Offset, r.opts.ToTopic, err)))
		}
	})
	return nil
}

// record is the Kafka record that restores rec: key, value and their null-ness, headers in
// order with duplicates, and the timestamp, plus the origin header.
func (r *restorer) record(rec *archive.Record, partition int32) *kgo.Record {
	kr := &kgo.Record{Key: rec.Key, Value: rec.Value, Timestamp: rec.Timestamp, Partition: partition}
	for _, h := range rec.Headers {
		kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	if !r.opts.NoOrigin {
		kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: OriginHeader, Value: origin(rec)})
	}
	return kr
}

// limiters bound a restore's pace in records and in bytes per second.
type limiters struct{ records, bytes *rate.Limiter }

// limiter allows perSecond events a second, in bursts of a tenth of a second; 0: no bound.
func limiter(perSecond float64) *rate.Limiter {
	if perSecond <= 0 {
		return rate.NewLimiter(rate.Inf, 1)
	}
	return rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond/10)))
}

// wait takes one record of size bytes; a record larger than a burst takes a whole burst.
func (l limiters) wait(ctx context.Context, size int) error {
	if err := l.records.Wait(ctx); err != nil {
		return err
	}
	return l.bytes.WaitN(ctx, min(size, l.bytes.Burst()))
}

// firstCause prefers the produce error that cancelled ctx to the cancellation it caused.
func firstCause(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}
