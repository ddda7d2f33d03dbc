package checker

import (
	"bytes"
	"strings"
	"testing"
)

// The lines FORMAT.md gives as karch's, decoded to the bytes they stand for.
func TestDecodeLineFormatExamples(t *testing.T) {
	for _, tc := range []struct {
		line string
		want record
	}{
		{`{"topic":"cdr","partition":3,"offset":1234,"timestamp":"2026-11-23T02:00:01.123Z","key_str":"4471-22","value":{"call_id":"c-81","secs":93},"headers":[{"key":"trace","value_b64":"AAE="}]}`,
			record{topic: "cdr", partition: 3, offset: 1234, ts: 1795399201123, key: []byte("4471-22"), value: []byte(`{"call_id":"c-81","secs":93}`),
				headers: []header{{[]byte("trace"), []byte{0, 1}}}}},
		{`{"topic":"cdr","partition":3,"offset":1235,"timestamp":"2026-11-23T02:00:01.123Z","key_str":"4471-22","value":null}`,
			record{topic: "cdr", partition: 3, offset: 1235, ts: 1795399201123, key: []byte("4471-22")}},
		{`{"topic":"cdr","partition":3,"offset":1236,"timestamp":"1969-12-31T23:59:59.999Z","key":null,"value_str":"line one\nline \"two\""}`,
			record{topic: "cdr", partition: 3, offset: 1236, ts: -1, value: []byte("line one\nline \"two\"")}},
		{`{"topic":"cdr","partition":3,"offset":1237,"timestamp":"2026-11-23T02:00:01.123Z","timestamp_type":"log_append","key_str":"","value_b64":"/wAQ","headers":[{"key_b64":"/w==","value":null},{"key":"ct","value":["a"]}]}`,
			record{topic: "cdr", partition: 3, offset: 1237, ts: 1795399201123, logAppend: true, key: []byte{}, value: []byte{0xff, 0, 0x10},
				headers: []header{{[]byte{0xff}, nil}, {[]byte("ct"), []byte(`["a"]`)}}}},
		{`{"topic":"cdr","partition":3,"offset":1238,"timestamp_ms":253402300800000,"key":null,"value_str":"{\"a\":\n1}"}`,
			record{topic: "cdr", partition: 3, offset: 1238, ts: 253402300800000, value: []byte("{\"a\":\n1}")}},
	} {
		rec, notes, err := decodeLine([]byte(tc.line))
		if err != nil || len(notes) > 0 {
			t.Fatalf("%s: %v, notes %v", tc.line, err, notes)
		}
		if d := recordDiff(rec, &tc.want); d != "" {
			t.Errorf("%s:\n%s", tc.line, d)
		}
	}
}

// recordDiff compares two records field by field, null apart from empty.
func recordDiff(a, b *record) string {
	var d []string
	if a.topic != b.topic || a.partition != b.partition || a.offset != b.offset || a.ts != b.ts || a.logAppend != b.logAppend {
		d = append(d, "envelope differs")
	}
	if s := diffBytes(a.key, b.key); s != "" {
		d = append(d, "key "+s)
	}
	if s := diffBytes(a.value, b.value); s != "" {
		d = append(d, "value "+s)
	}
	if len(a.headers) != len(b.headers) {
		d = append(d, "header count differs")
	} else {
		for i := range a.headers {
			if !bytes.Equal(a.headers[i].key, b.headers[i].key) || diffBytes(a.headers[i].value, b.headers[i].value) != "" {
				d = append(d, "header differs")
			}
		}
	}
	return strings.Join(d, "\n")
}

// A verbatim value is its raw text, white space included; null and empty stay apart.
func TestDecodeLineKeepsBytes(t *testing.T) {
	line := `{"topic":"t","partition":0,"offset":1,"timestamp":"2026-01-01T00:00:00.000Z","key_str":"","value":{"a": 1,  "b":[1, 2]},"headers":[{"key":"h","value_str":""},{"key":"h","value":null}]}`
	rec, notes, err := decodeLine([]byte(line))
	if err != nil || len(notes) > 0 {
		t.Fatal(err, notes)
	}
	if rec.key == nil || len(rec.key) != 0 {
		t.Errorf("key %q (nil %t), want empty, not null", rec.key, rec.key == nil)
	}
	if string(rec.value) != `{"a": 1,  "b":[1, 2]}` {
		t.Errorf("value %q is not the raw text", rec.value)
	}
	if rec.headers[0].value == nil || rec.headers[1].value != nil {
		t.Errorf("header values %q, %q: want empty then null", rec.headers[0].value, rec.headers[1].value)
	}
}

