package shard

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go/protocol"
	fetchapi "github.com/segmentio/kafka-go/protocol/fetch"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/failure"
)

// wireBatch encodes a v2 record batch as a broker sends it: kafka-go's encoder writes the
// records (offset deltas 0, 1, ...), then the header fields it cannot be told are set and the
// CRC is recomputed. With no record it is the header alone, as the log cleaner leaves an
// emptied batch.
func wireBatch(t *testing.T, base int64, attrs protocol.Attributes, lastDelta int32, maxTimestamp int64, recs ...protocol.Record) []byte {
	t.Helper()
	rs := protocol.RecordSet{Version: 2, Attributes: attrs, Records: protocol.NewRecordReader(recs...)}
	if len(recs) == 0 {
		rs.Records = protocol.NewRecordReader(protocol.Record{Time: time.UnixMilli(maxTimestamp)})
	}
	var buf bytes.Buffer
	if _, err := rs.WriteTo(&buf); err != nil {
		t.Fatalf("encode batch: %v", err)
	}
	b := buf.Bytes()[4:] // the record set's size prefix
	if len(recs) == 0 {
		b = b[:batchHeaderSize]
		binary.BigEndian.PutUint32(b[batchRecordsAt:], 0)
	}
	binary.BigEndian.PutUint64(b, uint64(base))
	binary.BigEndian.PutUint32(b[batchLengthAt:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[batchLastDeltaAt:], uint32(lastDelta))
	binary.BigEndian.PutUint64(b[batchMaxTimestampAt:], uint64(maxTimestamp))
	binary.BigEndian.PutUint64(b[43:], 7) // producer id
	return seal(b)
}

// seal sets a batch's CRC after its header was changed.
func seal(b []byte) []byte {
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// withFirstTimestamp sets the timestamp the records' deltas count from: kafka-go's encoder
// cannot write one past year 2262 (it goes through UnixNano).
func withFirstTimestamp(b []byte, ms int64) []byte {
	binary.BigEndian.PutUint64(b[27:], uint64(ms))
	return seal(b)
}

func valueAt(ms int64) protocol.Record {
	return protocol.Record{Time: time.UnixMilli(ms), Value: protocol.NewBytes([]byte("v"))}
}

// fetchFrame is a Fetch v11 response frame, size prefix included, for partition t/0.
func fetchFrame(correlationID int32, lastStable int64, records []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(correlationID))
	b = binary.BigEndian.AppendUint32(b, 0)                  // throttle time
	b = binary.BigEndian.AppendUint16(b, 0)                  // error code
	b = binary.BigEndian.AppendUint32(b, 0)                  // session id
	b = binary.BigEndian.AppendUint32(b, 1)                  // topics
	b = append(binary.BigEndian.AppendUint16(b, 1), 't')     // topic name
	b = binary.BigEndian.AppendUint32(b, 1)                  // partitions
	b = binary.BigEndian.AppendUint32(b, 0)                  // partition
	b = binary.BigEndian.AppendUint16(b, 0)                  // error code
	b = binary.BigEndian.AppendUint64(b, uint64(lastStable)) // high watermark
	b = binary.BigEndian.AppendUint64(b, uint64(lastStable)) // last stable offset
	b = binary.BigEndian.AppendUint64(b, 0)                  // log start offset
	b = binary.BigEndian.AppendUint32(b, 0)                  // aborted transactions
	b = binary.BigEndian.AppendUint32(b, ^uint32(0))         // preferred read replica
	b = binary.BigEndian.AppendUint32(b, uint32(len(records)))
	b = append(b, records...)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
}

// brokerConn is a broker connection that answers with one prepared frame.
type brokerConn struct {
	io.Reader
	sent bytes.Buffer
}

func (c *brokerConn) Write(b []byte) (int, error) { return c.sent.Write(b) }

// exchange runs one raw Fetch exchange, at version, against a connection answering frame.
func exchange(version int16, frame []byte) (*fetchResponse, *brokerConn, error) {
	req := &fetchRequest{clientID: defaultClientID, Request: fetchapi.Request{ReplicaID: -1, IsolationLevel: 1,
		Topics: []fetchapi.RequestTopic{{Topic: "t", Partitions: []fetchapi.RequestPartition{{FetchOffset: 10}}}}}}
	c := &brokerConn{Reader: bytes.NewReader(frame)}
	if !req.Required(map[protocol.ApiKey]int16{protocol.Fetch: version}) {
		return nil, c, errors.New("the exchange is not raw")
	}
	m, err := req.RawExchange(c)
	if err != nil {
		return nil, c, err
	}
	return m.(*fetchResponse), c, nil
}

// The read path below kafka-go's transport, on bytes as a broker sends them: a transactional
// batch, its commit marker emptied by the log cleaner, a LogAppendTime batch whose records
// carry their producer's create time and whose last offset was compacted away, and a batch
// cut short by the fetch size.
func TestFetchResponseFromTheWire(t *testing.T) {
	const appended = 1795399201123
	truncated := wireBatch(t, 17, 0, 0, 7, valueAt(7))
	records := slices.Concat(
		wireBatch(t, 10, protocol.Transactional, 1, 1001, valueAt(1000), valueAt(1001)),
		wireBatch(t, 12, protocol.Transactional|protocol.Control, 0, 1002),
		wireBatch(t, 13, attrLogAppendTime, 3, appended, valueAt(5), valueAt(6), valueAt(4)),
		truncated[:len(truncated)-3],
	)
	res, c, err := exchange(11, fetchFrame(1, 17, records))
	if err != nil {
		t.Fatal(err)
	}
	if sent := c.sent.Bytes(); binary.BigEndian.Uint16(sent[4:]) != uint16(protocol.Fetch) || binary.BigEndian.Uint16(sent[6:]) != 11 {
		t.Fatalf("request header % x: want Fetch v11", sent[4:12])
	}
	var got []archive.Record
	next, err := consume(&res.Topics[0].Partitions[0], "t", 0, 10, 100, func(r *archive.Record) error {
		got = append(got, *r)
		return nil
	})
	at := func(offset, ms int64, logAppend bool) archive.Record {
		return archive.Record{Topic: "t", Offset: offset, Timestamp: time.UnixMilli(ms).UTC(), LogAppendTime: logAppend, Value: []byte("v")}
	}
	want := []archive.Record{at(10, 1000, false), at(11, 1001, false), at(13, appended, true), at(14, appended, true), at(15, appended, true)}
	if err != nil || next != 17 || !reflect.DeepEqual(got, want) {
		t.Fatalf("consume: next %d err %v (want 17, nil)\n got %+v\nwant %+v", next, err, got, want)
	}
}

func TestFetchExchangeFailures(t *testing.T) {
	frame := fetchFrame(1, 0, nil)
	if _, _, err := exchange(3, frame); !failure.IsPermanent(err) {
		t.Errorf("Fetch v3, which has no isolation level: %v, want a permanent error", err)
	}
	if _, _, err := exchange(11, fetchFrame(2, 0, nil)); err == nil {
		t.Error("a response to another request was accepted")
	}
	if _, _, err := exchange(11, frame[:len(frame)-1]); !errors.Is(err, io.ErrUnexpectedEOF) || failure.IsPermanent(err) {
		t.Errorf("a connection closed mid-response: %v, want a retryable io.ErrUnexpectedEOF", err)
	}
	if _, _, err := exchange(11, nil); !errors.Is(err, io.ErrUnexpectedEOF) || failure.IsPermanent(err) {
		t.Errorf("a connection closed before the response: %v, want a retryable io.ErrUnexpectedEOF", err)
	}
}

// Any int64 timestamp a batch can carry reaches the archive exactly, and its line reads back.
func TestFetchExtremeTimestamps(t *testing.T) {
	var records []byte
	stamps := []int64{-1, math.MinInt64, math.MaxInt64, 253402300800000, -62167219200001}
	for i, ms := range stamps {
		records = append(records, withFirstTimestamp(wireBatch(t, int64(i), 0, 0, ms, valueAt(1)), ms)...)
	}
	res, _, err := exchange(11, fetchFrame(1, int64(len(stamps)), records))
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	if _, err := consume(&res.Topics[0].Partitions[0], "t", 0, 0, 100, func(r *archive.Record) error {
		back, err := archive.DecodeLine(archive.AppendLine(nil, r))
		if err != nil || !reflect.DeepEqual(back, *r) {
			return fmt.Errorf("offset %d: the line reads back as %+v, %v", r.Offset, back, err)
		}
		got = append(got, back.Timestamp.UnixMilli())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, stamps) {
		t.Fatalf("archived timestamps %v, want %v", got, stamps)
	}
}
