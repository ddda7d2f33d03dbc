package shard

import (
	"bytes"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"time"

	"github.com/segmentio/kafka-go/protocol"
	fetchapi "github.com/segmentio/kafka-go/protocol/fetch"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/failure"
)

// Control record types (Kafka's ControlRecordType).
const controlAbort = 0

// consume hands fn the committed records of one fetch response that lie in [pos, end), and
// returns the offset to fetch next: past the last record or batch it saw, or end.
//
// Aborted transactions are filtered the way Kafka's Java consumer does it: walking batches in
// offset order, a producer joins the aborted set when the first offset of one of its aborted
// transactions is reached, and leaves it at that transaction's abort marker; a transactional
// batch of a producer in the set is dropped.
func consume(res *fetchedPartition, topic string, partition int32, pos, end int64, fn func(*archive.Record) error) (int64, error) {
	return consumeCounting(res, topic, partition, pos, end, fn, &Tally{})
}

// consumeCounting is consume that adds each offset it passes, from pos to the offset it
// returns, to one category of tally.
func consumeCounting(res *fetchedPartition, topic string, partition int32, pos, end int64, fn func(*archive.Record) error, tally *Tally) (int64, error) {
	stream, ok := res.Records.Records.(*protocol.RecordStream)
	if !ok {
		return pos, nil
	}
	defer drain(stream)
	c := &consumer{topic: topic, partition: partition, end: end, fn: fn, tally: tally,
		aborted: newAbortTracker(res.AbortedTransactions), headers: res.Records.headers}
	next := pos
	for _, batch := range stream.Records {
		var err error
		next, err = c.batch(batch, next)
		if err != nil || next >= end {
			return min(next, end), err
		}
	}
	return next, nil
}

// consumer walks the batches of one fetch response.
type consumer struct {
	topic     string
	partition int32
	end       int64
	fn        func(*archive.Record) error
	aborted   *abortTracker
	headers   map[int64]*batchHeader // v2 batch headers by base offset
	tally     *Tally
}

// Tally accounts for the offsets of a range: each one holds a record that was archived, a
// transaction marker (a control record), a record of an aborted transaction, or nothing
// (the log cleaner removed its record, or emptied the batch that held it).
type Tally struct {
	Records, Control, Aborted, Compacted int64
}

// Offsets is how many offsets the tally accounts for.
func (t Tally) Offsets() int64 { return t.Records + t.Control + t.Aborted + t.Compacted }

// count moves the position from next past offset, which holds a record of category cat;
// the offsets between hold nothing.
func (c *consumer) count(next, offset int64, cat *int64) int64 {
	c.tally.Compacted += offset - next
	*cat++
	return offset + 1
}

// pass moves the position from next to to (at most the range's end) over offsets that hold
// nothing, and returns it.
func (c *consumer) pass(next, to int64) int64 {
	if to = min(to, c.end); to > next {
		c.tally.Compacted += to - next
		return to
	}
	return next
}

func (c *consumer) batch(batch protocol.RecordReader, next int64) (int64, error) {
	switch b := batch.(type) {
	case *protocol.ControlBatch:
		return c.control(b, next)
	case *protocol.RecordBatch:
		skip := b.Attributes.Transactional() && c.aborted.isAborted(b.ProducerID, b.BaseOffset)
		return c.records(b, next, skip, c.headers[b.BaseOffset])
	default:
		// Message sets of format v0/v1 cannot be transactional.
		return c.records(batch, next, false, nil)
	}
}

// control reads a transaction marker. A control batch may hold no record at all: the log
// cleaner keeps the empty batch of a marker it removed while the producer is still active
// (compacted transactional topics). The Java consumer passes over such a batch, to the
// offset after the batch's last, and so does this.
func (c *consumer) control(b *protocol.ControlBatch, next int64) (int64, error) {
	// Reach the marker's offset first: a fetch that starts between an aborted
	// transaction's data and its marker must not leave the producer marked aborted.
	c.aborted.advance(b.BaseOffset)
	cr, err := b.ReadControlRecord()
	switch {
	case errors.Is(err, io.EOF):
		// An empty batch: no marker to apply.
	case err != nil:
		return next, fmt.Errorf("read control record at %d: %w", b.BaseOffset, err)
	case cr.Type == controlAbort:
		c.aborted.markerSeen(b.ProducerID)
	}
	if err == nil && b.BaseOffset >= next && b.BaseOffset < c.end {
		next = c.count(next, b.BaseOffset, &c.tally.Control)
	}
	if h := c.headers[b.BaseOffset]; h != nil {
		return c.pass(next, h.nextOffset()), nil
	}
	return c.pass(next, b.BaseOffset+1), nil // a marker batch held one record when written
}

