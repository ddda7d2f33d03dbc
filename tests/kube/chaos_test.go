package kube

import (
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/tests/chaos/checker"
)

// The chaos tests inject faults into real runs at seeded random moments and then prove, by
// decoding every committed record by offset, that each produced record was archived exactly
// once. Shards reach S3 through a proxy that holds each request (slowS3), so that a shard
// runs for seconds and a fault lands between its pieces or while one is written.

// TestChaosDeletedShardPods: shard pods deleted (kubectl delete pod) at random moments while
// shards run. The kubelet stops each one and reports it Failed; a deletion carries no
// DisruptionTarget, so the Job controller counts it against the index's backoffLimitPerIndex
// and creates the pod again; an index that runs out of retries fails the Job, and the
// coordinator's next pod replaces the Job. Every window commits, exactly once.
func TestChaosDeletedShardPods(t *testing.T) {
	t.Parallel()
	rng, seed := chaosRand(t, 20261125)
	c := newCluster(t, shardsVia(slowS3(t, 150*time.Millisecond)))
	rec := c.record()
	p := newPipeline(t, c.ns, dueWindows)
	p.settings["KARCH_RETRIES"] = "1" // a second deletion of one index fails the Job
	p.settings["KARCH_PIECE_RECORDS"] = "250"
	c.deploy(p.settings)
	c.startRun("run-1")
	var deleted []types.UID
	faults := c.inject(rec, rng, 5, [2]time.Duration{300 * time.Millisecond, 1500 * time.Millisecond},
		func() []*corev1.Pod { return rec.live(isShard) },
		func(pod *corev1.Pod) bool {
			err := c.client.CoreV1().Pods(c.ns).Delete(context.Background(), pod.Name, metav1.DeleteOptions{Preconditions: exactly(pod)})
			if err == nil {
				deleted = append(deleted, pod.UID)
			}
			return c.hit(err, "delete", pod)
		})
	t.Logf("chaos: faults=%d seed=%d", faults, seed)
	if run := c.waitJob("run-1", 3*time.Minute); finished(run) != batchv1.JobComplete {
		t.Fatalf("coordinator job: %+v", run.Status)
	}
	if faults < 3 {
		t.Fatalf("%d shard pods deleted; want at least 3", faults)
	}
	p.assertChained(t, dueWindows)
	p.assertChecked(t)
	for _, uid := range deleted {
		rec.assertCounted(t, uid)
	}
	rec.assertNoneIgnored(t)
	c.assertFailedJobsReplaced(rec, dueWindows)
}

// TestChaosEvictedShardPods: shard pods evicted through the Eviction API, as `kubectl drain`
// does, at random moments: indexes evicted twice where backoffLimitPerIndex allows one
// failure. The API server marks each pod with the DisruptionTarget condition before it
// deletes it; the kubelet stops the container and reports the pod Failed keeping the
// condition; the Job's pod failure policy ignores it, so no eviction burns a
// retry: every index succeeds in the same Job, which counts no failure.
func TestChaosEvictedShardPods(t *testing.T) {
	t.Parallel()
	rng, seed := chaosRand(t, 4242)
	// A replacement adopts the pieces its evicted pod stored and may finish within a gap
	// between faults: so every shard is held 2 s first, running, so that a replacement is
	// still there to be evicted again (CI once saw three evictions and no second one).
	c := newCluster(t, heldFirst(2*time.Second, shardsVia(slowS3(t, 150*time.Millisecond))))
	rec := c.record()
	p := newPipeline(t, c.ns, dueWindows)
	p.settings["KARCH_RETRIES"] = "1"
	p.settings["KARCH_PIECE_RECORDS"] = "250"
	c.deploy(p.settings)
	c.startRun("run-1")
	const perIndex = 2 // more than backoffLimitPerIndex, 1, would allow
	evicted := map[jobIndex]int{}
	var pods []types.UID
	faults := c.inject(rec, rng, 6, [2]time.Duration{150 * time.Millisecond, 900 * time.Millisecond},
		func() []*corev1.Pod {
			// The replacement of an evicted pod comes first, so that some index is evicted
			// twice; else a fresh index, of this window or a later one.
			if again := rec.live(func(p *corev1.Pod) bool { return isShard(p) && evicted[indexOf(p)] == 1 }); len(again) > 0 {
				return again
			}
			return rec.live(func(p *corev1.Pod) bool { return isShard(p) && evicted[indexOf(p)] == 0 })
		},
		func(pod *corev1.Pod) bool {
			err := c.client.CoreV1().Pods(c.ns).EvictV1(context.Background(), &policyv1.Eviction{
				ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: c.ns}, DeleteOptions: &metav1.DeleteOptions{Preconditions: exactly(pod)}})
			if err == nil {
				evicted[indexOf(pod)]++
				pods = append(pods, pod.UID)
			}
			return c.hit(err, "evict", pod)
		})
	t.Logf("chaos: faults=%d seed=%d", faults, seed)
	t.Logf("evictions by job and index: %v", evicted)
	if run := c.waitJob("run-1", 3*time.Minute); finished(run) != batchv1.JobComplete {
		t.Fatalf("coordinator job: %+v", run.Status)
	}
	if faults < 4 || !slices.Contains(slices.Collect(maps.Values(evicted)), perIndex) {
		t.Fatalf("evictions %v; want at least 4, and one index evicted %d times", evicted, perIndex)
	}
	p.assertChained(t, dueWindows)
	p.assertChecked(t)
	if codes := c.exitCodes("run-1"); !slices.Equal(codes, []int32{0}) {
		t.Fatalf("coordinator pods exited %v; want one exit 0: no eviction fails a shard job", codes)
	}
	for _, uid := range pods {
		rec.assertIgnored(t, uid)
	}
	rec.assertEvictionsFree(t, c.shardJobs())
}

