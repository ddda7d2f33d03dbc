package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/docs/schema"
	"github.com/karch-archive/karch/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// The golden store: pipeline "golden", hourly windows from t0. 02:00 is committed, 03:00
// has a plan (with a retention gap) and no manifest, 04:00 has nothing; --until stops the
// pipeline after 04:00.
var t0 = time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)

func goldenArgs(cmd, store, topic, brokers string) []string {
	return []string{cmd, "--json", "--pipeline", "golden", "--topic", topic, "--brokers", brokers, "--store", store,
		"--window", "1h", "--lateness", "0s", "--start", t0.Format(time.RFC3339), "--until", t0.Add(3 * time.Hour).Format(time.RFC3339),
		"--log-level", "error"}
}

// `karch status --json` prints every window with the stored documents' field names, a
// committed window with its manifest as stored; the output conforms to
// docs/schema/status-output.schema.json. It reads only the store.
func TestStatusJSONGolden(t *testing.T) {
	store := goldenStore(t, "cdr", "kafka-0:9092")
	out := runJSON(t, goldenArgs("status", store, "cdr", "kafka-0:9092"))
	checkGolden(t, "status.golden.json", schema.StatusOutput, out)
}

// `karch plan --json` prints the windows the next run would archive: 03:00 with its stored
// plan (state planned, its gap included), and 04:00 with the plan the run would make now
// from the real broker's offsets, chained to the 03:00 plan (state new, run_id "preview").
// The output conforms to docs/schema/plan-output.schema.json.
func TestPlanJSONGolden(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 2)
	produceGoldenRecords(t, addr, topic)
	store := goldenStore(t, topic, addr)
	out := runJSON(t, goldenArgs("plan", store, topic, addr))
	// The topic is new to each run and the broker's address is the machine's own.
	out = bytes.ReplaceAll(bytes.ReplaceAll(out, []byte(topic), []byte("TOPIC")), []byte(addr), []byte("KAFKA"))
	out = topicID.ReplaceAll(out, []byte(`"id": "TOPIC-ID-0000000000000"`)) // a new topic, a new ID
	checkGolden(t, "plan.golden.json", schema.PlanOutput, out)
}

var topicID = regexp.MustCompile(`"id": "[A-Za-z0-9_-]{22}"`)

func runJSON(t *testing.T, args []string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("karch %s exited %d:\n%s", strings.Join(args, " "), code, stderr.String())
	}
	return stdout.Bytes()
}

// checkGolden compares out with testdata/name (rewritten with -update) and validates it.
func checkGolden(t *testing.T, name, schemaName string, out []byte) {
	t.Helper()
	if err := testenv.ValidateJSON(schemaName, out); err != nil {
		t.Errorf("the output does not conform to docs/schema/%s:\n%v", schemaName, err)
	}
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run %s -update writes it)", err, t.Name())
	}
	if !bytes.Equal(out, want) {
		t.Errorf("the output differs from %s (go test -run %s -update rewrites it after a deliberate change):\n%s", path, t.Name(), out)
	}
}

// produceGoldenRecords writes records whose timestamps put offsets [7, 8) of partition 0 and
// [5, 7) of partition 1 in the 04:00 window; later ones fall after it.
func produceGoldenRecords(t *testing.T, addr, topic string) {
	t.Helper()
	minutes := map[int][]int{0: {10, 20, 30, 40, 70, 80, 90, 130, 200}, 1: {15, 25, 35, 75, 85, 150, 160, 185}}
	var msgs []kafka.Message
	for p, ms := range minutes {
		for i, m := range ms {
			msgs = append(msgs, kafka.Message{Partition: p, Time: t0.Add(time.Duration(m) * time.Minute), Value: fmt.Appendf(nil, `{"p":%d,"n":%d}`, p, i)})
		}
	}
	testenv.Produce(t, addr, topic, msgs)
}

