package shard

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	fetchapi "github.com/segmentio/kafka-go/protocol/fetch"
	"github.com/segmentio/kafka-go/sasl"

	"golang.org/x/time/rate"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/failure"
)

// KafkaOptions tune how a shard fetches from Kafka.
type KafkaOptions struct {
	// FetchMaxBytes bounds one fetch response, and so the memory a fetch holds.
	FetchMaxBytes int
	// FetchMaxWait is how long the broker may hold a fetch that has no data yet.
	FetchMaxWait time.Duration
	// DialTimeout bounds each connection attempt to a broker.
	DialTimeout time.Duration
	// RequestTimeout bounds each request beyond the time the broker may hold it
	// (FetchMaxWait): kafka-go sets no deadline of its own, so a connection that goes silent
	// (a hung broker, a peer gone behind a firewall) would hold a shard for ever.
	RequestTimeout time.Duration
	// ClientID names the reader's connections in the brokers' logs and quotas; empty is
	// "karch-shard".
	ClientID string
	// FetchRate caps the bytes fetched per second (0: no cap), so that many shards at once
	// leave the brokers room for their producers and consumers.
	FetchRate int
	// TLS, when set, is the client configuration of every broker connection; SASL, when
	// set, authenticates each connection after its TLS handshake.
	TLS  *tls.Config
	SASL sasl.Mechanism
	// dial, when set, opens the broker connections instead of kafka-go's dialer: tests put a
	// fault between the real reader and a real broker with it.
	dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// DefaultKafkaOptions suit pieces of hundreds of MiB: few round trips, bounded memory.
func DefaultKafkaOptions() KafkaOptions {
	return KafkaOptions{FetchMaxBytes: 2 << 20, FetchMaxWait: 500 * time.Millisecond, DialTimeout: 10 * time.Second,
		RequestTimeout: 30 * time.Second, ClientID: defaultClientID}
}

const defaultClientID = "karch-shard"

// KafkaReader reads exact offset ranges at read_committed isolation.
//
// It speaks the Fetch API through kafka-go's Transport rather than kafka-go's Conn or Reader:
// those hand back transaction markers and records of aborted transactions as if they were
// data, while the raw fetch response says which batches are control batches and which
// producers' transactions were aborted, so the filtering the Java consumer does can be done
// here. It decodes that response itself (fetchRequest, and decodeRecordSet for the batches),
// to keep the batch header fields kafka-go drops (a batch's last offset, its LogAppendTime
// timestamp) and to refuse a batch that does not hold what its header says.
//
// Errors are classified by ClassifyKafkaError; a missing topic or partition and an offset
// that is no longer in the log are permanent as well.
type KafkaReader struct {
	client    *kafka.Client
	transport *kafka.Transport
	opts      KafkaOptions
	// limit paces fetches to opts.FetchRate; nil without a cap.
	limit *rate.Limiter
	// known holds, per topic, the partitions checkPartition has seen in its metadata: a
	// planning reads the edge of every partition of a topic, and copying a topic of a
	// thousand partitions out of the metadata for each read allocated a gigabyte.
	mu    sync.Mutex
	known map[string]map[int32]bool
}

var _ RecordReader = (*KafkaReader)(nil)

// NewKafkaReader returns a reader for the cluster behind brokers. Close releases its
// connections.
func NewKafkaReader(brokers []string, opts KafkaOptions) *KafkaReader {
	if opts.ClientID == "" {
		opts.ClientID = defaultClientID
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = DefaultKafkaOptions().RequestTimeout
	}
	t := &kafka.Transport{ClientID: opts.ClientID, DialTimeout: opts.DialTimeout, MetadataTTL: time.Minute, TLS: opts.TLS, SASL: opts.SASL, Dial: opts.dial}
	k := &KafkaReader{
		client:    &kafka.Client{Addr: kafka.TCP(brokers...), Transport: t, Timeout: opts.RequestTimeout},
		transport: t,
		opts:      opts,
	}
	if opts.FetchRate > 0 {
		// A burst of one fetch: the cap holds over any second after the first fetch.
		k.limit = rate.NewLimiter(rate.Limit(opts.FetchRate), max(opts.FetchRate, opts.FetchMaxBytes))
	}
	return k
}

// pace waits until the bytes of the last fetch fit the fetch rate. A fetch may return more
// than FetchMaxBytes (a broker returns at least one whole batch): it is counted as the burst.
func (k *KafkaReader) pace(ctx context.Context, n int64) error {
	if k.limit == nil || n <= 0 {
		return nil
	}
	return k.limit.WaitN(ctx, int(min(n, int64(k.limit.Burst()))))
}

// Transport is the reader's connections to the cluster, for other requests to share: each
// kafka-go Transport keeps the metadata of every topic of the cluster.
func (k *KafkaReader) Transport() *kafka.Transport { return k.transport }

// Close releases the reader's connections.
func (k *KafkaReader) Close() { k.transport.CloseIdleConnections() }

// ReadRange calls fn, in offset order, for every committed record of topic/partition whose
// offset is in [first, end). It returns once it has proved that no record below end remains:
// offsets that hold transaction markers, aborted records or compacted-away records are passed
// over, so the count of records may be smaller than end-first.
func (k *KafkaReader) ReadRange(ctx context.Context, topic string, partition int32, first, end int64, fn func(*archive.Record) error) error {
	_, err := k.ReadRangeTally(ctx, topic, partition, first, end, fn)
	return err
}

// ReadRangeTally is ReadRange that also accounts for every offset of [first, end): a batch it
// cannot read in full is a permanent ErrCorruptBatch, never a gap.
func (k *KafkaReader) ReadRangeTally(ctx context.Context, topic string, partition int32, first, end int64, fn func(*archive.Record) error) (Tally, error) {
	var tally Tally
	if first >= end {
		return tally, nil
	}
	if err := k.checkPartition(ctx, topic, partition); err != nil {
		return tally, err
	}
	if err := k.readRange(ctx, topic, partition, first, end, fn, &tally); err != nil {
		return tally, err
	}
	if tally.Offsets() != end-first {
		return tally, failure.Permanent(fmt.Errorf("read %s/%d [%d, %d): accounted for %d offsets (%+v), not %d",
			topic, partition, first, end, tally.Offsets(), tally, end-first))
	}
	return tally, nil
}

func (k *KafkaReader) readRange(ctx context.Context, topic string, partition int32, first, end int64, fn func(*archive.Record) error, tally *Tally) error {
	ctx, cancel := context.WithCancel(ctx)
	var ahead *prefetch
	defer func() {
		cancel()
		if ahead != nil {
			ahead.wait() // the prefetch's goroutine ends before ReadRange does
		}
	}()
	ahead = k.prefetch(ctx, topic, partition, first)
	for pos := first; pos < end; {
		res, err := ahead.wait()
		ahead = nil
		if err != nil {
			return err
		}
		if err := k.pace(ctx, res.Records.size); err != nil {
			return err
		}
		// The next fetch is in flight while this one is decoded and encoded, where the
		// response says it will start.
		if guess, ok := after(res); ok && guess > pos && guess < end {
			ahead = k.prefetch(ctx, topic, partition, guess)
		}
		next, err := consumeCounting(res, topic, partition, pos, end, fn, tally)
		if err != nil {
			return err
		}
		if next == pos {
			if next, err = k.passGap(ctx, topic, partition, pos, end, res); err != nil {
				return err
			}
			tally.Compacted += next - pos // a batch whose records were all removed
		}
		if ahead != nil && ahead.pos != next {
			ahead.wait() // a wrong guess (compaction emptied the last batch's tail): fetch again
			ahead = nil
		}
		if ahead == nil && next < end {
			ahead = k.prefetch(ctx, topic, partition, next)
		}
		pos = next
	}
	return nil
}

// prefetch is one fetch running in its own goroutine.
type prefetch struct {
	pos  int64
	done chan struct{}
	res  *fetchedPartition
	err  error
}

func (k *KafkaReader) prefetch(ctx context.Context, topic string, partition int32, pos int64) *prefetch {
	p := &prefetch{pos: pos, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.res, p.err = k.fetch(ctx, topic, partition, pos)
	}()
	return p
}

func (p *prefetch) wait() (*fetchedPartition, error) {
	<-p.done
	return p.res, p.err
}

// after is where the fetch after res starts once res is read to its end: past its last
// batch, by that batch's header. ok is false when there is no such header (an empty
// response, or message sets of format v0/v1).
func after(res *fetchedPartition) (int64, bool) {
	bs := res.Records.batches
	if len(bs) == 0 || !bs[len(bs)-1].v2 {
		return 0, false
	}
	return bs[len(bs)-1].nextOffset(), true
}

// checkPartition turns a missing topic or partition into a permanent error: kafka-go calls an
// unknown topic temporary, since it may be being created, but a plan names existing ones.
func (k *KafkaReader) checkPartition(ctx context.Context, topic string, partition int32) error {
	k.mu.Lock()
	seen := k.known[topic][partition]
	k.mu.Unlock()
	if seen {
		return nil
	}
	md, err := k.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return ClassifyKafkaError(fmt.Errorf("read metadata of topic %s: %w", topic, err))
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
			return failure.Permanent(fmt.Errorf("topic %s does not exist", topic))
		}
		if t.Error != nil {
			return ClassifyKafkaError(fmt.Errorf("read metadata of topic %s: %w", topic, t.Error))
		}
		parts := make(map[int32]bool, len(t.Partitions))
		for _, p := range t.Partitions {
			parts[int32(p.ID)] = true
		}
		k.mu.Lock()
		if k.known == nil {
			k.known = map[string]map[int32]bool{}
		}
		k.known[topic] = parts
		k.mu.Unlock()
		if parts[partition] {
			return nil
		}
		return failure.Permanent(fmt.Errorf("topic %s has no partition %d", topic, partition))
	}
	return failure.Permanent(fmt.Errorf("topic %s does not exist", topic))
}