func TestDecodeLineRejects(t *testing.T) {
	const env = `"topic":"t","partition":0,"offset":1,"timestamp":"2026-01-01T00:00:00.000Z"`
	for _, tc := range []struct{ name, line, want string }{
		{"unknown field", `{` + env + `,"key":null,"value":null,"extra":1}`, `unknown field "extra"`},
		{"two keys", `{` + env + `,"key":null,"key_str":"a","value":null}`, "key has 2"},
		{"no value", `{` + env + `,"key":null}`, "value has 0"},
		{"verbatim string", `{` + env + `,"key":null,"value":"a"}`, "verbatim field"},
		{"verbatim number", `{` + env + `,"key":null,"value":1}`, "verbatim field"},
		{"bad base64", `{` + env + `,"key":null,"value_b64":"AAE"}`, "base64"},
		{"empty headers", `{` + env + `,"key":null,"value":null,"headers":[]}`, "headers is empty"},
		{"header with two keys", `{` + env + `,"key":null,"value":null,"headers":[{"key":"a","key_b64":"YQ==","value":null}]}`, "exactly one of key and key_b64"},
		{"header without value", `{` + env + `,"key":null,"value":null,"headers":[{"key":"a"}]}`, "value has 0"},
		{"header unknown field", `{` + env + `,"key":null,"value":null,"headers":[{"key":"a","value":null,"x":1}]}`, `unknown field "x"`},
		{"two timestamps", `{` + env + `,"timestamp_ms":1,"key":null,"value":null}`, "exactly one of timestamp"},
		{"short millis", `{"topic":"t","partition":0,"offset":1,"timestamp":"2026-01-01T00:00:00.00Z","key":null,"value":null}`, "YYYY"},
		{"float offset", `{"topic":"t","partition":0,"offset":1.0,"timestamp":"2026-01-01T00:00:00.000Z","key":null,"value":null}`, "offset"},
		{"duplicate member", `{` + env + `,"key":null,"value":null,"value":null}`, "twice"},
		{"trailing data", `{` + env + `,"key":null,"value":null} {}`, "after"},
		{"no offset", `{"topic":"t","partition":0,"timestamp":"2026-01-01T00:00:00.000Z","key":null,"value":null}`, "no offset"},
		{"bad timestamp type", `{` + env + `,"timestamp_type":"create","key":null,"value":null}`, "timestamp_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decodeLine([]byte(tc.line))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one that says %q", err, tc.want)
			}
		})
	}
}

// A spelling other than the one FORMAT.md's rules choose still decodes, with a note.
func TestDecodeLineNotes(t *testing.T) {
	const env = `"topic":"t","partition":0,"offset":1,`
	for _, tc := range []struct{ name, line, want string }{
		{"text as base64", `{` + env + `"timestamp":"2026-01-01T00:00:00.000Z","key":null,"value_b64":"YQ=="}`, "value is spelled value_b64"},
		{"json as text", `{` + env + `"timestamp":"2026-01-01T00:00:00.000Z","key_str":"{}","value":null}`, "key is spelled key_str"},
		{"millis in range", `{` + env + `"timestamp_ms":5,"key":null,"value":null}`, "timestamp_ms 5"},
		{"utf-8 header key as base64", `{` + env + `"timestamp":"2026-01-01T00:00:00.000Z","key":null,"value":null,"headers":[{"key_b64":"YQ==","value":null}]}`, "key_b64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, notes, err := decodeLine([]byte(tc.line))
			if err != nil || len(notes) != 1 || !strings.Contains(notes[0], tc.want) {
				t.Fatalf("err %v, notes %q; want one note that says %q", err, notes, tc.want)
			}
		})
	}
}
