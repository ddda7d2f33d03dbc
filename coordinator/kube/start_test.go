package kube

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/karch-archive/karch/failure"
)

// An existing Job of the same plan is adopted only when it is what this run would create;
// one with another spec (a fixed image) is replaced unless its work is done.
func TestRunnerReplacesAJobOfAnotherSpec(t *testing.T) {
	for _, tc := range []struct {
		name     string
		image    string
		complete bool
		replaced bool
	}{
		{"same spec, running", "karch:dev", false, false},
		{"other image, running", "karch:typo", false, true},
		{"other image, complete", "karch:typo", true, false},
	} {
		old := template()
		old.Image = tc.image
		existing := BuildJob(old, "cdr", window, "s3://b/plan.json", 3)
		existing.UID = "first"
		if tc.complete {
			existing.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
		}
		client := fake.NewClientset(existing)
		if tc.replaced {
			// Complete only the replacement: completing the existing Job first would make
			// it one to adopt.
			go completeByList(client, func() bool {
				j, err := client.BatchV1().Jobs("karch").Get(context.Background(), JobName("cdr", window), metav1.GetOptions{})
				return err == nil && j.UID != "first"
			})
		} else if !tc.complete {
			go completeByList(client, func() bool { return true })
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := newRunner(client).Run(ctx, "s3://b/plan.json", plan(3))
		cancel()
		deleted := slices.ContainsFunc(client.Actions(), func(a k8stesting.Action) bool { return a.GetVerb() == "delete" })
		if err != nil || deleted != tc.replaced {
			t.Errorf("%s: err %v, deleted %v; want success, replaced %v", tc.name, err, deleted, tc.replaced)
		}
		if tc.replaced {
			got, _ := client.BatchV1().Jobs("karch").Get(context.Background(), JobName("cdr", window), metav1.GetOptions{})
			if img := got.Spec.Template.Spec.Containers[0].Image; img != "karch:dev" {
				t.Errorf("%s: the job runs %s after the replacement, want karch:dev", tc.name, img)
			}
		}
	}
}

// Passing errors from Get and Watch while awaiting are retried with backoff, not the end
// of the run.
func TestRunnerRetriesAPIBlips(t *testing.T) {
	client := fake.NewClientset()
	var gets, watches atomic.Int32
	client.PrependReactor("get", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
		if gets.Add(1) <= 2 {
			return true, nil, apierrors.NewInternalError(context.DeadlineExceeded)
		}
		return false, nil, nil
	})
	client.PrependWatchReactor("jobs", func(k8stesting.Action) (bool, watch.Interface, error) {
		if watches.Add(1) == 1 {
			return true, nil, apierrors.NewServiceUnavailable("etcd leader changed")
		}
		return false, nil, nil
	})
	go completeByList(client, func() bool { return watches.Load() >= 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := newRunner(client).Run(ctx, "s3://b/plan.json", plan(2)); err != nil {
		t.Fatalf("run through API blips: %v", err)
	}
	if gets.Load() < 3 || watches.Load() < 2 {
		t.Fatalf("%d gets, %d watches; want the failed ones retried", gets.Load(), watches.Load())
	}
}

// completeByList plays the Job controller without Get, whose answers the test breaks: it
// marks the Job complete once it exists and ready says so. It lists only once ready holds, so
// that the Job it completes is not one listed before (a replaced Job, written back).
func completeByList(client *fake.Clientset, ready func() bool) {
	jobs := client.BatchV1().Jobs("karch")
	for range 4000 {
		if !ready() {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		list, err := jobs.List(context.Background(), metav1.ListOptions{})
		if err == nil && len(list.Items) == 1 {
			j := &list.Items[0]
			j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
			if _, err := jobs.UpdateStatus(context.Background(), j, metav1.UpdateOptions{}); err == nil {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A shard Job whose pods cannot start fails the run well before the coordinator's
// deadline, naming the pod and the reason: a bad image or a missing Secret permanently, an
// unschedulable pod or a refusing quota retryably.
func TestRunnerFailsOnPodsThatCannotStart(t *testing.T) {
	for _, tc := range []struct {
		name      string
		pod       func(*corev1.Pod)
		event     string
		permanent bool
		want      string
	}{
		{"image typo", waiting("ImagePullBackOff", `Back-off pulling image "karch:typo"`), "", true, "ImagePullBackOff"},
		{"missing secret", waiting("CreateContainerConfigError", `secret "karch-s3" not found`), "", true, `secret "karch-s3" not found`},
		{"unschedulable", unschedulable, "", false, "0/3 nodes are available"},
		{"quota", nil, "exceeded quota: compute, requested: limits.memory=256Mi", false, "exceeded quota"},
		{"slow to create", waiting("ContainerCreating", ""), "", false, "has been pending for 1h0m0s: ContainerCreating"},
		{"no word from the kubelet", func(*corev1.Pod) {}, "", false, "the kubelet gives no reason yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset()
			go stuckPodsOf(client, tc.pod, tc.event)
			r := newRunner(client)
			r.StartTimeout = 200 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := r.Run(ctx, "s3://b/plan.json", plan(1))
			if err == nil || failure.IsPermanent(err) != tc.permanent || !strings.Contains(err.Error(), tc.want) || ctx.Err() != nil {
				t.Fatalf("err %v; want permanent=%v naming %q, before the deadline", err, tc.permanent, tc.want)
			}
			if tc.pod != nil && !strings.Contains(err.Error(), "pod shard-0") {
				t.Fatalf("err %v does not name the pod", err)
			}
		})
	}
}

// stuckPodsOf plays a kubelet that cannot start the Job's pod (tamper says how), or a Job
// controller whose pods a quota refuses (event), once the Job exists.
func stuckPodsOf(client *fake.Clientset, tamper func(*corev1.Pod), event string) {
	ctx := context.Background()
	var job *batchv1.Job
	for range 400 {
		j, err := client.BatchV1().Jobs("karch").Get(ctx, JobName("cdr", window), metav1.GetOptions{})
		if err == nil {
			job = j
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if job == nil {
		return
	}
	old := metav1.NewTime(time.Now().Add(-time.Hour))
	if event != "" {
		job.UID, job.CreationTimestamp = types.UID("job-uid"), old
		client.BatchV1().Jobs("karch").Update(ctx, job, metav1.UpdateOptions{})
		client.CoreV1().Events("karch").Create(ctx, &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: "ev", Namespace: "karch"},
			InvolvedObject: corev1.ObjectReference{Kind: "Job", Name: job.Name, UID: job.UID}, Reason: "FailedCreate",
			Message: `Error creating: pods "shard-0" is forbidden: ` + event, LastTimestamp: metav1.Now(),
		}, metav1.CreateOptions{})
		return
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "shard-0", Namespace: "karch", CreationTimestamp: old,
		Labels: map[string]string{batchv1.JobNameLabel: job.Name, batchv1.ControllerUidLabel: string(job.UID)}}, Status: corev1.PodStatus{Phase: corev1.PodPending}}
	tamper(pod)
	client.CoreV1().Pods("karch").Create(ctx, pod, metav1.CreateOptions{})
}

func waiting(reason, message string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "shard", State: corev1.ContainerState{
			Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}}}
	}
}

func unschedulable(p *corev1.Pod) {
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable",
		Message: "0/3 nodes are available: 3 Insufficient memory."}}
}