func (k *KafkaReader) fetch(ctx context.Context, topic string, partition int32, offset int64) (*fetchedPartition, error) {
	ctx, cancel := context.WithTimeout(ctx, k.opts.FetchMaxWait+k.opts.RequestTimeout)
	defer cancel()
	m, err := k.transport.RoundTrip(ctx, k.client.Addr, &fetchRequest{clientID: k.opts.ClientID, Request: fetchapi.Request{
		ReplicaID:      -1,
		MaxWaitTime:    int32(k.opts.FetchMaxWait.Milliseconds()),
		MinBytes:       1,
		MaxBytes:       int32(k.opts.FetchMaxBytes),
		IsolationLevel: int8(kafka.ReadCommitted),
		SessionID:      -1,
		SessionEpoch:   -1,
		Topics: []fetchapi.RequestTopic{{Topic: topic, Partitions: []fetchapi.RequestPartition{{
			Partition: partition, CurrentLeaderEpoch: -1, FetchOffset: offset, LogStartOffset: -1,
			PartitionMaxBytes: int32(k.opts.FetchMaxBytes),
		}}}},
	}})
	if err != nil {
		return nil, ClassifyKafkaError(fmt.Errorf("fetch %s/%d at %d: %w", topic, partition, offset, err))
	}
	res := m.(*fetchResponse)
	if res.ErrorCode != 0 {
		return nil, ClassifyKafkaError(fmt.Errorf("fetch %s/%d at %d: %w", topic, partition, offset, kafka.Error(res.ErrorCode)))
	}
	if len(res.Topics) != 1 || len(res.Topics[0].Partitions) != 1 {
		return nil, fmt.Errorf("fetch %s/%d at %d: response names no partition", topic, partition, offset)
	}
	p := &res.Topics[0].Partitions[0]
	if p.ErrorCode != 0 {
		return nil, fetchError(topic, partition, offset, p, kafka.Error(p.ErrorCode))
	}
	return p, nil
}

