package archive

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"math/rand/v2"
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

// Every int64 millisecond timestamp Kafka can hold survives a round trip: years 0000 to
// 9999 as RFC3339, anything else (none, negative years, year 10000 on) as milliseconds.
func TestAppendLineTimestamps(t *testing.T) {
	const after = `"key":null,"value":null}` + "\n"
	for _, tc := range []struct {
		millis int64
		want   string
	}{
		{1795399201123, `"timestamp":"2026-11-23T02:00:01.123Z"`},
		{0, `"timestamp":"1970-01-01T00:00:00.000Z"`},
		{-1, `"timestamp":"1969-12-31T23:59:59.999Z"`},
		{-62167219200000, `"timestamp":"0000-01-01T00:00:00.000Z"`},
		{-62167219200001, `"timestamp_ms":-62167219200001`},
		{253402300799999, `"timestamp":"9999-12-31T23:59:59.999Z"`},
		{253402300800000, `"timestamp_ms":253402300800000`},
		{math.MaxInt64, `"timestamp_ms":9223372036854775807`},
		{math.MinInt64, `"timestamp_ms":-9223372036854775808`},
		{math.MinInt64 + 1, `"timestamp_ms":-9223372036854775807`},
	} {
		r := Record{Topic: "t", Partition: 1, Offset: 2, Timestamp: time.UnixMilli(tc.millis).UTC()}
		line := AppendLine(nil, &r)
		if want := `{"topic":"t","partition":1,"offset":2,` + tc.want + "," + after; string(line) != want {
			t.Errorf("millis %d:\n got %s\nwant %s", tc.millis, line, want)
			continue
		}
		assertRoundTrip(t, r, line)
		got, _ := DecodeLine(line)
		if got.Timestamp.UnixMilli() != tc.millis {
			t.Errorf("millis %d came back as %d", tc.millis, got.Timestamp.UnixMilli())
		}
	}
}

// The archive keeps timestamps as time.Time built by time.UnixMilli: the conversion back
// must be exact at the int64 limits, where the multiplication inside UnixMilli wraps.
func TestUnixMilliExact(t *testing.T) {
	for _, ms := range []int64{math.MinInt64, math.MinInt64 + 1, math.MinInt64 + 999, -1001, -1, 0, 1, math.MaxInt64 - 1, math.MaxInt64} {
		if got := time.UnixMilli(ms).UTC().UnixMilli(); got != ms {
			t.Errorf("time.UnixMilli(%d).UnixMilli() = %d", ms, got)
		}
	}
}