// jobIndex names one completion index of one shard Job.
type jobIndex struct {
	job   types.UID
	index int
}

func indexOf(pod *corev1.Pod) jobIndex {
	return jobIndex{types.UID(pod.Labels[batchv1.ControllerUidLabel]), shardIndex(pod)}
}

// TestChaosKilledCoordinator: the coordinator's pod killed (SIGKILL) twice at random moments
// while a window's Indexed Job runs. Each time the coordinator's Job starts another pod, which
// adopts the shard Job already there, never creating a second, and commits.
func TestChaosKilledCoordinator(t *testing.T) {
	t.Parallel()
	rng, seed := chaosRand(t, 77)
	c := newCluster(t, shardsVia(slowS3(t, 250*time.Millisecond)))
	rec := c.record()
	p := newPipeline(t, c.ns, dueWindows)
	p.settings["KARCH_PIECE_RECORDS"] = "250"
	c.deploy(p.settings)
	c.startRun("run-1")
	// The coordinator's Job allows 3 failures, each after a longer backoff (10 s, 20 s): two
	// kills keep the test short and the Job alive.
	var killed []killedRun
	faults := c.inject(rec, rng, 2, [2]time.Duration{300 * time.Millisecond, 2500 * time.Millisecond},
		func() []*corev1.Pod {
			if rec.runningShardJob() == nil {
				return nil
			}
			return rec.live(func(p *corev1.Pod) bool { return p.Labels[batchv1.JobNameLabel] == "run-1" })
		},
		func(pod *corev1.Pod) bool {
			job := rec.runningShardJob()
			if job == nil {
				return false // it finished since the pick
			}
			err := c.kill(pod)
			if err == nil {
				killed = append(killed, killedRun{pod: pod.Name, job: job.Name, uid: job.UID, at: time.Now()})
			}
			return c.hit(err, "kill", pod)
		})
	t.Logf("chaos: faults=%d seed=%d", faults, seed)
	if run := c.waitJob("run-1", 3*time.Minute); finished(run) != batchv1.JobComplete {
		t.Fatalf("coordinator job: %+v", run.Status)
	}
	if faults < 2 {
		t.Fatalf("%d coordinator pods killed; want 2", faults)
	}
	if codes := c.exitCodes("run-1"); !slices.Equal(sorted(codes), []int32{0, 137, 137}) {
		t.Fatalf("coordinator pods exited %v; want 137 twice (killed) and 0", codes)
	}
	p.assertChained(t, dueWindows)
	p.assertChecked(t)
	if made := rec.shardJobUIDs(); len(made) != dueWindows {
		t.Fatalf("%d shard jobs were created for %d windows; want each adopted, never created again", len(made), dueWindows)
	}
	for _, k := range killed {
		c.assertAdopted(rec, k)
	}
}

// killedRun is a coordinator pod killed while it awaited a shard Job, as the recorder saw
// it: the Job may have completed, and the pod committed its window, just before the kill.
type killedRun struct {
	pod, job string
	uid      types.UID
	at       time.Time
}

