package checker

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

const goodManifest = `{"format":"karch.manifest/v1","pipeline":"p","window":{"start":"2026-11-23T00:00:00Z","end":"2026-11-23T01:00:00Z"},
"partitions":[{"topic":"t","partition":0,"first":0,"end":10,"records":3}],
"objects":[{"key":"data/t/0/00000000000000000000.jsonl.zst","topic":"t","partition":0,"first":0,"end":10,"records":3,"bytes":9,"raw_bytes":99,"sha256":"00","new":1}],
"records":3,"bytes":9,"raw_bytes":99,"run_id":"r","fencing_token":1,"committed_at":"2026-11-23T01:00:01.5Z","karch_version":"dev","later_field":{"x":1}}`

func TestDecodeManifest(t *testing.T) {
	m, err := decodeManifest([]byte(goodManifest))
	if err != nil {
		t.Fatalf("a manifest with fields added within v1: %v", err)
	}
	if m.Objects[0].RawBytes != 99 || m.Partitions[0].End != 10 {
		t.Fatalf("decoded %+v", m)
	}
	for _, tc := range []struct{ name, from, to, want string }{
		{"other format", `karch.manifest/v1`, `karch.manifest/v2`, "format"},
		{"missing top-level field", `"run_id":"r",`, ``, `"run_id"`},
		{"missing object field", `"raw_bytes":99,"sha256"`, `"sha256"`, `objects[0]: no "raw_bytes"`},
		{"missing window end", `,"end":"2026-11-23T01:00:00Z"}`, `}`, `window[0]: no "end"`},
		{"fractional count", `"records":3,"bytes"`, `"records":3.5,"bytes"`, "records"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeManifest([]byte(strings.Replace(goodManifest, tc.from, tc.to, 1)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one that says %q", err, tc.want)
			}
		})
	}
}

func TestSplitFrames(t *testing.T) {
	enc, _ := zstd.NewWriter(nil)
	noCRC, _ := zstd.NewWriter(nil, zstd.WithEncoderCRC(false))
	a, b := enc.EncodeAll([]byte("a\n"), nil), enc.EncodeAll([]byte(strings.Repeat("bc\n", 5000)), nil)
	skippable := binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 0x184D2A50), 0)

	frames, err := splitFrames(append(append([]byte{}, a...), b...))
	if err != nil || len(frames) != 2 || len(frames[0]) != len(a) {
		t.Fatalf("two frames: %d frames, %v", len(frames), err)
	}
	if frames, err := splitFrames(nil); err != nil || len(frames) != 0 {
		t.Fatalf("zero bytes: %d frames, %v", len(frames), err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"no checksum", noCRC.EncodeAll([]byte("a\n"), nil), "content checksum"},
		{"skippable frame", append(append([]byte{}, a...), skippable...), "skippable"},
		{"truncated", b[:len(b)-1], "truncated"},
		{"not zstd", []byte("{\"a\":1}\n"), "no zstd frame"},
	} {
		if _, err := splitFrames(tc.data); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one that says %q", tc.name, err, tc.want)
		}
	}
}
