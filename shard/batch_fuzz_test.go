package shard

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/karch-archive/karch/archive"
)

// FuzzDecodeRecordSet holds karch's decoder of record sets to the readings of kafka-go and
// franz-go, two decoders that share no code with it or with each other: whatever bytes a
// broker sends, a record set karch accepts yields exactly the records, byte for byte, that
// both of them read from it (nil and empty apart, timestamps to the millisecond), and a
// record set karch cannot read in full is refused, never read in part. With reseal set, the
// CRC of each whole batch is made right first, so that mutations reach the records behind
// it. The seed corpus is the edge-case records in every codec, control batches, an emptied
// batch and a v1 message set; go test runs it, `go test -fuzz FuzzDecodeRecordSet ./shard`
// explores from it.
func FuzzDecodeRecordSet(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	f.Fuzz(func(t *testing.T, raw []byte, reseal bool) {
		if reseal {
			raw = resealAll(raw)
		}
		batches, err := decodeRecordSet(raw)
		if err != nil {
			if !errors.Is(err, ErrCorruptBatch) {
				t.Fatalf("an error that is not ErrCorruptBatch: %v", err)
			}
			return
		}
		var ours []archive.Record
		for _, b := range batches {
			if !b.control {
				ours = append(ours, b.records...)
			}
		}
		// kafka-go is given only the whole batches: it panics on a batch whose length field
		// is negative (seed 47265b457c2f1cd0), which karch's decoder refuses.
		if theirs, err := readWithKafkaGo(raw[:wholeBatches(raw)], batches); err != nil {
			t.Fatalf("karch read %d records; kafka-go: %v", len(ours), err)
		} else if diff := recordsDiffer(ours, theirs, anyTime); diff != "" {
			t.Fatalf("karch and kafka-go: %s", diff)
		}
		if theirs, err := readWithFranz(raw); err != nil {
			t.Fatalf("karch read %d records; franz-go: %v", len(ours), err)
		} else if diff := recordsDiffer(ours, theirs, nanosRange); diff != "" {
			t.Fatalf("karch and franz-go: %s", diff)
		}
	})
}

func fuzzSeeds() [][]byte {
	var seeds [][]byte
	for _, codec := range []compress.Compression{compress.None, compress.Gzip, compress.Snappy, compress.Lz4, compress.Zstd} {
		seeds = append(seeds, encodeBatch(batchSpec{base: 100, attrs: uint16(codec), producerID: -1}, edgeRecords(100)...))
	}
	txn := slices.Concat(
		encodeBatch(batchSpec{base: 0, attrs: attrTransactional, producerID: 7},
			archive.Record{Offset: 0, Timestamp: time.UnixMilli(1), Value: []byte("in a transaction")}),
		encodeBatch(batchSpec{base: 1, attrs: attrTransactional | attrControl, producerID: 7},
			archive.Record{Offset: 1, Key: []byte{0, 0, 0, 1}, Value: []byte{0, 0, 0, 0, 0, 0}}),
		encodeBatch(batchSpec{base: 2, attrs: attrTransactional | attrControl, producerID: 7}),
	)
	appended := encodeBatch(batchSpec{base: 3, attrs: attrLogAppendTime | uint16(compress.Lz4), producerID: -1}, edgeRecords(3)...)
	seeds = append(seeds, txn, appended, slices.Concat(txn, appended[:len(appended)/2]))
	rs := protocol.RecordSet{Version: 1, Records: protocol.NewRecordReader(
		protocol.Record{Offset: 0, Time: time.UnixMilli(5), Key: protocol.NewBytes([]byte("k")), Value: protocol.NewBytes([]byte("v"))})}
	var buf bytes.Buffer
	if _, err := rs.WriteTo(&buf); err != nil {
		panic(err)
	}
	return append(seeds, buf.Bytes()[4:])
}

// wholeBatches is the length of the whole batches at the front of a record set, as
// decodeRecordSet walks them.
func wholeBatches(raw []byte) int {
	at := 0
	for b := raw; len(b) > batchMagicAt; {
		size := 12 + int64(int32(binary.BigEndian.Uint32(b[batchLengthAt:])))
		if size <= batchMagicAt || size > int64(len(b)) {
			break
		}
		at += int(size)
		b = b[size:]
	}
	return at
}

// resealAll sets the CRC of every whole v2 batch of a record set to the one its bytes have.
func resealAll(raw []byte) []byte {
	raw = slices.Clone(raw)
	for b := raw; len(b) >= batchHeaderSize; {
		size := 12 + int64(int32(binary.BigEndian.Uint32(b[batchLengthAt:])))
		if size < batchHeaderSize || size > int64(len(b)) {
			break
		}
		if b[batchMagicAt] == 2 {
			binary.BigEndian.PutUint32(b[batchCRCAt:], crc32.Checksum(b[batchAttributesAt:size], castagnoli))
		}
		b = b[size:]
	}
	return raw
}

