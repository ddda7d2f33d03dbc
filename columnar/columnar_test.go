package columnar

import (
	"bytes"
	"errors"
	"io"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/karch-archive/karch/archive"
)

func edgeRecords() []archive.Record {
	at := func(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
	return []archive.Record{
		{Topic: "t", Partition: 3, Offset: 10, Timestamp: at(1_700_000_000_123), Key: nil, Value: nil},
		{Topic: "t", Partition: 3, Offset: 11, Timestamp: at(-1), Key: []byte{}, Value: []byte{}},
		{Topic: "t", Partition: 3, Offset: 13, Timestamp: at(math.MinInt64), Key: []byte{0, 1, 0xff}, Value: []byte{0xfe, 0}, LogAppendTime: true},
		{Topic: "t", Partition: 3, Offset: 14, Timestamp: at(math.MaxInt64), Key: []byte("k"), Value: []byte(`{"cell":"A1","n":7}`),
			Headers: []archive.Header{{Key: "h1", Value: nil}, {Key: "", Value: []byte{}}, {Key: "h3", Value: []byte{0}}}},
		{Topic: "t", Partition: 3, Offset: 20, Timestamp: at(0), Value: []byte("not json"), Headers: []archive.Header{{Key: "only", Value: []byte("v")}}},
	}
}

func writePiece(t *testing.T, cols []archive.ValueColumn, recs []archive.Record) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf, cols)
	for i := range recs {
		if err := w.Write(&recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readPiece(t *testing.T, data []byte, cols []archive.ValueColumn) ([]archive.Record, map[string]int64) {
	t.Helper()
	r, err := Open(bytes.NewReader(data), int64(len(data)), cols)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []archive.Record
	for {
		var rec archive.Record
		err := r.Next(&rec)
		if errors.Is(err, io.EOF) {
			return out, r.Nulls()
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
}

func TestRoundTripIsLossless(t *testing.T) {
	cols := []archive.ValueColumn{{Name: "cell", Path: []string{"cell"}, Type: archive.TypeString}}
	want := edgeRecords()
	got, nulls := readPiece(t, writePiece(t, cols, want), cols)
	if want := map[string]int64{"cell": 4}; !reflect.DeepEqual(nulls, want) {
		t.Errorf("reader counted nulls %v, want %v", nulls, want)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d records, wrote %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("record %d:\n got %#v\nwant %#v", want[i].Offset, got[i], want[i])
		}
	}
}

func TestTypedColumns(t *testing.T) {
	cols := []archive.ValueColumn{
		{Name: "s", Path: []string{"s"}, Type: archive.TypeString},
		{Name: "i", Path: []string{"a", "i"}, Type: archive.TypeInt64},
		{Name: "d", Path: []string{"d"}, Type: archive.TypeDouble},
		{Name: "b", Path: []string{"b"}, Type: archive.TypeBool},
		{Name: "ts", Path: []string{"ts"}, Type: archive.TypeTimestamp},
		{Name: "day", Path: []string{"day"}, Type: archive.TypeDate},
	}
	recs := []archive.Record{
		{Topic: "t", Offset: 0, Value: []byte(`{"s":"x\u00e9","a":{"i":-42},"d":1.5,"b":true,"ts":"2026-03-01T10:00:00.123+01:00","day":"1969-12-31"}`)},
		{Topic: "t", Offset: 1, Value: []byte(`{"s":1,"a":{"i":1.5},"d":"1","b":"true","ts":1700000000000,"day":"2026-13-01"}`)},
		{Topic: "t", Offset: 2, Value: []byte(`[1,2]`)},
		{Topic: "t", Offset: 3, Value: nil},
		{Topic: "t", Offset: 4, Value: []byte(`{"s":"trailing"} x`)},
	}
	data := writePiece(t, cols, recs)
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	rows := make([]parquet.Row, len(recs))
	n, _ := parquet.NewReader(f).ReadRows(rows)
	if n != len(recs) {
		t.Fatalf("read %d rows", n)
	}
	l := layoutOf(f.Schema(), cols)
	at := func(row parquet.Row, col int) parquet.Value {
		for _, v := range row {
			if v.Column() == l.typed[col].index {
				return v
			}
		}
		t.Fatalf("no column %d", col)
		return parquet.Value{}
	}
	first := rows[0]
	if got := string(at(first, 0).ByteArray()); got != "xé" {
		t.Errorf("s = %q", got)
	}
	if got := at(first, 1).Int64(); got != -42 {
		t.Errorf("i = %d", got)
	}
	if got := at(first, 2).Double(); got != 1.5 {
		t.Errorf("d = %v", got)
	}
	if !at(first, 3).Boolean() {
		t.Error("b = false")
	}
	if got, want := at(first, 4).Int64(), time.Date(2026, 3, 1, 9, 0, 0, 123e6, time.UTC).UnixMilli(); got != want {
		t.Errorf("ts = %d, want %d", got, want)
	}
	if got := at(first, 5).Int32(); got != -1 {
		t.Errorf("day = %d, want -1", got)
	}
	second := rows[1]
	if got := at(second, 4).Int64(); got != 1700000000000 {
		t.Errorf("ts from millis = %d", got)
	}
	for c := range cols {
		if c != 4 && !at(second, c).IsNull() {
			t.Errorf("record 1: column %s of another JSON type is %v, want null", cols[c].Name, at(second, c))
		}
		for _, r := range rows[2:] {
			if !at(r, c).IsNull() {
				t.Errorf("column %s of a value that is not a JSON object is %v, want null", cols[c].Name, at(r, c))
			}
		}
	}
}

func TestNullsAreCounted(t *testing.T) {
	cols := []archive.ValueColumn{{Name: "cell", Path: []string{"cell"}, Type: archive.TypeString}, {Name: "n", Path: []string{"n"}, Type: archive.TypeInt64}}
	w := NewWriter(io.Discard, cols)
	for _, r := range edgeRecords() {
		if err := w.Write(&r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := w.Nulls(), map[string]int64{"cell": 4, "n": 4}; !reflect.DeepEqual(got, want) {
		t.Errorf("nulls %v, want %v", got, want)
	}
}

func TestColumnOrderIsDeclared(t *testing.T) {
	cols := []archive.ValueColumn{{Name: "zz", Path: []string{"zz"}, Type: archive.TypeString}, {Name: "aa", Path: []string{"aa"}, Type: archive.TypeInt64}}
	var names []string
	for _, f := range Schema(cols).Fields() {
		names = append(names, f.Name())
	}
	want := []string{"topic", "partition", "offset", "timestamp", "timestamp_type", "key", "value", "headers", "zz", "aa"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("columns %v, want %v", names, want)
	}
}

func TestOpenRejectsOtherFiles(t *testing.T) {
	if _, err := Open(bytes.NewReader([]byte("PAR1 nope")), 9, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("garbage: %v", err)
	}
	var buf bytes.Buffer
	type other struct{ A int64 }
	w := parquet.NewGenericWriter[other](&buf)
	w.Write([]other{{1}})
	w.Close()
	if _, err := Open(bytes.NewReader(buf.Bytes()), int64(buf.Len()), nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("another schema: %v", err)
	}
	cols := []archive.ValueColumn{{Name: "cell", Path: []string{"cell"}, Type: archive.TypeString}}
	data := writePiece(t, cols, edgeRecords())
	intCell := []archive.ValueColumn{{Name: "cell", Path: []string{"cell"}, Type: archive.TypeInt64}}
	if _, err := Open(bytes.NewReader(data), int64(len(data)), intCell); !errors.Is(err, ErrCorrupt) {
		t.Errorf("other typed columns than the plan's: %v", err)
	}
	if _, err := Open(bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Errorf("any typed columns: %v", err)
	}
}

// A piece whose range holds no record is a Parquet file of no rows, with the schema.
func TestEmptyPiece(t *testing.T) {
	cols := []archive.ValueColumn{{Name: "cell", Path: []string{"cell"}, Type: archive.TypeString}}
	data := writePiece(t, cols, nil)
	if got, nulls := readPiece(t, data, cols); len(got) != 0 || nulls != nil {
		t.Fatalf("an empty piece reads as %d records, nulls %v", len(got), nulls)
	}
}

// Row groups end at RowGroupBytes of record bytes, so memory stays bounded, and each
// declares the offset sort that engines skip by.
func TestRowGroupsAreBoundedAndSorted(t *testing.T) {
	value := bytes.Repeat([]byte("x"), 1<<20)
	var recs []archive.Record
	for i := range 3 * RowGroupBytes >> 20 {
		recs = append(recs, archive.Record{Topic: "t", Offset: int64(i), Timestamp: time.UnixMilli(int64(i)).UTC(), Value: value})
	}
	data := writePiece(t, nil, recs)
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.RowGroups()); n != 3 {
		t.Fatalf("%d row groups for 3 x RowGroupBytes of values, want 3", n)
	}
	for i, rg := range f.RowGroups() {
		if s := rg.SortingColumns(); len(s) != 1 || s[0].Path()[0] != "offset" || s[0].Descending() {
			t.Fatalf("row group %d declares the sorting columns %v, want offset ascending", i, s)
		}
	}
}

// The footer bounds the timestamps of every row group, in any order, without the pages.
func TestReadFooterBoundsTimestamps(t *testing.T) {
	value := bytes.Repeat([]byte("x"), 1<<20)
	stamps := []int64{5_000, 9_000, -3_000, 7_000}
	var recs []archive.Record
	for i := range 2 * RowGroupBytes >> 20 {
		recs = append(recs, archive.Record{Topic: "t", Offset: int64(i), Timestamp: time.UnixMilli(stamps[i%len(stamps)]).UTC(), Value: value})
	}
	data := writePiece(t, nil, recs)
	f, err := ReadFooter(bytes.NewReader(data), int64(len(data)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.Rows != int64(len(recs)) || f.MinTimestamp != time.UnixMilli(-3_000).UTC() || f.MaxTimestamp != time.UnixMilli(9_000).UTC() {
		t.Fatalf("footer %+v, want %d rows from -3s to 9s", f, len(recs))
	}
	empty := writePiece(t, nil, nil)
	if f, err := ReadFooter(bytes.NewReader(empty), int64(len(empty)), nil); err != nil || f.Rows != 0 || !f.MinTimestamp.IsZero() {
		t.Fatalf("empty piece: footer %+v, %v", f, err)
	}
	if _, err := ReadFooter(bytes.NewReader(data[:len(data)-1]), int64(len(data)-1), nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a cut piece: %v, want ErrCorrupt", err)
	}
}
