// Package e2e runs the karch binary as Kubernetes would: as a separate process, judged by its
// exit code, its stderr and what it leaves in the store.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/compress"
	"github.com/karch-archive/karch/internal/testenv"
)

var karchBin string

func TestMain(m *testing.M) { testenv.MainWithKarch(m, &karchBin) }

var windowStart = time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)

// plan deals pieces of at most per offsets of topic's partitions [0, ends[p]) to one shard.
func plan(topic string, ends []int64, per int64, brokers string) *archive.Plan {
	p := &archive.Plan{
		Format: archive.PlanFormat, Pipeline: "e2e", RunID: "run-e2e", Brokers: []string{brokers},
		Window: archive.Window{Start: windowStart, End: windowStart.Add(time.Hour)},
		Shards: []archive.ShardPlan{{Index: 0, Pieces: []archive.Piece{}}},
	}
	for part, end := range ends {
		for first := int64(0); first < end; first += per {
			pc := archive.Piece{Topic: topic, Partition: int32(part), First: first, End: min(first+per, end)}
			pc.Key = archive.PieceKey(pc.Topic, pc.Partition, pc.First)
			p.Shards[0].Pieces = append(p.Shards[0].Pieces, pc)
		}
	}
	return p
}

// putPlan stores p in b and returns the plan's key.
func putPlan(t *testing.T, b blob.Bucket, p *archive.Plan) string {
	t.Helper()
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	key := archive.WindowDir(p.Pipeline, p.Window.Start, time.Hour) + archive.PlanName
	if _, err := b.Put(context.Background(), key, bytes.NewReader(data), blob.PutOptions{IfAbsent: true}); err != nil {
		t.Fatalf("put plan: %v", err)
	}
	return key
}

// shardCmd prepares `karch shard` with the test S3 server's endpoint and credentials in its
// environment, as a pod would get them.
func shardCmd(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	s := testenv.S3Server(t)
	cmd := exec.Command(karchBin, append([]string{"shard"}, args...)...)
	cmd.Env = append(os.Environ(),
		"KARCH_S3_ENDPOINT="+s.Endpoint, "KARCH_S3_PATH_STYLE=true", "AWS_REGION="+s.Region,
		"AWS_ACCESS_KEY_ID="+s.AccessKey, "AWS_SECRET_ACCESS_KEY="+s.SecretKey)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	return cmd, &stderr
}

// exitCode runs cmd and returns its exit code.
func exitCode(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	return codeOf(t, cmd, cmd.Run())
}

// codeOf reads the exit code from what Run or Wait returned for cmd.
func codeOf(t *testing.T, cmd *exec.Cmd, err error) int {
	t.Helper()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.ExitCode()
	default:
		t.Fatalf("run %s: %v", cmd, err)
		return -1
	}
}

// lastLine is the one-line reason karch prints last.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func TestShardExitCodes(t *testing.T) {
	addr := testenv.Kafka(t)
	dir, local := testenv.LocalStore(t)
	topic := testenv.Topic(t, addr, 1)
	testenv.Produce(t, addr, topic, []kafka.Message{{Value: []byte("x")}})

	missingTopic := plan("no-such-topic", []int64{1}, 10, addr)
	missingTopic.Pipeline = "missing-topic"
	unreachable := plan(topic, []int64{1}, 10, "127.0.0.1:1")
	unreachable.Pipeline = "unreachable"
	good := plan(topic, []int64{1}, 10, addr)
	garbage := filepath.Join(dir, "garbage.json")
	if err := os.WriteFile(garbage, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		reason string
	}{
		{"missing topic", []string{"--plan", filepath.Join(dir, putPlan(t, local, missingTopic)), "--index", "0"}, 3, "topic no-such-topic does not exist"},
		{"index out of range", []string{"--plan", filepath.Join(dir, putPlan(t, local, good)), "--index", "3"}, 3, "shard index 3 out of range"},
		{"no plan object", []string{"--plan", filepath.Join(dir, "nothing/plan.json"), "--index", "0"}, 3, "read plan"},
		{"garbage plan", []string{"--plan", "file://" + garbage, "--index", "0"}, 3, "invalid plan"},
		{"no index", []string{"--plan", garbage}, 3, "JOB_COMPLETION_INDEX"},
		{"unreachable broker", []string{"--plan", filepath.Join(dir, putPlan(t, local, unreachable)), "--index", "0"}, 1, "127.0.0.1:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, stderr := shardCmd(t, tc.args...)
			cmd.Env = append(cmd.Env, "JOB_COMPLETION_INDEX=")
			if code := exitCode(t, cmd); code != tc.code {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			if line := lastLine(stderr.String()); !strings.HasPrefix(line, "karch shard: ") || !strings.Contains(line, tc.reason) {
				t.Fatalf("last line %q: want a one-line reason containing %q", line, tc.reason)
			}
		})
	}
}