func fetchError(topic string, partition int32, offset int64, p *fetchedPartition, err kafka.Error) error {
	if errors.Is(err, kafka.OffsetOutOfRange) {
		// The records were deleted (retention) or never written: archiving the rest would
		// leave a silent hole, so stop for an operator.
		return failure.Permanent(fmt.Errorf("fetch %s/%d at %d: offset not in the log (log start %d, high watermark %d): %w",
			topic, partition, offset, p.LogStartOffset, p.HighWatermark, err))
	}
	return ClassifyKafkaError(fmt.Errorf("fetch %s/%d at %d: %w", topic, partition, offset, err))
}

// passGap is called when a fetch at pos returned nothing at or past pos. Either the stable
// log ends at pos (the plan reaches past what is committed: retry later), or the batch that
// holds pos lost its last records to compaction and its header could not be used (consume
// passes over such a batch when it can: batchHeader.passed). Then the end of the batch is
// found by bisection: fetching inside the batch returns the batch again, fetching past it
// returns later data.
func (k *KafkaReader) passGap(ctx context.Context, topic string, partition int32, pos, end int64, res *fetchedPartition) (int64, error) {
	stable := res.LastStableOffset
	if stable <= pos {
		return 0, fmt.Errorf("read %s/%d [%d, %d): the last stable offset is %d; the range is not fully committed yet",
			topic, partition, pos, end, stable)
	}
	if _, ok := firstBatchBase(res); !ok {
		return 0, errEmptyFetch(topic, partition, pos, stable)
	}
	lo, hi := pos, min(end, stable) // the first offset with data at or past pos lies in (lo, hi]
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		r, err := k.fetch(ctx, topic, partition, mid)
		if err != nil {
			return 0, err
		}
		base, ok := firstBatchBase(r)
		switch {
		case !ok:
			return 0, errEmptyFetch(topic, partition, mid, stable)
		case base <= pos:
			lo = mid
		default:
			hi = mid
		}
	}
	return hi, nil
}

