package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/internal/testenv"
)

// runPipeline is a pipeline for `karch run` on the test servers: its topic holds records of
// three fixed hourly windows in rough time order, its store is a fresh S3 prefix.
type runPipeline struct {
	name, topic string
	start       time.Time
	bucket      blob.Bucket
	env         []string
	ends        []int64
	// produced is what the test wrote to the topic.
	produced []kafka.Message
}

// runWindows is how many windows a run pipeline has.
const runWindows = 3

// pinnedStart is where a run pipeline's first window begins: 02:00 UTC yesterday, so that
// all its windows are long due whenever the test runs, and KARCH_UNTIL ends the pipeline
// after them: the set of due windows cannot change while a test runs, even if an hour or a
// day turns. (A fixed date would fall out of Kafka's retention, and would make the
// coordinator's day-by-day search for the newest manifest longer every day.)
func pinnedStart() time.Time {
	return time.Now().UTC().Truncate(24 * time.Hour).Add(-22 * time.Hour)
}

// newRunPipeline fills a topic with n records per partition whose timestamps run through the
// pipeline's three windows, a little out of order.
func newRunPipeline(t *testing.T, partitions, n int) *runPipeline {
	t.Helper()
	addr := testenv.Kafka(t)
	cfg := testenv.S3Config(t)
	b, err := blob.NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := pinnedStart()
	topic := testenv.Topic(t, addr, partitions)
	msgs := runMessages(start, partitions, n)
	testenv.Produce(t, addr, topic, msgs)
	s := testenv.S3Server(t)
	name := fmt.Sprintf("e2e-%d", time.Now().UnixNano()%1e12) // each test its own lease
	p := &runPipeline{name: name, topic: topic, start: start, bucket: b, ends: testenv.EndOffsets(t, addr, topic, partitions), produced: msgs}
	p.env = []string{
		"KARCH_PIPELINE=" + p.name, "KARCH_TOPIC=" + topic, "KARCH_BROKERS=" + addr,
		"KARCH_STORE=s3://" + cfg.Bucket + "/" + cfg.Prefix, "KARCH_S3_ENDPOINT=" + s.Endpoint, "KARCH_S3_PATH_STYLE=true",
		"KARCH_REDIS=" + testenv.Redis(t), "KARCH_WINDOW=1h", "KARCH_LATENESS=0s", "KARCH_START=" + start.Format(time.RFC3339),
		"KARCH_UNTIL=" + start.Add(runWindows*time.Hour).Format(time.RFC3339),
		"KARCH_SHARDS=4", "KARCH_PARALLELISM=2", "KARCH_PIECE_RECORDS=20000",
		"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
	}
	return p
}

// runMessages makes n records per partition stamped through the windows from start, each up
// to 6s out of order but none past the last window, with null and binary keys and headers
// among them. Each value is unique.
func runMessages(start time.Time, partitions, n int) []kafka.Message {
	total := n * partitions
	step := (runWindows*time.Hour - 10*time.Second) / time.Duration(total)
	msgs := make([]kafka.Message, total)
	for i := range msgs {
		ts := start.Add(time.Duration(i)*step + time.Duration(i%7)*time.Second).Truncate(time.Millisecond)
		msgs[i] = kafka.Message{Partition: i % partitions, Time: ts, Value: fmt.Appendf(nil, `{"n":%d}`, i)}
		if i%4 != 0 {
			msgs[i].Key = fmt.Appendf(nil, "\xff%d", i%89)
		}
		if i%10 == 0 {
			msgs[i].Headers = []kafka.Header{{Key: "trace", Value: fmt.Appendf(nil, "%x", i)}}
		}
	}
	return msgs
}

// run prepares `karch run` for the pipeline, in its own process group so that a test can
// kill it together with its shards, as Kubernetes would a pod.
func (p *runPipeline) run(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	return p.command(t, "run", args...)
}

