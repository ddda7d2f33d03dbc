package shard

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go/protocol"
	fetchapi "github.com/segmentio/kafka-go/protocol/fetch"

	"github.com/karch-archive/karch/archive"
)

func dataBatch(pid int64, txn bool, offsets ...int64) protocol.RecordReader {
	recs := make([]protocol.Record, len(offsets))
	for i, o := range offsets {
		recs[i] = protocol.Record{Offset: o, Time: time.UnixMilli(o), Value: protocol.NewBytes([]byte(fmt.Sprint(o)))}
	}
	var attrs protocol.Attributes
	if txn {
		attrs = protocol.Transactional
	}
	return &protocol.RecordBatch{Attributes: attrs, BaseOffset: offsets[0], ProducerID: pid, Records: protocol.NewRecordReader(recs...)}
}

func marker(pid, offset int64, commit bool) protocol.RecordReader {
	key := make([]byte, 4)
	if commit {
		binary.BigEndian.PutUint16(key[2:], 1)
	}
	return &protocol.ControlBatch{
		Attributes: protocol.Transactional | protocol.Control, BaseOffset: offset, ProducerID: pid,
		Records: protocol.NewRecordReader(protocol.Record{Offset: offset, Key: protocol.NewBytes(key), Value: protocol.NewBytes([]byte{0, 0, 0, 0, 0, 0})}),
	}
}

func response(aborted []fetchapi.ResponseTransaction, batches ...protocol.RecordReader) *fetchedPartition {
	return &fetchedPartition{
		AbortedTransactions: aborted,
		Records:             recordSet{RecordSet: protocol.RecordSet{Records: &protocol.RecordStream{Records: batches}}},
	}
}

// withHeaders gives a response the batch headers a broker would have sent with it.
func withHeaders(res *fetchedPartition, hs ...batchHeader) *fetchedPartition {
	res.Records.headers = map[int64]*batchHeader{}
	for i := range hs {
		res.Records.headers[hs[i].base] = &hs[i]
	}
	return res
}

// emptyMarker is a control batch whose record the log cleaner removed: kafka-go hands it
// over with no record at all.
func emptyMarker(pid, offset int64) protocol.RecordReader {
	return &protocol.ControlBatch{Attributes: protocol.Transactional | protocol.Control, BaseOffset: offset, ProducerID: pid,
		Records: protocol.NewRecordReader()}
}

