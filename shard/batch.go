package shard

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"time"

	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/protocol"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/failure"
)

// ErrCorruptBatch is wrapped by every error about a record batch that a broker sent whole
// but that cannot be read in full. It is permanent: the log (or the broker) is damaged, and
// reading on would skip its records.
var ErrCorruptBatch = errors.New("shard: corrupt record batch")

// fetchedBatch is one batch of a fetch response with its records decoded. A v2 batch
// (Kafka's DefaultRecordBatch) is decoded here, straight from the response's bytes: its key,
// value and header values are slices of the batch's decompressed bytes, which nothing else
// holds, so a record is the caller's to keep without a copy. kafka-go's decoder copied each
// of them, allocated every record twice and dropped the header fields a reader of exact
// ranges needs (the last offset delta, the max timestamp). A message set of format v0/v1 is
// left to kafka-go: it cannot be transactional, and has no such fields.
type fetchedBatch struct {
	batchHeader
	v2            bool
	control       bool
	transactional bool
	producerID    int64
	// marker is the control record's type (controlAbort or commit), or -1 when the log
	// cleaner emptied the control batch.
	marker  int16
	records []archive.Record
}

// batchHeader holds the fields of a v2 record batch header that a reader of exact ranges
// needs besides its records.
type batchHeader struct {
	base            int64
	lastOffsetDelta int32 // kept by compaction when it removes the batch's last records
	maxTimestamp    int64 // the log append time, for a LogAppendTime batch
	logAppendTime   bool
	count           int32 // the records the header announces
}

// nextOffset is the offset after the batch's last one.
func (h *batchHeader) nextOffset() int64 { return h.base + int64(h.lastOffsetDelta) + 1 }

// Where a v2 record batch keeps its fields (Kafka's DefaultRecordBatch).
const (
	batchLengthAt         = 8 // int32: the bytes after this field
	batchMagicAt          = 16
	batchCRCAt            = 17 // uint32: CRC-32C of the bytes from the attributes on
	batchAttributesAt     = 21
	batchLastDeltaAt      = 23
	batchFirstTimestampAt = 27
	batchMaxTimestampAt   = 35
	batchProducerIDAt     = 43
	batchRecordsAt        = 57
	batchHeaderSize       = 61
)

