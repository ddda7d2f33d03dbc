package kube

import (
	"context"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestShardOOMKilledIsRetriedThenABiggerLimitCommits: what only a real node shows. Shards
// that need more memory than their pods' limit (here 160 MiB more than their work, through
// the test image's hook) are killed by the kernel's OOM killer inside their cgroup (exit 137,
// reason OOMKilled); that is no permanent failure, so the Job controller retries each index
// until its retries run out and the Job fails. Once the operator raises shard_memory, the
// next run replaces the Job (its template differs) and commits the window exactly once.
func TestShardOOMKilledIsRetriedThenABiggerLimitCommits(t *testing.T) {
	t.Parallel()
	c := newCluster(t, func(context.Context, int) []string { return []string{"KARCHTEST_ALLOC_MIB=160"} })
	p := newPipeline(t, c.ns, 1)
	p.settings["KARCH_SHARD_MEMORY"] = "96Mi"
	p.settings["KARCH_RETRIES"] = "1"
	c.deploy(p.settings)
	c.startRun("run-1")
	first := c.waitShardJob()
	c.waitJobFailed(first.UID, 3*time.Minute)
	oom := map[string]int{} // OOM kills by completion index
	for _, pod := range c.podsOf(first.UID) {
		for _, s := range pod.Status.ContainerStatuses {
			if term := s.State.Terminated; term != nil && term.ExitCode == 137 && term.Reason == "OOMKilled" {
				oom[pod.Annotations[batchv1.JobCompletionIndexAnnotation]]++
			}
		}
	}
	retried := 0
	for _, n := range oom {
		if n >= 2 {
			retried++
		}
	}
	if retried == 0 {
		t.Fatalf("OOM kills by index %v; want an index OOM-killed (exit 137, OOMKilled) and retried", oom)
	}
	t.Logf("OOM kills by index: %v", oom)

	c.deleteJob("run-1")
	c.waitGone("run-1")
	waitLeaseFree(t, p.name)
	p.settings["KARCH_SHARD_MEMORY"] = "384Mi"
	c.deploy(p.settings)
	c.startRun("run-2")
	if run := c.waitJob("run-2", 3*time.Minute); finished(run) != batchv1.JobComplete {
		t.Fatalf("coordinator job with shard_memory 384Mi: %+v", run.Status)
	}
	jobs := c.shardJobs()
	if len(jobs) != 1 || jobs[0].UID == first.UID || finished(&jobs[0]) != batchv1.JobComplete {
		t.Fatalf("shard jobs %d; want the OOM-killed one replaced by one that completed", len(jobs))
	}
	p.assertChained(t, 1)
}

// waitJobFailed waits until the Job with uid has failed.
func (c *cluster) waitJobFailed(uid types.UID, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, j := range c.shardJobs() {
			if j.UID == uid && finished(&j) == batchv1.JobFailed {
				return
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	c.t.Fatalf("shard job %s has not failed after %s", uid, timeout)
}

// podsOf lists the pods of the Job with uid.
func (c *cluster) podsOf(uid types.UID) []corev1.Pod {
	c.t.Helper()
	pods, err := c.client.CoreV1().Pods(c.ns).List(context.Background(), metav1.ListOptions{LabelSelector: batchv1.ControllerUidLabel + "=" + string(uid)})
	if err != nil {
		c.t.Fatal(err)
	}
	return pods.Items
}
