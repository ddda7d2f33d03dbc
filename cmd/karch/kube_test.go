package main

import (
	"context"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// The shards run the coordinator's own image unless shard_image says otherwise, so one
// image setting of the deployment moves both.
func TestOwnImage(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "run-1-abcde", Namespace: "karch"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "sidecar", Image: "proxy:1"}, {Name: "coordinator", Image: "registry/karch:0.2.0"}}}}
	t.Setenv(envPodName, pod.Name)
	got, err := ownImage(context.Background(), fake.NewClientset(pod), "karch")
	if err != nil || got != "registry/karch:0.2.0" {
		t.Fatalf("ownImage = %q, %v; want the coordinator container's image", got, err)
	}
	t.Setenv(envPodName, "gone")
	if _, err := ownImage(context.Background(), fake.NewClientset(pod), "karch"); err == nil {
		t.Fatal("no error for a pod that does not exist")
	}
}

// The shard Jobs are owned by the CronJob that started the coordinator, found through the
// coordinator's own Job; a Job started by hand owns its shard Jobs itself.
func TestShardOwner(t *testing.T) {
	yes := true
	cron := metav1.OwnerReference{APIVersion: "batch/v1", Kind: "CronJob", Name: "karch-cdr", UID: "cron-uid", Controller: &yes}
	scheduled := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "run-1", Namespace: "karch", UID: "job-uid", OwnerReferences: []metav1.OwnerReference{cron}}}
	byHand := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "run-2", Namespace: "karch", UID: "job2-uid"}}
	client := fake.NewClientset(scheduled, byHand)
	for _, tc := range []struct{ job, uid, kind, name string }{
		{"run-1", "job-uid", "CronJob", "karch-cdr"},
		{"run-2", "job2-uid", "Job", "run-2"},
	} {
		t.Setenv(envOwnerJob, tc.job)
		t.Setenv(envOwnerJobUID, tc.uid)
		owner, err := shardOwner(context.Background(), client, "karch")
		if err != nil || owner == nil || owner.Kind != tc.kind || owner.Name != tc.name {
			t.Errorf("coordinator job %s: owner %+v, %v; want %s %s", tc.job, owner, err, tc.kind, tc.name)
		}
	}
	t.Setenv(envOwnerJob, "")
	if owner, err := shardOwner(context.Background(), client, "karch"); owner != nil || err != nil {
		t.Errorf("outside a Job: owner %+v, %v; want none", owner, err)
	}
}

// A shard pod's /tmp holds a Parquet piece when Parquet is on (a shard copies a stored one
// there to adopt or derive it): 2Gi unless shard_tmp says otherwise, 64Mi without Parquet.
func TestShardTmp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "64Mi"},
		{[]string{"--formats", "jsonl,parquet"}, "2Gi"},
		{[]string{"--formats", "jsonl,parquet", "--shard-tmp", "5Gi"}, "5Gi"},
		{[]string{"--shard-tmp", "128Mi"}, "128Mi"},
	} {
		c, err := loadWith(t, nil, nil, tc.args...)
		if err != nil {
			t.Fatal(err)
		}
		if got := shardTmp(c); got.Cmp(resource.MustParse(tc.want)) != 0 {
			t.Errorf("%v: /tmp of %s, want %s", tc.args, &got, tc.want)
		}
	}
}