// Batch attribute bits.
const (
	attrCompression   = 0x07
	attrLogAppendTime = 0x08 // timestamp type: 0 create time, 1 log append time
	attrTransactional = 0x10
	attrControl       = 0x20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// decodeRecordSet decodes every whole batch of a partition's record set. A batch cut short
// by the fetch size ends it (a broker returns whole batches up to the size, then part of the
// next). A whole batch that cannot be read in full is a permanent ErrCorruptBatch naming it:
// reading on after it would skip its records.
func decodeRecordSet(raw []byte) ([]fetchedBatch, error) {
	var batches []fetchedBatch
	var d recordDecoder
	for b := raw; len(b) > batchMagicAt; {
		size := 12 + int64(int32(binary.BigEndian.Uint32(b[batchLengthAt:])))
		base := int64(binary.BigEndian.Uint64(b))
		if size <= batchMagicAt {
			// Not a batch cut short but a length no batch has, and what follows it cannot
			// be found. kafka-go's decoder panics on a negative one (FuzzDecodeRecordSet,
			// seed 47265b457c2f1cd0).
			return nil, failure.Permanent(fmt.Errorf("%w: the batch at offset %d announces %d bytes", ErrCorruptBatch, base, size-12))
		}
		if size > int64(len(b)) {
			break
		}
		var (
			fb  fetchedBatch
			err error
		)
		switch magic := b[batchMagicAt]; magic {
		case 2:
			fb, err = d.batch(b[:size])
		case 0, 1:
			fb, err = legacyBatch(b[:size])
		default:
			err = fmt.Errorf("has magic %d; Kafka writes 0, 1 and 2", magic)
		}
		if err != nil {
			return nil, failure.Permanent(fmt.Errorf("%w: the batch at offset %d %w", ErrCorruptBatch, base, err))
		}
		batches = append(batches, fb)
		b = b[size:]
	}
	return batches, nil
}

// recordDecoder decodes v2 batches, keeping the header keys of the last record so that
// records with the same header names (the usual case) share their strings.
type recordDecoder struct {
	keys []string
}

// batch decodes one whole v2 batch, b.
func (d *recordDecoder) batch(b []byte) (fetchedBatch, error) {
	if len(b) < batchHeaderSize {
		return fetchedBatch{}, fmt.Errorf("is %d bytes, shorter than a batch header", len(b))
	}
	if computed, stored := crc32.Checksum(b[batchAttributesAt:], castagnoli), binary.BigEndian.Uint32(b[batchCRCAt:]); computed != stored {
		return fetchedBatch{}, fmt.Errorf("fails its CRC-32C check (computed %08x, stored %08x)", computed, stored)
	}
	attrs := binary.BigEndian.Uint16(b[batchAttributesAt:])
	fb := fetchedBatch{
		batchHeader: batchHeader{
			base:            int64(binary.BigEndian.Uint64(b)),
			lastOffsetDelta: int32(binary.BigEndian.Uint32(b[batchLastDeltaAt:])),
			maxTimestamp:    int64(binary.BigEndian.Uint64(b[batchMaxTimestampAt:])),
			logAppendTime:   attrs&attrLogAppendTime != 0,
			count:           int32(binary.BigEndian.Uint32(b[batchRecordsAt:])),
		},
		v2:            true,
		control:       attrs&attrControl != 0,
		transactional: attrs&attrTransactional != 0,
		producerID:    int64(binary.BigEndian.Uint64(b[batchProducerIDAt:])),
		marker:        -1,
	}
	if fb.count < 0 || fb.lastOffsetDelta < 0 {
		return fetchedBatch{}, fmt.Errorf("announces %d records, the last at delta %d", fb.count, fb.lastOffsetDelta)
	}
	data, err := decompress(attrs&attrCompression, b[batchHeaderSize:])
	if err != nil {
		return fetchedBatch{}, err
	}
	firstTimestamp := int64(binary.BigEndian.Uint64(b[batchFirstTimestampAt:]))
	if fb.records, err = d.records(&fb, firstTimestamp, data); err != nil {
		return fetchedBatch{}, err
	}
	if fb.control && len(fb.records) > 0 {
		key := fb.records[0].Key
		if len(key) < 4 {
			return fetchedBatch{}, fmt.Errorf("holds a control record whose key is %d bytes, not 4", len(key))
		}
		fb.marker = int16(binary.BigEndian.Uint16(key[2:]))
		fb.records = nil
	}
	return fb, nil
}

// decompress returns a batch's records section uncompressed: src itself when the batch is
// not compressed, else a buffer of its own.
func decompress(codec uint16, src []byte) ([]byte, error) {
	if codec == 0 {
		return src, nil
	}
	c := compress.Compression(codec).Codec()
	if c == nil {
		return nil, fmt.Errorf("names compression codec %d, which Kafka does not define", codec)
	}
	r := c.NewReader(bytes.NewReader(src))
	defer r.Close()
	// Kafka's records compress by 2 to 5 times: sized for the usual case, the buffer grows
	// at most once or twice.
	buf := bytes.NewBuffer(make([]byte, 0, 4*len(src)+bytes.MinRead))
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, fmt.Errorf("does not decompress (%s): %w", c.Name(), err)
	}
	return buf.Bytes(), nil
}

// records decodes the records section of a batch: exactly the records its header announces,
// in increasing offset order within the batch's offsets, and no byte more, as Kafka's own
// reader requires.
func (d *recordDecoder) records(fb *fetchedBatch, firstTimestamp int64, data []byte) ([]archive.Record, error) {
	// Each record takes at least 7 bytes: a count beyond that is a lie, and allocating for
	// it would let one bad header claim gigabytes.
	if int64(fb.count) > int64(len(data))/7+1 {
		return nil, fmt.Errorf("announces %d records in %d bytes", fb.count, len(data))
	}
	recs := make([]archive.Record, fb.count)
	prev := fb.base - 1
	for i := range recs {
		n, err := d.record(&recs[i], fb, firstTimestamp, data)
		if err != nil {
			return nil, fmt.Errorf("has a bad record, %d of %d: it %w", i+1, fb.count, err)
		}
		if off := recs[i].Offset; off <= prev || off >= fb.nextOffset() {
			return nil, fmt.Errorf("has record %d of %d at offset %d, which is not after %d and before the batch's end, %d", i+1, fb.count, off, prev, fb.nextOffset())
		}
		prev = recs[i].Offset
		data = data[n:]
	}
	if len(data) > 0 {
		return nil, fmt.Errorf("holds %d bytes after its %d records", len(data), fb.count)
	}
	return recs, nil
}

// errShortRecord reports a record that runs past the end of its batch.
var errShortRecord = errors.New("runs past the batch's end")