// errEmptyFetch reports a fetch below the last stable offset that returned no batch at all.
// Skipping ahead on such an answer could skip records, so it is retried instead.
func errEmptyFetch(topic string, partition int32, offset, stable int64) error {
	return fmt.Errorf("fetch %s/%d at %d: no data below the last stable offset %d", topic, partition, offset, stable)
}

func firstBatchBase(p *fetchedPartition) (int64, bool) {
	bs := p.Records.batches
	switch {
	case len(bs) == 0:
		return 0, false
	case bs[0].v2:
		return bs[0].base, true
	}
	return bs[0].records[0].Offset, true // a v0/v1 entry holds a record (legacyBatch)
}

// Addr returns the bootstrap addresses, for log lines.
func (k *KafkaReader) Addr() net.Addr { return k.client.Addr }

// fetchRequest is a Fetch request whose response is read here rather than by kafka-go:
// kafka-go's decoder drops each batch's last offset delta and max timestamp, and without them
// an empty control batch cannot be passed over, nor a LogAppendTime record given the timestamp
// Kafka's consumers see; kafka-go's reflection decodes the fields around the record sets, and
// recordSet the record sets. It uses kafka-go's RawExchanger hook, which hands the request the
// broker connection for one exchange; kafka-go still routes it to the partition leader,
// negotiates the version and owns the connection.
type fetchRequest struct {
	fetchapi.Request
	clientID string
	version  int16 // the version negotiated on the connection, set by Required
}

var _ protocol.RawExchanger = (*fetchRequest)(nil)

// minFetchVersion is the first Fetch version with an isolation level: an older one would read
// uncommitted records. Kafka 4 accepts nothing older; kafka-go speaks up to v11.
const minFetchVersion = 4

// maxResponseSize bounds the memory one response frame may claim before it is read.
const maxResponseSize = 1 << 30

// Required notes the connection's Fetch version; the exchange is always done here.
func (r *fetchRequest) Required(versions map[protocol.ApiKey]int16) bool {
	r.version = versions[protocol.Fetch]
	return true
}

