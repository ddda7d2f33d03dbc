package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/failure"
)

// Runner runs a plan's shards as an Indexed Job. It creates the window's Job, or adopts the
// one an earlier coordinator created for the same plan, and watches it to the end. It deletes
// only a window's own Job that failed, to run the window again; finished Jobs go by their
// TTL, or with their owner.
type Runner struct {
	Client   kubernetes.Interface
	Template JobTemplate
	Logger   *slog.Logger
}

var _ coordinator.Runner = (*Runner)(nil)

// Run creates or adopts the plan's Job and waits for it to complete or fail. A Job that
// vanishes while it is awaited (deleted by hand, or by its owner's garbage collection) is
// created again: the pieces its shards finished are adopted.
func (r *Runner) Run(ctx context.Context, planURL string, plan *archive.Plan) error {
	job := BuildJob(r.Template, plan.Pipeline, plan.Window.Start, planURL, int32(len(plan.Shards)))
	for {
		if err := r.launch(ctx, job); err != nil {
			return err
		}
		err := r.await(ctx, job.Name)
		if !errors.Is(err, errJobGone) {
			return err
		}
		r.Logger.Warn("the shard job vanished while awaited; creating it again", "job", job.Name)
	}
}

// errJobGone says that the awaited Job no longer exists.
var errJobGone = errors.New("kube: shard job gone")

// launch creates the Job, or adopts the one an earlier coordinator created for the same plan.
// An earlier Job that failed is replaced, whatever its failure: retries that ran out, or a
// permanent failure that failed the run before this one and that an operator may have fixed
// since (a permanent failure fails its own run, never the next). So the next run retries the
// window at once rather than after the failed Job's TTL; the pieces its shards finished stay
// in the store and are adopted.
func (r *Runner) launch(ctx context.Context, job *batchv1.Job) error {
	jobs := r.Client.BatchV1().Jobs(r.Template.Namespace)
	for {
		_, err := jobs.Create(ctx, job, metav1.CreateOptions{})
		if err == nil {
			r.Logger.Info("shard job created", "job", job.Name, "completions", *job.Spec.Completions)
			return nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create job %s: %w", job.Name, classify(err))
		}
		existing, err := jobs.Get(ctx, job.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue // gone since the create
		}
		if err != nil {
			return fmt.Errorf("get existing job %s: %w", job.Name, classify(err))
		}
		if plan := job.Annotations[AnnotationPlan]; existing.Annotations[AnnotationPlan] != plan {
			return failure.Permanent(fmt.Errorf("job %s exists for plan %q, not %q", job.Name, existing.Annotations[AnnotationPlan], plan))
		}
		reason, failed := failedReason(existing)
		if !failed {
			r.Logger.Info("adopting the existing shard job", "job", job.Name)
			return nil
		}
		r.Logger.Warn("replacing the shard job that failed", "job", job.Name, "reason", reason, "failed_indexes", deref(existing.Status.FailedIndexes))
		if err := r.remove(ctx, existing); err != nil {
			return err
		}
	}
}

// remove deletes a failed Job, and waits until it is gone so that its name is free.
func (r *Runner) remove(ctx context.Context, job *batchv1.Job) error {
	jobs := r.Client.BatchV1().Jobs(r.Template.Namespace)
	err := jobs.Delete(ctx, job.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &job.UID}, PropagationPolicy: ptr(metav1.DeletePropagationBackground)})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete failed job %s: %w", job.Name, classify(err))
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := jobs.Get(ctx, job.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return err == nil && got.UID != job.UID, classify(err)
	})
	if err != nil {
		return fmt.Errorf("wait for failed job %s to go: %w", job.Name, err)
	}
	return nil
}

// failedReason returns the reason of the Job's Failed condition, if it has one.
func failedReason(job *batchv1.Job) (string, bool) {
	for _, c := range job.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			return c.Reason, true
		}
	}
	return "", false
}

