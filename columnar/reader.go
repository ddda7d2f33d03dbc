package columnar

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/karch-archive/karch/archive"
)

// ErrCorrupt is wrapped by every error about a Parquet object that is not a karch Parquet
// piece: a bad file, another schema, a value that breaks the format.
var ErrCorrupt = errors.New("not a karch Parquet piece")

// Reader gives back the records of a Parquet piece, in file order.
type Reader struct {
	file   *parquet.File
	rows   *parquet.Reader
	layout layout
	buf    []parquet.Row
	n, at  int
	nulls  []int64
	cols   []archive.ValueColumn
}

// Open reads the footer of the Parquet piece r of size bytes and checks its format tag and
// its schema: the envelope and exactly the typed columns cols, or, when cols is nil, the
// envelope and any typed columns, which Reader then skips.
func Open(r io.ReaderAt, size int64, cols []archive.ValueColumn) (*Reader, error) {
	f, err := parquet.OpenFile(r, size)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	l, err := check(f, cols)
	if err != nil {
		return nil, err
	}
	return &Reader{file: f, rows: parquet.NewReader(f), layout: l, buf: make([]parquet.Row, 64),
		nulls: make([]int64, len(cols)), cols: cols}, nil
}

// check checks f's format tag and schema (see Open) and returns where its columns are.
func check(f *parquet.File, cols []archive.ValueColumn) (l layout, err error) {
	if v, _ := f.Lookup(archive.ParquetFormatKey); v != archive.ParquetFormat {
		return l, fmt.Errorf("%w: format %q in its metadata, want %q", ErrCorrupt, v, archive.ParquetFormat)
	}
	if err := func() (err error) {
		defer func() {
			if recover() != nil {
				err = fmt.Errorf("%w: the envelope columns are missing", ErrCorrupt)
			}
		}()
		l = layoutOf(f.Schema(), cols)
		return nil
	}(); err != nil {
		return l, err
	}
	if cols != nil && !parquet.EqualNodes(f.Schema(), Schema(cols)) {
		return l, fmt.Errorf("%w: its schema is not the plan's: %s", ErrCorrupt, f.Schema())
	}
	return l, nil
}

// NumRows is the number of records the footer says the piece holds.
func (r *Reader) NumRows() int64 { return r.file.NumRows() }

// Next decodes the next record into rec, whose byte slices it replaces with fresh ones;
// io.EOF after the last.
func (r *Reader) Next(rec *archive.Record) error {
	if r.at == r.n {
		n, err := r.rows.ReadRows(r.buf)
		if n == 0 {
			if err == nil || errors.Is(err, io.EOF) {
				return io.EOF
			}
			return fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		r.n, r.at = n, 0
	}
	row := r.buf[r.at]
	r.at++
	for i, t := range r.layout.typed {
		for _, v := range row {
			if v.Column() == t.index && v.DefinitionLevel() < t.maxDef {
				r.nulls[i]++
			}
		}
	}
	return r.layout.decode(row, rec)
}

// Nulls gives, for each typed column of Open's cols with any null so far, how many
// records it is null in: Writer.Nulls of the records read.
func (r *Reader) Nulls() map[string]int64 { return nullCounts(r.cols, r.nulls) }

// Close releases the reader.
func (r *Reader) Close() error { return r.rows.Close() }

func (l *layout) decode(row parquet.Row, rec *archive.Record) error {
	*rec = archive.Record{}
	var typ string
	values := 0 // header values seen: one per header, in the order of the keys
	for _, v := range row {
		switch c := v.Column(); c {
		case l.topic.index:
			rec.Topic = string(v.ByteArray())
		case l.partition.index:
			rec.Partition = v.Int32()
		case l.offset.index:
			rec.Offset = v.Int64()
		case l.timestamp.index:
			rec.Timestamp = time.UnixMilli(v.Int64()).UTC()
		case l.timestampType.index:
			typ = string(v.ByteArray())
		case l.key.index:
			rec.Key = optionalOf(v, l.key.maxDef)
		case l.value.index:
			rec.Value = optionalOf(v, l.value.maxDef)
		case l.headerKey.index:
			if v.DefinitionLevel() == l.headerKey.maxDef {
				rec.Headers = append(rec.Headers, archive.Header{Key: string(v.ByteArray())})
			}
		case l.headerValue.index:
			if v.DefinitionLevel() < l.headerValue.maxDef-1 {
				continue // the empty list
			}
			if values == len(rec.Headers) {
				return fmt.Errorf("%w: record %d: a header value without its key", ErrCorrupt, rec.Offset)
			}
			rec.Headers[values].Value = optionalOf(v, l.headerValue.maxDef)
			values++
		}
	}
	if values != len(rec.Headers) {
		return fmt.Errorf("%w: record %d: %d header keys and %d values", ErrCorrupt, rec.Offset, len(rec.Headers), values)
	}
	switch typ {
	case CreateTime:
	case LogAppendTime:
		rec.LogAppendTime = true
	default:
		return fmt.Errorf("%w: record %d: timestamp_type %q", ErrCorrupt, rec.Offset, typ)
	}
	return nil
}

// optionalOf is a copy of a nullable byte array: nil for null, non-nil (maybe empty)
// otherwise, as archive.Record keeps them. The reader reuses its buffers.
func optionalOf(v parquet.Value, maxDef int) []byte {
	if v.DefinitionLevel() < maxDef {
		return nil
	}
	return append([]byte{}, v.ByteArray()...)
}