func TestConsume(t *testing.T) {
	const a, b = 7, 9
	for _, tc := range []struct {
		name     string
		res      func() *fetchedPartition
		pos, end int64
		want     []int64
		next     int64
	}{
		{
			name: "aborted transaction between committed ones",
			res: func() *fetchedPartition {
				return response([]fetchapi.ResponseTransaction{{ProducerID: a, FirstOffset: 3}},
					dataBatch(a, true, 0, 1), marker(a, 2, true), dataBatch(a, true, 3, 4), dataBatch(b, true, 5), marker(a, 6, false),
					marker(b, 7, true), dataBatch(a, true, 8), marker(a, 9, true))
			},
			end: 10, want: []int64{0, 1, 5, 8}, next: 10,
		},
		{
			name: "fetch starts between aborted data and its marker",
			res: func() *fetchedPartition {
				// The broker lists the transaction, whose data lies before the fetch offset.
				return response([]fetchapi.ResponseTransaction{{ProducerID: a, FirstOffset: 3}},
					marker(a, 6, false), dataBatch(a, true, 7, 8), marker(a, 9, true))
			},
			pos: 6, end: 10, want: []int64{7, 8}, next: 10,
		},
		{
			name: "range ends on a control record",
			res: func() *fetchedPartition {
				return response(nil, dataBatch(a, true, 0, 1), marker(a, 2, true), dataBatch(a, true, 3))
			},
			end: 3, want: []int64{0, 1}, next: 3,
		},
		{
			name: "batch starts before the fetch offset",
			res:  func() *fetchedPartition { return response(nil, dataBatch(-1, false, 10, 11, 12, 13)) },
			pos:  12, end: 20, want: []int64{12, 13}, next: 14,
		},
		{
			name: "compacted offsets",
			res: func() *fetchedPartition {
				return response(nil, dataBatch(-1, false, 0, 4, 9), dataBatch(-1, false, 30))
			},
			end: 31, want: []int64{0, 4, 9, 30}, next: 31,
		},
		{
			// A compacted transactional topic: the cleaner removed a commit marker of a
			// producer that is still active and kept its batch, empty.
			name: "empty control batch",
			res: func() *fetchedPartition {
				return withHeaders(response(nil, dataBatch(a, true, 0, 1), emptyMarker(a, 2), dataBatch(-1, false, 3, 4)),
					batchHeader{base: 0, lastOffsetDelta: 1, records: 2}, batchHeader{base: 2, records: 0},
					batchHeader{base: 3, lastOffsetDelta: 1, records: 2})
			},
			end: 10, want: []int64{0, 1, 3, 4}, next: 5,
		},
		{
			name: "empty control batch ends the response",
			res: func() *fetchedPartition {
				return withHeaders(response(nil, emptyMarker(a, 2)), batchHeader{base: 2, records: 0})
			},
			pos: 2, end: 10, want: nil, next: 3,
		},
		{
			name: "empty control batch without its header",
			res:  func() *fetchedPartition { return response(nil, emptyMarker(a, 2), dataBatch(-1, false, 3)) },
			pos:  2, end: 10, want: []int64{3}, next: 4,
		},
		{
			name: "empty control batch of an aborting producer",
			res: func() *fetchedPartition {
				return withHeaders(response([]fetchapi.ResponseTransaction{{ProducerID: a, FirstOffset: 0}},
					dataBatch(a, true, 0), emptyMarker(a, 1), marker(a, 2, false), dataBatch(a, true, 3)),
					batchHeader{base: 1, records: 0})
			},
			end: 10, want: []int64{3}, next: 4,
		},
		{
			name: "batch whose last records were compacted away",
			res: func() *fetchedPartition {
				return withHeaders(response(nil, dataBatch(-1, false, 0, 4)), batchHeader{base: 0, lastOffsetDelta: 9, records: 2})
			},
			end: 31, want: []int64{0, 4}, next: 10,
		},
		{
			name: "compacted batch reaching past end",
			res: func() *fetchedPartition {
				return withHeaders(response(nil, dataBatch(-1, false, 0, 4)), batchHeader{base: 0, lastOffsetDelta: 9, records: 2})
			},
			end: 7, want: []int64{0, 4}, next: 7,
		},
		// A batch with fewer records than its header announces is corrupt:
		// TestConsumeFailsOnACorruptBatch.
		{
			name: "no progress",
			res:  func() *fetchedPartition { return response(nil, dataBatch(-1, false, 0, 4)) },
			pos:  5, end: 31, want: nil, next: 5,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []int64
			var tally Tally
			next, err := consumeCounting(tc.res(), "t", 0, tc.pos, tc.end, func(r *archive.Record) error {
				got = append(got, r.Offset)
				return nil
			}, &tally)
			if err != nil {
				t.Fatal(err)
			}
			if tally.Records != int64(len(got)) || tally.Offsets() != next-tc.pos {
				t.Fatalf("tally %+v of %d records, from %d to %d", tally, len(got), tc.pos, next)
			}
			if !slices.Equal(got, tc.want) || next != tc.next {
				t.Fatalf("got offsets %v next %d, want %v next %d", got, next, tc.want, tc.next)
			}
		})
	}
}

// A LogAppendTime batch: every record is stamped with the batch's max timestamp, which is
// the broker's append time, and says so.
func TestConsumeLogAppendTime(t *testing.T) {
	const appended = 1795399201123
	res := withHeaders(response(nil, dataBatch(-1, false, 0, 1), dataBatch(-1, false, 2)),
		batchHeader{base: 0, lastOffsetDelta: 1, maxTimestamp: appended, logAppendTime: true, records: 2},
		batchHeader{base: 2, maxTimestamp: 99, records: 1})
	var got []archive.Record
	if _, err := consume(res, "t", 0, 0, 3, func(r *archive.Record) error {
		got = append(got, *r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		millis    int64
		logAppend bool
	}{{appended, true}, {appended, true}, {2, false}} // dataBatch stamps record o with o ms
	for i, w := range want {
		if got[i].Timestamp.UnixMilli() != w.millis || got[i].LogAppendTime != w.logAppend || got[i].Timestamp.Location() != time.UTC {
			t.Errorf("record %d: timestamp %v (%d ms) log append %v, want %d ms log append %v",
				i, got[i].Timestamp, got[i].Timestamp.UnixMilli(), got[i].LogAppendTime, w.millis, w.logAppend)
		}
	}
}