// The shard killed with SIGKILL after it completed a piece, then run again: completed pieces
// are not rewritten, and the receipt is the one an uninterrupted run writes.
func TestShardKilledAndRerun(t *testing.T) {
	addr := testenv.Kafka(t)
	cfg := testenv.S3Config(t)
	b, err := blob.NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	topic := testenv.Topic(t, addr, 1)
	testenv.Produce(t, addr, topic, cdrMessages(300_000))
	p := plan(topic, testenv.EndOffsets(t, addr, topic, 1), 50_000, addr)
	planKey := putPlan(t, b, p)
	planURL := fmt.Sprintf("s3://%s/%s/%s", cfg.Bucket, cfg.Prefix, planKey)
	dir := strings.TrimSuffix(planKey, archive.PlanName)

	cmd, stderr := shardCmd(t, "--plan", planURL, "--index", "0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if waitForObject(t, b, dir+p.Shards[0].Pieces[0].Key, exited) {
		t.Fatalf("the shard finished before it could be killed; stderr:\n%s", stderr)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited

	before := stat(t, b, dir, p.Shards[0].Pieces)
	if _, err := b.Head(context.Background(), dir+archive.ReceiptKey(0)); !blob.IsNotFound(err) {
		t.Fatalf("a receipt exists after the kill: %v", err)
	}
	rerun, stderr := shardCmd(t, "--plan", planURL, "--index", "0")
	if code := exitCode(t, rerun); code != 0 {
		t.Fatalf("rerun exit code %d; stderr:\n%s", code, stderr)
	}
	after := stat(t, b, dir, p.Shards[0].Pieces)
	for key, etag := range before {
		if after[key] != etag {
			t.Errorf("piece %s was rewritten: etag %s, then %s", key, etag, after[key])
		}
	}

	assertUninterruptedReceipt(t, b, cfg, p, dir)
	t.Logf("%d of %d pieces were complete at the kill and kept", len(before), len(p.Shards[0].Pieces))
}

// assertUninterruptedReceipt runs plan p once more, under another pipeline name and without
// interruption, and checks that the receipt in dir, of a killed and rerun shard 0, is the one
// that run writes.
func assertUninterruptedReceipt(t *testing.T, b blob.Bucket, cfg blob.S3Config, p *archive.Plan, dir string) {
	t.Helper()
	p.Pipeline = "e2e-uninterrupted"
	cleanKey := putPlan(t, b, p)
	clean, stderr := shardCmd(t, "--plan", fmt.Sprintf("s3://%s/%s/%s", cfg.Bucket, cfg.Prefix, cleanKey), "--index", "0")
	if code := exitCode(t, clean); code != 0 {
		t.Fatalf("uninterrupted run exit code %d; stderr:\n%s", code, stderr)
	}
	killed := readReceipt(t, b, dir+archive.ReceiptKey(0))
	uninterrupted := readReceipt(t, b, strings.TrimSuffix(cleanKey, archive.PlanName)+archive.ReceiptKey(0))
	killed.Pipeline = uninterrupted.Pipeline
	if !equalJSON(t, killed, uninterrupted) {
		t.Fatalf("receipt after kill and rerun differs from an uninterrupted run's:\n%+v\n%+v", killed, uninterrupted)
	}
}

// shardStore is a store that `karch shard` can be pointed at: a bucket, and the URL of one
// of its keys as --plan takes it.
type shardStore struct {
	bucket blob.Bucket
	url    func(key string) string
}

func localStore(t *testing.T) shardStore {
	t.Helper()
	dir, b := testenv.LocalStore(t)
	return shardStore{b, func(key string) string { return filepath.Join(dir, key) }}
}

func s3Store(t *testing.T) shardStore {
	t.Helper()
	cfg := testenv.S3Config(t)
	b, err := blob.NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return shardStore{b, func(key string) string { return fmt.Sprintf("s3://%s/%s/%s", cfg.Bucket, cfg.Prefix, key) }}
}

// Kubernetes may run two pods for one index at once (a node lost, then found again): they
// race through the same pieces (the loser of a create trails the winner, adopting each piece
// as it appears), both exit 0, and the store holds each produced record exactly once. On the
// local store the loser learns of the race from an exclusive link, and a piece must never be
// seen before its metadata.
func TestShardTwoAttemptsAtOnce(t *testing.T) { twoAttemptsAtOnce(t, localStore(t)) }

// The same race on S3, where the loser of a piece learns it from a 412 to its conditional
// PutObject. (blobtest races conditional multipart uploads, whose 412 comes with
// CompleteMultipartUpload, on the same server.)
func TestShardTwoAttemptsAtOnceOnS3(t *testing.T) { twoAttemptsAtOnce(t, s3Store(t)) }

func twoAttemptsAtOnce(t *testing.T, s shardStore) {
	addr := testenv.Kafka(t)
	const n, partitions = 10_000, 2
	topic := testenv.Topic(t, addr, partitions)
	msgs := numberedMessages(n, partitions)
	testenv.Produce(t, addr, topic, msgs)
	p := plan(topic, testenv.EndOffsets(t, addr, topic, partitions), 500, addr)
	planKey := putPlan(t, s.bucket, p)
	dir := strings.TrimSuffix(planKey, archive.PlanName)

	pieces := p.Shards[0].Pieces
	runAtOnce(t, 2, s.url(planKey), len(pieces))
	assertOnePerPiece(t, s.bucket, dir, pieces)
	archived := archivedRecords(t, s.bucket, dir, pieces)
	assertProducedOnce(t, archived, msgs, partitions)
	if r := readReceipt(t, s.bucket, dir+archive.ReceiptKey(0)); r.Records != n || len(r.Pieces) != len(pieces) {
		t.Fatalf("receipt: %d records in %d pieces, want %d in %d", r.Records, len(r.Pieces), n, len(pieces))
	}
}

// numberedMessages makes n records dealt round-robin to partitions, each value naming its
// index.
func numberedMessages(n, partitions int) []kafka.Message {
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Partition: i % partitions, Key: fmt.Appendf(nil, "k%d", i%97), Value: fmt.Appendf(nil, `{"n":%d}`, i),
			Time: windowStart.Add(time.Duration(i) * time.Millisecond)}
	}
	return msgs
}

