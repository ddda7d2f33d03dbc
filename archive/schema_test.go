package archive_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/docs/schema"
	"github.com/karch-archive/karch/internal/testenv"
)

// The schemas of docs/schema name exactly the JSON fields of the Go types that write the
// documents, and require exactly the fields that are always written (no omitempty): a field
// added to a type without its schema, or a schema field that no type writes, fails here.
func TestSchemasNameEveryField(t *testing.T) {
	for _, tc := range []struct {
		schema string
		typ    reflect.Type
	}{
		{schema.Plan, reflect.TypeFor[archive.Plan]()},
		{schema.Receipt, reflect.TypeFor[archive.Receipt]()},
		{schema.Manifest, reflect.TypeFor[archive.Manifest]()},
		{schema.Batch, reflect.TypeFor[archive.Batch]()},
		{schema.Probe, reflect.TypeFor[archive.ProbeRecord]()},
		{schema.Claim, reflect.TypeFor[archive.Claim]()},
	} {
		doc := loadSchema(t, tc.schema)
		want := map[string]bool{}
		goFields(tc.typ, "", want)
		got := map[string]bool{}
		schemaFields(doc, doc, "", got)
		if diff := diffFields(want, got); diff != "" {
			t.Errorf("docs/schema/%s against archive.%s (path: required in schema / always written by Go):\n%s", tc.schema, tc.typ.Name(), diff)
		}
	}
}

func loadSchema(t *testing.T, name string) map[string]any {
	t.Helper()
	data, err := fs.ReadFile(schema.FS, name)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return doc
}

// goFields records each JSON field path of typ and whether it is always written.
func goFields(typ reflect.Type, prefix string, out map[string]bool) {
	for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
		if typ.Kind() == reflect.Slice {
			prefix += "[]"
		}
		typ = typ.Elem()
	}
	if typ.Kind() != reflect.Struct || typ == reflect.TypeFor[time.Time]() {
		return
	}
	for f := range typ.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		path := prefix + "." + name
		out[path] = !strings.Contains(opts, "omitempty")
		goFields(f.Type, path, out)
	}
}

// schemaFields records each property path of a schema node and whether it is required,
// following local references ("#/$defs/...").
func schemaFields(root, node map[string]any, prefix string, out map[string]bool) {
	if ref, ok := node["$ref"].(string); ok {
		name, ok := strings.CutPrefix(ref, "#/$defs/")
		if !ok {
			panic("only local references are followed: " + ref)
		}
		node = root["$defs"].(map[string]any)[name].(map[string]any)
	}
	if items, ok := node["items"].(map[string]any); ok {
		schemaFields(root, items, prefix+"[]", out)
	}
	props, _ := node["properties"].(map[string]any)
	required, _ := node["required"].([]any)
	for name, sub := range props {
		path := prefix + "." + name
		out[path] = slices.Contains(required, any(name))
		schemaFields(root, sub.(map[string]any), path, out)
	}
}

