package shard

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/internal/testenv"
)

// A batch that a broker sends whole but that cannot be read in full (a record cut short
// inside it, a bad CRC) is a corrupt log or a broken broker, never a gap: the shard reads
// every record of the range or fails for good, naming the batch. kafka-go alone ends such a
// batch at the record it cannot parse and returns the ones before it without an error, and
// drops every batch from a bad CRC on when an earlier batch of the response decoded.
func TestReadRangeCorruptBatch(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 1)
	for b := range 3 { // three batches of ten: offsets 0-9, 10-19, 20-29
		var msgs []kafka.Message
		for i := range 10 {
			msgs = append(msgs, kafka.Message{Value: fmt.Appendf(nil, "record %d", b*10+i)})
		}
		testenv.Produce(t, addr, topic, msgs)
	}
	for _, tc := range []struct {
		name  string
		base  int64 // the batch the fault rewrites; -1: none
		fault func([]byte) []byte
		max   int // fetch size: small ones end responses inside a batch, as brokers do
	}{
		{"no fault, small fetches", -1, nil, 300},
		{"a record cut short inside the first batch", 0, cutAfter(4), 2 << 20},
		{"a record cut short inside the last batch", 20, cutAfter(6), 2 << 20},
		{"a bad CRC in the middle batch", 10, flipLastByte, 2 << 20},
		{"a bad CRC in the first batch", 0, flipLastByte, 2 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var injected atomic.Int64
			opts := DefaultKafkaOptions()
			opts.FetchMaxBytes, opts.RequestTimeout = tc.max, 10*time.Second
			opts.dial = faultDialer(tc.base, tc.fault, &injected)
			r := NewKafkaReader([]string{addr}, opts)
			defer r.Close()
			var got []int64
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err := r.ReadRange(ctx, topic, 0, 0, 30, func(rec *archive.Record) error {
				if want := fmt.Sprintf("record %d", rec.Offset); string(rec.Value) != want {
					return fmt.Errorf("offset %d holds %q, want %q", rec.Offset, rec.Value, want)
				}
				got = append(got, rec.Offset)
				return nil
			})
			if tc.fault != nil && injected.Load() == 0 {
				t.Fatal("the fault was never injected")
			}
			switch {
			case err == nil && len(got) == 30:
				if tc.fault != nil {
					t.Fatalf("read all 30 records through a corrupt batch at %d", tc.base)
				}
			case err == nil:
				t.Fatalf("read %d of 30 offsets without an error, silently losing the rest: %v", len(got), got)
			case tc.fault == nil:
				t.Fatalf("no fault: %v", err)
			case !failure.IsPermanent(err) || !strings.Contains(err.Error(), fmt.Sprintf("%s/0", topic)) ||
				!strings.Contains(err.Error(), fmt.Sprintf("batch at offset %d", tc.base)):
				t.Fatalf("corrupt batch at %d: %v (permanent: %v); want a permanent error naming %s/0 and the batch at offset %d",
					tc.base, err, failure.IsPermanent(err), topic, tc.base)
			default:
				t.Logf("%v", err)
			}
		})
	}
}

// cutAfter keeps the first keep records of a batch and three bytes of the next, and mends
// the batch's length and CRC: a whole batch, as the broker sent it, that lies about its
// records. The batch header keeps its record count.
func cutAfter(keep int) func([]byte) []byte {
	return func(b []byte) []byte {
		pos := batchHeaderSize
		for range keep {
			n, size := binary.Varint(b[pos:])
			pos += size + int(n)
		}
		b = append([]byte(nil), b[:pos+3]...)
		binary.BigEndian.PutUint32(b[batchLengthAt:], uint32(len(b)-12))
		return seal(b)
	}
}

// flipLastByte corrupts a batch's last byte and leaves its CRC as it was.
func flipLastByte(b []byte) []byte {
	b = append([]byte(nil), b...)
	b[len(b)-1] ^= 0xff
	return b
}

// faultDialer dials the broker and rewrites, in every Fetch response, the batch at base.
func faultDialer(base int64, fault func([]byte) []byte, injected *atomic.Int64) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, address)
		if err != nil || fault == nil {
			return c, err
		}
		return &faultConn{Conn: c, fetches: map[int32]bool{}, rewrite: func(records []byte) []byte {
			return rewriteBatch(records, base, fault, injected)
		}}, nil
	}
}

// faultConn notes the correlation id of every Fetch request it carries and rewrites the
// record set of the responses to them.
type faultConn struct {
	net.Conn
	rewrite func(records []byte) []byte
	mu      sync.Mutex
	written []byte
	fetches map[int32]bool
	pending []byte // the rewritten response not yet read
}

func (c *faultConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.written = append(c.written, p...)
	for len(c.written) >= 12 && len(c.written) >= 4+int(binary.BigEndian.Uint32(c.written)) {
		key, version := binary.BigEndian.Uint16(c.written[4:]), binary.BigEndian.Uint16(c.written[6:])
		c.fetches[int32(binary.BigEndian.Uint32(c.written[8:]))] = key == 1 && version == 11
		c.written = c.written[4+int(binary.BigEndian.Uint32(c.written)):]
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *faultConn) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		var size [4]byte
		if _, err := io.ReadFull(c.Conn, size[:]); err != nil {
			return 0, err
		}
		body := make([]byte, binary.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(c.Conn, body); err != nil {
			return 0, err
		}
		c.mu.Lock()
		fetch := c.fetches[int32(binary.BigEndian.Uint32(body))]
		c.mu.Unlock()
		if fetch {
			body = rewriteFetchV11(body, c.rewrite)
		}
		c.pending = append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// rewriteFetchV11 replaces the record set of a Fetch v11 response body (correlation id
// first) of one topic and one partition.
func rewriteFetchV11(body []byte, rewrite func([]byte) []byte) []byte {
	at := 14 // correlation id, throttle time, error code, session id
	if binary.BigEndian.Uint32(body[at:]) != 1 {
		return body
	}
	at += 4 + 2 + int(binary.BigEndian.Uint16(body[at+4:])) // topic count, name
	if binary.BigEndian.Uint32(body[at:]) != 1 {
		return body
	}
	at += 4 + 30 // partition count; partition, error, high watermark, last stable, log start
	if n := int32(binary.BigEndian.Uint32(body[at:])); n > 0 {
		at += 16 * int(n)
	}
	at += 4 + 4 // aborted transaction count, preferred read replica
	size := int(binary.BigEndian.Uint32(body[at:]))
	records := rewrite(body[at+4 : at+4+size])
	out := binary.BigEndian.AppendUint32(append([]byte(nil), body[:at]...), uint32(len(records)))
	return append(append(out, records...), body[at+4+size:]...)
}

// rewriteBatch applies fault to the whole batch at base in a record set.
func rewriteBatch(records []byte, base int64, fault func([]byte) []byte, injected *atomic.Int64) []byte {
	var out []byte
	for b := records; len(b) > 0; {
		size := 12 + int(binary.BigEndian.Uint32(b[batchLengthAt:]))
		if len(b) < batchHeaderSize || size > len(b) {
			return append(out, b...)
		}
		batch := b[:size]
		if int64(binary.BigEndian.Uint64(batch)) == base && binary.BigEndian.Uint16(batch[batchAttributesAt:])&7 == 0 {
			batch = fault(batch)
			injected.Add(1)
		}
		out, b = append(out, batch...), b[size:]
	}
	return out
}
