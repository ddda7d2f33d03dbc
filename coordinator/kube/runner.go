package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
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
	// StartTimeout is how long a shard pod may stay unstarted (Pending: an image that cannot
	// be pulled, a missing Secret, no room on any node) before the run fails naming it;
	// also how long the Job may go without any pod (a quota refusing them). Zero: 10m.
	StartTimeout time.Duration
	// RefusalGrace is how long the API server's refusals (Forbidden, Unauthorized) are
	// retried before they are believed. Zero: 1m.
	RefusalGrace time.Duration
	Logger       *slog.Logger
}

const defaultStartTimeout = 10 * time.Minute

// defaultRefusalGrace: an API server that has just restarted refuses requests until its
// authorizer's caches have synced. Seen on the local control plane after a kill -9 of
// kube-apiserver: "forbidden ... RBAC: role.rbac.authorization.k8s.io \"karch-coordinator\"
// not found" for seconds, where calling it permanent failed the run (exit 3). A real RBAC
// mistake still exits 3, a minute later.
const defaultRefusalGrace = time.Minute

func (r *Runner) refusalGrace() time.Duration {
	if r.RefusalGrace > 0 {
		return r.RefusalGrace
	}
	return defaultRefusalGrace
}

// refusals tracks the API server's refusals since its last other answer.
type refusals struct {
	since time.Time
	grace time.Duration
}

// patient reports whether err is a refusal to retry: one within the grace since the first of
// a row. Any other answer ends the row.
func (f *refusals) patient(err error) bool {
	if !apierrors.IsForbidden(err) && !apierrors.IsUnauthorized(err) {
		f.since = time.Time{}
		return false
	}
	if f.since.IsZero() {
		f.since = time.Now()
	}
	return time.Since(f.since) < f.grace
}

func (r *Runner) startTimeout() time.Duration {
	if r.StartTimeout > 0 {
		return r.StartTimeout
	}
	return defaultStartTimeout
}

var (
	_ coordinator.Runner      = (*Runner)(nil)
	_ coordinator.BatchRunner = (*Runner)(nil)
)

// Run creates or adopts the plan's Job and waits for it to complete or fail. A Job that
// vanishes while it is awaited (deleted by hand, or by its owner's garbage collection) is
// created again: the pieces its shards finished are adopted.
func (r *Runner) Run(ctx context.Context, planURL string, plan *archive.Plan) error {
	return r.run(ctx, BuildJob(r.Template, plan.Pipeline, plan.Window.Start, planURL, int32(len(plan.Shards))))
}

// RunBatch runs a backfill's batch as one Indexed Job, as Run does a window's plan.
func (r *Runner) RunBatch(ctx context.Context, batchURL string, batch *archive.Batch) error {
	return r.run(ctx, BuildBatchJob(r.Template, batchURL, batch))
}

