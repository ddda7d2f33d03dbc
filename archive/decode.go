package archive

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ErrCorruptLine is wrapped by every error about a line that is not a valid record.
var ErrCorruptLine = errors.New("archive: corrupt record line")

// maxLineSize bounds one line in memory: well above Kafka's largest records, base64 included.
const maxLineSize = 256 << 20

type lineJSON struct {
	Topic         *string         `json:"topic"`
	Partition     *int32          `json:"partition"`
	Offset        *int64          `json:"offset"`
	Timestamp     *string         `json:"timestamp"`
	TimestampMs   *int64          `json:"timestamp_ms"`
	TimestampType json.RawMessage `json:"timestamp_type"`
	Key           json.RawMessage `json:"key"`
	KeyStr        *string         `json:"key_str"`
	KeyB64        *[]byte         `json:"key_b64"`
	Value         json.RawMessage `json:"value"`
	ValueStr      *string         `json:"value_str"`
	ValueB64      *[]byte         `json:"value_b64"`
	Headers       []headerJSON    `json:"headers"`
}

type headerJSON struct {
	Key      *string         `json:"key"`
	KeyB64   *[]byte         `json:"key_b64"`
	Value    json.RawMessage `json:"value"`
	ValueStr *string         `json:"value_str"`
	ValueB64 *[]byte         `json:"value_b64"`
}

// DecodeLine decodes one line written by AppendLine (the trailing newline is optional) and
// restores the record's exact bytes.
func DecodeLine(line []byte) (Record, error) {
	var l lineJSON
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrCorruptLine, err)
	}
	if dec.More() {
		return Record{}, fmt.Errorf("%w: more than one JSON value", ErrCorruptLine)
	}
	r, err := l.record()
	if err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrCorruptLine, err)
	}
	return r, nil
}

func (l *lineJSON) record() (Record, error) {
	if l.Topic == nil || l.Partition == nil || l.Offset == nil {
		return Record{}, errors.New("topic, partition and offset are required")
	}
	ts, err := timestampOf(l.Timestamp, l.TimestampMs)
	if err != nil {
		return Record{}, fmt.Errorf("timestamp: %v", err)
	}
	logAppend, err := logAppendTimeOf(l.TimestampType)
	if err != nil {
		return Record{}, err
	}
	r := Record{Topic: *l.Topic, Partition: *l.Partition, Offset: *l.Offset, Timestamp: ts, LogAppendTime: logAppend}
	if r.Key, err = oneOf("key", l.Key, l.KeyStr, l.KeyB64); err != nil {
		return Record{}, err
	}
	if r.Value, err = oneOf("value", l.Value, l.ValueStr, l.ValueB64); err != nil {
		return Record{}, err
	}
	if l.Headers != nil && len(l.Headers) == 0 {
		return Record{}, errors.New("empty headers are omitted, never written")
	}
	for i, h := range l.Headers {
		hdr, err := h.header()
		if err != nil {
			return Record{}, fmt.Errorf("header %d: %v", i, err)
		}
		r.Headers = append(r.Headers, hdr)
	}
	return r, nil
}

func (h *headerJSON) header() (Header, error) {
	var hdr Header
	switch {
	case h.Key != nil && h.KeyB64 == nil:
		hdr.Key = *h.Key
	case h.Key == nil && h.KeyB64 != nil:
		hdr.Key = string(*h.KeyB64)
	default:
		return hdr, errors.New("want exactly one of key and key_b64")
	}
	var err error
	hdr.Value, err = oneOf("value", h.Value, h.ValueStr, h.ValueB64)
	return hdr, err
}

// oneOf restores bytes from whichever of the three encodings is present, insisting on
// exactly one.
func oneOf(name string, verbatim json.RawMessage, str *string, b64 *[]byte) ([]byte, error) {
	n := 0
	for _, present := range []bool{verbatim != nil, str != nil, b64 != nil} {
		if present {
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("want exactly one of %s, %[1]s_str and %[1]s_b64, found %d", name, n)
	}
	switch {
	case str != nil:
		return []byte(*str), nil
	case b64 != nil:
		return *b64, nil
	case string(verbatim) == "null":
		return nil, nil
	case verbatim[0] == '{' || verbatim[0] == '[':
		return bytes.Clone(verbatim), nil
	default:
		return nil, fmt.Errorf("%s holds %.20q: only an object, an array or null is verbatim", name, verbatim)
	}
}

// Decoder reads the records of a JSON Lines stream, one line at a time, with memory bounded
// by the longest line.
type Decoder struct {
	r    *bufio.Reader
	line []byte
}

// NewDecoder returns a Decoder reading from r.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{r: bufio.NewReaderSize(r, 1<<20)}
}

// Next returns the next record, or io.EOF after the last one.
func (d *Decoder) Next() (Record, error) {
	line, err := d.readLine()
	if err != nil {
		return Record{}, err
	}
	return DecodeLine(line)
}

func (d *Decoder) readLine() ([]byte, error) {
	d.line = d.line[:0]
	for {
		chunk, err := d.r.ReadSlice('\n')
		d.line = append(d.line, chunk...)
		switch {
		case err == nil:
			return d.line, nil
		case errors.Is(err, bufio.ErrBufferFull) && len(d.line) <= maxLineSize:
			continue
		case errors.Is(err, bufio.ErrBufferFull):
			return nil, fmt.Errorf("%w: a line longer than %d bytes", ErrCorruptLine, maxLineSize)
		case errors.Is(err, io.EOF) && len(d.line) > 0:
			return nil, fmt.Errorf("%w: the last line has no newline", ErrCorruptLine)
		default:
			return nil, err
		}
	}
}
