package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/compress"
	"github.com/karch-archive/karch/internal/testenv"
)

// pipeline is a topic whose records fall in the three whole hours before the current one, so
// three hourly windows are due and hold every record, and the settings that archive it to a
// fresh S3 prefix.
type pipeline struct {
	name  string
	start time.Time
	// hours is how many whole hourly windows the records span.
	hours    int
	bucket   blob.Bucket
	ends     []int64
	settings map[string]string
}

// dueWindows is how many whole hourly windows a pipeline's records span.
const dueWindows = 3

func newPipeline(t *testing.T, name string, windows int) *pipeline {
	t.Helper()
	return newPipelineOver(t, name, windows, dueWindows)
}

// newPipelineOver is newPipeline with records over the given whole hours before this one.
func newPipelineOver(t *testing.T, name string, windows, hours int) *pipeline {
	t.Helper()
	const partitions, perPartition = 4, 3000
	addr := testenv.Kafka(t)
	cfg := testenv.S3Config(t)
	b, err := blob.NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().UTC().Truncate(time.Hour).Add(-time.Duration(hours) * time.Hour)
	topic := testenv.Topic(t, addr, partitions)
	total := partitions * perPartition
	// Up to 4 s out of order, and never past the last due window.
	step := (time.Duration(hours)*time.Hour - 5*time.Second) / time.Duration(total)
	msgs := make([]kafka.Message, 0, total)
	for i := range total {
		ts := start.Add(time.Duration(i)*step + time.Duration(i%5)*time.Second).Truncate(time.Millisecond)
		msgs = append(msgs, kafka.Message{Partition: i % partitions, Time: ts, Value: fmt.Appendf(nil, `{"n":%d}`, i)})
	}
	testenv.Produce(t, addr, topic, msgs)
	s3 := testenv.S3Server(t)
	return &pipeline{name: name, start: start, hours: hours, bucket: b, ends: testenv.EndOffsets(t, addr, topic, partitions),
		settings: map[string]string{
			"KARCH_PIPELINE": name, "KARCH_TOPIC": topic, "KARCH_BROKERS": addr, "KARCH_REDIS": testenv.Redis(t),
			"KARCH_STORE": "s3://" + cfg.Bucket + "/" + cfg.Prefix, "KARCH_S3_ENDPOINT": s3.Endpoint,
			"KARCH_WINDOW": "1h", "KARCH_LATENESS": "0s", "KARCH_START": start.Format(time.RFC3339),
			"KARCH_UNTIL":       start.Add(time.Duration(hours) * time.Hour).Format(time.RFC3339),
			"KARCH_MAX_WINDOWS": strconv.Itoa(windows), "KARCH_SHARDS": "3", "KARCH_PARALLELISM": "3",
			"KARCH_RETRIES": "2", "KARCH_PIECE_RECORDS": "1500", "KARCH_LEASE_TTL": "4s",
			// The tests share one 2-core node: a CPU request this small lets eight tests'
			// shards be scheduled at once (the coordinator's own, in the CronJob, is 100m).
			"KARCH_SHARD_CPU": "10m",
		}}
}

// manifest reads the committed manifest of the pipeline's n-th window, or nil.
func (p *pipeline) manifest(t *testing.T, n int) *archive.Manifest {
	t.Helper()
	key := archive.WindowDir(p.name, p.start.Add(time.Duration(n)*time.Hour), time.Hour) + archive.ManifestName
	if _, err := p.bucket.Head(context.Background(), key); blob.IsNotFound(err) {
		return nil
	}
	m, err := archive.DecodeManifest(testenv.ReadObject(t, p.bucket, key))
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return m
}

