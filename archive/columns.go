package archive

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// The formats a pipeline writes each piece in (Plan.Formats).
const (
	FormatJSONL   = "jsonl"
	FormatParquet = "parquet"
)

// ParquetFormat is the format tag of karch's Parquet pieces, stored in each file's key-value
// metadata under ParquetFormatKey. A change of the schema's meaning is a new version.
const (
	ParquetFormat    = "karch.parquet/v1"
	ParquetFormatKey = "karch.format"
)

// ValueColumn is one typed column that every Parquet piece derives from its records'
// values: the JSON value at Path (field names from the top-level object down), converted
// to Type. Declared by the user, never guessed, so that every piece of a window agrees.
type ValueColumn struct {
	Name string `json:"name"`
	// Path is the JSON field names leading to the value, top-level first.
	Path []string `json:"path"`
	Type string   `json:"type"`
}

// The types a ValueColumn may have (docs/FORMAT.md, "Typed columns").
const (
	TypeString    = "string"
	TypeInt64     = "int64"
	TypeDouble    = "double"
	TypeBool      = "bool"
	TypeTimestamp = "timestamp"
	TypeDate      = "date"
)

var valueTypes = []string{TypeString, TypeInt64, TypeDouble, TypeBool, TypeTimestamp, TypeDate}

// EnvelopeColumns are the top-level columns of every Parquet piece, and "dt" and "window",
// the hive partitions of its key: a typed column may be named none of them.
var EnvelopeColumns = []string{"topic", "partition", "offset", "timestamp", "timestamp_type", "key", "value", "headers", "dt", "window"}

var columnName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,63}$`)

// ParseValueColumns parses a list of ParseValueColumn's syntax and checks it whole.
func ParseValueColumns(specs []string) ([]ValueColumn, error) {
	var cols []ValueColumn
	for _, s := range specs {
		c, err := ParseValueColumn(s)
		if err != nil {
			return nil, err
		}
		cols = append(cols, c)
	}
	return cols, CheckValueColumns(cols)
}

// ParseValueColumn parses the setting syntax "name:type" or "name=path.to.field:type"; a
// name alone as path means the top-level field of that name.
func ParseValueColumn(s string) (ValueColumn, error) {
	spec, typ, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return ValueColumn{}, fmt.Errorf("%q: want name:type or name=path:type (types: %s)", s, strings.Join(valueTypes, ", "))
	}
	name, p, hasPath := strings.Cut(spec, "=")
	if !hasPath {
		p = name
	}
	c := ValueColumn{Name: name, Path: strings.Split(p, "."), Type: typ}
	return c, CheckValueColumns([]ValueColumn{c})
}

// String is the setting syntax of c, which ParseValueColumn reads back.
func (c ValueColumn) String() string {
	p := strings.Join(c.Path, ".")
	if p == c.Name {
		return c.Name + ":" + c.Type
	}
	return c.Name + "=" + p + ":" + c.Type
}

// CheckValueColumns names the first column that is wrong: an unknown type, a name that is
// not a plain lower-case identifier or that an envelope column has, a duplicate, an empty
// path segment.
func CheckValueColumns(cols []ValueColumn) error {
	seen := map[string]bool{}
	for _, c := range cols {
		bad := func(format string, a ...any) error {
			return fmt.Errorf("column %q: %s", c.Name, fmt.Sprintf(format, a...))
		}
		switch {
		case !columnName.MatchString(c.Name):
			return bad("want a name of lower-case letters, digits and '_', not starting with a digit, at most 64")
		case slices.Contains(EnvelopeColumns, c.Name):
			return bad("collides with the envelope column of that name (reserved: %s)", strings.Join(EnvelopeColumns, ", "))
		case seen[c.Name]:
			return bad("declared twice")
		case !slices.Contains(valueTypes, c.Type):
			return bad("type %q is unknown (types: %s)", c.Type, strings.Join(valueTypes, ", "))
		case len(c.Path) == 0 || slices.Contains(c.Path, ""):
			return bad("path %q has an empty field name", strings.Join(c.Path, "."))
		}
		seen[c.Name] = true
	}
	return nil
}

// CheckFormats checks a formats setting: known formats, each once, JSON Lines among them.
func CheckFormats(formats []string) error {
	if len(formats) == 0 {
		return errors.New("empty: want jsonl, or jsonl and parquet")
	}
	for i, f := range formats {
		if f != FormatJSONL && f != FormatParquet {
			return fmt.Errorf("%q is unknown: want jsonl or parquet", f)
		}
		if slices.Contains(formats[:i], f) {
			return fmt.Errorf("%q listed twice", f)
		}
	}
	if !slices.Contains(formats, FormatJSONL) {
		// verify, restore, cat and the audit read the JSON Lines; a Parquet-only archive
		// would pass a check that reads nothing.
		return errors.New("parquet alone is not supported yet: list jsonl too (jsonl,parquet)")
	}
	return nil
}
