package columnar

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"

	"github.com/karch-archive/karch/archive"
)

// extractor derives the typed columns of record values with encoding/json's reading of a
// document (the last member of a name wins; a lone surrogate escape is U+FFFD), which
// FuzzExtractor holds it to: a JSON library that kept the first duplicate, or dropped a bad
// escape, gave analysts other values than every JSON tool they compare with. It scans each
// object on the columns' paths once, without building the document, and reuses its
// buffers from record to record.
type extractor struct {
	cols   []archive.ValueColumn
	spans  [][2]int // each column's value in the document, or {-1, -1}
	nested [][2]int // each column's object on its path at the depth being scanned
	all    []int
}

func newExtractor(cols []archive.ValueColumn) *extractor {
	e := &extractor{cols: cols, spans: make([][2]int, len(cols)), nested: make([][2]int, len(cols)), all: make([]int, len(cols))}
	for i := range e.all {
		e.all[i] = i
	}
	return e
}

// values derives the typed columns of one record value into out (one parquet.Value per
// column, null where the value gives none). The value must be a JSON document with an
// object at the top; anything else nulls every column. out may point into value, which
// the Parquet writer copies.
func (e *extractor) values(value []byte, out []parquet.Value) {
	for i := range out {
		out[i] = parquet.NullValue()
	}
	if len(e.cols) == 0 || len(value) == 0 || !archive.ValidJSON(value) {
		return
	}
	start := skipWS(value, 0)
	if value[start] != '{' {
		return
	}
	for i := range e.spans {
		e.spans[i] = [2]int{-1, -1}
	}
	e.fill(value, start, 0, e.all)
	for i, c := range e.cols {
		if s := e.spans[i]; s[0] >= 0 {
			out[i] = convert(c.Type, value[s[0]:s[1]])
		}
	}
}

// fill finds, in the object at doc[at], the value at depth of each column of want: the last
// member of a name wins. A column whose path goes deeper descends into that member's value
// when it is an object.
func (e *extractor) fill(doc []byte, at, depth int, want []int) {
	for _, c := range want {
		e.nested[c] = [2]int{-1, -1}
	}
	i := skipWS(doc, at+1)
	for doc[i] != '}' {
		keyEnd := skipString(doc, i)
		vStart := skipWS(doc, skipWS(doc, keyEnd)+1) // past the ':'
		vEnd := skipValue(doc, vStart)
		for _, c := range want {
			path := e.cols[c].Path
			if !keyIs(doc[i:keyEnd], path[depth]) {
				continue
			}
			if depth == len(path)-1 {
				e.spans[c] = [2]int{vStart, vEnd}
			} else {
				e.spans[c], e.nested[c] = [2]int{-1, -1}, [2]int{vStart, vEnd}
			}
		}
		i = skipWS(doc, vEnd)
		if doc[i] == ',' {
			i = skipWS(doc, i+1)
		}
	}
	for k, c := range want {
		if n := e.nested[c]; n[0] >= 0 && doc[n[0]] == '{' {
			e.fill(doc, n[0], depth+1, want[k:k+1])
		}
	}
}

// keyIs reports whether the JSON string raw spells name.
func keyIs(raw []byte, name string) bool {
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner) == name
	}
	return unquote(raw) == name
}

// convert gives the JSON value v as a value of the column type typ, or null when v holds
// another JSON type or a value outside the type (docs/FORMAT.md, "Typed columns").
func convert(typ string, v []byte) parquet.Value {
	null := parquet.NullValue()
	str := v[0] == '"'
	number := v[0] == '-' || v[0] >= '0' && v[0] <= '9'
	switch typ {
	case archive.TypeString:
		if !str {
			break
		}
		if inner := v[1 : len(v)-1]; bytes.IndexByte(inner, '\\') < 0 {
			if utf8.Valid(inner) {
				return parquet.ByteArrayValue(inner)
			}
		} else if s := unquote(v); utf8.ValidString(s) {
			return parquet.ByteArrayValue([]byte(s))
		}
	case archive.TypeInt64:
		if n, err := strconv.ParseInt(string(v), 10, 64); number && err == nil {
			return parquet.Int64Value(n)
		}
	case archive.TypeDouble:
		if f, err := strconv.ParseFloat(string(v), 64); number && err == nil {
			return parquet.DoubleValue(f)
		}
	case archive.TypeBool:
		if s := string(v); s == "true" || s == "false" {
			return parquet.BooleanValue(s == "true")
		}
	case archive.TypeTimestamp:
		if number {
			if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
				return parquet.Int64Value(n)
			}
		} else if t, err := time.Parse(time.RFC3339Nano, unquote(v)); str && err == nil {
			return parquet.Int64Value(t.UnixMilli())
		}
	case archive.TypeDate:
		if t, err := time.Parse(time.DateOnly, unquote(v)); str && err == nil {
			return parquet.Int32Value(int32(t.Unix() / 86400))
		}
	}
	return null
}

// unquote gives a JSON string's text, as encoding/json decodes it; "" for anything else.
// Strings without escapes, the common case, are not decoded.
func unquote(v []byte) string {
	if len(v) < 2 || v[0] != '"' {
		return ""
	}
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner)
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return ""
	}
	return s
}

// The skips below assume a document that archive.ValidJSON accepted.

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string that starts at b[i].
func skipString(b []byte, i int) int {
	for i++; ; i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
}

// skipValue returns the index after the value that starts at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
	default: // a number or a literal
		for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
			i++
		}
		return i
	}
}