func (r *Runner) run(ctx context.Context, job *batchv1.Job) error {
	refused := refusals{grace: r.refusalGrace()}
	backoff := apiBackoff()
	for {
		if err := r.launch(ctx, job); err != nil {
			if !refused.patient(err) || ctx.Err() != nil {
				return err
			}
			if err := r.retryAfter(ctx, job.Name, err, backoff.Step()); err != nil {
				return err
			}
			continue
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
		why := replaceReason(existing, job)
		if why == "" {
			r.Logger.Info("adopting the existing shard job", "job", job.Name)
			return nil
		}
		r.Logger.Warn("replacing the existing shard job", "job", job.Name, "reason", why, "failed_indexes", deref(existing.Status.FailedIndexes))
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

// replaceReason says why an existing Job of the same plan must be replaced rather than
// adopted, or "" to adopt it: it failed, or it is still to run with another spec than this
// run's (an image or setting fixed since). A complete Job is adopted as it is: its work is
// done.
func replaceReason(existing, want *batchv1.Job) string {
	switch c := terminal(existing); {
	case c != nil && c.Type == batchv1.JobFailed:
		return "it failed: " + c.Reason
	case c != nil:
		return ""
	case existing.Annotations[AnnotationTemplate] != want.Annotations[AnnotationTemplate]:
		return "its spec (image, resources, environment) differs from this run's"
	}
	return ""
}

// terminal returns the Job's Complete or Failed condition, if it has one.
func terminal(job *batchv1.Job) *batchv1.JobCondition {
	for i, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return &job.Status.Conditions[i]
		}
	}
	return nil
}

// await watches the Job until it has a terminal condition, re-reading it whenever the watch
// ends (API servers close watches from time to time). Passing API errors are retried with
// backoff; every StartTimeout/4 it checks that the Job's pods can start.
func (r *Runner) await(ctx context.Context, name string) error {
	backoff := apiBackoff()
	refused := refusals{grace: r.refusalGrace()}
	for {
		done, err := r.awaitOnce(ctx, name)
		switch {
		case done:
			return err
		case err == nil:
			refused.since = time.Time{}
			continue // the watch ended: read the Job again
		case ctx.Err() != nil:
			return err
		case refused.patient(err):
		case failure.IsPermanent(err):
			return err
		}
		if err := r.retryAfter(ctx, name, err, backoff.Step()); err != nil {
			return err
		}
	}
}

func apiBackoff() wait.Backoff {
	return wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: math.MaxInt32, Cap: 30 * time.Second}
}

// retryAfter logs a failed request and waits delay, or until ctx ends.
func (r *Runner) retryAfter(ctx context.Context, job string, err error, delay time.Duration) error {
	r.Logger.Warn("the API server failed a request; retrying", "job", job, "err", err, "retry_in", delay)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(delay):
		return nil
	}
}

// awaitOnce reads the Job and watches it until it has an outcome (done), the watch ends, or
// a request fails (err, not done).
func (r *Runner) awaitOnce(ctx context.Context, name string) (bool, error) {
	jobs := r.Client.BatchV1().Jobs(r.Template.Namespace)
	job, err := jobs.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, errJobGone
	}
	if err != nil {
		return false, fmt.Errorf("get job %s: %w", name, classify(err))
	}
	if done, err := r.outcome(ctx, job); done {
		return true, err
	}
	w, err := jobs.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(), ResourceVersion: job.ResourceVersion})
	if err != nil {
		return false, fmt.Errorf("watch job %s: %w", name, classify(err))
	}
	defer w.Stop()
	return r.watchOutcome(ctx, w, job)
}

// watchOutcome reads the watch until the Job has an outcome, the watch ends (done is false)
// or ctx does, and checks the Job's pods between events.
func (r *Runner) watchOutcome(ctx context.Context, w watch.Interface, job *batchv1.Job) (bool, error) {
	check := time.NewTicker(r.startTimeout() / 4)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-check.C:
			if done, err := r.recheck(ctx, job.Name); done {
				return true, err
			}
			if err := r.checkStarted(ctx, job); err != nil {
				return true, err
			}
		case ev, open := <-w.ResultChan():
			if !open {
				return false, nil
			}
			if ev.Type == watch.Deleted {
				return true, errJobGone
			}
			if j, ok := ev.Object.(*batchv1.Job); ok && j.Name == job.Name {
				job = j
				if done, err := r.outcome(ctx, j); done {
					return true, err
				}
			}
		}
	}
}

// recheck reads the Job again between watch events: a watch can miss the event that ended
// it (a deletion between the read and the watch's start).
func (r *Runner) recheck(ctx context.Context, name string) (bool, error) {
	job, err := r.Client.BatchV1().Jobs(r.Template.Namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return true, errJobGone
	case err != nil:
		return false, nil // the watch goes on; the next check reads again
	}
	return r.outcome(ctx, job)
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
				job.Name, c.Reason, c.Message, job.Status.CompletedIndexes, deref(job.Status.FailedIndexes), r.exitCodes(ctx, job))
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
func (r *Runner) exitCodes(ctx context.Context, job *batchv1.Job) string {
	pods, err := r.Client.CoreV1().Pods(r.Template.Namespace).List(ctx, podsOf(job))
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
