package archive

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// TimestampLayout is how a record's timestamp is written: RFC3339, UTC, milliseconds.
const TimestampLayout = "2006-01-02T15:04:05.000Z"

// The Unix milliseconds that TimestampLayout can write and read back: 0000-01-01T00:00:00.000Z
// to 9999-12-31T23:59:59.999Z. Kafka's timestamps are any int64; the rest are written as
// "timestamp_ms".
const (
	minLayoutMillis = -62167219200000
	maxLayoutMillis = 253402300799999
)

// AppendLine appends r to dst as one JSON Lines record, newline included, and returns the
// extended buffer. The format is docs/FORMAT.md's "Record lines"; for each of key, value
// and header value exactly one field is written:
//   - "key" / "value": the bytes verbatim when they are a JSON object or array with no raw
//     newline, or null when the Kafka field is null;
//   - "key_str" / "value_str": the bytes as a JSON string when they are UTF-8 text: valid
//     UTF-8 with no control character but tab, newline and carriage return (the design's
//     example stores the bytes 00 01 as base64, and a NUL in a string trips up jq users);
//   - "key_b64" / "value_b64": standard base64 otherwise.
//
// Header keys are strings ("key"); one that is not valid UTF-8, which Kafka's wire format
// allows, is written as "key_b64" so that nothing is lost.
//
// The timestamp is "timestamp", RFC3339 UTC with milliseconds, for the years 0000 to 9999,
// and "timestamp_ms", the int64 Unix milliseconds, for any other value (-1 is Kafka's "no
// timestamp"); exactly one of the two is written. "timestamp_type":"log_append" follows
// it for a LogAppendTime record and is omitted for create time.
//
// AppendLine is the shard's hot path: it allocates nothing when dst has room.
func AppendLine(dst []byte, r *Record) []byte {
	dst = append(dst, `{"topic":`...)
	dst = appendString(dst, r.Topic)
	dst = append(dst, `,"partition":`...)
	dst = strconv.AppendInt(dst, int64(r.Partition), 10)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendInt(dst, r.Offset, 10)
	dst = appendTimestamp(dst, r)
	dst = append(dst, ',')
	dst = appendBytesField(dst, "key", r.Key)
	dst = append(dst, ',')
	dst = appendBytesField(dst, "value", r.Value)
	if len(r.Headers) > 0 {
		dst = append(dst, `,"headers":[`...)
		for i := range r.Headers {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendHeader(dst, &r.Headers[i])
		}
		dst = append(dst, ']')
	}
	return append(dst, '}', '\n')
}

// appendLayout writes t, in UTC and in the years 0 to 9999, as AppendFormat writes it with
// TimestampLayout, without AppendFormat's interpreting of the layout, which was 3% of a
// shard's CPU (TestAppendLayoutIsAppendFormat holds the two equal).
func appendLayout(dst []byte, t time.Time) []byte {
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	var b [len(TimestampLayout)]byte
	copy(b[:], TimestampLayout)
	putDigits(b[0:4], year)
	putDigits(b[5:7], int(month))
	putDigits(b[8:10], day)
	putDigits(b[11:13], hour)
	putDigits(b[14:16], minute)
	putDigits(b[17:19], sec)
	putDigits(b[20:23], t.Nanosecond()/1e6)
	return append(dst, b[:]...)
}

// putDigits writes v in decimal into all of b, zero-padded.
func putDigits(b []byte, v int) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
}

// appendTimestamp writes the timestamp field and, for LogAppendTime, its type.
// Timestamp.UnixMilli is exact for every time built by time.UnixMilli: at the int64 limits
// its seconds*1000 wraps, and adding the milliseconds wraps back (TestUnixMilliExact).
func appendTimestamp(dst []byte, r *Record) []byte {
	if ms := r.Timestamp.UnixMilli(); ms < minLayoutMillis || ms > maxLayoutMillis {
		dst = append(dst, `,"timestamp_ms":`...)
		dst = strconv.AppendInt(dst, ms, 10)
	} else {
		dst = append(dst, `,"timestamp":"`...)
		dst = appendLayout(dst, r.Timestamp.UTC())
		dst = append(dst, '"')
	}
	if r.LogAppendTime {
		dst = append(dst, `,"timestamp_type":"`+timestampTypeLogAppend+`"`...)
	}
	return dst
}

func appendHeader(dst []byte, h *Header) []byte {
	if utf8.ValidString(h.Key) {
		dst = append(dst, `{"key":`...)
		dst = appendString(dst, h.Key)
	} else {
		dst = append(dst, `{"key_b64":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, []byte(h.Key))
		dst = append(dst, '"')
	}
	dst = append(dst, ',')
	dst = appendBytesField(dst, "value", h.Value)
	return append(dst, '}')
}

// appendBytesField writes `"name":...`, `"name_str":"..."` or `"name_b64":"..."`.
func appendBytesField(dst []byte, name string, b []byte) []byte {
	dst = append(dst, '"')
	dst = append(dst, name...)
	switch {
	case b == nil:
		return append(dst, `":null`...)
	case isVerbatimJSON(b):
		dst = append(dst, '"', ':')
		return append(dst, b...)
	case isText(b):
		dst = append(dst, `_str":`...)
		return appendString(dst, b)
	default:
		dst = append(dst, `_b64":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, b)
		return append(dst, '"')
	}
}

// isVerbatimJSON reports whether b can be embedded as is: a JSON object or array with no
// surrounding white space (a decoder would drop it), no raw line break (it would split the
// line) and nested at most maxEmbedDepth deep (the line stays decodable). The cheap checks run first so that text and binary never pay for json.Valid.
func isVerbatimJSON(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	first, last := b[0], b[len(b)-1]
	if !(first == '{' && last == '}' || first == '[' && last == ']') {
		return false
	}
	if bytes.IndexByte(b, '\n') >= 0 || bytes.IndexByte(b, '\r') >= 0 {
		return false
	}
	return utf8.Valid(b) && validJSONDepth(b, maxEmbedDepth)
}

// isText reports whether b is valid UTF-8 free of control characters other than tab,
// newline and carriage return.
func isText(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			return false
		}
	}
	return utf8.Valid(b)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. s must be valid UTF-8; every byte outside the
// ASCII control range, '"' and '\\' is copied as is, which keeps the decoded string exact.
func appendString[S string | []byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// timestampOf reads a line's timestamp from whichever of its two fields is present, and
// insists on the one AppendLine writes for the value, so that each timestamp has one line.
func timestampOf(layout *string, millis *int64) (time.Time, error) {
	switch {
	case (layout == nil) == (millis == nil):
		return time.Time{}, errors.New("want exactly one of timestamp and timestamp_ms")
	case layout != nil:
		return time.Parse(TimestampLayout, *layout)
	case *millis >= minLayoutMillis && *millis <= maxLayoutMillis:
		return time.Time{}, fmt.Errorf("timestamp_ms %d is written as timestamp", *millis)
	default:
		return time.UnixMilli(*millis).UTC(), nil
	}
}

// logAppendTimeOf reads the optional timestamp type: absent is create time, and the only
// value written is "log_append" (a null or any other spelling is not a line AppendLine wrote).
func logAppendTimeOf(typ json.RawMessage) (bool, error) {
	switch {
	case typ == nil:
		return false, nil
	case string(typ) == `"`+timestampTypeLogAppend+`"`:
		return true, nil
	default:
		return false, fmt.Errorf("timestamp_type %.40s: only %q is written", typ, timestampTypeLogAppend)
	}
}

const timestampTypeLogAppend = "log_append"