// records reads every record of one batch; those before next were seen in an earlier
// response (a fetch may start at the batch holding next), those of an aborted batch only
// advance the position. Once the batch is read to its end, the position moves past the
// batch's last offset, which compaction may have emptied (the Java consumer does the same).
func (c *consumer) records(batch protocol.RecordReader, next int64, skip bool, h *batchHeader) (int64, error) {
	for n := int32(0); ; n++ {
		r, err := batch.ReadRecord()
		if errors.Is(err, io.EOF) {
			return c.passed(h, n, next)
		}
		if err != nil {
			return next, fmt.Errorf("read %s/%d after offset %d: %w", c.topic, c.partition, next, err)
		}
		switch {
		case r.Offset >= c.end:
			release(r)
			return c.pass(next, c.end), nil
		case r.Offset < next: // seen in an earlier response
			release(r)
			continue
		case skip:
			next = c.count(next, r.Offset, &c.tally.Aborted)
			release(r)
			continue
		}
		next = c.count(next, r.Offset, &c.tally.Records)
		if err := c.emit(r, h); err != nil {
			return next, err
		}
	}
}

func (c *consumer) emit(r *protocol.Record, h *batchHeader) error {
	rec, err := convert(r, c.topic, c.partition)
	if err != nil {
		return err
	}
	if h != nil && h.logAppendTime {
		// Kafka's consumers report the broker's append time, the batch's max timestamp,
		// for every record of the batch; the records keep the producer's create time.
		rec.Timestamp, rec.LogAppendTime = time.UnixMilli(h.maxTimestamp).UTC(), true
	}
	return c.fn(rec)
}

// convert copies a record out of the fetch buffer, which kafka-go reuses, and releases it.
func convert(r *protocol.Record, topic string, partition int32) (*archive.Record, error) {
	defer release(r)
	key, err := protocol.ReadAll(r.Key)
	if err != nil {
		return nil, fmt.Errorf("read key at offset %d: %w", r.Offset, err)
	}
	value, err := protocol.ReadAll(r.Value)
	if err != nil {
		return nil, fmt.Errorf("read value at offset %d: %w", r.Offset, err)
	}
	rec := &archive.Record{Topic: topic, Partition: partition, Offset: r.Offset, Timestamp: r.Time.UTC(), Key: key, Value: value}
	if len(r.Headers) > 0 {
		rec.Headers = make([]archive.Header, len(r.Headers))
		for i, h := range r.Headers {
			rec.Headers[i] = archive.Header{Key: h.Key, Value: h.Value}
		}
	}
	return rec, nil
}

// drain releases the records of the response that were not read: a read that ends inside a
// batch (at its range's end, or at the record a planning looked for) would otherwise keep
// their buffers from kafka-go's pool, and each fetch after it would allocate its own.
func drain(stream *protocol.RecordStream) {
	for _, batch := range stream.Records {
		for {
			r, err := batch.ReadRecord()
			if err != nil {
				break
			}
			release(r)
		}
	}
}

// release hands a record's buffers back to kafka-go.
func release(r *protocol.Record) {
	if r.Key != nil {
		r.Key.Close()
	}
	if r.Value != nil {
		r.Value.Close()
	}
}

// fetchedPartition is one partition of a fetch response: kafka-go's
// fetchapi.ResponsePartition, with a record set that also keeps what kafka-go's decoder
// reads from each batch header and drops.
type fetchedPartition struct {
	Partition            int32                          `kafka:"min=v0,max=v11"`
	ErrorCode            int16                          `kafka:"min=v0,max=v11"`
	HighWatermark        int64                          `kafka:"min=v0,max=v11"`
	LastStableOffset     int64                          `kafka:"min=v4,max=v11"`
	LogStartOffset       int64                          `kafka:"min=v5,max=v11"`
	AbortedTransactions  []fetchapi.ResponseTransaction `kafka:"min=v4,max=v11"`
	PreferredReadReplica int32                          `kafka:"min=v11,max=v11"`
	Records              recordSet                      `kafka:"min=v0,max=v11"`
}

