package shard

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/protocol"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/failure"
)

// batchSpec is the header of a batch encodeBatch writes; the offsets and timestamps come
// from its records.
type batchSpec struct {
	base       int64
	attrs      uint16 // the codec included
	producerID int64
}

// encodeBatch writes a v2 record batch as Kafka's DefaultRecordBatch lays it out, with the
// records at their own offsets (kafka-go's encoder can only number them 0, 1, ...). A batch
// without records is a header alone, as the log cleaner leaves an emptied one.
func encodeBatch(spec batchSpec, recs ...archive.Record) []byte {
	var body []byte
	var first, maxTS int64
	lastDelta := int32(0)
	for i, r := range recs {
		ts := r.Timestamp.UnixMilli()
		if i == 0 {
			first = ts
		}
		maxTS = max(maxTS, ts)
		lastDelta = int32(r.Offset - spec.base)
		body = appendRecord(body, r.Offset-spec.base, ts-first, r)
	}
	if codec := compress.Compression(spec.attrs & attrCompression).Codec(); codec != nil {
		var z bytes.Buffer
		w := codec.NewWriter(&z)
		if _, err := w.Write(body); err != nil {
			panic(err)
		}
		if err := w.Close(); err != nil {
			panic(err)
		}
		body = z.Bytes()
	}
	b := binary.BigEndian.AppendUint64(nil, uint64(spec.base))
	b = binary.BigEndian.AppendUint32(b, 0) // the length, set below
	b = binary.BigEndian.AppendUint32(b, 0) // partition leader epoch
	b = append(b, 2)                        // magic
	b = binary.BigEndian.AppendUint32(b, 0) // the CRC, set by seal
	b = binary.BigEndian.AppendUint16(b, spec.attrs)
	b = binary.BigEndian.AppendUint32(b, uint32(lastDelta))
	b = binary.BigEndian.AppendUint64(b, uint64(first))
	b = binary.BigEndian.AppendUint64(b, uint64(maxTS))
	b = binary.BigEndian.AppendUint64(b, uint64(spec.producerID))
	b = binary.BigEndian.AppendUint16(b, 0)          // producer epoch
	b = binary.BigEndian.AppendUint32(b, ^uint32(0)) // base sequence
	b = binary.BigEndian.AppendUint32(b, uint32(len(recs)))
	b = append(b, body...)
	binary.BigEndian.PutUint32(b[batchLengthAt:], uint32(len(b)-12))
	return seal(b)
}

// with32 and with16 set a header field of batch b and seal its CRC again, as a broker that
// wrote the field wrong would have.
func with32(b []byte, at int, v uint32) []byte {
	binary.BigEndian.PutUint32(b[at:], v)
	return seal(b)
}

func with16(b []byte, at int, v uint16) []byte {
	binary.BigEndian.PutUint16(b[at:], v)
	return seal(b)
}

func appendRecord(b []byte, offDelta, tsDelta int64, r archive.Record) []byte {
	rec := append([]byte{}, 0) // attributes
	rec = binary.AppendVarint(rec, tsDelta)
	rec = binary.AppendVarint(rec, offDelta)
	rec = appendNullable(rec, r.Key)
	rec = appendNullable(rec, r.Value)
	rec = binary.AppendVarint(rec, int64(len(r.Headers)))
	for _, h := range r.Headers {
		rec = appendNullable(rec, []byte(h.Key))
		rec = appendNullable(rec, h.Value)
	}
	return append(binary.AppendVarint(b, int64(len(rec))), rec...)
}

func appendNullable(b, v []byte) []byte {
	if v == nil {
		return binary.AppendVarint(b, -1)
	}
	return append(binary.AppendVarint(b, int64(len(v))), v...)
}

// edgeRecords are the records the archive must keep byte for byte: null and empty keys and
// values, binary bytes, headers with null and empty values, and timestamps at the ends of
// the range Kafka allows.
func edgeRecords(base int64) []archive.Record {
	return []archive.Record{
		{Offset: base, Timestamp: time.UnixMilli(-1), Key: nil, Value: nil},
		{Offset: base + 1, Timestamp: time.UnixMilli(0), Key: []byte{}, Value: []byte{}},
		{Offset: base + 3, Timestamp: time.UnixMilli(math.MaxInt64 / 2), Key: []byte{0, 0xff, '\n', '"'}, Value: []byte("\xc3\x28 not utf-8"),
			Headers: []archive.Header{{Key: "n", Value: nil}, {Key: "", Value: []byte{}}, {Key: "b", Value: []byte{0, 1, 2}}}},
		{Offset: base + 4, Timestamp: time.UnixMilli(1795399201123), Key: []byte("k"), Value: bytes.Repeat([]byte(`{"cell":"x"}`), 300),
			Headers: []archive.Header{{Key: "n", Value: []byte("same key as before")}}},
	}
}