// assertChained checks that the first n windows are committed and tile every partition from
// offset 0 with no gap and no overlap, within what was produced; that the records decoded
// from their objects are every offset of those ranges exactly once; and, with every due
// window committed, that they hold every produced offset.
func (p *pipeline) assertChained(t *testing.T, n int) {
	t.Helper()
	next := map[int32]int64{}
	seen := map[[2]int64]int{}
	var records int64
	for w := range n {
		m := p.manifest(t, w)
		if m == nil {
			t.Fatalf("window %d has no manifest", w)
		}
		for _, r := range m.Partitions {
			if r.First != next[r.Partition] {
				t.Fatalf("window %d partition %d starts at %d; the window before ended at %d", w, r.Partition, r.First, next[r.Partition])
			}
			next[r.Partition] = r.End
		}
		for _, o := range m.Objects {
			dir := archive.WindowDir(p.name, m.Window.Start, time.Hour)
			for _, rec := range decodeObject(t, p.bucket, dir+o.Key) {
				seen[[2]int64{int64(rec.Partition), rec.Offset}]++
			}
		}
		records += m.Records
	}
	for part, end := range next {
		for off := range end {
			if c := seen[[2]int64{int64(part), off}]; c != 1 {
				t.Fatalf("partition %d offset %d decoded %d times from the committed windows, want 1", part, off, c)
			}
		}
	}
	var produced int64
	for part, end := range p.ends {
		produced += end
		if next[int32(part)] > end || (n == p.hours && next[int32(part)] != end) {
			t.Fatalf("partition %d archived to %d of %d after %d windows", part, next[int32(part)], end, n)
		}
	}
	if records == 0 || records > produced || (n == p.hours && records != produced) {
		t.Fatalf("%d windows hold %d records of %d produced", n, records, produced)
	}
	t.Logf("%d windows committed, %d of %d produced records", n, records, produced)
}

// decodeObject reads every record of a stored piece.
func decodeObject(t *testing.T, b blob.Bucket, key string) []archive.Record {
	t.Helper()
	zr, err := compress.NewReader(bytes.NewReader(testenv.ReadObject(t, b, key)))
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	defer zr.Close()
	var out []archive.Record
	for dec := archive.NewDecoder(zr); ; {
		r, err := dec.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("decode %s: %v", key, err)
		}
		out = append(out, r)
	}
}

// shardIndex is the completion index of a shard pod, or -1 for any other pod.
func shardIndex(pod *corev1.Pod) int {
	if pod.Labels["app.kubernetes.io/component"] != "shard" {
		return -1
	}
	i, err := strconv.Atoi(pod.Annotations[batchv1.JobCompletionIndexAnnotation])
	if err != nil {
		return -1
	}
	return i
}

// TestCronJobArchivesThroughIndexedJobs is the deployment end to end: the kind overlay
// applied, the coordinator started from its CronJob, creating one Indexed Job per window as
// its own ServiceAccount, and three windows committed exactly once.
func TestCronJobArchivesThroughIndexedJobs(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil)
	p := newPipeline(t, c.ns, dueWindows)
	c.deploy(p.settings)
	c.startRun("run-1")
	run := c.waitJob("run-1", 3*time.Minute)
	if finished(run) != batchv1.JobComplete {
		t.Fatalf("coordinator job: %+v", run.Status)
	}
	p.assertChained(t, dueWindows)
	jobs := c.shardJobs()
	if len(jobs) != dueWindows {
		t.Fatalf("%d shard jobs, want one per window", len(jobs))
	}
	for _, j := range jobs {
		if finished(&j) != batchv1.JobComplete || len(j.OwnerReferences) != 1 || j.OwnerReferences[0].Kind != "CronJob" || j.OwnerReferences[0].Name != "karch-cdr" {
			t.Errorf("shard job %s: complete %v, owners %+v; want complete and owned by the CronJob karch-cdr", j.Name, finished(&j), j.OwnerReferences)
		}
		// The ConfigMap names no shard image: the shards run the coordinator's.
		if img := j.Spec.Template.Spec.Containers[0].Image; img != image {
			t.Errorf("shard job %s runs %s, want the coordinator's image %s", j.Name, img, image)
		}
	}
	c.assertNoSecret(testenv.S3Server(t).SecretKey, jobs)
}