// record decodes one record from the front of data into r and returns its length. The
// lengths, the offset delta and the header count are 32-bit varints, the timestamp delta a
// 64-bit one, as Kafka writes them.
func (d *recordDecoder) record(r *archive.Record, fb *fetchedBatch, firstTimestamp int64, data []byte) (int, error) {
	length, b := varint32(data)
	if b == nil || length < 1 || int(length) > len(b) {
		return 0, errShortRecord
	}
	size := len(data) - len(b) + int(length)
	b = b[1:length] // past the record's attributes: unused
	var tsDelta, offDelta, headers int64
	if tsDelta, b = varint(b); b == nil {
		return 0, errShortRecord
	}
	if offDelta, b = varint32(b); b == nil {
		return 0, errShortRecord
	}
	if r.Key, b = nullable(b); b == nil {
		return 0, errShortRecord
	}
	if r.Value, b = nullable(b); b == nil {
		return 0, errShortRecord
	}
	if headers, b = varint32(b); b == nil || headers < 0 || headers > int64(len(b))/2 {
		return 0, fmt.Errorf("announces %d headers in %d bytes", headers, len(b))
	}
	if headers > 0 {
		r.Headers = make([]archive.Header, headers)
		for i := range r.Headers {
			var key []byte
			if key, b = nullable(b); b == nil {
				return 0, errShortRecord
			}
			if r.Headers[i].Value, b = nullable(b); b == nil {
				return 0, errShortRecord
			}
			r.Headers[i].Key = d.key(i, key)
		}
	}
	if len(b) > 0 {
		return 0, fmt.Errorf("holds %d bytes past its fields", len(b))
	}
	r.Offset = fb.base + offDelta
	r.Timestamp = time.UnixMilli(firstTimestamp + tsDelta).UTC()
	if fb.logAppendTime {
		// Kafka's consumers report the broker's append time, the batch's max timestamp,
		// for every record of the batch; the records keep the producer's create time.
		r.Timestamp, r.LogAppendTime = time.UnixMilli(fb.maxTimestamp).UTC(), true
	}
	return size, nil
}

// key returns the header key b, at index i of its record, as the string the last record
// with a header at i had when they are equal.
func (d *recordDecoder) key(i int, b []byte) string {
	if i < len(d.keys) && d.keys[i] == string(b) {
		return d.keys[i]
	}
	s := string(b)
	if i < len(d.keys) {
		d.keys[i] = s
	} else if i == len(d.keys) && i < 16 {
		d.keys = append(d.keys, s)
	}
	return s
}

// varint reads a zig-zag varint from the front of b; the rest is nil when b holds none.
func varint(b []byte) (int64, []byte) {
	v, n := binary.Varint(b)
	if n <= 0 {
		return 0, nil
	}
	return v, b[n:]
}

// varint32 is varint for a value that must fit 32 bits.
func varint32(b []byte) (int64, []byte) {
	v, rest := varint(b)
	if v < math.MinInt32 || v > math.MaxInt32 {
		return 0, nil
	}
	return v, rest
}

// nullable reads a varint-length byte string from the front of b: nil for the length -1 (a
// Kafka null), a non-nil slice, possibly empty, otherwise. The rest is nil when b is short.
func nullable(b []byte) ([]byte, []byte) {
	n, rest := varint32(b)
	switch {
	case rest == nil || n < -1 || n > int64(len(rest)):
		return nil, nil
	case n == -1:
		return nil, rest
	}
	return rest[:n:n], rest[n:]
}

// legacyBatch decodes a message set entry of format v0/v1 with kafka-go.
func legacyBatch(b []byte) (fetchedBatch, error) {
	var rs protocol.RecordSet
	framed := append(binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)), uint32(len(b))), b...)
	if _, err := rs.ReadFrom(bytes.NewBuffer(framed)); err != nil {
		return fetchedBatch{}, fmt.Errorf("does not decode: %w", err)
	}
	fb := fetchedBatch{marker: -1}
	for rs.Records != nil {
		r, err := rs.Records.ReadRecord()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fetchedBatch{}, fmt.Errorf("does not decode: %w", err)
		}
		rec, err := convert(r)
		if err != nil {
			return fetchedBatch{}, err
		}
		fb.records = append(fb.records, rec)
	}
	if len(fb.records) == 0 {
		// A v0/v1 entry holds a message, or a compressed wrapper of messages: none at all
		// is a message kafka-go could not read.
		return fetchedBatch{}, errors.New("yields no record")
	}
	return fb, nil
}

// convert copies a kafka-go record out of kafka-go's buffers, which it reuses.
func convert(r *protocol.Record) (archive.Record, error) {
	defer release(r)
	key, err := protocol.ReadAll(r.Key)
	if err != nil {
		return archive.Record{}, fmt.Errorf("read key at offset %d: %w", r.Offset, err)
	}
	value, err := protocol.ReadAll(r.Value)
	if err != nil {
		return archive.Record{}, fmt.Errorf("read value at offset %d: %w", r.Offset, err)
	}
	rec := archive.Record{Offset: r.Offset, Timestamp: r.Time.UTC(), Key: key, Value: value}
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