// assertAdopted checks that the shard Job a killed coordinator awaited completed as the same
// Job, and that the coordinator's next pod said it adopted it.
func (c *cluster) assertAdopted(rec *recorder, k killedRun) {
	c.t.Helper()
	job, err := c.client.BatchV1().Jobs(c.ns).Get(context.Background(), k.job, metav1.GetOptions{})
	if err != nil || job.UID != k.uid || finished(job) != batchv1.JobComplete {
		c.t.Fatalf("shard job %s (uid %s), awaited by the killed pod %s: %v; want it complete with the same uid", k.job, k.uid, k.pod, err)
	}
	if done := job.Status.CompletionTime; done != nil && !done.After(k.at) {
		// The recorder's view of the Job lags the API: the killed pod may have seen it
		// complete and committed its window, leaving nothing to adopt. (CompletionTime has
		// whole seconds: a Job done in the kill's second counts as done before it.)
		c.t.Logf("shard job %s completed at %s, before %s was killed at %s: nothing may have been left to adopt", k.job, done, k.pod, k.at.Format(time.RFC3339Nano))
		return
	}
	next := rec.nextPod(k.pod)
	if next == nil {
		c.t.Fatalf("no coordinator pod followed the killed %s", k.pod)
	}
	out, err := c.log(next)
	if err != nil {
		c.t.Fatal(err)
	}
	if !strings.Contains(string(out), `"msg":"adopting the existing shard job","job":"`+k.job+`"`) {
		c.t.Fatalf("pod %s, after the killed %s, did not adopt shard job %s:\n%s", next.Name, k.pod, k.job, out)
	}
	state := "had completed"
	if done := job.Status.CompletionTime; done == nil || done.After(next.CreationTimestamp.Time) {
		state = "was still running"
	}
	c.t.Logf("pod %s adopted %s (uid %s), which %s", next.Name, k.job, k.uid, state)
}