// recordSet is a partition's records as kafka-go decodes them, and the header of each v2
// batch by base offset.
type recordSet struct {
	protocol.RecordSet
	headers map[int64]*batchHeader
	// size is the record set's length on the wire, which a fetch rate limit counts.
	size int64
}

// maxPrealloc bounds the buffer allocated for a record set before its bytes are read.
const maxPrealloc = 64 << 20

// ReadFrom reads a length-prefixed record set; kafka-go's decoder calls it for the Records
// field. It reads the batch headers from the raw bytes, then lets kafka-go decode them.
func (s *recordSet) ReadFrom(r io.Reader) (int64, error) {
	var length [4]byte
	if _, err := io.ReadFull(r, length[:]); err != nil {
		return 0, err
	}
	size := int64(int32(binary.BigEndian.Uint32(length[:])))
	*s = recordSet{}
	if size <= 0 {
		return 4, nil
	}
	// Sized up front, since growing to a fetch's size would allocate about twice it (and
	// ReadFrom grows a buffer with less than MinRead free); capped, since the length is the
	// broker's word until the bytes arrive.
	buf := bytes.NewBuffer(make([]byte, 0, 4+min(size, maxPrealloc)+bytes.MinRead))
	buf.Write(length[:])
	if n, err := io.CopyN(buf, r, size); err != nil {
		return 4 + n, fmt.Errorf("read a record set of %d bytes: %w", size, err)
	}
	raw := buf.Bytes()[4:]
	var spans []batchSpan
	s.headers, spans = batchHeaders(raw)
	s.size = size
	_, err := s.RecordSet.ReadFrom(buf) // a *bytes.Buffer: kafka-go peeks through Bytes
	return 4 + size, checkDecoded(raw, spans, s.RecordSet, err)
}

// ErrCorruptBatch is wrapped by every error about a record batch that a broker sent whole
// but that cannot be read in full. It is permanent: the log (or the broker) is damaged, and
// reading on would skip its records.
var ErrCorruptBatch = errors.New("shard: corrupt record batch")

// checkDecoded holds kafka-go's decoding of a record set to every whole batch in it. kafka-go
// ends the record set silently at the first batch it cannot decode (a bad CRC, say) once an
// earlier one decoded, and returns the error only when none did; either way the batch that
// failed is named, and the failure is permanent. A v0/v1 message set is left to kafka-go.
func checkDecoded(raw []byte, spans []batchSpan, rs protocol.RecordSet, decodeErr error) error {
	decoded := 0
	if stream, ok := rs.Records.(*protocol.RecordStream); ok && decodeErr == nil {
		decoded = len(stream.Records)
	}
	if decoded >= len(spans) || slices.ContainsFunc(spans, func(s batchSpan) bool { return !s.v2 }) {
		return decodeErr
	}
	sp := spans[decoded]
	return failure.Permanent(fmt.Errorf("%w: the batch at offset %d %s", ErrCorruptBatch, sp.base, whyUnread(raw[sp.at:sp.at+sp.size], decodeErr)))
}

