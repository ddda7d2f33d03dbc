package columnar

import (
	"fmt"
	"io"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"

	"github.com/karch-archive/karch/archive"
)

// RowGroupBytes bounds the record bytes (key, value, headers) of one row group. The writer
// holds a row group's compressed pages until it is complete, so this bounds a shard's
// memory; 32 MiB keeps a row group at some thousands of call records per megabyte, large
// enough for engines to read efficiently and small enough to skip by statistics.
const RowGroupBytes = 32 << 20

// Writer writes the records of one piece as a Parquet file to an io.Writer, streaming: a
// row group goes out as soon as it is complete, and the footer on Close.
type Writer struct {
	cols   []archive.ValueColumn
	pw     *parquet.Writer
	layout layout
	// row and perColumn are reused for every record.
	row       parquet.Row
	perColumn [][]parquet.Value
	typed     []parquet.Value
	extract   *extractor
	pending   int64
	records   int64
	nulls     []int64
}

// NewWriter starts a Parquet piece with the typed columns cols, which
// archive.CheckValueColumns accepted.
func NewWriter(out io.Writer, cols []archive.ValueColumn) *Writer {
	schema := Schema(cols)
	w := &Writer{
		cols: cols,
		pw: parquet.NewWriter(out, schema,
			parquet.Compression(&zstd.Codec{Level: zstd.SpeedFastest}),
			parquet.DataPageStatistics(true),
			parquet.KeyValueMetadata(archive.ParquetFormatKey, archive.ParquetFormat),
			parquet.SortingWriterConfig(parquet.SortingColumns(parquet.Ascending("offset"))),
			parquet.CreatedBy("karch", "", ""),
		),
		layout:  layoutOf(schema, cols),
		typed:   make([]parquet.Value, len(cols)),
		extract: newExtractor(cols),
		nulls:   make([]int64, len(cols)),
	}
	w.perColumn = make([][]parquet.Value, w.layout.columns)
	return w
}

// Write appends one record. Records must come in offset order, as a piece holds them.
func (w *Writer) Write(r *archive.Record) error {
	for i := range w.perColumn {
		w.perColumn[i] = w.perColumn[i][:0]
	}
	l := &w.layout
	put := func(at leaf, v parquet.Value, rep, def int) {
		w.perColumn[at.index] = append(w.perColumn[at.index], v.Level(rep, def, at.index))
	}
	put(l.topic, parquet.ByteArrayValue([]byte(r.Topic)), 0, 0)
	put(l.partition, parquet.Int32Value(r.Partition), 0, 0)
	put(l.offset, parquet.Int64Value(r.Offset), 0, 0)
	put(l.timestamp, parquet.Int64Value(r.Timestamp.UnixMilli()), 0, 0)
	put(l.timestampType, parquet.ByteArrayValue(timestampType(r.LogAppendTime)), 0, 0)
	put(l.key, optionalBytes(r.Key), 0, defOf(r.Key != nil, l.key.maxDef))
	put(l.value, optionalBytes(r.Value), 0, defOf(r.Value != nil, l.value.maxDef))
	size := int64(len(r.Key) + len(r.Value))
	if len(r.Headers) == 0 {
		// An empty list: one null at the list's level for each of its leaves.
		put(l.headerKey, parquet.NullValue(), 0, 0)
		put(l.headerValue, parquet.NullValue(), 0, 0)
	}
	for i, h := range r.Headers {
		rep := min(i, 1)
		// headers (required) > list (repeated, +1) > element > key (required), value (optional, +1)
		put(l.headerKey, parquet.ByteArrayValue([]byte(h.Key)), rep, l.headerKey.maxDef)
		put(l.headerValue, optionalBytes(h.Value), rep, defOf(h.Value != nil, l.headerValue.maxDef))
		size += int64(len(h.Key) + len(h.Value))
	}
	w.extract.values(r.Value, w.typed)
	for i, v := range w.typed {
		def := 1
		if v.IsNull() {
			def = 0
			w.nulls[i]++
		}
		put(l.typed[i], v, 0, def)
	}
	w.row = w.row[:0]
	for _, vs := range w.perColumn {
		w.row = append(w.row, vs...)
	}
	if _, err := w.pw.WriteRows([]parquet.Row{w.row}); err != nil {
		return fmt.Errorf("write record %s/%d@%d to Parquet: %w", r.Topic, r.Partition, r.Offset, err)
	}
	w.records++
	if w.pending += size; w.pending >= RowGroupBytes {
		w.pending = 0
		if err := w.pw.Flush(); err != nil {
			return fmt.Errorf("write a Parquet row group: %w", err)
		}
	}
	return nil
}

// Close writes the last row group and the footer.
func (w *Writer) Close() error {
	if err := w.pw.Close(); err != nil {
		return fmt.Errorf("finish the Parquet file: %w", err)
	}
	return nil
}

// Records is how many records were written.
func (w *Writer) Records() int64 { return w.records }

// Nulls gives, for each typed column with any null, how many records it is null in.
func (w *Writer) Nulls() map[string]int64 { return nullCounts(w.cols, w.nulls) }

func nullCounts(cols []archive.ValueColumn, counts []int64) map[string]int64 {
	var out map[string]int64
	for i, n := range counts {
		if n > 0 {
			if out == nil {
				out = map[string]int64{}
			}
			out[cols[i].Name] = n
		}
	}
	return out
}

var (
	createTime    = []byte(CreateTime)
	logAppendTime = []byte(LogAppendTime)
)

func timestampType(logAppend bool) []byte {
	if logAppend {
		return logAppendTime
	}
	return createTime
}

func optionalBytes(b []byte) parquet.Value {
	if b == nil {
		return parquet.NullValue()
	}
	return parquet.ByteArrayValue(b)
}

func defOf(present bool, maxDef int) int {
	if present {
		return maxDef
	}
	return maxDef - 1
}
