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

func response(aborted []fetchapi.ResponseTransaction, batches ...protocol.RecordReader) *fetchapi.ResponsePartition {
	return &fetchapi.ResponsePartition{
		AbortedTransactions: aborted,
		RecordSet:           protocol.RecordSet{Records: &protocol.RecordStream{Records: batches}},
	}
}

func TestConsume(t *testing.T) {
	const a, b = 7, 9
	for _, tc := range []struct {
		name     string
		res      func() *fetchapi.ResponsePartition
		pos, end int64
		want     []int64
		next     int64
	}{
		{
			name: "aborted transaction between committed ones",
			res: func() *fetchapi.ResponsePartition {
				return response([]fetchapi.ResponseTransaction{{ProducerID: a, FirstOffset: 3}},
					dataBatch(a, true, 0, 1), marker(a, 2, true), dataBatch(a, true, 3, 4), dataBatch(b, true, 5), marker(a, 6, false),
					marker(b, 7, true), dataBatch(a, true, 8), marker(a, 9, true))
			},
			end: 10, want: []int64{0, 1, 5, 8}, next: 10,
		},
		{
			name: "fetch starts between aborted data and its marker",
			res: func() *fetchapi.ResponsePartition {
				// The broker lists the transaction, whose data lies before the fetch offset.
				return response([]fetchapi.ResponseTransaction{{ProducerID: a, FirstOffset: 3}},
					marker(a, 6, false), dataBatch(a, true, 7, 8), marker(a, 9, true))
			},
			pos: 6, end: 10, want: []int64{7, 8}, next: 10,
		},
		{
			name: "range ends on a control record",
			res: func() *fetchapi.ResponsePartition {
				return response(nil, dataBatch(a, true, 0, 1), marker(a, 2, true), dataBatch(a, true, 3))
			},
			end: 3, want: []int64{0, 1}, next: 3,
		},
		{
			name: "batch starts before the fetch offset",
			res:  func() *fetchapi.ResponsePartition { return response(nil, dataBatch(-1, false, 10, 11, 12, 13)) },
			pos:  12, end: 20, want: []int64{12, 13}, next: 14,
		},
		{
			name: "compacted offsets",
			res: func() *fetchapi.ResponsePartition {
				return response(nil, dataBatch(-1, false, 0, 4, 9), dataBatch(-1, false, 30))
			},
			end: 31, want: []int64{0, 4, 9, 30}, next: 31,
		},
		{
			name: "no progress",
			res:  func() *fetchapi.ResponsePartition { return response(nil, dataBatch(-1, false, 0, 4)) },
			pos:  5, end: 31, want: nil, next: 5,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []int64
			next, err := consume(tc.res(), "t", 0, tc.pos, tc.end, func(r *archive.Record) error {
				got = append(got, r.Offset)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) || next != tc.next {
				t.Fatalf("got offsets %v next %d, want %v next %d", got, next, tc.want, tc.next)
			}
		})
	}
}