// assertNoSecret checks that a secret is in no pod's output and no shard Job: the shards get
// it from their Secret, by reference.
func (c *cluster) assertNoSecret(secret string, jobs []batchv1.Job) {
	c.t.Helper()
	doc, err := json.Marshal(jobs)
	if err != nil {
		c.t.Fatal(err)
	}
	if strings.Contains(string(doc), secret) {
		c.t.Error("a shard job holds the S3 secret key")
	}
	pods, err := c.client.CoreV1().Pods(c.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	for _, p := range pods.Items {
		out, err := c.log(&p)
		if err != nil || len(out) == 0 {
			c.t.Errorf("pod %s left no log (%v)", p.Name, err)
		}
		if strings.Contains(string(out), secret) {
			c.t.Errorf("pod %s logged the S3 secret key", p.Name)
		}
	}
}

// TestShardExit1IsRetried: one attempt of one shard fails retryably (its S3 endpoint refuses
// connections); the Job controller runs the index again and the window commits.
func TestShardExit1IsRetried(t *testing.T) {
	t.Parallel()
	var once sync.Once
	c := newCluster(t, func(_ context.Context, index int) (env []string) {
		if index == 1 {
			once.Do(func() { env = []string{"KARCH_S3_ENDPOINT=http://127.0.0.1:1"} })
		}
		return env
	})
	p := newPipeline(t, c.ns, 1)
	c.deploy(p.settings)
	c.startRun("run-1")
	if run := c.waitJob("run-1", 3*time.Minute); finished(run) != batchv1.JobComplete {
		t.Fatalf("coordinator job: %+v", run.Status)
	}
	p.assertChained(t, 1)
	c.assertRetriedOnce(1)
}

// holdShards is a tamper hook that lets no shard start its work before release is closed
// (or three minutes have passed).
func holdShards(release <-chan struct{}) func(context.Context, int) []string {
	return func(ctx context.Context, _ int) []string {
		select {
		case <-release:
		case <-ctx.Done():
		case <-time.After(3 * time.Minute):
		}
		return nil
	}
}

// assertRetriedOnce checks that the window's only shard Job had one failed pod, which exited
// with code, and was retried.
func (c *cluster) assertRetriedOnce(code int32) {
	c.t.Helper()
	jobs := c.shardJobs()
	if len(jobs) != 1 {
		c.t.Fatalf("%d shard jobs, want 1", len(jobs))
	}
	if codes := c.exitCodes(jobs[0].Name); !slices.Contains(codes, code) || jobs[0].Status.Failed != 1 {
		c.t.Fatalf("shard pods exited %v with %d failed; want one exit %d, retried", codes, jobs[0].Status.Failed, code)
	}
}

// TestShardCrashIsRetried: a shard that panics (Go's exit 2, here through karch's test hook)
// is not a permanent failure: the pod failure policy leaves it to the index's retries, and the
// window commits.
func TestShardCrashIsRetried(t *testing.T) {
	t.Parallel()
	var once sync.Once
	c := newCluster(t, func(_ context.Context, index int) (env []string) {
		if index == 0 {
			once.Do(func() { env = []string{"KARCHTEST_PANIC_ONCE=/tmp/crashed"} })
		}
		return env
	})
	p := newPipeline(t, c.ns, 1)
	c.deploy(p.settings)
	c.startRun("run-1")
	if run := c.waitJob("run-1", 3*time.Minute); finished(run) != batchv1.JobComplete {
		t.Fatalf("coordinator job: %+v", run.Status)
	}
	p.assertChained(t, 1)
	c.assertRetriedOnce(2) // a crash
}

// TestFailedShardJobIsReplaced: a shard index that runs out of retries fails the Job
// retryably, the coordinator exits 1, and its Job's next pod replaces the failed shard Job with
// a new one, which commits the window.
func TestFailedShardJobIsReplaced(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	broken := 2 // both attempts the first Job allows index 1
	c := newCluster(t, func(_ context.Context, index int) []string {
		mu.Lock()
		defer mu.Unlock()
		if index == 1 && broken > 0 {
			broken--
			return []string{"KARCH_S3_ENDPOINT=http://127.0.0.1:1"}
		}
		return nil
	})
	p := newPipeline(t, c.ns, 1)
	p.settings["KARCH_RETRIES"] = "1"
	c.deploy(p.settings)
	c.startRun("run-1")
	first := c.waitShardJob()
	if run := c.waitJob("run-1", 3*time.Minute); finished(run) != batchv1.JobComplete {
		t.Fatalf("coordinator job: %+v", run.Status)
	}
	if codes := c.exitCodes("run-1"); !slices.Equal(sorted(codes), []int32{0, 1}) {
		t.Fatalf("coordinator pods exited %v; want 1 (shard job failed) and 0", codes)
	}
	jobs := c.shardJobs()
	if len(jobs) != 1 || jobs[0].UID == first.UID || finished(&jobs[0]) != batchv1.JobComplete {
		t.Fatalf("shard jobs %d; want one complete replacement of the failed one", len(jobs))
	}
	p.assertChained(t, 1)
}

// TestShardExit3FailsTheRun: a shard that fails permanently (its index is out of the plan's
// range) fails the Job through its pod failure policy, at once; the coordinator exits 3 and
// commits nothing.
func TestShardExit3FailsTheRun(t *testing.T) {
	t.Parallel()
	c := newCluster(t, func(_ context.Context, index int) []string {
		if index == 0 {
			return []string{"JOB_COMPLETION_INDEX=99"}
		}
		return nil
	})
	p := newPipeline(t, c.ns, 1)
	c.deploy(p.settings)
	c.startRun("run-1")
	run := c.waitJob("run-1", 3*time.Minute)
	if finished(run) != batchv1.JobFailed {
		t.Fatalf("coordinator job %+v; want failed", run.Status)
	}
	if codes := c.exitCodes("run-1"); len(codes) != 1 || codes[0] != 3 {
		t.Fatalf("coordinator pods exited %v; want one exit 3, not retried", codes)
	}
	if log := c.podLog("run-1"); !regexp.MustCompile(`exit codes by index \[([^\]]* )?0:3[ \]]`).MatchString(log) {
		t.Errorf("the coordinator's log does not name the shard that exited 3:\n%s", log)
	}
	jobs := c.shardJobs()
	if len(jobs) != 1 || !hasCondition(&jobs[0], batchv1.JobFailed, batchv1.JobReasonPodFailurePolicy) {
		t.Fatalf("shard jobs %+v; want one failed by its pod failure policy", jobs)
	}
	if m := p.manifest(t, 0); m != nil {
		t.Fatalf("a manifest was committed: %+v", m)
	}
}

// TestKilledCoordinatorAdoptsItsJob: the coordinator killed while it awaits its shards is
// started again by its Job and adopts the shard Job already running, never a second.
func TestKilledCoordinatorAdoptsItsJob(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	c := newCluster(t, holdShards(release)) // until the coordinator is gone
	p := newPipeline(t, c.ns, 1)
	c.deploy(p.settings)
	c.startRun("run-1")
	shardJob := c.waitShardJob()
	c.killCoordinator("run-1")
	close(release)
	if run := c.waitJob("run-1", 3*time.Minute); finished(run) != batchv1.JobComplete {
		t.Fatalf("coordinator job: %+v", run.Status)
	}
	if codes := c.exitCodes("run-1"); !slices.Equal(sorted(codes), []int32{0, 137}) {
		t.Fatalf("coordinator pods exited %v; want 137 (killed) and 0", codes)
	}
	jobs := c.shardJobs()
	if len(jobs) != 1 || jobs[0].UID != shardJob.UID {
		t.Fatalf("%d shard jobs after the restart; want the first one only", len(jobs))
	}
	p.assertChained(t, 1)
}

func (c *cluster) waitShardJob() batchv1.Job {
	c.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if jobs := c.shardJobs(); len(jobs) > 0 {
			return jobs[0]
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatal("the coordinator created no shard job")
	return batchv1.Job{}
}

// killCoordinator sends SIGKILL to the coordinator of a Job, once its container runs.
func (c *cluster) killCoordinator(job string) {
	c.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		pod := c.onlyPod(job)
		err := c.kill(&pod)
		if err == nil {
			return
		}
		if !errors.Is(err, testenv.ErrNotRunning) || time.Now().After(deadline) {
			c.t.Fatalf("kill the coordinator of %s: %v", job, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// podLog is the output of a Job's only pod.
func (c *cluster) podLog(job string) string {
	c.t.Helper()
	pod := c.onlyPod(job)
	out, err := c.log(&pod)
	if err != nil {
		c.t.Fatal(err)
	}
	return string(out)
}

func (c *cluster) onlyPod(job string) corev1.Pod {
	c.t.Helper()
	pods, err := c.client.CoreV1().Pods(c.ns).List(context.Background(), metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job})
	if err != nil || len(pods.Items) != 1 {
		c.t.Fatalf("pods of job %s: %v, %v; want one", job, pods, err)
	}
	return pods.Items[0]
}

// TestCoordinatorRoleIsNarrow: the coordinator's ServiceAccount manages Jobs in its own
// namespace and nothing else: no Secrets, no other namespace.
func TestCoordinatorRoleIsNarrow(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil)
	c.deploy(map[string]string{})
	ctx := context.Background()
	as := c.clientAs("karch-coordinator")
	if _, err := as.BatchV1().Jobs(c.ns).List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("list jobs in its namespace: %v", err)
	}
	if _, err := as.CoreV1().Secrets(c.ns).Get(ctx, "karch-s3", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("get a secret: %v; want Forbidden", err)
	}
	if _, err := as.CoreV1().Secrets(c.ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list secrets: %v; want Forbidden", err)
	}
	other := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "escape"}, Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "x", Image: image}}}}}}
	if _, err := as.BatchV1().Jobs("default").Create(ctx, other, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("create a job in namespace default: %v; want Forbidden", err)
	}
	if _, err := as.BatchV1().Jobs("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list jobs in namespace default: %v; want Forbidden", err)
	}
}

