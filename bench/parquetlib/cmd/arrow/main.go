// arrow writes the synthetic records with github.com/apache/arrow-go/v18 parquet/pqarrow.
package main

import (
	"log"
	"os"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/karch-archive/karch/bench/parquetlib/internal/gen"
)

var source = []byte("switch-7")

// noDict is set only for the side experiment: -ldflags "-X main.noDict=1".
var noDict string

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: arrow OUT.parquet")
	}
	ts := arrow.FixedWidthTypes.Timestamp_ms // millis, TimeZone "UTC" -> isAdjustedToUTC
	hdr := arrow.StructOf(
		arrow.Field{Name: "key", Type: arrow.BinaryTypes.String, Nullable: false},
		arrow.Field{Name: "value", Type: arrow.BinaryTypes.Binary, Nullable: true},
	)
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "topic", Type: arrow.BinaryTypes.String},
		{Name: "partition", Type: arrow.PrimitiveTypes.Int32},
		{Name: "offset", Type: arrow.PrimitiveTypes.Int64},
		{Name: "timestamp", Type: ts},
		{Name: "timestamp_type", Type: arrow.BinaryTypes.String},
		{Name: "key", Type: arrow.BinaryTypes.Binary, Nullable: true},
		{Name: "value", Type: arrow.BinaryTypes.Binary, Nullable: true},
		{Name: "headers", Type: arrow.ListOfField(arrow.Field{Name: "element", Type: hdr, Nullable: false})},
		{Name: "caller", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "callee", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "cell", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "start", Type: ts, Nullable: true},
		{Name: "duration_ms", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "result", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "imsi", Type: arrow.BinaryTypes.String, Nullable: true},
	}, nil)

	f, err := os.Create(os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	props := parquet.NewWriterProperties(
		parquet.WithCompression(compress.Codecs.Zstd),
		parquet.WithStats(true),
		parquet.WithPageIndexEnabled(true),
		parquet.WithDictionaryDefault(noDict == ""),
	)
	fw, err := pqarrow.NewFileWriter(schema, f, props, pqarrow.DefaultWriterProps())
	if err != nil {
		log.Fatal(err)
	}

	mem := memory.DefaultAllocator
	rb := array.NewRecordBuilder(mem, schema)
	defer rb.Release()
	bTopic := rb.Field(0).(*array.StringBuilder)
	bPart := rb.Field(1).(*array.Int32Builder)
	bOff := rb.Field(2).(*array.Int64Builder)
	bTS := rb.Field(3).(*array.TimestampBuilder)
	bTST := rb.Field(4).(*array.StringBuilder)
	bKey := rb.Field(5).(*array.BinaryBuilder)
	bVal := rb.Field(6).(*array.BinaryBuilder)
	bHdr := rb.Field(7).(*array.ListBuilder)
	bHdrS := bHdr.ValueBuilder().(*array.StructBuilder)
	bHK := bHdrS.FieldBuilder(0).(*array.StringBuilder)
	bHV := bHdrS.FieldBuilder(1).(*array.BinaryBuilder)
	bCaller := rb.Field(8).(*array.StringBuilder)
	bCallee := rb.Field(9).(*array.StringBuilder)
	bCell := rb.Field(10).(*array.StringBuilder)
	bStart := rb.Field(11).(*array.TimestampBuilder)
	bDur := rb.Field(12).(*array.Int64Builder)
	bRes := rb.Field(13).(*array.StringBuilder)
	bIMSI := rb.Field(14).(*array.StringBuilder)

	optStr := func(b *array.StringBuilder, s *string) {
		if s == nil {
			b.AppendNull()
		} else {
			b.Append(*s)
		}
	}

	const batch = 64 * 1024
	rows := 0
	writeBatch := func() {
		rec := rb.NewRecordBatch()
		if err := fw.WriteBuffered(rec); err != nil {
			log.Fatal(err)
		}
		rec.Release()
		rows = 0
	}

	g := gen.New()
	var kv int64
	for off := int64(0); off < gen.N; off++ {
		rec := g.Next(off)
		c, startMs := gen.Parse(rec.Value)
		bTopic.Append("cdr")
		bPart.Append(0)
		bOff.Append(rec.Offset)
		bTS.Append(arrow.Timestamp(rec.Timestamp))
		bTST.Append("create")
		bKey.Append(rec.Key)
		bVal.Append(rec.Value)
		bHdr.Append(true)
		bHdrS.Append(true)
		bHK.Append("trace")
		bHV.Append(rec.Trace)
		bHdrS.Append(true)
		bHK.Append("source")
		bHV.Append(source)
		optStr(bCaller, c.Caller)
		optStr(bCallee, c.Callee)
		optStr(bCell, c.Cell)
		if startMs == nil {
			bStart.AppendNull()
		} else {
			bStart.Append(arrow.Timestamp(*startMs))
		}
		if c.DurationMs == nil {
			bDur.AppendNull()
		} else {
			bDur.Append(*c.DurationMs)
		}
		optStr(bRes, c.Result)
		optStr(bIMSI, c.IMSI)
		rows++
		kv += int64(len(rec.Key) + len(rec.Value))
		if rows == batch {
			writeBatch()
		}
		if kv >= gen.RowGroupKVB {
			if rows > 0 {
				writeBatch()
			}
			if off < gen.N-1 {
				fw.NewBufferedRowGroup() // closes (flushes) the current row group
			}
			kv = 0
		}
	}
	if rows > 0 {
		writeBatch()
	}
	if err := fw.Close(); err != nil { // also closes f
		log.Fatal(err)
	}
}
