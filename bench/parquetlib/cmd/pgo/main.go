// pgo writes the synthetic records with github.com/parquet-go/parquet-go (GenericWriter[T] + struct tags).
package main

import (
	"log"
	"os"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"

	"github.com/karch-archive/karch/bench/parquetlib/internal/gen"
)

type Header struct {
	Key   string `parquet:"key"`
	Value []byte `parquet:"value,optional"`
}

type Row struct {
	Topic         string   `parquet:"topic"`
	Partition     int32    `parquet:"partition"`
	Offset        int64    `parquet:"offset"`
	Timestamp     int64    `parquet:"timestamp,timestamp(millisecond:utc)"`
	TimestampType string   `parquet:"timestamp_type"`
	Key           []byte   `parquet:"key,optional"`
	Value         []byte   `parquet:"value,optional"`
	Headers       []Header `parquet:"headers,list"`
	Caller        *string  `parquet:"caller,optional"`
	Callee        *string  `parquet:"callee,optional"`
	Cell          *string  `parquet:"cell,optional"`
	Start         *int64   `parquet:"start,optional,timestamp(millisecond:utc)"`
	DurationMs    *int64   `parquet:"duration_ms,optional"`
	Result        *string  `parquet:"result,optional"`
	IMSI          *string  `parquet:"imsi,optional"`
}

var source = []byte("switch-7")

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: pgo OUT.parquet")
	}
	f, err := os.Create(os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	w := parquet.NewGenericWriter[Row](f,
		parquet.Compression(&zstd.Codec{}),
		parquet.DataPageStatistics(true),
	)
	g := gen.New()
	const batch = 1024
	buf := make([]Row, 0, batch)
	var kv int64
	flushBuf := func() {
		if _, err := w.Write(buf); err != nil {
			log.Fatal(err)
		}
		buf = buf[:0]
	}
	for off := int64(0); off < gen.N; off++ {
		rec := g.Next(off)
		c, startMs := gen.Parse(rec.Value)
		buf = append(buf, Row{
			Topic: "cdr", Partition: 0, Offset: rec.Offset, Timestamp: rec.Timestamp,
			TimestampType: "create", Key: rec.Key, Value: rec.Value,
			Headers: []Header{{Key: "trace", Value: rec.Trace}, {Key: "source", Value: source}},
			Caller:  c.Caller, Callee: c.Callee, Cell: c.Cell, Start: startMs,
			DurationMs: c.DurationMs, Result: c.Result, IMSI: c.IMSI,
		})
		kv += int64(len(rec.Key) + len(rec.Value))
		if len(buf) == batch {
			flushBuf()
		}
		if kv >= gen.RowGroupKVB {
			flushBuf()
			if err := w.Flush(); err != nil { // ends the row group
				log.Fatal(err)
			}
			kv = 0
		}
	}
	if len(buf) > 0 {
		flushBuf()
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}