// command prepares another karch command with the pipeline's settings, as run does.
func (p *runPipeline) command(t *testing.T, name string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(karchBin, append([]string{name}, args...)...)
	cmd.Env = append(append(os.Environ(), p.env...), "KARCH_BINARY="+karchBin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, &out
}

func (p *runPipeline) dir(w time.Time) string { return archive.WindowDir(p.name, w, time.Hour) }

// objects returns the ETag of every object under the pipeline.
func (p *runPipeline) objects(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := p.bucket.List(context.Background(), p.name+"/", func(o blob.ObjectInfo) error { out[o.Key] = o.ETag; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// manifests reads the pipeline's committed manifests, oldest first, failing the test if a
// window has none.
func (p *runPipeline) manifests(t *testing.T) []*archive.Manifest {
	t.Helper()
	var ms []*archive.Manifest
	for w := range runWindows {
		key := p.dir(p.start.Add(time.Duration(w)*time.Hour)) + archive.ManifestName
		m, err := archive.DecodeManifest(testenv.ReadObject(t, p.bucket, key))
		if err != nil {
			t.Fatalf("window %d: %v", w, err)
		}
		ms = append(ms, m)
	}
	return ms
}

// assertCommitted checks that the pipeline's windows are committed, that their manifests tile
// each partition from 0 to its end, and that their objects hold every produced record exactly
// once, as produced.
func (p *runPipeline) assertCommitted(t *testing.T) []*archive.Manifest {
	t.Helper()
	ms := p.manifests(t)
	next := map[int32]int64{}
	for w, m := range ms {
		for _, r := range m.Partitions {
			if r.First != next[r.Partition] {
				t.Fatalf("window %d partition %d starts at %d, the window before ended at %d", w, r.Partition, r.First, next[r.Partition])
			}
			next[r.Partition] = r.End
		}
	}
	for part, end := range p.ends {
		if next[int32(part)] != end {
			t.Fatalf("partition %d archived to %d, its end is %d", part, next[int32(part)], end)
		}
	}
	p.assertRecords(t, ms)
	return ms
}

// waitLeaseExpired waits until the pipeline's lease, whose holder can no longer renew it, is
// gone from Redis: it is there at first, and leaves when its TTL runs out.
func (p *runPipeline) waitLeaseExpired(t *testing.T) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	defer rdb.Close()
	key := "karch:lease:" + p.name
	held := func() bool {
		n, err := rdb.Exists(context.Background(), key).Result()
		if err != nil {
			t.Fatalf("look up the lease %s: %v", key, err)
		}
		return n == 1
	}
	if !held() {
		t.Fatalf("the lease %s is not in Redis: the test would wait for nothing", key)
	}
	testenv.WaitFor(t, "the lease to expire", 2*time.Minute, func() bool { return !held() })
}

// waitExit waits for a started command and returns its exit code.
func waitExit(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	return codeOf(t, cmd, cmd.Wait())
}

func exists(b blob.Bucket, key string) bool {
	_, err := b.Head(context.Background(), key)
	return err == nil
}

func TestRunBadConfiguration(t *testing.T) {
	dir := t.TempDir()
	yamlFile := path.Join(dir, "karch.yaml")
	if err := os.WriteFile(yamlFile, []byte("pipeline: cdr\nbrokers: [127.0.0.1:1]\ntopic: cdr\nstore: /tmp/x\nwindwo: 1h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"--pipeline", "cdr", "--topic", "cdr", "--store", dir}
	for _, tc := range []struct {
		name  string
		args  []string
		field string
	}{
		{"unknown yaml key", []string{"--config", yamlFile}, `unknown key "windwo"`},
		{"no brokers", base, "brokers"},
		{"window does not divide a day", append(base, "--brokers", "b:9092", "--window", "7m"), "window"},
		{"negative parallelism", append(base, "--brokers", "b:9092", "--parallelism", "-1"), "parallelism"},
		{"unknown runner", append(base, "--brokers", "b:9092", "--runner", "docker"), "runner"},
		{"kube runner without an image", append(base, "--brokers", "b:9092", "--runner", "kube"), "shard_image"},
		{"bad shard memory", append(base, "--brokers", "b:9092", "--shard-memory", "lots"), "shard_memory"},
		{"kube runner outside a pod", append(base, "--brokers", "b:9092", "--runner", "kube", "--shard-image", "karch:1",
			"--kubeconfig", path.Join(dir, "missing")), "kubeconfig"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(karchBin, append([]string{"run"}, tc.args...)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if code := exitCode(t, cmd); code != 3 {
				t.Fatalf("exit %d, want 3; stderr:\n%s", code, stderr.String())
			}
			if line := lastLine(stderr.String()); !strings.Contains(line, tc.field) {
				t.Fatalf("last line %q does not name %s", line, tc.field)
			}
		})
	}
}

// Killed with its shards after the plan and some shards, the coordinator's next run adopts
// the plan, keeps the finished pieces and commits.
func TestRunKilledAfterPlanIsAdopted(t *testing.T) {
	p := newRunPipeline(t, 4, 150_000)
	p.env = append(p.env, "KARCH_LEASE_TTL=2s")
	cmd, out := p.run(t)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	first := p.dir(p.start)
	testenv.WaitFor(t, "the first shard's receipt", 2*time.Minute, func() bool { return exists(p.bucket, first+archive.ReceiptKey(0)) })
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
	// Until the killed run's lease expires, a rerun finds it held and exits 0 doing nothing.
	p.waitLeaseExpired(t)
	if exists(p.bucket, first+archive.ManifestName) {
		t.Fatalf("the window committed before the kill; make the data larger. Output:\n%s", out)
	}
	before := p.objects(t)
	planETag := before[first+archive.PlanName]

	rerun, out := p.run(t)
	if code := exitCode(t, rerun); code != 0 {
		t.Fatalf("rerun exit %d:\n%s", code, out)
	}
	after := p.objects(t)
	kept := 0
	for key, etag := range before {
		if strings.Contains(key, "/data/") {
			if after[key] != etag {
				t.Fatalf("finished piece %s was rewritten", key)
			}
			kept++
		}
	}
	if after[first+archive.PlanName] != planETag || kept == 0 {
		t.Fatalf("plan rewritten or no piece kept (%d kept)", kept)
	}
	ms := p.assertCommitted(t)
	plan, err := archive.DecodePlan(testenv.ReadObject(t, p.bucket, first+archive.PlanName))
	if err != nil {
		t.Fatal(err)
	}
	if plan.RunID == ms[0].RunID {
		t.Fatalf("the manifest's run %s is the killed run's: the rerun should have adopted its plan", ms[0].RunID)
	}
	t.Logf("%d pieces kept from the killed run", kept)
}

// A coordinator paused past its lease while a second one commits exits 1 (lease lost) once
// resumed, and writes nothing: no new object, no object changed, no manifest replaced.
func TestRunPausedPastLeaseWritesNothing(t *testing.T) {
	p := newRunPipeline(t, 4, 150_000)
	p.env = append(p.env, "KARCH_LEASE_TTL=2s")
	a, aOut := p.run(t)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the first plan", 2*time.Minute, func() bool { return exists(p.bucket, p.dir(p.start)+archive.PlanName) })
	if err := a.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	p.waitLeaseExpired(t)

	b, bOut := p.run(t)
	if code := exitCode(t, b); code != 0 {
		t.Fatalf("second coordinator exit %d:\n%s", code, bOut)
	}
	ms := p.assertCommitted(t)
	// Only the coordinator is paused, as a pod would be; the shards it started run on.
	testenv.WaitFor(t, "the paused coordinator's shards to exit", 2*time.Minute, func() bool { return liveInGroup(t, a.Process.Pid) == 1 })
	before := p.objects(t)

	if err := a.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	code := waitExit(t, a)
	assertSameObjects(t, before, p.objects(t))
	for i, m := range p.manifests(t) {
		if m.RunID != ms[i].RunID {
			t.Fatalf("window %d: manifest replaced", i)
		}
	}
	if log := aOut.String(); code != 1 || !strings.Contains(log, "lease lost") {
		t.Fatalf("the resumed coordinator exited %d; want 1, lease lost:\n%s", code, log)
	}
}

// assertSameObjects fails the test if after has an object that before has not, or lacks or
// changed one that before has.
func assertSameObjects(t *testing.T, before, after map[string]string) {
	t.Helper()
	for key, etag := range after {
		if _, ok := before[key]; !ok {
			t.Errorf("new object %s", key)
		} else if before[key] != etag {
			t.Errorf("object %s changed", key)
		}
	}
	for key := range before {
		if _, ok := after[key]; !ok {
			t.Errorf("object %s is gone", key)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// liveInGroup counts the processes of process group pgid that have not exited (zombies
// left out), from /proc.
func liveInGroup(t *testing.T, pgid int) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // not a process, or gone
		}
		// "pid (comm) state ppid pgrp ...", where comm may hold spaces and parentheses.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) > 2 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			n++
		}
	}
	return n
}

// The S3 secret key and the Redis password appear in no log line, plan, receipt or
// manifest.
func TestRunKeepsSecretsOut(t *testing.T) {
	p := newRunPipeline(t, 2, 5_000)
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	defer rdb.Close()
	user, password := fmt.Sprintf("karch-e2e-%d", time.Now().UnixNano()), fmt.Sprintf("redis-pw-%d", time.Now().UnixNano())
	if err := rdb.Do(context.Background(), "ACL", "SETUSER", user, "on", ">"+password, "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	defer rdb.Do(context.Background(), "ACL", "DELUSER", user)
	p.env = append(p.env, "KARCH_REDIS_USERNAME="+user, "KARCH_REDIS_PASSWORD="+password, "KARCH_LOG_LEVEL=debug")

	cmd, out := p.run(t)
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	p.assertCommitted(t)
	secrets := []string{password, testenv.S3Server(t).SecretKey}
	for key := range p.objects(t) {
		if strings.Contains(key, "/data/") {
			continue
		}
		for _, s := range secrets {
			if bytes.Contains(testenv.ReadObject(t, p.bucket, key), []byte(s)) {
				t.Fatalf("%s contains a secret", key)
			}
		}
	}
	for _, s := range secrets {
		if strings.Contains(out.String(), s) {
			t.Fatal("the logs contain a secret")
		}
	}
	if !strings.Contains(out.String(), `"level":"DEBUG"`) && !strings.Contains(out.String(), `"level":"INFO"`) {
		t.Fatalf("no log lines were written, so the check proves nothing:\n%s", out)
	}
}