// A Job replaced by one of the same name (a fixed image) may leave pods behind for a while:
// the garbage collector deletes them after the Job. Such a pod is not the new Job's, however
// long it has been pending: the run awaits the new Job, not the old one's pods.
func TestRunnerIgnoresPodsOfAReplacedJob(t *testing.T) {
	old := template()
	old.Image = "karch:typo"
	existing := BuildJob(old, "cdr", window, "s3://b/plan.json", 1)
	existing.UID = "first"
	leftover := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "shard-0-old", Namespace: "karch",
		CreationTimestamp: metav1.NewTime(time.Now().Add(-time.Hour)),
		Labels:            map[string]string{batchv1.JobNameLabel: existing.Name, batchv1.ControllerUidLabel: "first"}},
		Status: corev1.PodStatus{Phase: corev1.PodPending}}
	waiting("ImagePullBackOff", `Back-off pulling image "karch:typo"`)(leftover)
	client := fake.NewClientset(existing, leftover)
	client.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		a.(k8stesting.CreateAction).GetObject().(*batchv1.Job).UID = "second" // as the API server gives one
		return false, nil, nil
	})
	r := newRunner(client)
	r.StartTimeout = 200 * time.Millisecond // a start check every 50ms
	start := time.Now()
	go completeByList(client, func() bool { // the replacement, after some start checks
		j, err := client.BatchV1().Jobs("karch").Get(context.Background(), existing.Name, metav1.GetOptions{})
		return err == nil && j.UID == "second" && time.Since(start) > time.Second
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Run(ctx, "s3://b/plan.json", plan(1)); err != nil {
		t.Fatalf("run with a pod of the replaced job left behind: %v", err)
	}
}
