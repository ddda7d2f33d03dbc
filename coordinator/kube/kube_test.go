package kube

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/failure"
)

var window = time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)

func template() JobTemplate {
	return JobTemplate{Namespace: "karch", Image: "karch:dev", ServiceAccount: "karch-shard", Parallelism: 4,
		BackoffLimitPerIndex: 3, MaxFailedIndexes: 2, TTLAfterFinished: time.Hour, TmpSize: resource.MustParse("1Gi"),
		CredentialsSecret: "karch-s3", Owner: OwnerReference("CronJob", "karch-cron", "uid-1")}
}

func TestJobName(t *testing.T) {
	for _, tc := range []struct{ pipeline, want string }{
		{"cdr", "karch-cdr-202611230200"},
		{strings.Repeat("p", 41), ""},
		{strings.Repeat("p", 40) + "q", ""},
	} {
		got := JobName(tc.pipeline, window)
		if tc.want != "" && got != tc.want {
			t.Errorf("JobName(%q) = %q, want %q", tc.pipeline, got, tc.want)
		}
		if len(got)+len("-99999") > 63 {
			t.Errorf("JobName(%q) = %q leaves no room for the index suffix", tc.pipeline, got)
		}
	}
	if JobName(strings.Repeat("p", 41), window) == JobName(strings.Repeat("p", 40)+"q", window) {
		t.Error("shortened names collide")
	}
}

func TestBuildJob(t *testing.T) {
	job := BuildJob(template(), "cdr", window, "s3://b/cdr/dt=2026-11-23/window=0200Z-1h/plan.json", 3)
	s := job.Spec
	pod := s.Template.Spec
	c := pod.Containers[0]
	for _, check := range []struct {
		what string
		ok   bool
	}{
		{"indexed", *s.CompletionMode == batchv1.IndexedCompletion && *s.Completions == 3},
		{"parallelism capped at completions", *s.Parallelism == 3},
		{"max failed indexes capped", *s.MaxFailedIndexes == 2 && *s.BackoffLimitPerIndex == 3},
		{"replacement only once the old pod is gone", *s.PodReplacementPolicy == batchv1.Failed},
		{"exit 3 fails the job", s.PodFailurePolicy.Rules[0].Action == batchv1.PodFailurePolicyActionFailJob && s.PodFailurePolicy.Rules[0].OnExitCodes.Values[0] == 3},
		{"evictions ignored", s.PodFailurePolicy.Rules[1].Action == batchv1.PodFailurePolicyActionIgnore && s.PodFailurePolicy.Rules[1].OnPodConditions[0].Type == corev1.DisruptionTarget},
		{"ttl", *s.TTLSecondsAfterFinished == 3600},
		{"owned by the CronJob", job.OwnerReferences[0].Kind == "CronJob" && job.OwnerReferences[0].Name == "karch-cron"},
		{"template hash", len(job.Annotations[AnnotationTemplate]) == 32},
		{"restart never", pod.RestartPolicy == corev1.RestartPolicyNever},
		{"no service account token", !*pod.AutomountServiceAccountToken},
		{"non-root, read-only, no escalation, no capabilities", *c.SecurityContext.RunAsNonRoot && *c.SecurityContext.ReadOnlyRootFilesystem &&
			!*c.SecurityContext.AllowPrivilegeEscalation && c.SecurityContext.Capabilities.Drop[0] == "ALL"},
		{"seccomp", pod.SecurityContext.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault},
		{"tmp emptyDir with a limit", pod.Volumes[0].EmptyDir.SizeLimit.String() == "1Gi" && c.VolumeMounts[0].MountPath == "/tmp"},
		{"TZ=UTC and the plan in env", c.Env[0].Value == "UTC" && c.Env[1].Name == "KARCH_PLAN"},
		{"credentials only from a Secret", c.EnvFrom[0].SecretRef.Name == "karch-s3"},
		{"plan annotation", job.Annotations[AnnotationPlan] != ""},
		{"the pod's own network unless asked", !pod.HostNetwork && pod.DNSPolicy == corev1.DNSClusterFirst},
	} {
		if !check.ok {
			t.Errorf("%s: not so in %+v", check.what, job)
		}
	}
}

