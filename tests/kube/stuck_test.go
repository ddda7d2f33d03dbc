package kube

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/karch-archive/karch/internal/testenv"
)

// TestShardImageTypoFailsFastAndTheFixTakes: a typo in the shard image leaves the shard pods
// Pending (ErrImagePull, then ImagePullBackOff: the node's pulls go to 127.0.0.1, where no
// registry answers). The coordinator fails after shard_start_timeout, not its own
// deadline, with exit 3 and a line naming the pod and the reason; once the operator fixes
// the image, the next run replaces the Job (its template differs) and commits the window.
func TestShardImageTypoFailsFastAndTheFixTakes(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil)
	p := newPipeline(t, c.ns, 1)
	p.settings["KARCH_SHARD_IMAGE"] = "karch:typo"
	// Long enough for a busy node to have tried the pull: before it has, the pod is pending
	// with no reason, which the coordinator takes for a passing delay (exit 1).
	p.settings["KARCH_SHARD_START_TIMEOUT"] = "30s"
	c.deploy(p.settings)
	c.startRun("run-1")
	if run := c.waitJob("run-1", 3*time.Minute); finished(run) != batchv1.JobFailed {
		t.Fatalf("coordinator job with a bad shard image: %+v; want failed", run.Status)
	}
	if codes := c.exitCodes("run-1"); !slices.Equal(codes, []int32{3}) {
		t.Fatalf("coordinator pods exited %v; want one exit 3", codes)
	}
	if log := c.podLog("run-1"); !regexp.MustCompile(`ErrImagePull|ImagePullBackOff`).MatchString(log) || !strings.Contains(log, "pod karch-") {
		t.Fatalf("the coordinator's log does not name the pod and ErrImagePull or ImagePullBackOff:\n%s", log)
	}
	first := c.shardJobs()
	p.settings["KARCH_SHARD_IMAGE"] = image
	c.deploy(p.settings)
	c.startRun("run-2")
	if run := c.waitJob("run-2", 3*time.Minute); finished(run) != batchv1.JobComplete {
		t.Fatalf("coordinator job after the fix: %+v", run.Status)
	}
	jobs := c.shardJobs()
	if len(first) != 1 || len(jobs) != 1 || jobs[0].UID == first[0].UID || jobs[0].Spec.Template.Spec.Containers[0].Image != image {
		t.Fatalf("shard jobs before %d, after %d; want the bad one replaced by one running %s", len(first), len(jobs), image)
	}
	p.assertChained(t, 1)
}

// TestDeletedShardJobIsRelaunched: a shard Job deleted while the coordinator awaits it ends
// the wait at once and is created again; the window commits exactly once.
func TestDeletedShardJobIsRelaunched(t *testing.T) {
	t.Parallel()
	hold := make(chan struct{})
	c := newCluster(t, holdShards(hold)) // until the first Job is deleted
	p := newPipeline(t, c.ns, 1)
	c.deploy(p.settings)
	c.startRun("run-1")
	first := c.waitShardJob()
	c.deleteJob(first.Name)
	close(hold)
	if run := c.waitJob("run-1", 3*time.Minute); finished(run) != batchv1.JobComplete {
		t.Fatalf("coordinator job: %+v", run.Status)
	}
	if codes := c.exitCodes("run-1"); !slices.Equal(codes, []int32{0}) {
		t.Fatalf("coordinator pods exited %v; want one exit 0", codes)
	}
	if jobs := c.shardJobs(); len(jobs) != 1 || jobs[0].UID == first.UID {
		t.Fatalf("%d shard jobs; want one, created again after the deletion", len(jobs))
	}
	p.assertChained(t, 1)
}

// TestShardJobOutlivesItsCreator: run 1 creates the shard Job and dies, and its Job is
// deleted (as the CronJob's history limits or an operator would): the shard Job is owned by
// the CronJob, not by run 1, so the garbage collector leaves it; run 2 adopts it and commits
// the window exactly once.
func TestShardJobOutlivesItsCreator(t *testing.T) {
	t.Parallel()
	hold := make(chan struct{})
	c := newCluster(t, holdShards(hold))
	p := newPipeline(t, c.ns, 1)
	c.deploy(p.settings)
	c.startRun("run-1")
	shardJob := c.waitShardJob()
	c.killCoordinator("run-1")
	c.deleteJob("run-1")
	c.waitGone("run-1")
	waitLeaseFree(t, p.name)
	c.startRun("run-2")
	close(hold)
	if run := c.waitJob("run-2", 3*time.Minute); finished(run) != batchv1.JobComplete {
		t.Fatalf("coordinator job run-2: %+v", run.Status)
	}
	jobs := c.shardJobs()
	if len(jobs) != 1 || jobs[0].UID != shardJob.UID {
		t.Fatalf("%d shard jobs; want run 1's, adopted by run 2", len(jobs))
	}
	if owners := jobs[0].OwnerReferences; len(owners) != 1 || owners[0].Kind != "CronJob" {
		t.Fatalf("shard job owners %+v; want the CronJob", owners)
	}
	p.assertChained(t, 1)
}

func (c *cluster) deleteJob(name string) {
	c.t.Helper()
	err := c.client.BatchV1().Jobs(c.ns).Delete(context.Background(), name,
		metav1.DeleteOptions{PropagationPolicy: ptr(metav1.DeletePropagationBackground)})
	if err != nil {
		c.t.Fatalf("delete job %s: %v", name, err)
	}
}

// waitGone waits until a deleted Job and its pods are gone, so that the garbage collector
// has had its turn at the Job's dependents.
func (c *cluster) waitGone(job string) {
	c.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		_, err := c.client.BatchV1().Jobs(c.ns).Get(context.Background(), job, metav1.GetOptions{})
		pods, perr := c.client.CoreV1().Pods(c.ns).List(context.Background(), metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job})
		if err != nil && perr == nil && len(pods.Items) == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("job %s and its pods are not gone after a minute", job)
}

// waitLeaseFree waits until the pipeline's Redis lease has expired, so that the next run
// takes it rather than finding it held.
func waitLeaseFree(t *testing.T, pipeline string) {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	defer client.Close()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		n, err := client.Exists(context.Background(), "karch:lease:"+pipeline).Result()
		if err == nil && n == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the lease of %s is still held after a minute", pipeline)
}

func ptr[T any](v T) *T { return &v }
