package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/internal/testenv"
)

// withParquet has a pipeline write both formats, with typed columns of the test values.
func withParquet(cols ...archive.ValueColumn) func(*coordinator.Config) {
	return func(c *coordinator.Config) {
		c.Formats, c.ValueColumns = []string{archive.FormatJSONL, archive.FormatParquet}, cols
	}
}

func duckPython(t *testing.T) string {
	t.Helper()
	python := os.Getenv("KARCH_TEST_DUCKDB_PYTHON")
	if python == "" {
		t.Fatal("KARCH_TEST_DUCKDB_PYTHON is not set: run this test with `make test`, which installs DuckDB and pyarrow and sets it")
	}
	return python
}

// runPython runs a script of testdata with the DuckDB virtualenv's python and returns its
// standard output.
func runPython(t *testing.T, env []string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(duckPython(t), args...)
	cmd.Env = append(os.Environ(), env...)
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "KARCH_S3_ENDPOINT="); ok {
			u, err := url.Parse(v)
			if err != nil {
				t.Fatal(err)
			}
			cmd.Env = append(cmd.Env, "DUCKDB_S3_ENDPOINT="+u.Host)
		}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, stderr.Bytes())
	}
	return out
}

// edgeCasesAndOldTimes is edgeCases with records stamped at the epoch and just after it,
// among the window's own, which the window's offsets include.
func edgeCasesAndOldTimes(t *testing.T, addr, topic string) {
	t.Helper()
	edgeCases(t, addr, topic)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := []*kgo.Record{
		{Partition: 0, Value: []byte(`{"i":-1}`), Timestamp: time.UnixMilli(0)},
		{Partition: 1, Value: []byte(`{"i":"x"}`), Timestamp: time.UnixMilli(1)},
		{Partition: 0, Value: []byte(`{"i":9007199254740993}`), Timestamp: t0.Add(30 * time.Minute)},
		{Partition: 1, Value: []byte(`{"i":1.5}`), Timestamp: t0.Add(31 * time.Minute)},
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// pyRecord is one record as pyarrow read it from a Parquet piece.
type pyRecord struct {
	Format        string       `json:"format"`
	Partition     int32        `json:"partition"`
	Offset        int64        `json:"offset"`
	Timestamp     int64        `json:"timestamp"`
	TimestampType string       `json:"timestamp_type"`
	Key           *string      `json:"key"`
	Value         *string      `json:"value"`
	Headers       [][2]*string `json:"headers"`
}

func (p pyRecord) record(t *testing.T, topic string) archive.Record {
	t.Helper()
	unb64 := func(s *string) []byte {
		if s == nil {
			return nil
		}
		b, err := base64.StdEncoding.DecodeString(*s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	r := archive.Record{Topic: topic, Partition: p.Partition, Offset: p.Offset, Timestamp: time.UnixMilli(p.Timestamp).UTC(),
		LogAppendTime: p.TimestampType == "log_append", Key: unb64(p.Key), Value: unb64(p.Value)}
	for _, h := range p.Headers {
		r.Headers = append(r.Headers, archive.Header{Key: *h[0], Value: unb64(h[1])})
	}
	return r
}

// pyarrow reads every Parquet piece of a window of edge-case records, and each record it
// gives, by offset, is the record Kafka holds: key, value and headers byte for byte (null
// apart from empty), timestamp and its type; none missing, none more.
func TestPyarrowReadsTheParquetPieces(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 2)
	edgeCasesAndOldTimes(t, addr, topic)
	a := archiveTopic(t, addr, topic, localStore(t), 1,
		withParquet(archive.ValueColumn{Name: "i", Path: []string{"i"}, Type: archive.TypeInt64}))
	m := a.ms[0]
	var files []string
	for _, o := range m.Objects {
		files = append(files, a.path(0, o.Parquet.Key))
	}
	got := map[string]archive.Record{}
	for _, line := range bytes.Split(bytes.TrimSpace(runPython(t, nil, append([]string{"testdata/parquet_records.py"}, files...)...)), []byte("\n")) {
		var p pyRecord
		if err := json.Unmarshal(line, &p); err != nil {
			t.Fatalf("pyarrow printed %q: %v", line, err)
		}
		if p.Format != archive.ParquetFormat {
			t.Fatalf("record %d/%d: its file's karch.format is %q", p.Partition, p.Offset, p.Format)
		}
		got[fmt.Sprintf("%d/%d", p.Partition, p.Offset)] = p.record(t, topic)
	}
	assertAsKafka(t, "pyarrow", got, m, addr, topic)
}

// assertAsKafka checks that got, what reader read by "<partition>/<offset>", is by offset
// the committed records Kafka holds in the window of m: none missing, none more.
func assertAsKafka(t *testing.T, reader string, got map[string]archive.Record, m *archive.Manifest, addr, topic string) {
	t.Helper()
	want := map[string]archive.Record{}
	for _, p := range m.Partitions {
		for _, r := range consumeCommitted(t, addr, topic, p.Partition, p.First, p.End) {
			want[fmt.Sprintf("%d/%d", r.Partition, r.Offset)] = r
		}
	}
	if len(want) < 200 || len(got) != len(want) || int64(len(got)) != m.Records {
		t.Fatalf("%s read %d records, Kafka holds %d, the manifest says %d", reader, len(got), len(want), m.Records)
	}
	for id, w := range want {
		if g, ok := got[id]; !ok || !sameRecord(g, w) {
			t.Fatalf("record %s: %s read\n%+v\nKafka holds\n%+v", id, reader, brief(g), brief(w))
		}
	}
}

// consumeCommitted reads the committed records of a partition's [first, end) with
// franz-go, at read_committed (no markers, no aborted records), whose last offset must
// hold a record.
func consumeCommitted(t *testing.T, addr, topic string, partition int32, first, end int64) []archive.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(first)}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []archive.Record
	for {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("consume %s/%d: %v", topic, partition, err)
		}
		for _, r := range fs.Records() {
			if r.Offset >= end {
				return out
			}
			rec := archive.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UTC(),
				LogAppendTime: r.Attrs.TimestampType() == 1, Key: r.Key, Value: r.Value}
			for _, h := range r.Headers {
				rec.Headers = append(rec.Headers, archive.Header{Key: h.Key, Value: h.Value})
			}
			out = append(out, rec)
			if r.Offset == end-1 {
				return out
			}
		}
	}
}