// TestBuildJobHostNetwork: shard_host_network puts the shards in the node's network
// namespace, with cluster DNS still first.
func TestBuildJobHostNetwork(t *testing.T) {
	tmpl := template()
	tmpl.HostNetwork = true
	pod := BuildJob(tmpl, "cdr", window, "s3://b/p/plan.json", 3).Spec.Template.Spec
	if !pod.HostNetwork || pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Fatalf("host network %v, DNS policy %s; want true, ClusterFirstWithHostNet", pod.HostNetwork, pod.DNSPolicy)
	}
}

func newRunner(client *fake.Clientset) *Runner {
	return &Runner{Client: client, Template: template(), Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}
}

func plan(shards int) *archive.Plan {
	p := &archive.Plan{Pipeline: "cdr", Window: archive.Window{Start: window, End: window.Add(time.Hour)}}
	for i := range shards {
		p.Shards = append(p.Shards, archive.ShardPlan{Index: i})
	}
	return p
}

// finish plays the Job controller: it marks the Job with a terminal condition once created,
// if it has none yet.
func finish(t *testing.T, client *fake.Clientset, cond batchv1.JobConditionType, reason string) {
	t.Helper()
	go func() {
		jobs := client.BatchV1().Jobs("karch")
		for range 2000 { // up to 10 s: a loaded machine under -race is slow
			j, err := jobs.Get(context.Background(), JobName("cdr", window), metav1.GetOptions{})
			if err == nil && len(j.Status.Conditions) == 0 {
				j.Status.Conditions = append(j.Status.Conditions, batchv1.JobCondition{Type: cond, Status: corev1.ConditionTrue, Reason: reason})
				if _, err := jobs.UpdateStatus(context.Background(), j, metav1.UpdateOptions{}); err == nil {
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
}

func TestRunnerCreatesAndAwaits(t *testing.T) {
	client := fake.NewClientset()
	finish(t, client, batchv1.JobComplete, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := newRunner(client).Run(ctx, "s3://b/plan.json", plan(3)); err != nil {
		t.Fatal(err)
	}
	creates := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "create" {
			creates++
		}
		if a.GetVerb() == "delete" {
			t.Fatal("the runner deleted something")
		}
	}
	if creates != 1 {
		t.Fatalf("%d creates, want 1", creates)
	}
}

func TestRunnerAdoptsExistingJob(t *testing.T) {
	existing := BuildJob(template(), "cdr", window, "s3://b/plan.json", 3)
	existing.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	client := fake.NewClientset(existing)
	if err := newRunner(client).Run(context.Background(), "s3://b/plan.json", plan(3)); err != nil {
		t.Fatalf("adopting a complete job: %v", err)
	}
	other := fake.NewClientset(existing)
	if err := newRunner(other).Run(context.Background(), "s3://b/another-plan.json", plan(3)); !failure.IsPermanent(err) {
		t.Fatalf("a job of another plan: %v, want a permanent error", err)
	}
}

func TestRunnerFailures(t *testing.T) {
	for _, tc := range []struct {
		reason    string
		permanent bool
	}{
		{batchv1.JobReasonPodFailurePolicy, true},
		{batchv1.JobReasonBackoffLimitExceeded, false},
		{batchv1.JobReasonMaxFailedIndexesExceeded, false},
	} {
		client := fake.NewClientset()
		finish(t, client, batchv1.JobFailed, tc.reason)
		err := newRunner(client).Run(context.Background(), "s3://b/plan.json", plan(2))
		if err == nil || failure.IsPermanent(err) != tc.permanent {
			t.Errorf("%s: %v, want permanent=%v", tc.reason, err, tc.permanent)
		}
	}
}

// A failed shard Job is replaced by the next run whatever its failure: a permanent failure
// fails its own run, never the next one, which may come after an operator fixed the cause.
func TestRunnerReplacesAFailedJob(t *testing.T) {
	for _, reason := range []string{batchv1.JobReasonMaxFailedIndexesExceeded, batchv1.JobReasonBackoffLimitExceeded, batchv1.JobReasonPodFailurePolicy} {
		existing := BuildJob(template(), "cdr", window, "s3://b/plan.json", 3)
		existing.UID = "first"
		existing.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: reason}}
		client := fake.NewClientset(existing)
		finish(t, client, batchv1.JobComplete, "")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := newRunner(client).Run(ctx, "s3://b/plan.json", plan(3))
		cancel()
		deleted := slices.ContainsFunc(client.Actions(), func(a k8stesting.Action) bool { return a.GetVerb() == "delete" })
		if !deleted || err != nil {
			t.Errorf("%s: deleted %v, err %v; want the failed job replaced and the run to succeed", reason, deleted, err)
		}
	}
}

// A Job deleted while it is awaited is created again, not waited on until the watch closes.
func TestRunnerRelaunchesAVanishedJob(t *testing.T) {
	client := fake.NewClientset()
	jobs := client.BatchV1().Jobs("karch")
	var deleted atomic.Bool
	go func() {
		for range 4000 {
			if err := jobs.Delete(context.Background(), JobName("cdr", window), metav1.DeleteOptions{}); err == nil {
				deleted.Store(true)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	go completeByList(client, deleted.Load) // the Job created again, not the deleted one
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := newRunner(client)
	r.StartTimeout = 200 * time.Millisecond // rereads the Job every 50 ms
	if err := r.Run(ctx, "s3://b/plan.json", plan(2)); err != nil {
		t.Fatalf("run after the job was deleted: %v", err)
	}
	creates := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "create" {
			creates++
		}
	}
	if creates != 2 {
		t.Fatalf("%d creates, want 2 (the deleted job created again)", creates)
	}
}

func TestClassify(t *testing.T) {
	gr := schema.GroupResource{Group: "batch", Resource: "jobs"}
	for _, tc := range []struct {
		name      string
		err       error
		permanent bool
	}{
		{"rbac forbidden", apierrors.NewForbidden(gr, "j", errors.New("User cannot create resource")), true},
		{"quota exceeded", apierrors.NewForbidden(gr, "j", errors.New("exceeded quota: compute, requested: limits.memory=256Mi")), false},
		{"unauthorized", apierrors.NewUnauthorized("token expired"), true},
		{"invalid", apierrors.NewInvalid(schema.GroupKind{Group: "batch", Kind: "Job"}, "j", nil), true},
		{"bad request", apierrors.NewBadRequest("no"), true},
		{"namespace missing", apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "karch"), true},
		{"conflict", apierrors.NewConflict(gr, "j", errors.New("modified")), false},
		{"throttled", apierrors.NewTooManyRequests("slow down", 1), false},
		{"timeout", apierrors.NewServerTimeout(gr, "create", 1), false},
		{"server error", apierrors.NewInternalError(errors.New("etcd")), false},
		{"network", errors.New("dial tcp 127.0.0.1:6443: connect: connection refused"), false},
	} {
		if got := failure.IsPermanent(classify(tc.err)); got != tc.permanent {
			t.Errorf("%s: permanent %v, want %v", tc.name, got, tc.permanent)
		}
	}
}

// An API server that has just restarted refuses requests (Forbidden: "RBAC: role not
// found") until its authorizer has synced: the runner retries refusals of the create and of
// the awaited Job's reads for RefusalGrace, and believes them only after it.
func TestRunnerWaitsOutARestartedAPIServersRefusals(t *testing.T) {
	refusal := apierrors.NewForbidden(schema.GroupResource{Group: "batch", Resource: "jobs"}, "j",
		errors.New(`RBAC: role.rbac.authorization.k8s.io "karch-coordinator" not found`))
	refuse := func(client *fake.Clientset, verb string, n *atomic.Int32) {
		client.PrependReactor(verb, "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
			if n.Add(-1) >= 0 {
				return true, nil, refusal
			}
			return false, nil, nil
		})
	}
	client := fake.NewClientset()
	var creates, gets atomic.Int32
	creates.Store(2)
	gets.Store(2)
	refuse(client, "create", &creates)
	refuse(client, "get", &gets)
	finish(t, client, batchv1.JobComplete, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := newRunner(client).Run(ctx, "s3://b/plan.json", plan(2)); err != nil {
		t.Fatalf("two refused creates and two refused reads, then answers: %v; want the run done", err)
	}

	client = fake.NewClientset()
	var always atomic.Int32
	always.Store(1 << 30)
	refuse(client, "create", &always)
	r := newRunner(client)
	r.RefusalGrace = 300 * time.Millisecond
	began := time.Now()
	err := r.Run(ctx, "s3://b/plan.json", plan(2))
	if !failure.IsPermanent(err) || !apierrors.IsForbidden(err) {
		t.Fatalf("refusals for good: %v; want the Forbidden, permanent", err)
	}
	if since := time.Since(began); since < r.RefusalGrace {
		t.Fatalf("believed the refusal after %s, before the grace of %s", since, r.RefusalGrace)
	}
}