// RawExchange writes the request and decodes its response into a fetchResponse. The
// connection carries one request at a time, so any correlation id will do; it is checked.
func (r *fetchRequest) RawExchange(rw io.ReadWriter) (protocol.Message, error) {
	const correlationID = 1
	if r.version < minFetchVersion {
		return nil, failure.Permanent(fmt.Errorf("the broker offers Fetch v%d; read_committed needs v%d", r.version, minFetchVersion))
	}
	if err := writeFetchRequest(rw, r.version, correlationID, r.clientID, &r.Request); err != nil {
		return nil, fmt.Errorf("write fetch request: %w", err)
	}
	frame, err := readFrame(rw)
	if err != nil {
		return nil, fmt.Errorf("read fetch response: %w", err)
	}
	if id := int32(binary.BigEndian.Uint32(frame)); id != correlationID {
		return nil, fmt.Errorf("read fetch response: correlation id %d, want %d", id, correlationID)
	}
	res := &fetchResponse{}
	if err := protocol.Unmarshal(frame[4:], r.version, res); err != nil {
		return nil, fmt.Errorf("decode fetch response v%d: %w", r.version, err)
	}
	return res, nil
}

// readFrame reads one size-prefixed response: the correlation id, then the body (a Fetch
// response up to v11 has a header of format v0, without tagged fields).
func readFrame(r io.Reader) ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil, noEOF(err)
	}
	n := int32(binary.BigEndian.Uint32(size[:]))
	if n < 4 || n > maxResponseSize {
		return nil, fmt.Errorf("a response frame of %d bytes", n)
	}
	frame := make([]byte, n)
	if _, err := io.ReadFull(r, frame); err != nil {
		return nil, noEOF(err)
	}
	return frame, nil
}

// noEOF reports a connection closed before a response as the truncation it is.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// fetchResponse is kafka-go's fetchapi.Response with fetchedPartition for its partitions.
type fetchResponse struct {
	ThrottleTimeMs int32        `kafka:"min=v1,max=v11"`
	ErrorCode      int16        `kafka:"min=v7,max=v11"`
	SessionID      int32        `kafka:"min=v7,max=v11"`
	Topics         []fetchTopic `kafka:"min=v0,max=v11"`
}

type fetchTopic struct {
	Topic      string             `kafka:"min=v0,max=v11"`
	Partitions []fetchedPartition `kafka:"min=v0,max=v11"`
}

// ApiKey makes fetchResponse a protocol.Message.
func (*fetchResponse) ApiKey() protocol.ApiKey { return protocol.Fetch }

// ClassifyKafkaError marks err failure.Permanent when it carries a Kafka error code that no
// retry cures (IsPermanentKafkaError) and returns every other error as it is: unmarked errors
// are retryable. Each Kafka adapter passes the errors of its Kafka calls through it.
func ClassifyKafkaError(err error) error {
	if IsPermanentKafkaError(err) || failure.IsTLSRefusal(err) {
		return failure.Permanent(err)
	}
	return err
}

// IsPermanentKafkaError reports whether err, or an error it wraps, is a Kafka error code that
// a retry cannot cure: denied access (TopicAuthorizationFailed, ClusterAuthorizationFailed,
// SASLAuthenticationFailed), a request the broker cannot serve (UnsupportedVersion,
// InvalidRequest) and every other code kafka-go does not call Temporary, except those in
// retryableKafkaErrors. Network and dial errors, timeouts and cancellations carry no code:
// they are retryable. A missing topic is Temporary to kafka-go, since it may be being
// created; the adapters check for it in the metadata, where a plan's topic must exist.
func IsPermanentKafkaError(err error) bool {
	var code kafka.Error
	if !errors.As(err, &code) {
		return false
	}
	return !code.Temporary() && !retryableKafkaErrors[code]
}

// retryableKafkaErrors are the passing conditions that kafka-go's Temporary leaves out.
var retryableKafkaErrors = map[kafka.Error]bool{
	kafka.BrokerNotAvailable:  true, // a broker restarting or not yet registered
	kafka.ReplicaNotAvailable: true, // a replica catching up, during a reassignment
	// UNKNOWN_SERVER_ERROR is the broker's own 500: an exception it did not map to a code.
	// A broker that has just restarted answers ListOffsets with it (found by the chaos
	// scenario kafka-slow-link, seed 1); a run retried later succeeds.
	kafka.Unknown: true,
}
