package checker

import (
	"encoding/binary"
	"fmt"
)

// zstd frame constants (RFC 8878, section 3.1).
const (
	zstdMagic          = 0xFD2FB528
	skippableMagicMask = 0xFFFFFFF0
	skippableMagic     = 0x184D2A50
)

// splitFrames splits a piece into its zstd frames without decompressing them, and checks
// what FORMAT.md says of them: standard frames only (no skippable frame), each with the
// content checksum and without a dictionary. A zero-byte piece has no frame.
func splitFrames(b []byte) ([][]byte, error) {
	var frames [][]byte
	for at := 0; at < len(b); {
		n, err := frameLen(b[at:])
		if err != nil {
			return nil, fmt.Errorf("frame %d at byte %d: %w", len(frames), at, err)
		}
		frames = append(frames, b[at:at+n])
		at += n
	}
	return frames, nil
}

// frameLen returns the length of the zstd frame at the start of b, walking its header and
// block headers.
func frameLen(b []byte) (int, error) {
	if len(b) < 6 {
		return 0, fmt.Errorf("truncated")
	}
	magic := binary.LittleEndian.Uint32(b)
	if magic&skippableMagicMask == skippableMagic {
		return 0, fmt.Errorf("a skippable frame; pieces have none")
	}
	if magic != zstdMagic {
		return 0, fmt.Errorf("no zstd frame (magic %#08x)", magic)
	}
	at, err := frameHeaderLen(b)
	if err != nil {
		return 0, err
	}
	for {
		if len(b) < at+3 {
			return 0, fmt.Errorf("truncated")
		}
		h := uint32(b[at]) | uint32(b[at+1])<<8 | uint32(b[at+2])<<16
		last, kind, size := h&1 == 1, (h>>1)&3, int(h>>3)
		at += 3
		switch kind {
		case 1: // RLE: one byte, repeated size times
			at++
		case 3:
			return 0, fmt.Errorf("reserved block type")
		default: // raw or compressed
			at += size
		}
		if last {
			break
		}
	}
	at += 4 // the content checksum, which frameHeaderLen requires
	if len(b) < at {
		return 0, fmt.Errorf("truncated")
	}
	return at, nil
}

// frameHeaderLen checks a frame header's descriptor and returns the header's length,
// magic number included.
func frameHeaderLen(b []byte) (int, error) {
	fhd := b[4]
	fcsFlag, single, reserved, checksum, dictFlag := fhd>>6, fhd>>5&1, fhd>>3&1, fhd>>2&1, fhd&3
	if reserved != 0 {
		return 0, fmt.Errorf("reserved bit set in the frame header")
	}
	if checksum == 0 {
		return 0, fmt.Errorf("a frame without the content checksum; every frame carries it")
	}
	at := 5
	if single == 0 {
		at++ // window descriptor
	}
	dictLen := []int{0, 1, 2, 4}[dictFlag]
	if len(b) < at+dictLen {
		return 0, fmt.Errorf("truncated")
	}
	for i := range dictLen {
		if b[at+i] != 0 {
			return 0, fmt.Errorf("a frame that needs a dictionary; pieces use none")
		}
	}
	at += dictLen
	fcsLen := []int{0, 2, 4, 8}[fcsFlag]
	if fcsFlag == 0 && single == 1 {
		fcsLen = 1
	}
	return at + fcsLen, nil
}
