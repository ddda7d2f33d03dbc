package shard

import (
	"bytes"
	"container/heap"
	"encoding/binary"
	"fmt"
	"io"

	fetchapi "github.com/segmentio/kafka-go/protocol/fetch"

	"github.com/karch-archive/karch/archive"
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
	c := &consumer{topic: topic, partition: partition, end: end, fn: fn, tally: tally,
		aborted: newAbortTracker(res.AbortedTransactions)}
	next := pos
	for i := range res.Records.batches {
		var err error
		next, err = c.batch(&res.Records.batches[i], next)
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

func (c *consumer) batch(b *fetchedBatch, next int64) (int64, error) {
	if b.control {
		return c.control(b, next), nil
	}
	// Message sets of format v0/v1 cannot be transactional.
	skip := b.transactional && c.aborted.isAborted(b.producerID, b.base)
	return c.records(b, next, skip)
}

// control applies a transaction marker. A control batch may hold no record at all: the log
// cleaner keeps the empty batch of a marker it removed while the producer is still active
// (compacted transactional topics). The Java consumer passes over such a batch, to the
// offset after the batch's last, and so does this.
func (c *consumer) control(b *fetchedBatch, next int64) int64 {
	// Reach the marker's offset first: a fetch that starts between an aborted
	// transaction's data and its marker must not leave the producer marked aborted.
	c.aborted.advance(b.base)
	if b.marker == controlAbort {
		c.aborted.markerSeen(b.producerID)
	}
	if b.marker >= 0 && b.base >= next && b.base < c.end {
		next = c.count(next, b.base, &c.tally.Control)
	}
	return c.pass(next, b.nextOffset())
}

// records hands on every record of one batch; those before next were seen in an earlier
// response (a fetch may start at the batch holding next), those of an aborted batch only
// advance the position. Once the batch is read to its end, the position moves past the
// batch's last offset, which compaction may have emptied (the Java consumer does the same).
func (c *consumer) records(b *fetchedBatch, next int64, skip bool) (int64, error) {
	for i := range b.records {
		r := &b.records[i]
		switch {
		case r.Offset >= c.end:
			return c.pass(next, c.end), nil
		case r.Offset < next: // seen in an earlier response
			continue
		case skip:
			next = c.count(next, r.Offset, &c.tally.Aborted)
			continue
		}
		next = c.count(next, r.Offset, &c.tally.Records)
		r.Topic, r.Partition = c.topic, c.partition
		if err := c.fn(r); err != nil {
			return next, err
		}
	}
	if !b.v2 {
		return next, nil
	}
	return c.pass(next, b.nextOffset()), nil
}

// fetchedPartition is one partition of a fetch response: kafka-go's
// fetchapi.ResponsePartition, with a record set decoded here.
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

// recordSet is a partition's batches, decoded.
type recordSet struct {
	batches []fetchedBatch
	// size is the record set's length on the wire, which a fetch rate limit counts.
	size int64
}

// ReadFrom reads a length-prefixed record set and decodes it; kafka-go's decoder calls it
// for the Records field. It runs in the fetch's goroutine, so that the next response is
// decompressed and decoded while the last one is encoded.
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
	// Sized up front, since growing to a fetch's size would allocate about twice it; capped,
	// since the length is the broker's word until the bytes arrive.
	buf := bytes.NewBuffer(make([]byte, 0, min(size, maxPrealloc)))
	if n, err := io.CopyN(buf, r, size); err != nil {
		return 4 + n, fmt.Errorf("read a record set of %d bytes: %w", size, err)
	}
	batches, err := decodeRecordSet(buf.Bytes())
	*s = recordSet{batches: batches, size: size}
	return 4 + size, err
}

// maxPrealloc bounds the buffer allocated for a record set before its bytes are read.
const maxPrealloc = 64 << 20

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
