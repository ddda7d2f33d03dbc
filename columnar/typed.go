package columnar

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/parquet-go/jsonlite"
	"github.com/parquet-go/parquet-go"

	"github.com/karch-archive/karch/archive"
)

// typedValues derives the typed columns of one record value into out (one parquet.Value
// per column, null where the value gives none) and reports which are null. The value
// must be a JSON document with an object at the top; anything else nulls every column.
func typedValues(cols []archive.ValueColumn, value []byte, out []parquet.Value) {
	for i := range out {
		out[i] = parquet.NullValue()
	}
	if len(cols) == 0 || len(value) == 0 {
		return
	}
	doc, err := jsonlite.Parse(string(value))
	if err != nil || doc.Kind() != jsonlite.Object {
		return
	}
	for i, c := range cols {
		if v := lookup(doc, c.Path); v != nil {
			out[i] = convert(c.Type, v)
		}
	}
}

func lookup(v *jsonlite.Value, path []string) *jsonlite.Value {
	for _, name := range path {
		if v.Kind() != jsonlite.Object {
			return nil
		}
		if v = v.Lookup(name); v == nil {
			return nil
		}
	}
	return v
}

// convert gives the JSON value v as a value of the column type typ, or null when v holds
// another JSON type or a value outside the type (docs/FORMAT.md, "Typed columns").
func convert(typ string, v *jsonlite.Value) parquet.Value {
	null := parquet.NullValue()
	switch k := v.Kind(); typ {
	case archive.TypeString:
		if s := v.String(); k == jsonlite.String && utf8.ValidString(s) {
			return parquet.ByteArrayValue([]byte(s))
		}
	case archive.TypeInt64:
		if n, err := strconv.ParseInt(v.JSON(), 10, 64); k == jsonlite.Number && err == nil {
			return parquet.Int64Value(n)
		}
	case archive.TypeDouble:
		if f, err := strconv.ParseFloat(v.JSON(), 64); k == jsonlite.Number && err == nil {
			return parquet.DoubleValue(f)
		}
	case archive.TypeBool:
		if k == jsonlite.True || k == jsonlite.False {
			return parquet.BooleanValue(k == jsonlite.True)
		}
	case archive.TypeTimestamp:
		switch k {
		case jsonlite.Number:
			if n, err := strconv.ParseInt(v.JSON(), 10, 64); err == nil {
				return parquet.Int64Value(n)
			}
		case jsonlite.String:
			if t, err := time.Parse(time.RFC3339Nano, v.String()); err == nil {
				return parquet.Int64Value(t.UnixMilli())
			}
		}
	case archive.TypeDate:
		if t, err := time.Parse(time.DateOnly, v.String()); k == jsonlite.String && err == nil {
			return parquet.Int32Value(int32(t.Unix() / 86400))
		}
	}
	return null
}
