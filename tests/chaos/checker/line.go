package checker

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"time"
	"unicode/utf8"
)

// record is one Kafka record as a record line gives it back. A nil key, value or header
// value is Kafka's null; an empty one is a non-nil slice of length zero.
type record struct {
	topic     string
	partition int32
	offset    int64
	ts        int64 // Unix milliseconds
	logAppend bool  // timestamp_type "log_append"
	key       []byte
	value     []byte
	headers   []header
}

type header struct {
	key   []byte
	value []byte
}

// member is one member of a JSON object, its value as the raw text of the line.
type member struct {
	name string
	raw  json.RawMessage
}

// The timestamp range of the "timestamp" spelling: 0000-01-01T00:00:00.000Z to
// 9999-12-31T23:59:59.999Z, in Unix milliseconds (FORMAT.md, "Fields").
const (
	minTimestamp = -62167219200000
	maxTimestamp = 253402300799999
)

var timestampRE = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$`)

// decodeLine decodes one record line (without its newline) as FORMAT.md's "Record lines"
// describes it. It rejects a line that is not one JSON object, has a field FORMAT.md does
// not name, or has none or several of the fields of a key, value, header key or header
// value. notes are departures from the format's one canonical spelling (an encoding rule
// that did not apply, a timestamp_ms that timestamp could hold): the line still says which
// bytes it stands for, so the record is returned with them.
func decodeLine(line []byte) (rec *record, notes []string, err error) {
	if !utf8.Valid(line) {
		return nil, nil, errors.New("the line is not valid UTF-8")
	}
	ms, err := objectMembers(line)
	if err != nil {
		return nil, nil, err
	}
	d := lineDecoder{rec: &record{}, fields: map[string]json.RawMessage{}}
	for _, m := range ms {
		if !lineFields[m.name] {
			return nil, nil, fmt.Errorf("unknown field %q", m.name)
		}
		d.fields[m.name] = m.raw
	}
	if err := d.decode(); err != nil {
		return nil, nil, err
	}
	return d.rec, d.notes, nil
}

// lineFields are the fields a record line may have.
var lineFields = map[string]bool{
	"topic": true, "partition": true, "offset": true, "timestamp": true, "timestamp_ms": true, "timestamp_type": true,
	"key": true, "key_str": true, "key_b64": true, "value": true, "value_str": true, "value_b64": true, "headers": true,
}

type lineDecoder struct {
	rec    *record
	fields map[string]json.RawMessage
	notes  []string
}

func (d *lineDecoder) decode() error {
	var err error
	r := d.rec
	if r.topic, err = d.requiredString("topic"); err != nil {
		return err
	}
	if err := d.envelope(); err != nil {
		return err
	}
	if r.key, err = d.bytesField("key", d.fields); err != nil {
		return err
	}
	if r.value, err = d.bytesField("value", d.fields); err != nil {
		return err
	}
	if raw, ok := d.fields["headers"]; ok {
		r.headers, err = d.decodeHeaders(raw)
	}
	return err
}

// envelope decodes partition, offset, the timestamp and its type.
func (d *lineDecoder) envelope() error {
	p, err := d.requiredInt("partition")
	if err != nil {
		return err
	}
	if p < 0 || p > 1<<31-1 {
		return fmt.Errorf("partition %d is out of range", p)
	}
	d.rec.partition = int32(p)
	if d.rec.offset, err = d.requiredInt("offset"); err != nil {
		return err
	}
	if d.rec.offset < 0 {
		return fmt.Errorf("offset %d is negative", d.rec.offset)
	}
	if err := d.timestamp(); err != nil {
		return err
	}
	if raw, ok := d.fields["timestamp_type"]; ok {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || s != "log_append" {
			return fmt.Errorf("timestamp_type is %s; the only value is \"log_append\"", raw)
		}
		d.rec.logAppend = true
	}
	return nil
}

func (d *lineDecoder) timestamp() error {
	text, hasText := d.fields["timestamp"]
	ms, hasMS := d.fields["timestamp_ms"]
	switch {
	case hasText == hasMS:
		return errors.New("a line has exactly one of timestamp and timestamp_ms")
	case hasMS:
		v, err := parseInt(ms)
		if err != nil {
			return fmt.Errorf("timestamp_ms: %w", err)
		}
		if v >= minTimestamp && v <= maxTimestamp {
			d.notes = append(d.notes, fmt.Sprintf("timestamp_ms %d is in the range that timestamp spells", v))
		}
		d.rec.ts = v
		return nil
	}
	var s string
	if err := json.Unmarshal(text, &s); err != nil || !timestampRE.MatchString(s) {
		return fmt.Errorf("timestamp %s is not YYYY-MM-DDTHH:MM:SS.mmmZ", text)
	}
	t, err := time.Parse("2006-01-02T15:04:05.000Z", s)
	if err != nil {
		return fmt.Errorf("timestamp %s: %w", text, err)
	}
	d.rec.ts = t.UnixMilli()
	return nil
}

func (d *lineDecoder) requiredString(name string) (string, error) {
	raw, ok := d.fields[name]
	if !ok {
		return "", fmt.Errorf("no %s", name)
	}
	return jsonString(name, raw)
}

func (d *lineDecoder) requiredInt(name string) (int64, error) {
	raw, ok := d.fields[name]
	if !ok {
		return 0, fmt.Errorf("no %s", name)
	}
	v, err := parseInt(raw)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}

// bytesField decodes the key, the value or a header value named base from whichever of
// base, base_str and base_b64 fields holds (exactly one must), and notes a spelling other
// than the one FORMAT.md's rules choose for those bytes.
func (d *lineDecoder) bytesField(base string, fields map[string]json.RawMessage) ([]byte, error) {
	var found []string
	for _, name := range []string{base, base + "_str", base + "_b64"} {
		if _, ok := fields[name]; ok {
			found = append(found, name)
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("%s has %d of the fields %s, %s_str and %s_b64; exactly one is allowed", base, len(found), base, base, base)
	}
	b, enc, err := decodeBytes(found[0], base, fields[found[0]])
	if err != nil {
		return nil, err
	}
	if want := encodingOf(b); want != enc {
		d.notes = append(d.notes, fmt.Sprintf("%s is spelled %s; bytes like these are %s", base, found[0], want))
	}
	return b, nil
}

// decodeBytes decodes one field of a key, value or header value and says which of the
// encodings it used.
func decodeBytes(name, base string, raw json.RawMessage) (b []byte, enc string, err error) {
	switch name {
	case base:
		if string(raw) == "null" {
			return nil, "null", nil
		}
		if raw[0] != '{' && raw[0] != '[' {
			return nil, "", fmt.Errorf("%s holds %.20s; a verbatim field holds null, an object or an array", name, raw)
		}
		return bytes.Clone(raw), "verbatim", nil
	case base + "_str":
		s, err := jsonString(name, raw)
		return copyString(s), "text", err
	default:
		s, err := jsonString(name, raw)
		if err != nil {
			return nil, "", err
		}
		b, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil || bytes.ContainsAny([]byte(s), "\r\n") {
			return nil, "", fmt.Errorf("%s is not standard padded base64", name)
		}
		if b == nil {
			b = []byte{}
		}
		return b, "binary", nil
	}
}

// encodingOf is the encoding FORMAT.md's rules choose for b: the first that applies of
// null, verbatim, text and binary.
func encodingOf(b []byte) string {
	switch {
	case b == nil:
		return "null"
	case isVerbatim(b):
		return "verbatim"
	case isText(b):
		return "text"
	}
	return "binary"
}

func isVerbatim(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	first, last := b[0], b[len(b)-1]
	if !(first == '{' && last == '}' || first == '[' && last == ']') {
		return false
	}
	return !bytes.ContainsAny(b, "\r\n") && utf8.Valid(b) && json.Valid(b)
}

func isText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, c := range b {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			return false
		}
	}
	return true
}

// decodeHeaders decodes the headers array: at least one header object, each with exactly
// one of key and key_b64 and exactly one of value, value_str and value_b64.
func (d *lineDecoder) decodeHeaders(raw json.RawMessage) ([]header, error) {
	elems, err := arrayElements(raw)
	if err != nil {
		return nil, fmt.Errorf("headers: %w", err)
	}
	if len(elems) == 0 {
		return nil, errors.New("headers is empty; a record without headers has no headers field")
	}
	hs := make([]header, len(elems))
	for i, e := range elems {
		if hs[i], err = d.decodeHeader(e); err != nil {
			return nil, fmt.Errorf("header %d: %w", i, err)
		}
	}
	return hs, nil
}

func (d *lineDecoder) decodeHeader(raw json.RawMessage) (header, error) {
	ms, err := objectMembers(raw)
	if err != nil {
		return header{}, err
	}
	fields := map[string]json.RawMessage{}
	for _, m := range ms {
		switch m.name {
		case "key", "key_b64", "value", "value_str", "value_b64":
			fields[m.name] = m.raw
		default:
			return header{}, fmt.Errorf("unknown field %q", m.name)
		}
	}
	key, err := d.headerKey(fields)
	if err != nil {
		return header{}, err
	}
	value, err := d.bytesField("value", fields)
	return header{key: key, value: value}, err
}

func (d *lineDecoder) headerKey(fields map[string]json.RawMessage) ([]byte, error) {
	text, hasText := fields["key"]
	b64, hasB64 := fields["key_b64"]
	switch {
	case hasText == hasB64:
		return nil, errors.New("a header has exactly one of key and key_b64")
	case hasText:
		s, err := jsonString("key", text)
		return copyString(s), err
	}
	b, _, err := decodeBytes("key_b64", "key", b64)
	if err == nil && utf8.Valid(b) {
		d.notes = append(d.notes, "a header key that is valid UTF-8 is spelled key_b64")
	}
	return b, err
}

// objectMembers splits one JSON object into its members, in order, keeping each value's raw
// text. It rejects anything but a single object, and a member name given twice.
func objectMembers(data []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	var ms []member
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("not valid JSON: %w", err)
		}
		name := tok.(string) // an object's tokens alternate names and values
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("not valid JSON: %w", err)
		}
		if seen[name] {
			return nil, fmt.Errorf("field %q appears twice", name)
		}
		seen[name] = true
		ms = append(ms, member{name, raw})
	}
	return ms, endOfValue(dec)
}

// arrayElements splits one JSON array into the raw text of its elements.
func arrayElements(data []byte) ([]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, errors.New("not a JSON array")
	}
	var out []json.RawMessage
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("not valid JSON: %w", err)
		}
		out = append(out, raw)
	}
	return out, endOfValue(dec)
}

// endOfValue reads the closing delimiter of the value dec is in and checks that nothing
// follows it.
func endOfValue(dec *json.Decoder) error {
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("not valid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

func jsonString(name string, raw json.RawMessage) (string, error) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", fmt.Errorf("%s is not a JSON string", name)
	}
	return s, nil
}

// parseInt reads a JSON integer exactly, as a 64-bit integer: no fraction, no exponent.
func parseInt(raw json.RawMessage) (int64, error) {
	v, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%.30s is not a 64-bit integer", raw)
	}
	return v, nil
}

// copyString returns the bytes of s in a non-nil slice, so that an empty string stays
// distinguishable from null.
func copyString(s string) []byte {
	b := make([]byte, len(s))
	copy(b, s)
	return b
}