// runAtOnce starts n `karch shard` processes for index 0 of the plan together, and fails
// unless every one exits 0. It logs how each attempt got its pieces, to show they raced.
func runAtOnce(t *testing.T, n int, planURL string, pieces int) {
	t.Helper()
	cmds := make([]*exec.Cmd, n)
	stderrs := make([]*bytes.Buffer, n)
	for i := range cmds {
		cmds[i], stderrs[i] = shardCmd(t, "--plan", planURL, "--index", "0")
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("attempt %d: %v; stderr:\n%s", i, err, stderrs[i])
		}
		stored, adopted := strings.Count(stderrs[i].String(), "piece stored"), strings.Count(stderrs[i].String(), "adopted")
		t.Logf("attempt %d stored %d pieces, adopted %d it found, lost %d create races", i, stored, adopted, pieces-stored-adopted)
	}
	if t.Failed() {
		t.FailNow()
	}
}

// assertOnePerPiece checks that the window holds its plan, its receipt and one object per
// piece, nothing else.
func assertOnePerPiece(t *testing.T, b blob.Bucket, dir string, pieces []archive.Piece) {
	t.Helper()
	want := []string{dir + archive.PlanName, dir + archive.ReceiptKey(0)}
	for _, pc := range pieces {
		want = append(want, dir+pc.Key)
	}
	var got []string
	if err := b.List(context.Background(), dir, func(o blob.ObjectInfo) error { got = append(got, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("the window holds %d objects:\n%v\nwant %d:\n%v", len(got), got, len(want), want)
	}
}

// archivedRecords decodes every piece, in plan order.
func archivedRecords(t *testing.T, b blob.Bucket, dir string, pieces []archive.Piece) []archive.Record {
	t.Helper()
	var out []archive.Record
	for _, pc := range pieces {
		zr, err := compress.NewReader(bytes.NewReader(testenv.ReadObject(t, b, dir+pc.Key)))
		if err != nil {
			t.Fatalf("piece %s: %v", pc.Key, err)
		}
		dec := archive.NewDecoder(zr)
		for {
			r, err := dec.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("piece %s: %v", pc.Key, err)
			}
			out = append(out, r)
		}
		zr.Close()
	}
	return out
}

// assertProducedOnce checks that the archived records, by partition and offset, are the
// produced ones, each exactly once: on a fresh topic the j-th record produced to partition p
// is at offset j.
func assertProducedOnce(t *testing.T, archived []archive.Record, msgs []kafka.Message, partitions int) {
	t.Helper()
	seen := map[[2]int64]bool{}
	for _, r := range archived {
		at := [2]int64{int64(r.Partition), r.Offset}
		i := int(r.Offset)*partitions + int(r.Partition)
		switch {
		case seen[at]:
			t.Fatalf("record %d@%d archived twice", r.Partition, r.Offset)
		case i >= len(msgs) || !bytes.Equal(r.Value, msgs[i].Value) || !bytes.Equal(r.Key, msgs[i].Key):
			t.Fatalf("record %d@%d is not the one produced there", r.Partition, r.Offset)
		}
		seen[at] = true
	}
	if len(seen) != len(msgs) {
		t.Fatalf("archived %d records, produced %d", len(seen), len(msgs))
	}
}

// waitForObject polls until key exists, and reports whether the process exited before.
func waitForObject(t *testing.T, b blob.Bucket, key string, exited <-chan error) bool {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if _, err := b.Head(context.Background(), key); err == nil {
			return false
		}
		select {
		case <-exited:
			return true
		case <-time.After(5 * time.Millisecond):
		}
	}
	t.Fatalf("piece %s did not appear within 2 minutes", key)
	return false
}

// stat returns the ETag of every piece that exists.
func stat(t *testing.T, b blob.Bucket, dir string, pieces []archive.Piece) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, pc := range pieces {
		info, err := b.Head(context.Background(), dir+pc.Key)
		if blob.IsNotFound(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out[pc.Key] = info.ETag
	}
	return out
}

func readReceipt(t *testing.T, b blob.Bucket, key string) *archive.Receipt {
	t.Helper()
	rc, err := b.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get receipt: %v", err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(rc); err != nil {
		t.Fatal(err)
	}
	r, err := archive.DecodeReceipt(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	x, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}

// cdrMessages makes n call-detail records of about 400 bytes.
func cdrMessages(n int) []kafka.Message {
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{
			Key: []byte(fmt.Sprintf("44%02d-%d", i%89, i%1000)),
			Value: []byte(fmt.Sprintf(`{"call_id":"%016x-%08x","caller":"+4479%08d","callee":"+4477%08d","start":"2026-11-23T02:%02d:%02d.%03dZ",`+
				`"duration_ms":%d,"cell":"234-15-%04d-%04d","result":"%s","imsi":"23415%010d","bytes_up":%d,"bytes_down":%d}`,
				uint64(i)*0x9e3779b97f4a7c15, i, i*7919%1e8, i*104729%1e8, i/60000%60, i/1000%60, i%1000,
				i*37%3600000, i%9973, i%7919, []string{"ANSWERED", "BUSY", "NO_ANSWER", "FAILED"}[i%4], i, i*13%1e6, i*17%1e7)),
			Time: windowStart.Add(time.Duration(i) * time.Millisecond),
		}
	}
	return msgs
}
