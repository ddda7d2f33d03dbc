package shard

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	fetchapi "github.com/segmentio/kafka-go/protocol/fetch"

	"github.com/karch-archive/karch/archive"
)

// dataBatch is a v2 batch of producer pid holding a record at each of offsets, the first
// one its base; each record o is stamped o ms and holds the value o.
func dataBatch(pid int64, txn bool, offsets ...int64) []byte {
	recs := make([]archive.Record, len(offsets))
	for i, o := range offsets {
		recs[i] = archive.Record{Offset: o, Timestamp: time.UnixMilli(o), Value: []byte(fmt.Sprint(o))}
	}
	var attrs uint16
	if txn {
		attrs = attrTransactional
	}
	return encodeBatch(batchSpec{base: offsets[0], attrs: attrs, producerID: pid}, recs...)
}

func marker(pid, offset int64, commit bool) []byte {
	key := make([]byte, 4)
	if commit {
		binary.BigEndian.PutUint16(key[2:], 1)
	}
	return encodeBatch(batchSpec{base: offset, attrs: attrTransactional | attrControl, producerID: pid},
		archive.Record{Offset: offset, Key: key, Value: []byte{0, 0, 0, 0, 0, 0}})
}

// emptyMarker is a control batch whose record the log cleaner removed: the header alone.
func emptyMarker(pid, offset int64) []byte {
	return encodeBatch(batchSpec{base: offset, attrs: attrTransactional | attrControl, producerID: pid})
}

// compactedTail makes the batch's last offset lie delta past its base, as it stays when
// the log cleaner removes the batch's last records.
func compactedTail(b []byte, delta int32) []byte { return with32(b, batchLastDeltaAt, uint32(delta)) }

// response decodes batches as a fetch response's record set.
func response(t *testing.T, aborted []fetchapi.ResponseTransaction, batches ...[]byte) *fetchedPartition {
	t.Helper()
	bs, err := decodeRecordSet(slices.Concat(batches...))
	if err != nil {
		t.Fatal(err)
	}
	return &fetchedPartition{AbortedTransactions: aborted, Records: recordSet{batches: bs}}
}

func TestConsume(t *testing.T) {
	const a, b = 7, 9
	for _, tc := range []struct {
		name     string
		res      func(t *testing.T) *fetchedPartition
		pos, end int64
		want     []int64
		next     int64
	}{
		{
			name: "aborted transaction between committed ones",
			res: func(t *testing.T) *fetchedPartition {
				return response(t, []fetchapi.ResponseTransaction{{ProducerID: a, FirstOffset: 3}},
					dataBatch(a, true, 0, 1), marker(a, 2, true), dataBatch(a, true, 3, 4), dataBatch(b, true, 5), marker(a, 6, false),
					marker(b, 7, true), dataBatch(a, true, 8), marker(a, 9, true))
			},
			end: 10, want: []int64{0, 1, 5, 8}, next: 10,
		},
		{
			name: "fetch starts between aborted data and its marker",
			res: func(t *testing.T) *fetchedPartition {
				// The broker lists the transaction, whose data lies before the fetch offset.
				return response(t, []fetchapi.ResponseTransaction{{ProducerID: a, FirstOffset: 3}},
					marker(a, 6, false), dataBatch(a, true, 7, 8), marker(a, 9, true))
			},
			pos: 6, end: 10, want: []int64{7, 8}, next: 10,
		},
		{
			name: "range ends on a control record",
			res: func(t *testing.T) *fetchedPartition {
				return response(t, nil, dataBatch(a, true, 0, 1), marker(a, 2, true), dataBatch(a, true, 3))
			},
			end: 3, want: []int64{0, 1}, next: 3,
		},
		{
			name: "batch starts before the fetch offset",
			res:  func(t *testing.T) *fetchedPartition { return response(t, nil, dataBatch(-1, false, 10, 11, 12, 13)) },
			pos:  12, end: 20, want: []int64{12, 13}, next: 14,
		},
		{
			name: "compacted offsets",
			res: func(t *testing.T) *fetchedPartition {
				return response(t, nil, dataBatch(-1, false, 0, 4, 9), dataBatch(-1, false, 30))
			},
			end: 31, want: []int64{0, 4, 9, 30}, next: 31,
		},
		{
			// A compacted transactional topic: the cleaner removed a commit marker of a
			// producer that is still active and kept its batch, empty.
			name: "empty control batch",
			res: func(t *testing.T) *fetchedPartition {
				return response(t, nil, dataBatch(a, true, 0, 1), emptyMarker(a, 2), dataBatch(-1, false, 3, 4))
			},
			end: 10, want: []int64{0, 1, 3, 4}, next: 5,
		},
		{
			name: "empty control batch ends the response",
			res: func(t *testing.T) *fetchedPartition {
				return response(t, nil, emptyMarker(a, 2))
			},
			pos: 2, end: 10, want: nil, next: 3,
		},
		{
			name: "empty control batch of an aborting producer",
			res: func(t *testing.T) *fetchedPartition {
				return response(t, []fetchapi.ResponseTransaction{{ProducerID: a, FirstOffset: 0}},
					dataBatch(a, true, 0), emptyMarker(a, 1), marker(a, 2, false), dataBatch(a, true, 3))
			},
			end: 10, want: []int64{3}, next: 4,
		},
		{
			name: "batch whose last records were compacted away",
			res: func(t *testing.T) *fetchedPartition {
				return response(t, nil, compactedTail(dataBatch(-1, false, 0, 4), 9))
			},
			end: 31, want: []int64{0, 4}, next: 10,
		},
		{
			name: "compacted batch reaching past end",
			res: func(t *testing.T) *fetchedPartition {
				return response(t, nil, compactedTail(dataBatch(-1, false, 0, 4), 9))
			},
			end: 7, want: []int64{0, 4}, next: 7,
		},
		// A batch with fewer records than its header announces is corrupt:
		// TestConsumeFailsOnACorruptBatch.
		{
			name: "no progress",
			res:  func(t *testing.T) *fetchedPartition { return response(t, nil, dataBatch(-1, false, 0, 4)) },
			pos:  5, end: 31, want: nil, next: 5,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []int64
			var tally Tally
			next, err := consumeCounting(tc.res(t), "t", 0, tc.pos, tc.end, func(r *archive.Record) error {
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
	appendedBatch := dataBatch(-1, false, 0, 1)
	binary.BigEndian.PutUint64(appendedBatch[batchMaxTimestampAt:], appended)
	res := response(t, nil, with16(appendedBatch, batchAttributesAt, attrLogAppendTime), dataBatch(-1, false, 2))
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
