package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
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
// the last hours in rough time order, its store is a fresh S3 prefix.
type runPipeline struct {
	name, topic string
	start       time.Time
	bucket      blob.Bucket
	env         []string
	ends        []int64
}

// newRunPipeline fills a topic with n records per partition whose timestamps run from three
// hours ago (aligned to the hour) to now, so three hourly windows are due.
func newRunPipeline(t *testing.T, partitions, n int) *runPipeline {
	t.Helper()
	addr := testenv.Kafka(t)
	cfg := testenv.S3Config(t)
	b, err := blob.NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	start := now.Add(-3 * time.Hour).Truncate(time.Hour)
	topic := testenv.Topic(t, addr, partitions)
	var msgs []kafka.Message
	total := n * partitions
	step := now.Sub(start) / time.Duration(total)
	for i := range total {
		// A little out of order, never before the first window.
		ts := start.Add(time.Duration(i)*step + time.Duration(i%7)*time.Second).Truncate(time.Millisecond)
		msgs = append(msgs, kafka.Message{Partition: i % partitions, Time: ts, Value: fmt.Appendf(nil, `{"n":%d}`, i)})
	}
	testenv.Produce(t, addr, topic, msgs)
	s := testenv.S3Server(t)
	name := fmt.Sprintf("e2e-%d", time.Now().UnixNano()%1e12) // each test its own lease
	p := &runPipeline{name: name, topic: topic, start: start, bucket: b, ends: testenv.EndOffsets(t, addr, topic, partitions)}
	p.env = []string{
		"KARCH_PIPELINE=" + p.name, "KARCH_TOPIC=" + topic, "KARCH_BROKERS=" + addr,
		"KARCH_STORE=s3://" + cfg.Bucket + "/" + cfg.Prefix, "KARCH_S3_ENDPOINT=" + s.Endpoint, "KARCH_S3_PATH_STYLE=true",
		"KARCH_REDIS=" + testenv.Redis(t), "KARCH_WINDOW=1h", "KARCH_LATENESS=0s", "KARCH_START=" + start.Format(time.RFC3339),
		"KARCH_SHARDS=4", "KARCH_PARALLELISM=2", "KARCH_PIECE_RECORDS=20000",
		"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
	}
	return p
}

// run prepares `karch run` for the pipeline, in its own process group so that a test can
// kill it together with its shards, as Kubernetes would a pod.
func (p *runPipeline) run(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(karchBin, append([]string{"run"}, args...)...)
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

// assertCommitted checks three manifests that tile each partition from 0 to its end, with
// every archived offset once.
func (p *runPipeline) assertCommitted(t *testing.T) []*archive.Manifest {
	t.Helper()
	var ms []*archive.Manifest
	next := map[int32]int64{}
	var records int64
	for w := range 3 {
		key := p.dir(p.start.Add(time.Duration(w)*time.Hour)) + archive.ManifestName
		m, err := archive.DecodeManifest(testenv.ReadObject(t, p.bucket, key))
		if err != nil {
			t.Fatalf("window %d: %v", w, err)
		}
		for _, r := range m.Partitions {
			if r.First != next[r.Partition] {
				t.Fatalf("window %d partition %d starts at %d, the window before ended at %d", w, r.Partition, r.First, next[r.Partition])
			}
			next[r.Partition] = r.End
		}
		records += m.Records
		ms = append(ms, m)
	}
	var produced int64
	for part, end := range p.ends {
		produced += end
		if next[int32(part)] > end {
			t.Fatalf("partition %d archived to %d, past its end %d", part, next[int32(part)], end)
		}
	}
	if records > produced || records == 0 {
		t.Fatalf("manifests hold %d records of %d produced", records, produced)
	}
	return ms
}

// waitFor polls until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
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
	waitFor(t, "the first shard's receipt", func() bool { return exists(p.bucket, first+archive.ReceiptKey(0)) })
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
	if exists(p.bucket, first+archive.ManifestName) {
		t.Fatalf("the window committed before the kill; make the data larger. Output:\n%s", out)
	}
	before := p.objects(t)
	planETag := before[first+archive.PlanName]
	time.Sleep(2500 * time.Millisecond) // the killed run's lease expires; until then a rerun finds it held and exits 0

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

// A coordinator paused past its lease while a second one commits writes no second manifest
// and changes nothing once resumed.
func TestRunPausedPastLeaseWritesNothing(t *testing.T) {
	p := newRunPipeline(t, 4, 150_000)
	p.env = append(p.env, "KARCH_LEASE_TTL=2s")
	a, aOut := p.run(t)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first plan", func() bool { return exists(p.bucket, p.dir(p.start)+archive.PlanName) })
	if err := a.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // past the TTL

	b, bOut := p.run(t)
	if code := exitCode(t, b); code != 0 {
		t.Fatalf("second coordinator exit %d:\n%s", code, bOut)
	}
	committed := p.objects(t)
	ms := p.assertCommitted(t)

	if err := a.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	err := a.Wait()
	after := p.objects(t)
	for key, etag := range committed {
		if after[key] != etag {
			t.Fatalf("%s changed after the paused coordinator resumed", key)
		}
	}
	for i, m := range p.assertCommitted(t) {
		if m.RunID != ms[i].RunID {
			t.Fatalf("window %d: manifest replaced", i)
		}
	}
	log := aOut.String()
	if !strings.Contains(log, "lease lost") && !strings.Contains(log, "committed this window first") && !strings.Contains(log, "window committed already") {
		t.Fatalf("the resumed coordinator (exit %v) said nothing clear:\n%s", err, log)
	}
	t.Logf("resumed coordinator: exit %v; last line: %s", err, lastLine(log))
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