func diffFields(goPaths, schemaPaths map[string]bool) string {
	var lines []string
	for p, always := range goPaths {
		req, ok := schemaPaths[p]
		switch {
		case !ok:
			lines = append(lines, fmt.Sprintf("  %s: written by Go, missing from the schema", p))
		case req != always:
			lines = append(lines, fmt.Sprintf("  %s: required %v / always written %v", p, req, always))
		}
	}
	for p := range schemaPaths {
		if _, ok := goPaths[p]; !ok {
			lines = append(lines, fmt.Sprintf("  %s: in the schema, written by no Go field", p))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

var start = time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)

func fullPlan() *archive.Plan {
	pc := archive.Piece{Key: archive.PieceKey("cdr", 3, 120), Topic: "cdr", Partition: 3, First: 120, End: 180}
	return &archive.Plan{
		Format: archive.PlanFormat, Pipeline: "cdr", RunID: "01JDQ3Z6Y8", Brokers: []string{"kafka-0:9092"},
		Window: archive.Window{Start: start, End: start.Add(time.Hour)},
		Ranges: []archive.Range{{Topic: "cdr", Partition: 0, First: 7, End: 7}, {Topic: "cdr", Partition: 3, First: 120, End: 180}},
		Shards: []archive.ShardPlan{{Index: 0, Pieces: []archive.Piece{pc}}},
		Gaps:   []archive.Gap{{Topic: "cdr", Partition: 3, First: 100, End: 120, Reason: archive.GapRetention}},
	}
}

func fullBatch() *archive.Batch {
	from := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	return &archive.Batch{Format: archive.BatchFormat, Pipeline: "cdr", Backfill: archive.Window{Start: from, End: from.Add(48 * time.Hour)},
		Part: 1, RunID: "01JDQ3Z6Y8", Tasks: []archive.Task{
			{Index: 0, Plan: archive.WindowDir("cdr", from, time.Hour) + archive.PlanName, Shard: 0},
			{Index: 1, Plan: archive.WindowDir("cdr", from, time.Hour) + archive.PlanName, Shard: 1},
		}}
}

func fullReceipt() *archive.Receipt {
	r := &archive.Receipt{Format: archive.ReceiptFormat, Pipeline: "cdr", RunID: "01JDQ3Z6Y8", Shard: 0, Pieces: []archive.PieceResult{}}
	r.Add(archive.PieceResult{Key: archive.PieceKey("cdr", 3, 120), Topic: "cdr", Partition: 3, First: 120, End: 180,
		Records: 58, Control: 1, Compacted: 1, RawBytes: 9000, Bytes: 1200, SHA256: strings.Repeat("ab", 32), Checksum: "sha256:q83vEjRWeJA=-2"})
	return r
}

// receiptV1 is fullReceipt as karch.receipt/v1 wrote it: no account of the offsets.
func receiptV1(m map[string]any) {
	m["format"] = archive.ReceiptFormatV1
	for _, f := range []string{"control", "aborted", "compacted"} {
		delete(firstOf(m, "pieces"), f)
	}
}

func fullManifest() *archive.Manifest {
	prev := archive.RefOf(archive.WindowDir("cdr", start.Add(-time.Hour), time.Hour)+archive.ManifestName, []byte("{}"))
	return &archive.Manifest{
		Format: archive.ManifestFormat, Pipeline: "cdr", Window: archive.Window{Start: start, End: start.Add(time.Hour)},
		Partitions: []archive.PartitionRange{{Topic: "cdr", Partition: 3, First: 120, End: 180, Records: 58}},
		Objects: []archive.ManifestObject{{Key: archive.PieceKey("cdr", 3, 120), Topic: "cdr", Partition: 3, First: 120, End: 180,
			Records: 58, Bytes: 1200, RawBytes: 9000, SHA256: strings.Repeat("ab", 32), Checksum: "crc32c:AAAAAA=="}},
		Records: 58, Bytes: 1200, RawBytes: 9000, RunID: "01JDQ3Z6Y8", FencingToken: 7,
		CommittedAt: start.Add(time.Hour + 2*time.Minute + 123456789), KarchVersion: "v0.9.0",
		Previous: &prev, Gaps: fullPlan().Gaps, Extra: map[string]string{"ticket": "OPS-1"},
	}
}

// A document with every optional field set, as karch encodes it, conforms to its schema.
// The stored documents of the whole test suite are checked by testenv.CheckDocuments; this
// covers the fields those runs may not reach.
func TestSchemasAcceptEveryField(t *testing.T) {
	empty := fullManifest()
	empty.Objects, empty.Previous, empty.Gaps, empty.Extra, empty.Records = []archive.ManifestObject{}, nil, nil, nil, 0
	for _, tc := range []struct {
		schema string
		doc    any
	}{
		{schema.Plan, fullPlan()},
		{schema.Receipt, fullReceipt()},
		{schema.Batch, fullBatch()},
		{schema.Manifest, fullManifest()},
		{schema.Manifest, empty},
	} {
		data, err := json.MarshalIndent(tc.doc, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := testenv.ValidateJSON(tc.schema, data); err != nil {
			t.Errorf("%s:\n%s\n%v", tc.schema, data, err)
		}
	}
}

// edit re-encodes a document after change has edited its generic JSON form.
func edit(t *testing.T, doc any, change func(m map[string]any)) []byte {
	t.Helper()
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	change(m)
	if data, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	return data
}

func firstOf(m map[string]any, field string) map[string]any {
	return m[field].([]any)[0].(map[string]any)
}

// The schemas and karch's own decoders agree on what a reader accepts: plans and receipts
// are strict, a manifest may carry fields this version does not know, and no document of
// another format version is accepted.
func TestSchemasAgreeWithDecoders(t *testing.T) {
	decoders := map[string]func([]byte) error{
		schema.Plan:      func(b []byte) error { _, err := archive.DecodePlan(b); return err },
		schema.Receipt:   func(b []byte) error { _, err := archive.DecodeReceipt(b); return err },
		schema.ReceiptV1: func(b []byte) error { _, err := archive.DecodeReceipt(b); return err },
		schema.Manifest:  func(b []byte) error { _, err := archive.DecodeManifest(b); return err },
		schema.Batch:     func(b []byte) error { _, err := archive.DecodeBatch(b); return err },
	}
	for _, tc := range []struct {
		name, schema string
		data         []byte
		valid        bool
	}{
		{"plan", schema.Plan, edit(t, fullPlan(), func(m map[string]any) {}), true},
		{"plan of a newer version", schema.Plan, edit(t, fullPlan(), func(m map[string]any) { m["format"] = "karch.plan/v2" }), false},
		{"plan with an unknown field", schema.Plan, edit(t, fullPlan(), func(m map[string]any) { m["priority"] = 1 }), false},
		{"plan piece with an unknown field", schema.Plan, edit(t, fullPlan(), func(m map[string]any) {
			firstOf(firstOf(m, "shards"), "pieces")["bytes"] = 1
		}), false},
		{"plan without brokers", schema.Plan, edit(t, fullPlan(), func(m map[string]any) { m["brokers"] = []any{} }), false},
		{"plan with a piece key of another layout", schema.Plan, edit(t, fullPlan(), func(m map[string]any) {
			firstOf(firstOf(m, "shards"), "pieces")["key"] = "data/cdr/3/120.jsonl.zst"
		}), false},
		{"plan with a gap without reason", schema.Plan, edit(t, fullPlan(), func(m map[string]any) { delete(firstOf(m, "gaps"), "reason") }), false},
		{"receipt", schema.Receipt, edit(t, fullReceipt(), func(m map[string]any) {}), true},
		{"receipt of a newer version", schema.Receipt, edit(t, fullReceipt(), func(m map[string]any) { m["format"] = "karch.receipt/v3" }), false},
		{"receipt with an unknown field", schema.Receipt, edit(t, fullReceipt(), func(m map[string]any) { m["pod"] = "x" }), false},
		{"receipt piece without its account", schema.Receipt, edit(t, fullReceipt(), func(m map[string]any) { delete(firstOf(m, "pieces"), "aborted") }), false},
		{"receipt v1", schema.ReceiptV1, edit(t, fullReceipt(), receiptV1), true},
		{"receipt v1 with an account", schema.ReceiptV1, edit(t, fullReceipt(), func(m map[string]any) {
			receiptV1(m)
			firstOf(m, "pieces")["control"] = 1
		}), false},
		{"receipt v1 with an unknown field", schema.ReceiptV1, edit(t, fullReceipt(), func(m map[string]any) { receiptV1(m); m["pod"] = "x" }), false},
		{"batch", schema.Batch, edit(t, fullBatch(), func(m map[string]any) {}), true},
		{"batch with an unknown field", schema.Batch, edit(t, fullBatch(), func(m map[string]any) { m["job"] = "x" }), false},
		{"batch task of no window's plan", schema.Batch, edit(t, fullBatch(), func(m map[string]any) {
			firstOf(m, "tasks")["plan"] = "cdr/backfill/plan.json"
		}), false},
		{"batch of a newer version", schema.Batch, edit(t, fullBatch(), func(m map[string]any) { m["format"] = "karch.batch/v2" }), false},
		{"manifest", schema.Manifest, edit(t, fullManifest(), func(m map[string]any) {}), true},
		{"manifest with fields a later v1 added", schema.Manifest, edit(t, fullManifest(), func(m map[string]any) {
			m["compression"] = "zstd"
			firstOf(m, "objects")["storage_class"] = "GLACIER"
		}), true},
		{"manifest of a newer version", schema.Manifest, edit(t, fullManifest(), func(m map[string]any) { m["format"] = "karch.manifest/v2" }), false},
		{"manifest with a window that is not a time", schema.Manifest, edit(t, fullManifest(), func(m map[string]any) {
			m["window"].(map[string]any)["start"] = "yesterday"
		}), false},
	} {
		err := testenv.ValidateJSON(tc.schema, tc.data)
		if (err == nil) != tc.valid {
			t.Errorf("%s: schema says %v, want valid=%v:\n%s", tc.name, err, tc.valid, tc.data)
		}
		if derr := decoders[tc.schema](tc.data); (derr == nil) != tc.valid {
			t.Errorf("%s: decoder says %v, want valid=%v", tc.name, derr, tc.valid)
		}
	}
}

// Every line AppendLine writes conforms to docs/schema/record.schema.json, whichever
// encoding each key, value and header takes and whichever field holds the timestamp.
func TestRecordSchemaAcceptsWhatAppendLineWrites(t *testing.T) {
	at := start.Add(1500 * time.Millisecond)
	for name, r := range map[string]archive.Record{
		"json value, text key":       {Key: []byte("4471-22"), Value: []byte(`{"call_id":"a","ms":[1,2]}`)},
		"tombstone, null key":        {Key: nil, Value: nil},
		"empty key and value":        {Key: []byte{}, Value: []byte{}},
		"binary key and value":       {Key: []byte{0, 1, 0xff}, Value: []byte{0x7f, 'a'}},
		"json with a line break":     {Value: []byte("{\"a\":\n1}")},
		"headers of every encoding":  {Value: []byte("x"), Headers: []archive.Header{{Key: "trace", Value: []byte{0, 1}}, {Key: "\xff\xfe", Value: nil}, {Key: "j", Value: []byte("[1]")}, {Key: "", Value: []byte("t\u00e9\tx")}}},
		"log append time":            {Value: []byte("x"), LogAppendTime: true},
		"no timestamp (-1)":          {Value: []byte("x"), Timestamp: time.UnixMilli(-1)},
		"year 10000 and beyond":      {Value: []byte("x"), Timestamp: time.UnixMilli(253402300800000)},
		"before year 0":              {Value: []byte("x"), Timestamp: time.UnixMilli(-62167219200001), LogAppendTime: true},
		"the int64 extremes, lowest": {Value: []byte("x"), Timestamp: time.UnixMilli(-1 << 63)},
	} {
		r.Topic, r.Partition, r.Offset = "cdr", 3, 1234
		if r.Timestamp.IsZero() {
			r.Timestamp = at
		}
		line := archive.AppendLine(nil, &r)
		if err := testenv.ValidateJSON(schema.Record, line); err != nil {
			t.Errorf("%s: %s%v", name, line, err)
		}
		if _, err := archive.DecodeLine(line); err != nil {
			t.Errorf("%s: %s does not decode: %v", name, line, err)
		}
	}
}

// The record schema rejects the lines that DecodeLine rejects for their shape: two
// encodings of one field or none, both timestamp fields or a millisecond value that
// "timestamp" would have held, an unknown timestamp type, empty headers, unknown fields.
func TestRecordSchemaRejectsWhatDecodeLineRejects(t *testing.T) {
	const base = `"topic":"cdr","partition":3,"offset":1234`
	for _, line := range []string{
		`{` + base + `,"timestamp":"2026-11-23T02:00:01.500Z","key":null,"key_str":"k","value":null}`,
		`{` + base + `,"timestamp":"2026-11-23T02:00:01.500Z","value":null}`,
		`{` + base + `,"key":null,"value":null}`,
		`{` + base + `,"timestamp":"2026-11-23T02:00:01.500Z","timestamp_ms":1,"key":null,"value":null}`,
		`{` + base + `,"timestamp_ms":1764900000000,"key":null,"value":null}`,
		`{` + base + `,"timestamp":"2026-11-23T02:00:01Z","key":null,"value":null}`,
		`{` + base + `,"timestamp":"2026-11-23T02:00:01.500Z","timestamp_type":"create","key":null,"value":null}`,
		`{` + base + `,"timestamp":"2026-11-23T02:00:01.500Z","key":null,"value":"text"}`,
		`{` + base + `,"timestamp":"2026-11-23T02:00:01.500Z","key":null,"value":null,"headers":[]}`,
		`{` + base + `,"timestamp":"2026-11-23T02:00:01.500Z","key":null,"value":null,"headers":[{"key":"a","key_b64":"YQ==","value":null}]}`,
		`{` + base + `,"timestamp":"2026-11-23T02:00:01.500Z","key":null,"value":null,"checksum":1}`,
		`{"partition":3,"offset":1234,"timestamp":"2026-11-23T02:00:01.500Z","key":null,"value":null}`,
	} {
		if err := testenv.ValidateJSON(schema.Record, []byte(line)); err == nil {
			t.Errorf("the schema accepts %s", line)
		}
		if _, err := archive.DecodeLine([]byte(line)); err == nil {
			t.Errorf("DecodeLine accepts %s", line)
		}
	}
}