// goldenStore writes the golden store's documents into a new directory and returns it. The
// documents are checked against docs/schema when the test ends (testenv.LocalStore).
func goldenStore(t *testing.T, topic, brokers string) string {
	t.Helper()
	dir, b := testenv.LocalStore(t)
	w0, w1 := archive.Window{Start: t0, End: t0.Add(time.Hour)}, archive.Window{Start: t0.Add(time.Hour), End: t0.Add(2 * time.Hour)}
	p0 := goldenPlan(w0, "01JDQ3Z6Y8GOLDEN0000000000", topic, brokers, [][2]int64{{0, 4}, {0, 3}}, nil)
	r0 := goldenReceipt(p0)
	put(t, b, w0, archive.PlanName, p0)
	put(t, b, w0, archive.ReceiptKey(0), r0)
	put(t, b, w0, archive.ManifestName, goldenManifest(p0, r0))
	gap := []archive.Gap{{Topic: topic, Partition: 0, First: 4, End: 5, Reason: archive.GapRetention}}
	put(t, b, w1, archive.PlanName, goldenPlan(w1, "01JDQ7B2C4GOLDEN0000000000", topic, brokers, [][2]int64{{5, 7}, {3, 5}}, gap))
	return dir
}

func goldenPlan(w archive.Window, runID, topic, brokers string, ranges [][2]int64, gaps []archive.Gap) *archive.Plan {
	p := &archive.Plan{Format: archive.PlanFormat, Pipeline: "golden", Window: w, RunID: runID, Brokers: []string{brokers}, Gaps: gaps,
		Shards: []archive.ShardPlan{{Index: 0, Pieces: []archive.Piece{}}}}
	for part, r := range ranges {
		p.Ranges = append(p.Ranges, archive.Range{Topic: topic, Partition: int32(part), First: r[0], End: r[1]})
		p.Shards[0].Pieces = append(p.Shards[0].Pieces, archive.Piece{Key: archive.PieceKey(topic, int32(part), r[0]),
			Topic: topic, Partition: int32(part), First: r[0], End: r[1]})
	}
	return p
}

func goldenReceipt(p *archive.Plan) *archive.Receipt {
	r := &archive.Receipt{Format: archive.ReceiptFormat, Pipeline: p.Pipeline, RunID: p.RunID, Pieces: []archive.PieceResult{}}
	for i, pc := range p.Shards[0].Pieces {
		r.Add(archive.PieceResult{Key: pc.Key, Topic: pc.Topic, Partition: pc.Partition, First: pc.First, End: pc.End,
			Records: pc.End - pc.First - int64(i), RawBytes: 300 + int64(i), Bytes: 120 + int64(i),
			SHA256: strings.Repeat(string(rune('a'+i)), 64), Checksum: "sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="})
	}
	return r
}

func goldenManifest(p *archive.Plan, r *archive.Receipt) *archive.Manifest {
	m := &archive.Manifest{Format: archive.ManifestFormat, Pipeline: p.Pipeline, Window: p.Window, Objects: []archive.ManifestObject{},
		Records: r.Records, Bytes: r.Bytes, RawBytes: r.RawBytes, RunID: p.RunID, FencingToken: 7,
		CommittedAt: p.Window.End.Add(2*time.Minute + 345*time.Millisecond), KarchVersion: "v0.9.0"}
	for i, pc := range r.Pieces {
		m.Objects = append(m.Objects, archive.ManifestObject{Key: pc.Key, Topic: pc.Topic, Partition: pc.Partition, First: pc.First,
			End: pc.End, Records: pc.Records, Bytes: pc.Bytes, RawBytes: pc.RawBytes, SHA256: pc.SHA256, Checksum: pc.Checksum})
		rg := p.Ranges[i]
		m.Partitions = append(m.Partitions, archive.PartitionRange{Topic: rg.Topic, Partition: rg.Partition, First: rg.First, End: rg.End, Records: pc.Records})
	}
	return m
}

// put stores a document the way karch does: indented JSON.
func put(t *testing.T, b blob.Bucket, w archive.Window, name string, doc any) {
	t.Helper()
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	key := archive.WindowDir("golden", w.Start, time.Hour) + name
	if _, err := b.Put(context.Background(), key, bytes.NewReader(data), blob.PutOptions{IfAbsent: true, ContentType: "application/json"}); err != nil {
		t.Fatal(err)
	}
}
