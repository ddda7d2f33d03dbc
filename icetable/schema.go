// Package icetable makes karch's archive an Apache Iceberg table: each committed window's
// Parquet objects join the table in one append snapshot, once, in window order
// (docs/DESIGN.md, "The Iceberg table"; docs/FORMAT.md, "Iceberg table"). The data files
// are karch's own objects: the table adds metadata, never a copy.
package icetable

import (
	"fmt"

	"github.com/apache/iceberg-go"

	"github.com/karch-archive/karch/archive"
)

// schemaOf is the table's schema for the typed columns cols: the Parquet piece's envelope
// and columns (columnar.Schema), as Iceberg types. The field IDs are placeholders: the
// catalog assigns its own when it creates the table, so columns are found by name.
func schemaOf(cols []archive.ValueColumn) *iceberg.Schema {
	id := 0
	next := func() int { id++; return id }
	str, bin := iceberg.PrimitiveTypes.String, iceberg.PrimitiveTypes.Binary
	fields := []iceberg.NestedField{
		{ID: next(), Name: "topic", Type: str, Required: true},
		{ID: next(), Name: "partition", Type: iceberg.PrimitiveTypes.Int32, Required: true},
		{ID: next(), Name: "offset", Type: iceberg.PrimitiveTypes.Int64, Required: true},
		{ID: next(), Name: "timestamp", Type: iceberg.PrimitiveTypes.TimestampTz, Required: true},
		{ID: next(), Name: "timestamp_type", Type: str, Required: true},
		{ID: next(), Name: "key", Type: bin},
		{ID: next(), Name: "value", Type: bin},
	}
	headers := iceberg.NestedField{ID: next(), Name: "headers", Required: true}
	element := next()
	headers.Type = &iceberg.ListType{ElementID: element, ElementRequired: true, Element: &iceberg.StructType{FieldList: []iceberg.NestedField{
		{ID: next(), Name: "key", Type: str, Required: true},
		{ID: next(), Name: "value", Type: bin},
	}}}
	fields = append(fields, headers)
	for _, c := range cols {
		fields = append(fields, iceberg.NestedField{ID: next(), Name: c.Name, Type: typeOf(c.Type)})
	}
	return iceberg.NewSchema(0, fields...)
}

// typeOf is the Iceberg type of a typed column: the Parquet piece stores timestamps in
// milliseconds, which Iceberg readers widen to its microseconds.
func typeOf(typ string) iceberg.Type {
	switch typ {
	case archive.TypeString:
		return iceberg.PrimitiveTypes.String
	case archive.TypeInt64:
		return iceberg.PrimitiveTypes.Int64
	case archive.TypeDouble:
		return iceberg.PrimitiveTypes.Float64
	case archive.TypeBool:
		return iceberg.PrimitiveTypes.Bool
	case archive.TypeTimestamp:
		return iceberg.PrimitiveTypes.TimestampTz
	case archive.TypeDate:
		return iceberg.PrimitiveTypes.Date
	}
	panic(fmt.Sprintf("icetable: type %q passed archive.CheckValueColumns", typ))
}

// missingColumns are the typed columns of cols that the table's schema lacks: an added
// value column is a schema evolution (add column). A column the table has with another
// type cannot be evolved to: its old files would read as the new type.
func missingColumns(s *iceberg.Schema, cols []archive.ValueColumn) ([]archive.ValueColumn, error) {
	var out []archive.ValueColumn
	for _, c := range cols {
		f, ok := s.FindFieldByName(c.Name)
		if !ok {
			out = append(out, c)
			continue
		}
		if !f.Type.Equals(typeOf(c.Type)) {
			return nil, fmt.Errorf("value_columns: %s is %s in the table and %s here; give the new type a new column name", c.Name, f.Type, c.Type)
		}
	}
	return out, nil
}