// sameRecord compares two records field by field, a null key, value or header value
// apart from an empty one.
func sameRecord(a, b archive.Record) bool {
	null := func(x, y []byte) bool { return (x == nil) == (y == nil) && bytes.Equal(x, y) }
	if a.Topic != b.Topic || a.Partition != b.Partition || a.Offset != b.Offset || !a.Timestamp.Equal(b.Timestamp) ||
		a.LogAppendTime != b.LogAppendTime || !null(a.Key, b.Key) || !null(a.Value, b.Value) || len(a.Headers) != len(b.Headers) {
		return false
	}
	for i := range a.Headers {
		if a.Headers[i].Key != b.Headers[i].Key || !null(a.Headers[i].Value, b.Headers[i].Value) {
			return false
		}
	}
	return true
}

// callHours makes a topic of 2 partitions × 150 call records over the three hours from t0;
// one in ten has its duration as a string, which its typed column gives as null.
func callHours(t *testing.T, addr string) string {
	t.Helper()
	topic := testenv.Topic(t, addr, 2)
	var msgs []kafka.Message
	for i := range 300 {
		duration := fmt.Sprint(i * 13 % 977)
		if i%10 == 3 {
			duration = `"n/a"`
		}
		msgs = append(msgs, kafka.Message{Partition: i % 2, Time: t0.Add(time.Duration(i) * 36 * time.Second), Key: fmt.Appendf(nil, "k%d", i),
			Value: fmt.Appendf(nil, `{"caller":"+44%d","cell":"C%d","duration_ms":%s}`, i, i%7, duration)})
	}
	testenv.Produce(t, addr, topic, msgs)
	return topic
}

var callCols = []archive.ValueColumn{
	{Name: "caller", Path: []string{"caller"}, Type: archive.TypeString},
	{Name: "cell", Path: []string{"cell"}, Type: archive.TypeString},
	{Name: "duration_ms", Path: []string{"duration_ms"}, Type: archive.TypeInt64},
}

// DuckDB queries the Parquet pieces straight from MinIO with hive partitioning: its counts
// per window are the manifests', and its calls and durations per cell (a typed column) are
// what the JSON Lines' values say.
func TestDuckDBQueriesTheParquetPieces(t *testing.T) {
	addr := testenv.Kafka(t)
	a := archiveTopic(t, addr, callHours(t, addr), s3Store(t), 3, withParquet(callCols...))
	var out struct {
		Windows map[string][2]int64 `json:"windows"`
		Cells   map[string][2]int64 `json:"cells"`
	}
	data := runPython(t, a.env, "testdata/duckdb_parquet.py", a.url+"/"+a.pipeline+"/*/*/data/*/*/*.parquet")
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("duckdb printed %q: %v", data, err)
	}
	windows, cells := map[string][2]int64{}, map[string][2]int64{}
	for w, m := range a.ms {
		dir := archive.WindowDir(a.pipeline, m.Window.Start, time.Hour)
		parts := strings.Split(strings.TrimSuffix(dir, "/"), "/")
		windows[strings.TrimPrefix(parts[1], "dt=")+"/"+strings.TrimPrefix(parts[2], "window=")] = [2]int64{m.Records, m.Records}
		for _, o := range m.Objects {
			for _, r := range decodePiece(t, testenv.ReadObject(t, a.bucket, archive.WindowDir(a.pipeline, t0.Add(time.Duration(w)*time.Hour), time.Hour)+o.Key)) {
				var v struct {
					Cell     string `json:"cell"`
					Duration any    `json:"duration_ms"`
				}
				if err := json.Unmarshal(r.Value, &v); err != nil {
					t.Fatal(err)
				}
				c := cells[v.Cell]
				c[0]++
				if d, ok := v.Duration.(float64); ok {
					c[1] += int64(d)
				}
				cells[v.Cell] = c
			}
		}
	}
	if !maps.Equal(out.Windows, windows) {
		t.Fatalf("DuckDB counted per window %v, the manifests %v", out.Windows, windows)
	}
	if len(cells) != 7 || !maps.Equal(out.Cells, cells) {
		t.Fatalf("DuckDB's calls and durations per cell %v, the JSON Lines' %v", out.Cells, cells)
	}
}