// await watches the Job until it has a terminal condition, re-reading it whenever the watch
// ends (API servers close watches from time to time).
func (r *Runner) await(ctx context.Context, name string) error {
	jobs := r.Client.BatchV1().Jobs(r.Template.Namespace)
	for {
		job, err := jobs.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return errJobGone
		}
		if err != nil {
			return fmt.Errorf("get job %s: %w", name, classify(err))
		}
		if done, err := r.outcome(ctx, job); done {
			return err
		}
		w, err := jobs.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(), ResourceVersion: job.ResourceVersion})
		if err != nil {
			return fmt.Errorf("watch job %s: %w", name, classify(err))
		}
		done, err := r.watchOutcome(ctx, w, name)
		w.Stop()
		if done {
			return err
		}
	}
}

// watchOutcome reads the watch until the Job has an outcome, the watch ends (done is false)
// or ctx does.
func (r *Runner) watchOutcome(ctx context.Context, w watch.Interface, name string) (bool, error) {
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case ev, open := <-w.ResultChan():
			if !open {
				return false, nil
			}
			if ev.Type == watch.Deleted {
				return true, errJobGone
			}
			if j, ok := ev.Object.(*batchv1.Job); ok && j.Name == name {
				if done, err := r.outcome(ctx, j); done {
					return true, err
				}
			}
		}
	}
}

// outcome reads a Job's terminal condition. A failure through the pod failure policy is a
// shard's exit code 3, permanent; any other failure (retries exhausted) is retryable.
func (r *Runner) outcome(ctx context.Context, job *batchv1.Job) (bool, error) {
	for _, c := range job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			r.Logger.Info("shard job complete", "job", job.Name, "completed_indexes", job.Status.CompletedIndexes)
			return true, nil
		case batchv1.JobFailed:
			err := fmt.Errorf("shard job %s failed (%s: %s); completed indexes %q, failed indexes %q; exit codes by index %s",
				job.Name, c.Reason, c.Message, job.Status.CompletedIndexes, deref(job.Status.FailedIndexes), r.exitCodes(ctx, job.Name))
			if c.Reason == batchv1.JobReasonPodFailurePolicy {
				return true, failure.Permanent(fmt.Errorf("%w (a shard exited 3; its log says why; the next run replaces the job and tries the window again)", err))
			}
			return true, err
		}
	}
	return false, nil
}

// exitCodes describes the failed shard pods' exit codes as "index:code", for the
// error that ends a run: the shards' own logs say why.
func (r *Runner) exitCodes(ctx context.Context, job string) string {
	pods, err := r.Client.CoreV1().Pods(r.Template.Namespace).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job})
	if err != nil {
		return fmt.Sprintf("unknown (%v)", err)
	}
	var codes []string
	for _, p := range pods.Items {
		for _, s := range p.Status.ContainerStatuses {
			if t := s.State.Terminated; t != nil && t.ExitCode != 0 {
				codes = append(codes, p.Annotations[batchv1.JobCompletionIndexAnnotation]+":"+strconv.Itoa(int(t.ExitCode)))
			}
		}
	}
	return "[" + strings.Join(codes, " ") + "]"
}

// classify marks the API errors that a retry cannot cure: a request the API server
// refuses (Forbidden by RBAC, Unauthorized, Invalid, BadRequest, a missing namespace).
// Retryable: a Forbidden for an exceeded ResourceQuota (quota frees up as other pods end),
// conflicts, throttling, timeouts, server errors and the network.
func classify(err error) error {
	switch {
	case apierrors.IsForbidden(err) && isQuotaExceeded(err):
		return err
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err), apierrors.IsInvalid(err),
		apierrors.IsBadRequest(err), apierrors.IsNotFound(err), apierrors.IsMethodNotSupported(err):
		return failure.Permanent(err)
	}
	return err
}

// isQuotaExceeded reports whether a Forbidden answer comes from a ResourceQuota admission,
// which says so only in its message ("exceeded quota: ...").
func isQuotaExceeded(err error) bool {
	var status apierrors.APIStatus
	return errors.As(err, &status) && strings.Contains(status.Status().Message, "exceeded quota")
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