// A LogAppendTime record says so; a create-time record writes nothing extra, so every line
// written before the field existed still reads as create time.
func TestAppendLineLogAppendTime(t *testing.T) {
	r := rec(nil, nil)
	r.LogAppendTime = true
	line := AppendLine(nil, &r)
	want := strings.TrimSuffix(prefix, ",") + `,"timestamp_type":"log_append","key":null,"value":null}` + "\n"
	if string(line) != want {
		t.Fatalf("line\n got %s\nwant %s", line, want)
	}
	assertRoundTrip(t, r, line)
	r.Timestamp = time.UnixMilli(-5).UTC()
	assertRoundTrip(t, r, AppendLine(nil, &r))
	old, err := DecodeLine([]byte(prefix + `"key":null,"value":null}`))
	if err != nil || old.LogAppendTime {
		t.Fatalf("a line without timestamp_type: LogAppendTime %v, err %v; want create time", old.LogAppendTime, err)
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
		`{"topic":"cdr","partition":3,"offset":1,"key":null,"value":null}`,                              // no timestamp
		`{"topic":"cdr","partition":3,"offset":1,"timestamp":null,"key":null,"value":null}`,             // null timestamp
		`{"topic":"cdr","partition":3,"offset":1,"timestamp_ms":1795312801123,"key":null,"value":null}`, // ms where RFC3339 fits
		`{"topic":"cdr","partition":3,"offset":1,"timestamp_ms":253402300800000.5,"key":null,"value":null}`,
		`{"topic":"cdr","partition":3,"offset":1,"timestamp_ms":9223372036854775808,"key":null,"value":null}`,
		`{"topic":"cdr","partition":3,"offset":1,"timestamp_ms":"253402300800000","key":null,"value":null}`,
		`{"topic":"cdr","partition":3,"offset":1,"timestamp":"2026-11-23T02:00:01.123Z","timestamp_ms":253402300800000,"key":null,"value":null}`,
		`{"topic":"cdr","partition":3,"offset":1,"timestamp":"10000-01-01T00:00:00.000Z","key":null,"value":null}`,
		prefix + `"timestamp_type":"create","key":null,"value":null}`, // only log_append is written
		prefix + `"timestamp_type":null,"key":null,"value":null}`,
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
	f.Add([]byte("k"), []byte("v"), "", []byte(nil), int64(math.MaxInt64), false, false, false)
	f.Add([]byte("k"), []byte("v"), "", []byte(nil), int64(math.MinInt64), false, false, false)
	f.Add([]byte("k"), []byte("v"), "", []byte(nil), int64(253402300800000), false, false, false)
	f.Fuzz(func(t *testing.T, key, value []byte, hkey string, hval []byte, millis int64, nullKey, nullValue, nullHeader bool) {
		// Every int64 is a timestamp Kafka's wire format can carry.
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
		// Both timestamp types, without changing the signature the stored corpus was found with.
		for _, logAppend := range []bool{false, true} {
			r.LogAppendTime = logAppend
			line := AppendLine(nil, &r)
			assertRoundTrip(t, r, line)
			if got, _ := DecodeLine(line); got.Timestamp.UnixMilli() != millis {
				t.Fatalf("millis %d came back as %d", millis, got.Timestamp.UnixMilli())
			}
		}
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

// Both timestamp fields and the timestamp type keep AppendLine allocation-free.
func TestAppendLineAllocationFree(t *testing.T) {
	buf := make([]byte, 0, 1024)
	for _, millis := range []int64{1795399201123, -1, math.MaxInt64, math.MinInt64} {
		r := rec([]byte("k"), []byte(`{"a":1}`), Header{"trace", []byte{1}})
		r.Timestamp, r.LogAppendTime = time.UnixMilli(millis).UTC(), millis < 0
		if n := testing.AllocsPerRun(100, func() { buf = AppendLine(buf[:0], &r) }); n != 0 {
			t.Errorf("millis %d: %v allocations per line", millis, n)
		}
	}
}

func TestAppendLayoutIsAppendFormat(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ms := []int64{minLayoutMillis, maxLayoutMillis, 0, -1, 1, 951782400000, 4107542400000} // the ends, the epoch, leap days
	for range 200_000 {
		ms = append(ms, minLayoutMillis+rng.Int64N(maxLayoutMillis-minLayoutMillis+1))
	}
	for _, m := range ms {
		ts := time.UnixMilli(m).Add(time.Duration(rng.IntN(1e6))).UTC() // sub-millisecond parts are cut, not rounded
		if got, want := string(appendLayout(nil, ts)), ts.Format(TimestampLayout); got != want {
			t.Fatalf("appendLayout(%d ms) = %s, want %s", m, got, want)
		}
	}
}

// A value nested as deep as encoding/json allows (10,000) is valid JSON, but embedded in a
// line it would be one level deeper, and the line could not be decoded: one such record
// would stop verify, cat, restore and every shard that adopts its piece. Every depth, as
// key, value or header value, must round-trip.
func TestDeeplyNestedValuesRoundTrip(t *testing.T) {
	for _, depth := range []int{1, maxEmbedDepth - 1, maxEmbedDepth, maxEmbedDepth + 1, maxNestingDepth - 1, maxNestingDepth, maxNestingDepth + 1} {
		for _, v := range [][]byte{
			[]byte(strings.Repeat("[", depth) + strings.Repeat("]", depth)),
			[]byte(strings.Repeat(`{"a":`, depth-1) + "{}" + strings.Repeat("}", depth-1)),
		} {
			r := Record{Topic: "t", Partition: 0, Offset: 7, Timestamp: time.UnixMilli(0).UTC(), Key: v, Value: v, Headers: []Header{{Key: "h", Value: v}}}
			assertRoundTrip(t, r, AppendLine(nil, &r))
		}
	}
}
