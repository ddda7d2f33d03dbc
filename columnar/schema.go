// Package columnar is karch's Parquet piece: a lossless, typed, columnar copy of the records
// of one piece, written in the same pass as its JSON Lines (docs/FORMAT.md, "Parquet
// pieces"). Writer builds one from records; Reader gives the records back.
package columnar

import (
	"fmt"
	"slices"

	"github.com/parquet-go/parquet-go"

	"github.com/karch-archive/karch/archive"
)

// Timestamp types as the timestamp_type column holds them.
const (
	CreateTime    = "create"
	LogAppendTime = "log_append"
)

// Schema is the Parquet schema of a piece with the typed columns cols, in FORMAT.md's
// column order: the envelope first, then the typed columns as declared.
func Schema(cols []archive.ValueColumn) *parquet.Schema {
	dict := func(n parquet.Node) parquet.Node { return parquet.Encoded(n, &parquet.RLEDictionary) }
	g := orderedGroup{Group: parquet.Group{
		"topic":          dict(parquet.String()),
		"partition":      parquet.Int(32),
		"offset":         parquet.Int(64),
		"timestamp":      parquet.TimestampAdjusted(parquet.Millisecond, true),
		"timestamp_type": dict(parquet.String()),
		"key":            parquet.Optional(parquet.Leaf(parquet.ByteArrayType)),
		"value":          parquet.Optional(parquet.Leaf(parquet.ByteArrayType)),
		"headers": parquet.List(orderedGroup{Group: parquet.Group{
			"key":   parquet.String(),
			"value": parquet.Optional(parquet.Leaf(parquet.ByteArrayType)),
		}, names: []string{"key", "value"}}),
	}, names: []string{"topic", "partition", "offset", "timestamp", "timestamp_type", "key", "value", "headers"}}
	for _, c := range cols {
		g.Group[c.Name] = parquet.Optional(typedNode(c.Type))
		g.names = append(g.names, c.Name)
	}
	return parquet.NewSchema("karch", g)
}

func typedNode(typ string) parquet.Node {
	switch typ {
	case archive.TypeString:
		return parquet.String()
	case archive.TypeInt64:
		return parquet.Int(64)
	case archive.TypeDouble:
		return parquet.Leaf(parquet.DoubleType)
	case archive.TypeBool:
		return parquet.Leaf(parquet.BooleanType)
	case archive.TypeTimestamp:
		return parquet.TimestampAdjusted(parquet.Millisecond, true)
	case archive.TypeDate:
		return parquet.Date()
	}
	panic(fmt.Sprintf("columnar: type %q passed archive.CheckValueColumns", typ))
}

// orderedGroup is a group whose fields keep the order given: parquet.Group sorts them by
// name, which would put "cell" before "topic" in every engine's SELECT *.
type orderedGroup struct {
	parquet.Group
	names []string
}

func (g orderedGroup) Fields() []parquet.Field {
	fs := g.Group.Fields()
	out := make([]parquet.Field, len(fs))
	for _, f := range fs {
		out[slices.Index(g.names, f.Name())] = f
	}
	return out
}

// leaf is where one column's values go in a row.
type leaf struct {
	index, maxDef int
}

// layout holds the column index of every leaf of Schema(cols).
type layout struct {
	topic, partition, offset, timestamp, timestampType, key, value, headerKey, headerValue leaf
	typed                                                                                  []leaf
	columns                                                                                int
}

func layoutOf(s *parquet.Schema, cols []archive.ValueColumn) layout {
	at := func(path ...string) leaf {
		c, ok := s.Lookup(path...)
		if !ok {
			panic(fmt.Sprintf("columnar: no column %v in the schema", path))
		}
		return leaf{index: c.ColumnIndex, maxDef: c.MaxDefinitionLevel}
	}
	l := layout{
		topic: at("topic"), partition: at("partition"), offset: at("offset"), timestamp: at("timestamp"),
		timestampType: at("timestamp_type"), key: at("key"), value: at("value"),
		headerKey: at("headers", "list", "element", "key"), headerValue: at("headers", "list", "element", "value"),
		columns: len(s.Columns()),
	}
	for _, c := range cols {
		l.typed = append(l.typed, at(c.Name))
	}
	return l
}
