package nodeagent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestFieldValue(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u",
			Labels:      map[string]string{"batch.kubernetes.io/job-name": "run-1"},
			Annotations: map[string]string{"batch.kubernetes.io/job-completion-index": "3"}},
		Spec: corev1.PodSpec{NodeName: "n", ServiceAccountName: "sa"},
	}
	for path, want := range map[string]string{
		"metadata.name": "p", "metadata.namespace": "ns", "metadata.uid": "u", "spec.nodeName": "n",
		"spec.serviceAccountName": "sa", "status.podIP": "127.0.0.1",
		"metadata.labels['batch.kubernetes.io/job-name']":                  "run-1",
		"metadata.annotations['batch.kubernetes.io/job-completion-index']": "3",
		"metadata.labels['absent']":                                        "",
	} {
		if got, err := fieldValue(pod, path); err != nil || got != want {
			t.Errorf("fieldValue(%s) = %q, %v; want %q", path, got, err, want)
		}
	}
	if _, err := fieldValue(pod, "status.phase"); err == nil {
		t.Error("an unsupported field resolved")
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		script string
		want   int
	}{{"exit 0", 0}, {"exit 2", 2}, {"kill -9 $$", 137}, {"kill -15 $$", 143}} {
		if got := exitCode(exec.Command("sh", "-c", tc.script).Run()); got != tc.want {
			t.Errorf("%s: exit code %d, want %d", tc.script, got, tc.want)
		}
	}
	if got := exitCode(errors.New("could not start")); got != 128 {
		t.Errorf("a process that never ran: %d, want 128", got)
	}
}

func TestPodConditionsKeepOthers(t *testing.T) {
	now := metav1.Now()
	current := []corev1.PodCondition{
		{Type: corev1.PodReady, Status: corev1.ConditionTrue},
		{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "EvictionByEvictionAPI"},
		{Type: "example.com/Custom", Status: corev1.ConditionFalse},
	}
	got := podConditions(current, false, now)
	var types []corev1.PodConditionType
	for _, c := range got {
		types = append(types, c.Type)
		if c.Type == corev1.PodReady && c.Status != corev1.ConditionFalse {
			t.Errorf("Ready %s; want False, set anew", c.Status)
		}
	}
	want := []corev1.PodConditionType{corev1.DisruptionTarget, "example.com/Custom", corev1.PodScheduled, corev1.PodReady, corev1.ContainersReady}
	if !slices.Equal(types, want) {
		t.Fatalf("conditions %v; want %v", types, want)
	}
}

// deletedPod is a pod bound to node n, deleted, with the condition an eviction sets.
func deletedPod(grace int64) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u", DeletionTimestamp: ptr(metav1.Now()), DeletionGracePeriodSeconds: ptr(grace)},
		Spec:       corev1.PodSpec{NodeName: "n", Containers: []corev1.Container{{Name: "c", Image: "i"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
			{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "EvictionByEvictionAPI"}}},
	}
}

func newTestAgent(objs ...runtime.Object) (*Agent, *fake.Clientset) {
	client := fake.NewClientset(objs...)
	return &Agent{Client: client, Node: "n", Logger: slog.New(slog.DiscardHandler),
		seen: map[types.UID]bool{}, active: map[types.UID]*podRun{}}, client
}

// TestDeletedPodIsFailedThenLetGo: a deleted pod that runs no process here is reported
// Failed, keeping its DisruptionTarget condition, before it is deleted for good, as a kubelet
// does; a Job's pod failure policy reads only Failed pods.
func TestDeletedPodIsFailedThenLetGo(t *testing.T) {
	pod := deletedPod(30)
	a, client := newTestAgent(pod)
	a.terminate(context.Background(), pod)
	var verbs []string
	for _, act := range client.Actions() {
		verbs = append(verbs, act.GetVerb()+" "+act.GetSubresource())
		if u, ok := act.(k8stesting.UpdateAction); ok {
			got := u.GetObject().(*corev1.Pod)
			if got.Status.Phase != corev1.PodFailed || !slices.ContainsFunc(got.Status.Conditions, func(c corev1.PodCondition) bool {
				return c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue
			}) {
				t.Errorf("status update %s with %+v; want Failed keeping DisruptionTarget", got.Status.Phase, got.Status.Conditions)
			}
			if s := got.Status.ContainerStatuses; len(s) != 1 || s[0].State.Terminated == nil || s[0].State.Terminated.ExitCode != 137 {
				t.Errorf("container statuses %+v; want terminated, 137", s)
			}
		}
	}
	if !slices.Equal(verbs, []string{"get ", "get ", "update status", "delete "}) {
		t.Fatalf("actions %v; want the pod read, reported Failed, then deleted", verbs)
	}
}

// TestDeletedPodNeverStarts: a pod deleted while the agent prepares it never starts its
// process.
func TestDeletedPodNeverStarts(t *testing.T) {
	pod := deletedPod(30)
	a, _ := newTestAgent(pod)
	a.claim(pod.UID)
	a.terminate(context.Background(), pod)
	cmd := exec.Command("true")
	if err := a.start(pod, cmd); !errors.Is(err, errDeleted) || cmd.Process != nil {
		t.Fatalf("start: %v, process %v; want errDeleted and no process", err, cmd.Process)
	}
	if !a.release(pod.UID) {
		t.Fatal("release: the deleted pod is not the caller's to let go")
	}
}

// TestDeletedPodIsStopped: a running pod's process gets SIGTERM on deletion, and SIGKILL
// once the grace period is over if it ignores SIGTERM.
func TestDeletedPodIsStopped(t *testing.T) {
	for _, tc := range []struct {
		script string
		want   int
	}{{"exec sleep 30", 143}, {`trap "" TERM; read line`, 137}} {
		pod := deletedPod(1)
		a, _ := newTestAgent(pod)
		a.claim(pod.UID)
		stdin, w, err := os.Pipe() // read blocks in the shell itself, leaving no child behind
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		cmd := exec.Command("sh", "-c", tc.script)
		cmd.Stdin = stdin
		if err := a.start(pod, cmd); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // for the shell to set its trap
		start := time.Now()
		a.terminate(context.Background(), pod)
		if got := exitCode(cmd.Wait()); got != tc.want || time.Since(start) > 5*time.Second {
			t.Errorf("%s: exit %d after %s; want %d within the 1s grace period", tc.script, got, time.Since(start), tc.want)
		}
		a.release(pod.UID)
	}
}
