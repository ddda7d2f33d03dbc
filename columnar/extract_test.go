package columnar

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"

	"github.com/karch-archive/karch/archive"
)

var extractCols = []archive.ValueColumn{
	{Name: "s", Path: []string{"s"}, Type: archive.TypeString},
	{Name: "i", Path: []string{"a", "i"}, Type: archive.TypeInt64},
	{Name: "d", Path: []string{"a", "b", "d"}, Type: archive.TypeDouble},
	{Name: "b", Path: []string{"b"}, Type: archive.TypeBool},
	{Name: "ts", Path: []string{"ts"}, Type: archive.TypeTimestamp},
	{Name: "day", Path: []string{"day"}, Type: archive.TypeDate},
	{Name: "sa", Path: []string{"a", "s"}, Type: archive.TypeString},
	{Name: "esc", Path: []string{"k\"ey"}, Type: archive.TypeString},
}

// reference derives one typed column with encoding/json and FORMAT.md's rules: the
// independent reading the extractor must agree with.
func reference(c archive.ValueColumn, value []byte) parquet.Value {
	null := parquet.NullValue()
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	var doc any
	if !json.Valid(value) || dec.Decode(&doc) != nil {
		return null
	}
	for _, name := range c.Path {
		obj, ok := doc.(map[string]any)
		if !ok {
			return null
		}
		doc = obj[name]
	}
	switch v := doc.(type) {
	case string:
		switch c.Type {
		case archive.TypeString:
			if utf8.ValidString(v) {
				return parquet.ByteArrayValue([]byte(v))
			}
		case archive.TypeTimestamp:
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				return parquet.Int64Value(t.UnixMilli())
			}
		case archive.TypeDate:
			if t, err := time.Parse(time.DateOnly, v); err == nil {
				return parquet.Int32Value(int32(t.Unix() / 86400))
			}
		}
	case json.Number:
		switch c.Type {
		case archive.TypeInt64, archive.TypeTimestamp:
			if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
				return parquet.Int64Value(n)
			}
		case archive.TypeDouble:
			if f, err := strconv.ParseFloat(string(v), 64); err == nil {
				return parquet.DoubleValue(f)
			}
		}
	case bool:
		if c.Type == archive.TypeBool {
			return parquet.BooleanValue(v)
		}
	}
	return null
}

func checkExtract(t *testing.T, value []byte) {
	t.Helper()
	out := make([]parquet.Value, len(extractCols))
	newExtractor(extractCols).values(value, out)
	for i, c := range extractCols {
		if c.Type == archive.TypeString && !utf8.Valid(value) {
			// encoding/json decodes invalid UTF-8 as U+FFFD; FORMAT.md makes such a string
			// null, which TestInvalidUTF8IsNull checks.
			continue
		}
		want := reference(c, value)
		if !parquet.Equal(out[i], want) || out[i].IsNull() != want.IsNull() {
			t.Errorf("%q: column %s is %v, encoding/json gives %v", value, c.Name, out[i], want)
		}
	}
}

func TestExtractorAgreesWithEncodingJSON(t *testing.T) {
	for _, v := range extractSeeds {
		checkExtract(t, []byte(v))
	}
}

var extractSeeds = []string{
	`{"s":"x\u00e9","a":{"i":-42,"b":{"d":1e3},"s":"in"},"b":true,"ts":"2026-03-01T10:00:00.123+01:00","day":"1969-12-31"}`,
	` { "s" : "spaced" , "a" : { "i" : 7 } } `,
	`{"s":1,"a":{"i":1.5},"b":"true","ts":1700000000000,"day":"2026-13-01"}`,
	`{"s":"first","s":"last","a":{"i":1},"a":{"b":{"d":2}}}`,
	`{"a":{"i":1},"a":5}`,
	`{"s":"esc\"aped\\","k\"ey":"quoted key","b":false}`,
	`{"s":"\ud800"}`,
	`{"s":null,"a":null,"b":null}`,
	`{"a":[{"i":1}],"s":["x"],"ts":-5}`,
	`{"s":"trailing"} x`,
	`[1,2]`, `"a"`, `12`, `null`, ``, `{`, `{"s":}`,
	`{"nested":{"s":"not top"},"s":"top","x":[1,{"s":"deep"}]}`,
	"{\"s\":\"\xff\"}",
	`{"i":9223372036854775808,"a":{"i":9223372036854775807}}`,
	`{"a":{"i":-0,"b":{"d":-1.5E-3}}}`,
}

func TestInvalidUTF8IsNull(t *testing.T) {
	out := make([]parquet.Value, len(extractCols))
	newExtractor(extractCols).values([]byte("{\"s\":\"\xff\",\"b\":true}"), out)
	if !out[0].IsNull() || !out[3].Boolean() {
		t.Fatalf("a string of invalid UTF-8 gives %v, a bool beside it %v", out[0], out[3])
	}
}

func FuzzExtractor(f *testing.F) {
	for _, v := range extractSeeds {
		f.Add([]byte(v))
	}
	f.Fuzz(checkExtract)
}