// Every codec Kafka defines, and the records that must stay byte-exact: what the decoder
// reads is what was written, nil and empty apart, the record's Key and Value slices as
// long as their bytes.
func TestDecodeRecordSetEdgeRecords(t *testing.T) {
	for _, codec := range []compress.Compression{compress.None, compress.Gzip, compress.Snappy, compress.Lz4, compress.Zstd} {
		t.Run(codec.String(), func(t *testing.T) {
			want := edgeRecords(100)
			bs, err := decodeRecordSet(encodeBatch(batchSpec{base: 100, attrs: uint16(codec)}, want...))
			if err != nil {
				t.Fatal(err)
			}
			if len(bs) != 1 || bs[0].nextOffset() != 105 || bs[0].count != 4 {
				t.Fatalf("decoded %d batches %+v, want one of 4 records ending at 104", len(bs), bs)
			}
			for i := range want {
				want[i].Timestamp = want[i].Timestamp.UTC()
			}
			if got := bs[0].records; !reflect.DeepEqual(got, want) {
				t.Errorf("records:\n got %#v\nwant %#v", got, want)
			}
		})
	}
}

// A batch that a broker sent whole but that does not hold what its header says is corrupt,
// permanently, and the error names the batch and why: each of these would otherwise lose
// or invent records.
func TestDecodeRecordSetRefusesCorruptBatches(t *testing.T) {
	good := func() []byte { return encodeBatch(batchSpec{base: 10}, edgeRecords(10)...) }
	for _, tc := range []struct {
		name  string
		batch func() []byte
		why   string
	}{
		{"bad CRC", func() []byte { b := good(); b[len(b)-1] ^= 1; return b }, "CRC-32C"},
		{"more records announced", func() []byte { return with32(good(), batchRecordsAt, 5) }, "record, 5 of 5"},
		{"fewer records announced", func() []byte { return with32(good(), batchRecordsAt, 3) }, "bytes after its 3 records"},
		{"a record past the last offset", func() []byte { return with32(good(), batchLastDeltaAt, 2) }, "before the batch's end, 13"},
		{"offsets out of order", func() []byte {
			recs := edgeRecords(10)
			recs[1].Offset, recs[2].Offset = recs[2].Offset, recs[1].Offset
			return encodeBatch(batchSpec{base: 10}, recs...)
		}, "not after 13"},
		{"an unknown codec", func() []byte { return with16(good(), batchAttributesAt, 6) }, "codec 6"},
		{"compressed bytes that are not", func() []byte { return with16(good(), batchAttributesAt, uint16(compress.Zstd)) }, "does not decompress"},
		{"a count that claims gigabytes", func() []byte { return with32(good(), batchRecordsAt, math.MaxInt32) }, "announces 2147483647 records"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := slices.Concat(encodeBatch(batchSpec{base: 0}, archive.Record{Offset: 0, Value: []byte("v")}), tc.batch())
			bs, err := decodeRecordSet(set)
			if !errors.Is(err, ErrCorruptBatch) || !failure.IsPermanent(err) || !strings.Contains(err.Error(), "at offset 10") ||
				!strings.Contains(err.Error(), tc.why) {
				t.Fatalf("decoded %d batches, err %v; want a permanent ErrCorruptBatch naming the batch at offset 10 and %q", len(bs), err, tc.why)
			}
		})
	}
}

// A message set of format v0/v1, as brokers still serve old segments, read through kafka-go.
func TestDecodeRecordSetLegacyMessages(t *testing.T) {
	for _, version := range []int8{0, 1} {
		rs := protocol.RecordSet{Version: version, Records: protocol.NewRecordReader(
			protocol.Record{Offset: 0, Time: time.UnixMilli(5), Key: protocol.NewBytes([]byte("k")), Value: protocol.NewBytes([]byte("v"))},
			protocol.Record{Offset: 1, Time: time.UnixMilli(6), Value: protocol.NewBytes([]byte{})},
		)}
		var buf bytes.Buffer
		if _, err := rs.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		set := slices.Concat(buf.Bytes()[4:], encodeBatch(batchSpec{base: 2}, archive.Record{Offset: 2, Value: []byte("v2")}))
		bs, err := decodeRecordSet(set)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, b := range bs {
			for _, r := range b.records {
				got = append(got, string(r.Key)+"="+string(r.Value))
			}
		}
		if want := []string{"k=v", "=", "=v2"}; !slices.Equal(got, want) || bs[0].v2 || !bs[len(bs)-1].v2 {
			t.Errorf("v%d: got %q in %d batches, want %q", version, got, len(bs), want)
		}
	}
}
