package kube

import (
	"context"
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
// only a window's own Job that failed retryably, to run the window again; finished Jobs go by
// their TTL, or with their owner.
type Runner struct {
	Client   kubernetes.Interface
	Template JobTemplate
	Logger   *slog.Logger
}

var _ coordinator.Runner = (*Runner)(nil)

// Run creates or adopts the plan's Job and waits for it to complete or fail.
func (r *Runner) Run(ctx context.Context, planURL string, plan *archive.Plan) error {
	job := BuildJob(r.Template, plan.Pipeline, plan.Window.Start, planURL, int32(len(plan.Shards)))
	if err := r.launch(ctx, job); err != nil {
		return err
	}
	return r.await(ctx, job.Name)
}

// launch creates the Job, or adopts the one an earlier coordinator created for the same plan.
// An earlier Job that failed retryably (its retries ran out) is replaced, so that the next
// run retries the window at once rather than after the failed Job's TTL; the pieces its
// shards finished stay in the store and are adopted.
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
		if !failedRetryably(existing) {
			r.Logger.Info("adopting the existing shard job", "job", job.Name)
			return nil
		}
		r.Logger.Warn("replacing the shard job that failed retryably", "job", job.Name, "failed_indexes", deref(existing.Status.FailedIndexes))
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

func failedRetryably(job *batchv1.Job) bool {
	for _, c := range job.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			return c.Reason != batchv1.JobReasonPodFailurePolicy
		}
	}
	return false
}

// await watches the Job until it has a terminal condition, re-reading it whenever the watch
// ends (API servers close watches from time to time).
func (r *Runner) await(ctx context.Context, name string) error {
	jobs := r.Client.BatchV1().Jobs(r.Template.Namespace)
	for {
		job, err := jobs.Get(ctx, name, metav1.GetOptions{})
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
				return true, failure.Permanent(fmt.Errorf("%w (a shard exited 2; its log says why; delete the job to let a later run try the window again)", err))
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

// classify marks API errors that a retry cannot cure.
func classify(err error) error {
	if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsUnauthorized(err) || apierrors.IsNotFound(err) {
		return failure.Permanent(err)
	}
	return err
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
