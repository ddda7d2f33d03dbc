package shard

import (
	"bytes"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
	stream, ok := res.Records.Records.(*protocol.RecordStream)
	if !ok {
		return pos, nil
	}
	c := &consumer{topic: topic, partition: partition, end: end, fn: fn,
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
	if h := c.headers[b.BaseOffset]; h != nil {
		return max(next, h.nextOffset()), nil
	}
	return max(next, b.BaseOffset+1), nil // a marker batch held one record when written
}

// records reads every record of one batch; those before next were seen in an earlier
// response (a fetch may start at the batch holding next), those of an aborted batch only
// advance the position. Once the batch is read to its end, the position moves past the
// batch's last offset, which compaction may have emptied (the Java consumer does the same).
func (c *consumer) records(batch protocol.RecordReader, next int64, skip bool, h *batchHeader) (int64, error) {
	for n := int32(0); ; n++ {
		r, err := batch.ReadRecord()
		if errors.Is(err, io.EOF) && h != nil && n != h.records {
			// The batch is whole in the response (its header was read) and holds more
			// records than kafka-go's decoder gave: it stopped at one it could not parse, as
			// if the batch ended there. Reading on would skip the rest without a word.
			err = fmt.Errorf("the batch announces %d records and only %d could be read", h.records, n)
		}
		if errors.Is(err, io.EOF) {
			return h.passed(n, next), nil
		}
		if err != nil {
			return next, failure.Permanent(fmt.Errorf("read %s/%d: the record batch at offset %d is corrupt (%w): it is not archived, nor anything after it; "+
				"read the partition with another client to find the damage", c.topic, c.partition, batchBase(batch, next), err))
		}
		switch {
		case r.Offset >= c.end:
			release(r)
			return c.end, nil
		case r.Offset < next || skip:
			next = max(next, r.Offset+1)
			release(r)
			continue
		}
		next = r.Offset + 1
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
	s.headers, s.size = batchHeaders(buf.Bytes()[4:]), size
	_, err := s.RecordSet.ReadFrom(buf) // a *bytes.Buffer: kafka-go peeks through Bytes
	return 4 + size, err
}

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
	batchAttributesAt   = 21
	batchLastDeltaAt    = 23
	batchMaxTimestampAt = 35
	batchRecordsAt      = 57
	batchHeaderSize     = 61
	// timestampTypeLogAppend is attribute bit 3: 0 create time, 1 log append time.
	timestampTypeLogAppend = 0x08
)

// batchHeaders reads the header of every v2 batch in a record set. A batch cut short by the
// fetch size ends the scan, as it ends kafka-go's decoding.
func batchHeaders(b []byte) map[int64]*batchHeader {
	hs := map[int64]*batchHeader{}
	for len(b) > batchMagicAt {
		size := 12 + int64(int32(binary.BigEndian.Uint32(b[batchLengthAt:])))
		if size <= batchMagicAt || size > int64(len(b)) {
			break
		}
		if b[batchMagicAt] == 2 && size >= batchHeaderSize {
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
	return hs
}

// nextOffset is the offset after the batch's last one.
func (h *batchHeader) nextOffset() int64 { return h.base + int64(h.lastOffsetDelta) + 1 }

// passed returns the position after a batch read to its end: past the batch's last offset
// when its header is known (records checked that every record it announces was read), else
// next.
func (h *batchHeader) passed(n int32, next int64) int64 {
	if h == nil || n != h.records {
		return next
	}
	return max(next, h.nextOffset())
}

// batchBase is a batch's first offset, or next where the batch does not say.
func batchBase(batch protocol.RecordReader, next int64) int64 {
	if b, ok := batch.(interface{ Offset() int64 }); ok {
		return b.Offset()
	}
	return next
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
