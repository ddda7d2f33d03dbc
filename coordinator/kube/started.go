package kube

import (
	"context"
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/karch-archive/karch/failure"
)

// configReasons are the waiting reasons of a container that only a change of configuration
// cures: an image that does not exist or cannot be pulled, a Secret or ConfigMap that is
// missing. The Job's own conditions never show them: its pods stay Pending.
var configReasons = map[string]bool{
	"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true, "ErrImageNeverPull": true,
	"CreateContainerConfigError": true, "CreateContainerError": true,
}

// checkStarted fails the run when a pod of the Job has waited longer than StartTimeout to
// start, or the Job has run that long with no pod at all (a quota refusing them), with an
// error that names the pod and the reason. A bad image or a missing Secret is permanent; an
// unschedulable pod or a quota may clear up, so those are retryable.
func (r *Runner) checkStarted(ctx context.Context, job *batchv1.Job) error {
	pods, err := r.Client.CoreV1().Pods(job.Namespace).List(ctx, podsOf(job))
	if err != nil {
		r.Logger.Warn("list the shard job's pods", "job", job.Name, "err", err) // the next check tries again
		return nil
	}
	now, limit := time.Now(), r.startTimeout()
	live := 0
	for i := range pods.Items {
		pod := &pods.Items[i]
		if err := unstarted(pod, now, limit); err != nil {
			return fmt.Errorf("shard job %s: %w", job.Name, err)
		}
		if pod.Status.Phase == corev1.PodPending || pod.Status.Phase == corev1.PodRunning {
			live++
		}
	}
	if live > 0 || now.Sub(job.CreationTimestamp.Time) < limit {
		return nil
	}
	return r.refusedPods(ctx, job, now, limit)
}

// podsOf selects the pods of this Job, by its UID: a Job of the same name that it replaced
// may leave pods behind for a while (the garbage collector deletes them after the Job), and
// those are not this Job's, however long they have waited.
func podsOf(job *batchv1.Job) metav1.ListOptions {
	return metav1.ListOptions{LabelSelector: batchv1.ControllerUidLabel + "=" + string(job.UID)}
}

// unstarted returns an error for a pod that has been Pending for limit or longer.
func unstarted(pod *corev1.Pod, now time.Time, limit time.Duration) error {
	waited := now.Sub(pod.CreationTimestamp.Time).Round(time.Second)
	if pod.Status.Phase != corev1.PodPending || waited < limit {
		return nil
	}
	for _, s := range pod.Status.ContainerStatuses {
		if w := s.State.Waiting; w != nil && configReasons[w.Reason] {
			return failure.Permanent(fmt.Errorf("pod %s has not started after %s: %s: %s (fix the shard image or Secret; the next run replaces the job)",
				pod.Name, waited, w.Reason, w.Message))
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return fmt.Errorf("pod %s has not been scheduled after %s: %s: %s", pod.Name, waited, c.Reason, c.Message)
		}
	}
	return fmt.Errorf("pod %s has been pending for %s: %s", pod.Name, waited, pendingReason(pod))
}

// pendingReason is what the kubelet says of a scheduled pod that has not started: its
// container's waiting reason (ContainerCreating on a busy node) or the pod's message.
func pendingReason(pod *corev1.Pod) string {
	for _, s := range pod.Status.ContainerStatuses {
		if w := s.State.Waiting; w != nil && w.Reason != "" {
			return strings.TrimSuffix(w.Reason+": "+w.Message, ": ")
		}
	}
	if pod.Status.Message != "" {
		return pod.Status.Message
	}
	return "the kubelet gives no reason yet"
}

// refusedPods explains a Job that has had no live pod for limit: the Job controller's
// FailedCreate events say why (an exceeded ResourceQuota, a pod security admission).
func (r *Runner) refusedPods(ctx context.Context, job *batchv1.Job, now time.Time, limit time.Duration) error {
	sel := fields.AndSelectors(fields.OneTermEqualSelector("involvedObject.uid", string(job.UID)),
		fields.OneTermEqualSelector("reason", "FailedCreate"))
	events, err := r.Client.CoreV1().Events(job.Namespace).List(ctx, metav1.ListOptions{FieldSelector: sel.String()})
	if err != nil {
		r.Logger.Warn("list the shard job's events", "job", job.Name, "err", err)
		return nil
	}
	for _, ev := range events.Items {
		if now.Sub(lastSeen(ev)) < limit {
			return fmt.Errorf("shard job %s has created no pod for %s: %s", job.Name, limit, ev.Message)
		}
	}
	return nil
}

func lastSeen(ev corev1.Event) time.Time {
	if !ev.LastTimestamp.IsZero() {
		return ev.LastTimestamp.Time
	}
	return ev.EventTime.Time
}
