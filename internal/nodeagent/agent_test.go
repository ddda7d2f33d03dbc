package nodeagent

import (
	"errors"
	"os/exec"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