// readWithKafkaGo reads the data records of a record set with kafka-go's decoder, and
// stamps those of LogAppendTime batches as Kafka's consumers do (kafka-go drops the batch's
// max timestamp; karch's reading of the batch headers supplies it).
func readWithKafkaGo(raw []byte, batches []fetchedBatch) ([]archive.Record, error) {
	var rs protocol.RecordSet
	framed := append(binary.BigEndian.AppendUint32(nil, uint32(len(raw))), raw...)
	if _, err := rs.ReadFrom(bytes.NewBuffer(framed)); err != nil {
		if len(batches) == 0 {
			return nil, nil // nothing whole to read: kafka-go says so as an error
		}
		return nil, err
	}
	readers := []protocol.RecordReader{rs.Records}
	if stream, ok := rs.Records.(*protocol.RecordStream); ok {
		readers = stream.Records
	}
	if rs.Records == nil {
		readers = nil
	}
	appended := map[int64]int64{}
	for _, b := range batches {
		if b.logAppendTime {
			appended[b.base] = b.maxTimestamp
		}
	}
	var recs []archive.Record
	for _, rr := range readers {
		var base int64
		switch b := rr.(type) {
		case *protocol.ControlBatch:
			continue
		case *protocol.RecordBatch:
			base = b.BaseOffset
		default:
			base = math.MinInt64
		}
		ts, logAppend := appended[base]
		for {
			r, err := rr.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, err
			}
			rec, err := convert(r)
			if err != nil {
				return nil, err
			}
			if logAppend {
				rec.Timestamp, rec.LogAppendTime = time.UnixMilli(ts).UTC(), true
			}
			recs = append(recs, rec)
		}
	}
	return recs, nil
}

// readWithFranz reads the data records of a record set as franz-go's consumer does,
// uncommitted ones included.
func readWithFranz(raw []byte) ([]archive.Record, error) {
	fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Offset: math.MinInt64, Topic: "t"},
		&kmsg.FetchResponseTopicPartition{HighWatermark: math.MaxInt64, LastStableOffset: math.MaxInt64, RecordBatches: raw},
		kgo.DefaultDecompressor(), nil)
	if fp.Err != nil {
		return nil, fp.Err
	}
	recs := make([]archive.Record, len(fp.Records))
	for i, r := range fp.Records {
		recs[i] = archive.Record{Offset: r.Offset, Timestamp: r.Timestamp.UTC(), LogAppendTime: r.Attrs.TimestampType() == 1, Key: r.Key, Value: r.Value}
		for _, h := range r.Headers {
			recs[i].Headers = append(recs[i].Headers, archive.Header{Key: h.Key, Value: h.Value})
		}
	}
	return recs, nil
}

// anyTime and nanosRange say which timestamps a reader keeps exactly: franz-go goes through
// nanoseconds (time.Unix(0, ms*1e6)), and so wraps past the years 1678 to 2262.
func anyTime(int64) bool { return true }

func nanosRange(ms int64) bool {
	return ms > math.MinInt64/int64(time.Millisecond) && ms < math.MaxInt64/int64(time.Millisecond)
}

// recordsDiffer says how two readings of the same records differ, or "" if they do not;
// timestamps are compared where exact says the other reader keeps them.
func recordsDiffer(ours, theirs []archive.Record, exact func(ms int64) bool) string {
	if len(ours) != len(theirs) {
		return fmt.Sprintf("%d records against %d", len(ours), len(theirs))
	}
	for i := range ours {
		a, b := &ours[i], &theirs[i]
		switch {
		case a.Offset != b.Offset:
			return fmt.Sprintf("record %d: offset %d against %d", i, a.Offset, b.Offset)
		case exact(a.Timestamp.UnixMilli()) && a.Timestamp.UnixMilli() != b.Timestamp.UnixMilli() || a.LogAppendTime != b.LogAppendTime:
			return fmt.Sprintf("offset %d: timestamp %d (log append %v) against %d (%v)", a.Offset,
				a.Timestamp.UnixMilli(), a.LogAppendTime, b.Timestamp.UnixMilli(), b.LogAppendTime)
		case !sameBytes(a.Key, b.Key) || !sameBytes(a.Value, b.Value):
			return fmt.Sprintf("offset %d: key %q value %q against key %q value %q", a.Offset, a.Key, a.Value, b.Key, b.Value)
		case len(a.Headers) != len(b.Headers):
			return fmt.Sprintf("offset %d: %d headers against %d", a.Offset, len(a.Headers), len(b.Headers))
		}
		for j := range a.Headers {
			if a.Headers[j].Key != b.Headers[j].Key || !sameBytes(a.Headers[j].Value, b.Headers[j].Value) {
				return fmt.Sprintf("offset %d: header %d %q=%q against %q=%q", a.Offset, j, a.Headers[j].Key, a.Headers[j].Value, b.Headers[j].Key, b.Headers[j].Value)
			}
		}
	}
	return ""
}

// sameBytes is bytes.Equal that tells a Kafka null from an empty string.
func sameBytes(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }
