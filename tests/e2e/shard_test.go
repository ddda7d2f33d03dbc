// Package e2e runs the karch binary as Kubernetes would: as a separate process, judged by its
// exit code, its stderr and what it leaves in the store.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
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
	err := cmd.Run()
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
	dir := t.TempDir()
	local, err := blob.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
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

	// The same plan under another pipeline name, run once without interruption.
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
	t.Logf("%d of %d pieces were complete at the kill and kept", len(before), len(p.Shards[0].Pieces))
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
