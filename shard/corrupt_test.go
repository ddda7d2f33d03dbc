package shard

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"

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
// kafka-go's decoder stopped at that record as if the batch had ended there, and reading on
// after the batch would skip the records behind it without a word. The shard refuses the
// response instead, naming the batch, whatever the CRC says.
func TestConsumeFailsOnACorruptBatch(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		records := slices.Concat(corruptThirdRecord(t, sealed), wireBatch(t, 15, 0, 0, 6, valueAt(6)))
		_, _, err := exchange(11, fetchFrame(1, 16, records))
		why := "record, 3 of 5"
		if !sealed {
			why = "CRC-32C"
		}
		if !errors.Is(err, ErrCorruptBatch) || !failure.IsPermanent(err) || !strings.Contains(err.Error(), "batch at offset 10") ||
			!strings.Contains(err.Error(), why) {
			t.Errorf("CRC sealed %v: %v; want a permanent error naming the batch at 10 and %q", sealed, err, why)
		}
	}
}

// A batch whose length field is negative after a whole one: main's read path handed the
// bytes to kafka-go's decoder, which panicked (slice bounds out of range), so a shard
// crashed, was retried and crashed again. Found by FuzzDecodeRecordSet.
func TestFetchRefusesANegativeBatchLength(t *testing.T) {
	bad := []byte("00000000\x800000000\x02")
	_, _, err := exchange(11, fetchFrame(1, 16, slices.Concat(wireBatch(t, 0, 0, 0, 5, valueAt(5)), bad)))
	if !errors.Is(err, ErrCorruptBatch) || !failure.IsPermanent(err) || !strings.Contains(err.Error(), "announces -2144325584 bytes") {
		t.Errorf("%v; want a permanent ErrCorruptBatch naming the length", err)
	}
}