// verify --deep reads the Parquet copies through, and finds one that holds other records
// than its JSON Lines even when its own entry was forged to match; cat and restore read
// either copy and print the same.
func TestVerifyAndCatParquet(t *testing.T) {
	addr := testenv.Kafka(t)
	a := archiveTopic(t, addr, callHours(t, addr), localStore(t), 2, withParquet(callCols...))
	if code, out := a.karch(t, "verify", "--deep"); code != 0 || !strings.Contains(out, ", 0 problems") {
		t.Fatalf("karch verify --deep on a clean archive with Parquet: exit %d\n%s", code, out)
	}
	window := t0.Add(time.Hour).Format(time.RFC3339)
	outputs := map[string]string{}
	for _, args := range [][]string{
		{"cat", "--window", window},
		{"cat", "--window", window, "--format", "parquet"},
		{"restore", "--window", window, "--to-stdout"},
		{"restore", "--window", window, "--to-stdout", "--format", "parquet"},
	} {
		code, out := a.karch(t, append(args, "--log-level", "error")...)
		if code != 0 || strings.Count(out, "\n") != int(a.ms[1].Records) {
			t.Fatalf("karch %v: exit %d, %d lines for %d records\n%.2000s", args, code, strings.Count(out, "\n"), a.ms[1].Records, out)
		}
		outputs[strings.Join(args, " ")] = out
	}
	first := outputs["cat --window "+window]
	for args, out := range outputs {
		if args != "cat --window "+window && out != first {
			t.Fatalf("karch %s prints other records than karch cat", args)
		}
	}
	if code, out := a.karch(t, "cat", "--window", window, "--format", "avro"); code != 3 || !strings.Contains(out, "--format") {
		t.Fatalf("karch cat --format avro: exit %d, want 3 naming --format\n%s", code, out)
	}

	// The Parquet copy of one piece replaced by that of another piece, and the manifest's
	// and receipt's entries of it edited to the impostor's size and digest.
	o, other := a.ms[1].Objects[0], a.ms[1].Objects[1]
	impostor, err := os.ReadFile(a.path(1, other.Parquet.Key))
	if err != nil {
		t.Fatal(err)
	}
	rewrite(t, a.path(1, o.Parquet.Key), func([]byte) []byte { return impostor })
	forge := func(b []byte) []byte {
		b = bytes.ReplaceAll(b, []byte(o.Parquet.SHA256), []byte(other.Parquet.SHA256))
		return bytes.ReplaceAll(b, fmt.Appendf(nil, `"bytes": %d,`+"\n        \"sha256\": \"%s\"", o.Parquet.Bytes, other.Parquet.SHA256),
			fmt.Appendf(nil, `"bytes": %d,`+"\n        \"sha256\": \"%s\"", other.Parquet.Bytes, other.Parquet.SHA256))
	}
	rewrite(t, a.path(1, archive.ManifestName), forge)
	for i := range 2 {
		rewrite(t, a.path(1, archive.ReceiptKey(i)), forge)
	}
	code, out := a.karch(t, "verify", "--deep", "--window", window)
	if code != 3 || !strings.Contains(out, o.Parquet.Key) {
		t.Fatalf("karch verify --deep after a Parquet copy was swapped: exit %d, want 3 naming %s\n%s", code, o.Parquet.Key, out)
	}
	t.Logf("karch verify --deep:\n%s", out)
}

// Bad value_columns stop karch before anything is written, exit 3, naming the setting.
func TestBadValueColumnsWriteNothing(t *testing.T) {
	addr := testenv.Kafka(t)
	dir := t.TempDir()
	for _, vc := range []string{"cell:text", "cell:string,cell=site.cell:string", "offset=call.offset:int64"} {
		cmd := exec.Command(karchBin, "run", "--store", dir, "--pipeline", "bad", "--brokers", addr, "--topic", "none",
			"--formats", "jsonl,parquet", "--value-columns", vc)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 3 || !strings.Contains(string(out), "value_columns") {
			t.Fatalf("karch run --value-columns %s: %v, want exit 3 naming value_columns\n%s", vc, err, out)
		}
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Fatalf("the store holds %v after refused settings (%v)", entries, err)
	}
}