// TestOverlaysPassServerDryRun: every overlay, the Secret example and the kind bench's
// manifests are valid for a real API server (with a stand-in PrometheusRule CRD).
func TestOverlaysPassServerDryRun(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil)
	c.kubectl(nil, "apply", "-f", "testdata/prometheusrule-crd.yaml")
	c.kubectl(nil, "wait", "--for=condition=Established", "--timeout=60s", "crd/prometheusrules.monitoring.coreos.com")
	// Namespaced objects of a dry run need their namespace to exist for real.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "karch"}}
	if _, err := c.client.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for _, overlay := range []string{"overlays/kind", "overlays/production", "backfill"} {
		rendered := c.kubectl(nil, "kustomize", "../../deploy/"+overlay)
		out := c.kubectl([]byte(rendered), "apply", "--dry-run=server", "-f", "-")
		t.Logf("overlay %s:\n%s", overlay, out)
	}
	for _, f := range []string{"../../deploy/secret.example.yaml", "../../bench/kind/infra.yaml"} {
		if _, err := os.Stat(f); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s:\n%s", f, c.kubectl(nil, "apply", "--dry-run=server", "-f", f))
	}
}

func sorted(codes []int32) []int32 {
	slices.Sort(codes)
	return codes
}

func hasCondition(job *batchv1.Job, typ batchv1.JobConditionType, reason string) bool {
	for _, c := range job.Status.Conditions {
		if c.Type == typ && c.Status == corev1.ConditionTrue && c.Reason == reason {
			return true
		}
	}
	return false
}
