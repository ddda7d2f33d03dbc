package shard

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/failure"
)

// corruptThirdRecord makes the value of the third record of a batch of five claim more
// bytes than the batch has, as a bad disk or a broken broker could leave it, and seals the batch's CRC again
// when sealed is set.
func corruptThirdRecord(t *testing.T, sealed bool) []byte {
	t.Helper()
	b := wireBatch(t, 10, 0, 4, 5, valueAt(1), valueAt(2), valueAt(3), valueAt(4), valueAt(5))
	at := batchHeaderSize
	for range 2 {
		n, w := binary.Varint(b[at:])
		at += w + int(n)
	}
	_, w := binary.Varint(b[at:]) // the record's length
	at += w + 1                   // and its attributes
	for range 3 {                 // timestamp delta, offset delta, key length
		_, w := binary.Varint(b[at:])
		at += w
	}
	if n, w := binary.Varint(b[at:]); w != 1 || n != 1 {
		t.Fatalf("record 3's value length %d in %d bytes: the test wants the one-byte value", n, w)
	}
	b[at] = 0x7e // zigzag 63: a value of 63 bytes, running past the batch's end
	if sealed {
		return seal(b)
	}
	return b
}

// A complete batch whose third record cannot be read, with or without a CRC that matches:
// kafka-go's decoder stops at that record as if the batch had ended there, and reading on
// after the batch would skip the records behind it without a word. The shard fails loudly
// instead, naming the batch, whatever the CRC says.
func TestConsumeFailsOnACorruptBatch(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		records := slices.Concat(corruptThirdRecord(t, sealed), wireBatch(t, 15, 0, 0, 6, valueAt(6)))
		res, _, err := exchange(11, fetchFrame(1, 16, records))
		if !sealed {
			// A wrong CRC fails the whole response.
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), "crc") {
				t.Errorf("a batch with a wrong CRC: %v; want the response refused", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		next, err := consume(&res.Topics[0].Partitions[0], "t", 0, 10, 16, func(r *archive.Record) error {
			got = append(got, r.Offset)
			return nil
		})
		if err == nil || !failure.IsPermanent(err) || !strings.Contains(err.Error(), "t/0") || !strings.Contains(err.Error(), "10") {
			t.Errorf("CRC sealed %v: consume gave next %d, records %v, err %v; want a permanent error naming t/0 and the batch at 10", sealed, next, got, err)
		}
	}
}
