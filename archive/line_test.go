package archive

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

var ts = time.Date(2026, 11, 23, 2, 0, 1, 123_000_000, time.UTC)

func rec(key, value []byte, headers ...Header) Record {
	return Record{Topic: "cdr", Partition: 3, Offset: 1234, Timestamp: ts, Key: key, Value: value, Headers: headers}
}

const prefix = `{"topic":"cdr","partition":3,"offset":1234,"timestamp":"2026-11-23T02:00:01.123Z",`

func TestAppendLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Record
		want string
	}{
		{"design example", rec([]byte("4471-22"), []byte(`{"call_id":"..."}`), Header{"trace", []byte{0, 1}}),
			`"key_str":"4471-22","value":{"call_id":"..."},"headers":[{"key":"trace","value_b64":"AAE="}]}`},
		{"json array", rec(nil, []byte(`[1,{"a":2}]`)), `"key":null,"value":[1,{"a":2}]}`},
		{"json with raw newline", rec([]byte("k"), []byte("{\n\"a\":1}")), `"key_str":"k","value_str":"{\n\"a\":1}"}`},
		{"json with leading space", rec([]byte("k"), []byte(` {"a":1}`)), `"key_str":"k","value_str":" {\"a\":1}"}`},
		{"invalid json", rec([]byte("k"), []byte(`{"a":}`)), `"key_str":"k","value_str":"{\"a\":}"}`},
		{"plain text", rec([]byte("k"), []byte("caf\u00e9\t\"\\")), `"key_str":"k","value_str":"café\t\"\\"}`},
		{"control bytes are binary", rec([]byte("k"), []byte{'a', 0}), `"key_str":"k","value_b64":"YQA="}`},
		{"binary", rec([]byte{0xff, 0}, []byte{0xc3, 0x28}), `"key_b64":"/wA=","value_b64":"wyg="}`},
		{"empty value", rec([]byte{}, []byte{}), `"key_str":"","value_str":""}`},
		{"tombstone", rec([]byte("k"), nil), `"key_str":"k","value":null}`},
		{"json string is text", rec([]byte("k"), []byte(`"x"`)), `"key_str":"k","value_str":"\"x\""}`},
		{"headers", rec(nil, nil, Header{"a", nil}, Header{"b", []byte{}}, Header{"\xff", []byte(`{"x":1}`)}),
			`"key":null,"value":null,"headers":[{"key":"a","value":null},{"key":"b","value_str":""},{"key_b64":"/w==","value":{"x":1}}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line := AppendLine(nil, &tc.r)
			if want := prefix + tc.want + "\n"; string(line) != want {
				t.Fatalf("line\n got %s\nwant %s", line, want)
			}
			assertRoundTrip(t, tc.r, line)
		})
	}
}

func assertRoundTrip(t *testing.T, r Record, line []byte) {
	t.Helper()
	if !json.Valid(line) || bytes.IndexByte(line, '\n') != len(line)-1 {
		t.Fatalf("not one JSON line: %q", line)
	}
	got, err := DecodeLine(line)
	if err != nil {
		t.Fatalf("decode %q: %v", line, err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip of %q:\n got %#v\nwant %#v", line, got, r)
	}
}

func TestDecodeLineRejects(t *testing.T) {
	for _, line := range []string{
		prefix + `"value":null}`,                                       // no key field
		prefix + `"key":null,"key_str":"","value":null}`,               // two key fields
		prefix + `"key":"x","value":null}`,                             // verbatim string
		prefix + `"key":null,"value":null,"extra":1}`,                  // unknown field
		prefix + `"key":null,"value":null,"headers":[]}`,               // empty headers
		prefix + `"key":null,"value":null,"headers":[{"value":null}]}`, // header without key
		`{"topic":"cdr","partition":3,"offset":1,"timestamp":"2026-11-23T02:00:01Z","key":null,"value":null}`,
		`{"partition":3,"offset":1,"timestamp":"2026-11-23T02:00:01.000Z","key":null,"value":null}`,
		`not json`,
		prefix + `"key":null,"value":null} {}`,
	} {
		if _, err := DecodeLine([]byte(line)); !errors.Is(err, ErrCorruptLine) {
			t.Errorf("DecodeLine(%s) = %v, want ErrCorruptLine", line, err)
		}
	}
}

func TestDecoderLongLines(t *testing.T) {
	big := rec([]byte("k"), bytes.Repeat([]byte{0xfe}, 3<<20))
	small := rec(nil, []byte(`{"a":1}`))
	var stream []byte
	for _, r := range []Record{small, big, small} {
		stream = AppendLine(stream, &r)
	}
	dec := NewDecoder(bytes.NewReader(stream))
	for i, want := range []Record{small, big, small} {
		got, err := dec.Next()
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("record %d: err %v", i, err)
		}
	}
	if _, err := dec.Next(); err != io.EOF {
		t.Fatalf("after the last record: %v, want io.EOF", err)
	}
	_, err := NewDecoder(strings.NewReader(prefix + `"key":null,"value":null}`)).Next()
	if !errors.Is(err, ErrCorruptLine) {
		t.Fatalf("a truncated last line: %v, want ErrCorruptLine", err)
	}
}

func FuzzLineRoundTrip(f *testing.F) {
	f.Add([]byte("4471-22"), []byte(`{"call_id":"x"}`), "trace", []byte{0, 1}, int64(1795312801123), false, false, false)
	f.Add([]byte{}, []byte("{\n}"), "\xff", []byte(nil), int64(-1), true, false, true)
	f.Add([]byte(`[1]`), []byte{}, "", []byte(`[]`), int64(0), false, true, false)
	f.Fuzz(func(t *testing.T, key, value []byte, hkey string, hval []byte, millis int64, nullKey, nullValue, nullHeader bool) {
		millis = max(-1, min(millis, 253402300799999)) // Kafka's range: -1 (none) to year 9999
		r := Record{Topic: "t", Partition: 1, Offset: 2, Timestamp: time.UnixMilli(millis).UTC(), Key: nonNil(key), Value: nonNil(value)}
		if nullKey {
			r.Key = nil
		}
		if nullValue {
			r.Value = nil
		}
		if hkey != "" || len(hval) > 0 {
			h := Header{Key: hkey, Value: nonNil(hval)}
			if nullHeader {
				h.Value = nil
			}
			r.Headers = []Header{h}
		}
		assertRoundTrip(t, r, AppendLine(nil, &r))
	})
}

// nonNil keeps the fuzzer's nil slices apart from the explicit null cases.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func BenchmarkAppendLineAllocs(b *testing.B) {
	r := rec([]byte("4471-22"), []byte(`{"call_id":"abc","caller":"+447900000001","duration_ms":1234}`), Header{"trace", []byte{1, 2, 3}})
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendLine(buf[:0], &r)
	}
}