// chaosRand is the test's source of fault timings: seeded by a constant per test, which is
// logged, or by KARCHTEST_CHAOS_SEED to replay a logged run or try others. Only the faults'
// schedule is seeded; the control plane's own timing is not.
func chaosRand(t *testing.T, seed uint64) (*rand.Rand, uint64) {
	t.Helper()
	if s := os.Getenv("KARCHTEST_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("KARCHTEST_CHAOS_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("chaos: seed=%d (KARCHTEST_CHAOS_SEED=%d replays it)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed)), seed
}

// inject runs until max faults have hit, the coordinator Job run-1 has finished, or two
// minutes have passed. At each moment, a seeded random gap after the one before, it picks one
// of the live targets at random and injects a fault into it; it returns how many hit.
func (c *cluster) inject(rec *recorder, rng *rand.Rand, max int, gap [2]time.Duration, targets func() []*corev1.Pod, fault func(*corev1.Pod) bool) int {
	c.t.Helper()
	hits := 0
	for deadline := time.Now().Add(2 * time.Minute); hits < max && time.Now().Before(deadline); {
		time.Sleep(gap[0] + time.Duration(rng.Int64N(int64(gap[1]-gap[0])+1)))
		if rec.finished("run-1") {
			break
		}
		pods := targets()
		if len(pods) == 0 {
			continue
		}
		if fault(pods[rng.IntN(len(pods))]) {
			hits++
		}
	}
	return hits
}

// hit reports whether a fault's API call reached the pod it was aimed at; a pod that changed
// since it was picked (it finished, or was deleted) is a miss, not an error.
func (c *cluster) hit(err error, what string, pod *corev1.Pod) bool {
	switch {
	case err == nil:
		c.t.Logf("chaos: %s pod %s", what, pod.Name)
		return true
	case apierrors.IsConflict(err) || apierrors.IsNotFound(err) || errors.Is(err, testenv.ErrNotRunning):
		c.t.Logf("chaos: %s pod %s missed: %v", what, pod.Name, err)
		return false
	}
	c.t.Fatalf("%s pod %s: %v", what, pod.Name, err)
	return false
}

// exactly are the preconditions of a deletion that may only hit the pod as it was seen, live.
func exactly(pod *corev1.Pod) *metav1.Preconditions {
	return &metav1.Preconditions{UID: &pod.UID, ResourceVersion: &pod.ResourceVersion}
}

// slowS3 is a proxy to the test S3 server that holds every request for delay first.
func slowS3(t *testing.T, delay time.Duration) string {
	t.Helper()
	target, err := url.Parse(testenv.S3Server(t).Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host // the request is signed for the proxy's address
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			return
		case <-time.After(delay):
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// heldFirst is a tamper hook that holds each shard, running, for hold before it asks next;
// a shard let go early (it was stopped) still gets next's settings, never none.
func heldFirst(hold time.Duration, next func(context.Context, int) []string) func(context.Context, int) []string {
	return func(ctx context.Context, index int) []string {
		select {
		case <-ctx.Done():
		case <-time.After(hold):
		}
		return next(ctx, index)
	}
}

// shardsVia is a tamper hook that sends the shards' S3 requests to endpoint.
func shardsVia(endpoint string) func(context.Context, int) []string {
	return func(context.Context, int) []string { return []string{"KARCH_S3_ENDPOINT=" + endpoint} }
}

func isShard(pod *corev1.Pod) bool { return shardIndex(pod) >= 0 }

// recorder keeps the last state of every pod and Job of a namespace, from a watch, so that
// pods the Job controller has let go since can still be judged.
type recorder struct {
	mu   sync.Mutex
	pods map[types.UID]*corev1.Pod
	jobs map[types.UID]*batchv1.Job
}

func (c *cluster) record() *recorder {
	c.t.Helper()
	r := &recorder{pods: map[types.UID]*corev1.Pod{}, jobs: map[types.UID]*batchv1.Job{}}
	ctx, cancel := context.WithCancel(context.Background())
	factory := informers.NewSharedInformerFactoryWithOptions(c.client, 0, informers.WithNamespace(c.ns))
	c.t.Cleanup(func() {
		cancel()
		factory.Shutdown()
	})
	record := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.put(obj) },
		UpdateFunc: func(_, obj any) { r.put(obj) },
		DeleteFunc: func(obj any) { r.put(obj) }, // the last state it was seen in
	}
	for _, inf := range []cache.SharedIndexInformer{factory.Core().V1().Pods().Informer(), factory.Batch().V1().Jobs().Informer()} {
		if _, err := inf.AddEventHandler(record); err != nil {
			c.t.Fatal(err)
		}
	}
	factory.Start(ctx.Done())
	for typ, synced := range factory.WaitForCacheSync(ctx.Done()) {
		if !synced {
			c.t.Fatalf("watch of %v did not sync", typ)
		}
	}
	return r
}

func (r *recorder) put(obj any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch o := obj.(type) {
	case *corev1.Pod:
		r.pods[o.UID] = o
	case *batchv1.Job:
		r.jobs[o.UID] = o
	}
}

// live returns the pods that run now (Running and not being deleted) and match, in a stable
// order: by completion index, then by name.
func (r *recorder) live(match func(*corev1.Pod) bool) []*corev1.Pod {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*corev1.Pod
	for _, p := range r.pods {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && match(p) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b *corev1.Pod) int {
		if d := shardIndex(a) - shardIndex(b); d != 0 {
			return d
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// finished reports whether the Job of that name has a terminal condition.
func (r *recorder) finished(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, j := range r.jobs {
		if j.Name == name && finished(j) != "" {
			return true
		}
	}
	return false
}

// runningShardJob returns a shard Job that exists and has not finished, or nil.
func (r *recorder) runningShardJob() *batchv1.Job {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, j := range r.jobs {
		if j.Labels["karch.io/window"] != "" && j.DeletionTimestamp == nil && finished(j) == "" {
			return j
		}
	}
	return nil
}

// shardJobUIDs are the shard Jobs ever seen.
func (r *recorder) shardJobUIDs() []types.UID {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []types.UID
	for uid, j := range r.jobs {
		if j.Labels["karch.io/window"] != "" {
			out = append(out, uid)
		}
	}
	return out
}

// nextPod is the pod of the same Job created right after the named one.
func (r *recorder) nextPod(name string) *corev1.Pod {
	r.mu.Lock()
	defer r.mu.Unlock()
	var prev, next *corev1.Pod
	for _, p := range r.pods {
		if p.Name == name {
			prev = p
		}
	}
	if prev == nil {
		return nil
	}
	for _, p := range r.pods {
		if p.Labels[batchv1.JobNameLabel] == prev.Labels[batchv1.JobNameLabel] && p.CreationTimestamp.After(prev.CreationTimestamp.Time) &&
			(next == nil || p.CreationTimestamp.Before(&next.CreationTimestamp)) {
			next = p
		}
	}
	return next
}

func (r *recorder) pod(uid types.UID) *corev1.Pod {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pods[uid]
}

// sameIndex returns the pods of the pod's Job and completion index.
func (r *recorder) sameIndex(pod *corev1.Pod) []*corev1.Pod {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*corev1.Pod
	for _, p := range r.pods {
		if p.Labels[batchv1.ControllerUidLabel] == pod.Labels[batchv1.ControllerUidLabel] && shardIndex(p) == shardIndex(pod) {
			out = append(out, p)
		}
	}
	return out
}

func (r *recorder) job(uid string) *batchv1.Job {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.jobs[types.UID(uid)]
}

// assertCounted checks that a deleted shard pod was reported Failed without DisruptionTarget
// (or Succeeded, had it finished first) and that the Job controller counted the failure: the
// pod that replaced it has the index's failure count one higher, or the index failed.
func (r *recorder) assertCounted(t *testing.T, uid types.UID) {
	t.Helper()
	pod := r.pod(uid)
	switch {
	case pod.Status.Phase == corev1.PodSucceeded:
		t.Logf("deleted pod %s had finished its shard first", pod.Name)
		return
	case pod.Status.Phase != corev1.PodFailed || disrupted(pod):
		t.Fatalf("deleted pod %s ended %s with conditions %+v; want Failed without DisruptionTarget", pod.Name, pod.Status.Phase, pod.Status.Conditions)
	}
	n := failureCount(pod, batchv1.JobIndexFailureCountAnnotation)
	for _, p := range r.sameIndex(pod) {
		if failureCount(p, batchv1.JobIndexFailureCountAnnotation) == n+1 {
			return
		}
	}
	if job := r.job(pod.Labels[batchv1.ControllerUidLabel]); job != nil && indexIn(shardIndex(pod), job.Status.FailedIndexes) {
		return
	}
	t.Fatalf("deleted pod %s (index %d, failure count %d) was neither replaced with failure count %d nor failed its index", pod.Name, shardIndex(pod), n, n+1)
}

// assertNoneIgnored checks that no shard pod's failure was ever ignored: a deletion is not a
// disruption.
func (r *recorder) assertNoneIgnored(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.pods {
		if _, ok := p.Annotations[batchv1.JobIndexIgnoredFailureCountAnnotation]; ok {
			t.Fatalf("pod %s has %s=%s; no failure was a disruption", p.Name, batchv1.JobIndexIgnoredFailureCountAnnotation, p.Annotations[batchv1.JobIndexIgnoredFailureCountAnnotation])
		}
	}
}

// assertIgnored checks that an evicted shard pod was reported Failed keeping the
// DisruptionTarget condition (or Succeeded, had it finished first) and that the Job controller
// ignored the failure: the pod that replaced it has the same failure count and the ignored
// count one higher.
func (r *recorder) assertIgnored(t *testing.T, uid types.UID) {
	t.Helper()
	pod := r.pod(uid)
	switch {
	case pod.Status.Phase == corev1.PodSucceeded:
		t.Logf("evicted pod %s had finished its shard first", pod.Name)
		return
	case pod.Status.Phase != corev1.PodFailed || !disrupted(pod):
		t.Fatalf("evicted pod %s ended %s with conditions %+v; want Failed with DisruptionTarget", pod.Name, pod.Status.Phase, pod.Status.Conditions)
	}
	n, ignored := failureCount(pod, batchv1.JobIndexFailureCountAnnotation), failureCount(pod, batchv1.JobIndexIgnoredFailureCountAnnotation)
	for _, p := range r.sameIndex(pod) {
		if failureCount(p, batchv1.JobIndexFailureCountAnnotation) == n && failureCount(p, batchv1.JobIndexIgnoredFailureCountAnnotation) == ignored+1 {
			return
		}
	}
	t.Fatalf("evicted pod %s (index %d, failure count %d, ignored %d) was not replaced with the failure ignored", pod.Name, shardIndex(pod), n, ignored)
}

// assertEvictionsFree checks, from the Jobs' status and their pods' annotations, that the
// evictions burnt no retry: one shard Job per window, never replaced, complete with no failed
// pod and no failed index; the pod that completed each index has failure count 0, and as many
// ignored failures as the index had pods evicted and Failed.
func (r *recorder) assertEvictionsFree(t *testing.T, jobs []batchv1.Job) {
	t.Helper()
	if made := r.shardJobUIDs(); len(jobs) != dueWindows || len(made) != dueWindows {
		t.Fatalf("shard jobs %d, ever created %d; want one per window, never replaced", len(jobs), len(made))
	}
	for _, job := range jobs {
		if finished(&job) != batchv1.JobComplete || job.Status.Failed != 0 || deref(job.Status.FailedIndexes) != "" {
			t.Fatalf("shard job %s: %v, failed %d, failed indexes %q; want complete with no failure", job.Name, finished(&job), job.Status.Failed, deref(job.Status.FailedIndexes))
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	disruptions := map[jobIndex]int{}
	for _, p := range r.pods {
		if isShard(p) && p.Status.Phase == corev1.PodFailed && disrupted(p) {
			disruptions[indexOf(p)]++
		}
	}
	for _, p := range r.pods {
		if !isShard(p) || p.Status.Phase != corev1.PodSucceeded {
			continue
		}
		n, ignored := failureCount(p, batchv1.JobIndexFailureCountAnnotation), failureCount(p, batchv1.JobIndexIgnoredFailureCountAnnotation)
		if want := disruptions[indexOf(p)]; n != 0 || ignored != want {
			t.Fatalf("pod %s completed index %d with failure count %d and %d ignored failures; want 0 and %d, its evicted pods", p.Name, shardIndex(p), n, ignored, want)
		}
		if ignored > 0 {
			t.Logf("pod %s completed index %d: failure count %d, ignored failures %d", p.Name, shardIndex(p), n, ignored)
		}
	}
}

// assertFailedJobsReplaced checks that every shard Job that failed was replaced by the
// coordinator's next pod: one coordinator exit 1 per failed Job, and one complete Job per
// window in the end.
func (c *cluster) assertFailedJobsReplaced(rec *recorder, windows int) {
	c.t.Helper()
	failed := 0
	for _, uid := range rec.shardJobUIDs() {
		if j := rec.job(string(uid)); finished(j) == batchv1.JobFailed {
			failed++
		}
	}
	codes := c.exitCodes("run-1")
	c.t.Logf("shard jobs created %d, failed %d; coordinator pods exited %v", len(rec.shardJobUIDs()), failed, codes)
	if ones := len(slices.DeleteFunc(slices.Clone(codes), func(c int32) bool { return c != 1 })); ones != failed || slices.ContainsFunc(codes, func(c int32) bool { return c != 0 && c != 1 }) {
		c.t.Fatalf("coordinator pods exited %v with %d shard jobs failed; want one exit 1 per failed job, and 0", codes, failed)
	}
	jobs := c.shardJobs()
	for _, j := range jobs {
		if finished(&j) != batchv1.JobComplete {
			c.t.Fatalf("shard job %s: %v; want complete", j.Name, finished(&j))
		}
	}
	if len(jobs) != windows {
		c.t.Fatalf("%d shard jobs, want one per window", len(jobs))
	}
}

func disrupted(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func failureCount(pod *corev1.Pod, annotation string) int {
	n, _ := strconv.Atoi(pod.Annotations[annotation]) // absent: 0
	return n
}

// indexIn reports whether an index is in a Job's index list ("1,3-5").
func indexIn(i int, list *string) bool {
	for part := range strings.SplitSeq(deref(list), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		if !isRange {
			hi = lo
		}
		a, errA := strconv.Atoi(lo)
		b, errB := strconv.Atoi(hi)
		if errA == nil && errB == nil && a <= i && i <= b {
			return true
		}
	}
	return false
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// assertChecked has the chaos tests' independent checker (tests/chaos/checker), which shares
// no code with karch's write path, read every record of the pipeline back from the store and
// from Kafka, by offset.
func (p *pipeline) assertChecked(t *testing.T) {
	t.Helper()
	s3 := testenv.S3Server(t)
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(p.settings["KARCH_STORE"], "s3://"), "/")
	rep, err := checker.Check(context.Background(), checker.Config{
		Endpoint: s3.Endpoint, Region: s3.Region, Bucket: bucket, Prefix: prefix, AccessKey: s3.AccessKey, SecretKey: s3.SecretKey,
		Pipeline: p.name, Brokers: []string{p.settings["KARCH_BROKERS"]}, Topic: p.settings["KARCH_TOPIC"],
		Start: p.start, Until: p.start.Add(dueWindows * time.Hour),
	})
	if err != nil {
		t.Fatalf("checker: %v", err)
	}
	if !rep.OK() {
		t.Fatalf("checker: %s", rep)
	}
	t.Logf("checker: %d windows, %d records, each exactly once", rep.Windows, rep.Records)
}
