package shard

import (
	"container/heap"
	"errors"
	"fmt"
	"io"

	"github.com/segmentio/kafka-go/protocol"
	fetchapi "github.com/segmentio/kafka-go/protocol/fetch"

	"github.com/karch-archive/karch/archive"
)

// Control record types (Kafka's ControlRecordType).
const controlAbort = 0

// consume hands fn the committed records of one fetch response that lie in [pos, end), and
// returns the offset to fetch next: past the last record or control batch it saw, or end.
//
// Aborted transactions are filtered the way Kafka's Java consumer does it: walking batches in
// offset order, a producer joins the aborted set when the first offset of one of its aborted
// transactions is reached, and leaves it at that transaction's abort marker; a transactional
// batch of a producer in the set is dropped.
func consume(res *fetchapi.ResponsePartition, topic string, partition int32, pos, end int64, fn func(*archive.Record) error) (int64, error) {
	stream, ok := res.RecordSet.Records.(*protocol.RecordStream)
	if !ok {
		return pos, nil
	}
	aborted := newAbortTracker(res.AbortedTransactions)
	next := pos
	for _, batch := range stream.Records {
		var err error
		switch b := batch.(type) {
		case *protocol.ControlBatch:
			next, err = consumeControl(b, aborted, next)
		case *protocol.RecordBatch:
			skip := b.Attributes.Transactional() && aborted.isAborted(b.ProducerID, b.BaseOffset)
			next, err = consumeRecords(b, topic, partition, next, end, skip, fn)
		default:
			// Message sets of format v0/v1 cannot be transactional.
			next, err = consumeRecords(batch, topic, partition, next, end, false, fn)
		}
		if err != nil || next >= end {
			return min(next, end), err
		}
	}
	return next, nil
}

func consumeControl(b *protocol.ControlBatch, aborted *abortTracker, next int64) (int64, error) {
	cr, err := b.ReadControlRecord()
	if err != nil {
		return next, fmt.Errorf("read control record at %d: %w", b.BaseOffset, err)
	}
	// Reach the marker's offset first: a fetch that starts between an aborted
	// transaction's data and its marker must not leave the producer marked aborted.
	aborted.advance(b.BaseOffset)
	if cr.Type == controlAbort {
		aborted.markerSeen(b.ProducerID)
	}
	return max(next, b.BaseOffset+1), nil
}

// consumeRecords reads every record of one batch; those before next were seen in an earlier
// response (a fetch may start at the batch holding next), those of an aborted batch only
// advance the position.
func consumeRecords(batch protocol.RecordReader, topic string, partition int32, next, end int64, skip bool, fn func(*archive.Record) error) (int64, error) {
	for {
		r, err := batch.ReadRecord()
		if errors.Is(err, io.EOF) {
			return next, nil
		}
		if err != nil {
			return next, fmt.Errorf("read %s/%d after offset %d: %w", topic, partition, next, err)
		}
		switch {
		case r.Offset >= end:
			release(r)
			return end, nil
		case r.Offset < next:
			release(r)
			continue
		}
		next = r.Offset + 1
		if skip {
			release(r)
			continue
		}
		rec, err := convert(r, topic, partition)
		if err != nil {
			return next, err
		}
		if err := fn(rec); err != nil {
			return next, err
		}
	}
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
