package kube

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestChaosClusterComponentsCrash: while a run's shards work, each component of the cluster
// crashes (kill -9) and starts again 1 to 3 s later from the state it left, in a seeded
// order: kube-apiserver, etcd, kube-controller-manager (the Job controller), kube-scheduler,
// the kubelet and containerd (whose shims, and the containers in them, live on). The
// coordinator and its shards lose the API, their watches and their node's agent for seconds
// at a time. Every window commits exactly once, and no coordinator pod calls the trouble
// permanent (exit 3).
//
// It is not parallel: every other test would lose the API too. Go runs it before the
// parallel ones.
func TestChaosClusterComponentsCrash(t *testing.T) {
	rng, seed := chaosRand(t, 20261208)
	c := newCluster(t, shardsVia(slowS3(t, 300*time.Millisecond)))
	p := newPipeline(t, c.ns, dueWindows)
	p.settings["KARCH_PIECE_RECORDS"] = "100"
	c.deploy(p.settings)
	c.startRun("run-1")
	components := []string{"kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kubelet", "containerd"}
	rng.Shuffle(len(components), func(i, j int) { components[i], components[j] = components[j], components[i] })
	var whileShards int
	for _, name := range components {
		if c.awaitRunningShard(20 * time.Second) {
			whileShards++
		}
		time.Sleep(time.Duration(200+rng.IntN(1300)) * time.Millisecond)
		down := 1 + rng.IntN(3)
		script(t, "crash-restart", name, strconv.Itoa(down))
		t.Logf("chaos: %s killed, started again %d s later", name, down)
	}
	t.Logf("chaos: faults=%d (%d while a shard ran) seed=%d", len(components), whileShards, seed)
	if whileShards < 3 {
		t.Fatalf("only %d of the crashes came while a shard ran; want at least 3", whileShards)
	}
	if run := c.waitJob("run-1", 5*time.Minute); finished(run) != batchv1.JobComplete {
		t.Fatalf("coordinator job: %+v", run.Status)
	}
	if codes := c.exitCodes("run-1"); slices.Contains(codes, 3) {
		t.Fatalf("coordinator pods exited %v: a crash of the cluster is no permanent failure", codes)
	}
	p.assertChained(t, dueWindows)
	p.assertChecked(t)
}

// awaitRunningShard waits up to d for a shard pod of the test to run, and reports whether one
// did; API errors (the API server may be on its way back) count as none yet.
func (c *cluster) awaitRunningShard(d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		pods, err := c.client.CoreV1().Pods(c.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=shard"})
		if err != nil {
			continue
		}
		for i := range pods.Items {
			if pod := &pods.Items[i]; isShard(pod) && pod.Status.Phase == corev1.PodRunning {
				return true
			}
		}
	}
	return false
}