// whyUnread says why kafka-go could not read a whole v2 batch.
func whyUnread(b []byte, decodeErr error) string {
	computed, stored := crc32.Checksum(b[batchAttributesAt:], castagnoli), binary.BigEndian.Uint32(b[batchCRCAt:])
	switch {
	case computed != stored:
		return fmt.Sprintf("fails its CRC-32C check (computed %08x, stored %08x)", computed, stored)
	case decodeErr != nil:
		return fmt.Sprintf("does not decode: %v", decodeErr)
	default:
		return "does not decode"
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// batchHeader holds the fields of a v2 record batch header that kafka-go's decoder reads and
// drops (protocol/record_v2.go marks them "unused").
type batchHeader struct {
	base            int64
	lastOffsetDelta int32 // kept by compaction when it removes the batch's last records
	maxTimestamp    int64 // the log append time, for a LogAppendTime batch
	logAppendTime   bool
	records         int32
}

// Where a v2 record batch keeps its fields (Kafka's DefaultRecordBatch).
const (
	batchLengthAt       = 8 // int32: the bytes after this field
	batchMagicAt        = 16
	batchCRCAt          = 17 // uint32: CRC-32C of the bytes from the attributes on
	batchAttributesAt   = 21
	batchLastDeltaAt    = 23
	batchMaxTimestampAt = 35
	batchRecordsAt      = 57
	batchHeaderSize     = 61
	// timestampTypeLogAppend is attribute bit 3: 0 create time, 1 log append time.
	timestampTypeLogAppend = 0x08
)

// batchSpan is where one whole batch lies in a record set.
type batchSpan struct {
	base     int64
	at, size int
	v2       bool
}

// batchHeaders reads the header of every v2 batch in a record set, and where each whole batch
// lies. A batch cut short by the fetch size ends the scan, as it ends kafka-go's decoding.
func batchHeaders(raw []byte) (map[int64]*batchHeader, []batchSpan) {
	hs := map[int64]*batchHeader{}
	var spans []batchSpan
	for b := raw; len(b) > batchMagicAt; {
		size := 12 + int64(int32(binary.BigEndian.Uint32(b[batchLengthAt:])))
		if size <= batchMagicAt || size > int64(len(b)) {
			break
		}
		v2 := b[batchMagicAt] == 2 && size >= batchHeaderSize
		spans = append(spans, batchSpan{base: int64(binary.BigEndian.Uint64(b)), at: len(raw) - len(b), size: int(size), v2: v2})
		if v2 {
			h := &batchHeader{
				base:            int64(binary.BigEndian.Uint64(b)),
				lastOffsetDelta: int32(binary.BigEndian.Uint32(b[batchLastDeltaAt:])),
				maxTimestamp:    int64(binary.BigEndian.Uint64(b[batchMaxTimestampAt:])),
				logAppendTime:   binary.BigEndian.Uint16(b[batchAttributesAt:])&timestampTypeLogAppend != 0,
				records:         int32(binary.BigEndian.Uint32(b[batchRecordsAt:])),
			}
			hs[h.base] = h
		}
		b = b[size:]
	}
	return hs, spans
}

// nextOffset is the offset after the batch's last one.
func (h *batchHeader) nextOffset() int64 { return h.base + int64(h.lastOffsetDelta) + 1 }

// passed returns the position after a batch read to its end in n records: past the batch's
// last offset, which compaction may have emptied, when the header is known (v2), else next.
// A batch that yields fewer records than its header announces is corrupt: kafka-go ends a
// batch silently at the first record it cannot parse, and passing over the rest would lose
// them.
func (c *consumer) passed(h *batchHeader, n int32, next int64) (int64, error) {
	if h == nil {
		return next, nil
	}
	if n != h.records {
		return next, failure.Permanent(fmt.Errorf("read %s/%d: %w: the batch at offset %d yields %d records, its header says %d",
			c.topic, c.partition, ErrCorruptBatch, h.base, n, h.records))
	}
	return c.pass(next, h.nextOffset()), nil
}

// abortTracker knows, for one fetch response, which producers are inside an aborted
// transaction at the current position.
type abortTracker struct {
	pending txnHeap            // aborted transactions not reached yet, by first offset
	active  map[int64]struct{} // producers inside an aborted transaction
}

func newAbortTracker(txns []fetchapi.ResponseTransaction) *abortTracker {
	t := &abortTracker{pending: txnHeap(append([]fetchapi.ResponseTransaction(nil), txns...)), active: map[int64]struct{}{}}
	heap.Init(&t.pending)
	return t
}

// advance enters every aborted transaction that starts at or before offset.
func (t *abortTracker) advance(offset int64) {
	for t.pending.Len() > 0 && t.pending[0].FirstOffset <= offset {
		txn := heap.Pop(&t.pending).(fetchapi.ResponseTransaction)
		t.active[txn.ProducerID] = struct{}{}
	}
}

// isAborted reports whether a transactional batch of producer pid starting at base belongs
// to an aborted transaction. A producer's batches never interleave with its own
// transaction's first offset, so a batch's base offset stands in for its last offset here.
func (t *abortTracker) isAborted(pid, base int64) bool {
	t.advance(base)
	_, ok := t.active[pid]
	return ok
}

func (t *abortTracker) markerSeen(pid int64) { delete(t.active, pid) }

type txnHeap []fetchapi.ResponseTransaction

func (h txnHeap) Len() int           { return len(h) }
func (h txnHeap) Less(i, j int) bool { return h[i].FirstOffset < h[j].FirstOffset }
func (h txnHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *txnHeap) Push(x any)        { *h = append(*h, x.(fetchapi.ResponseTransaction)) }
func (h *txnHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
