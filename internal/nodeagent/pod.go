package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LogFile is where the output of a pod's process goes.
func (a *Agent) LogFile(namespace, name string) string {
	return filepath.Join(a.Dir, namespace, name, "log")
}

// runPod runs the pod's single container to its end and reports the exit code. A pod whose
// image or configuration is missing stays Pending with the waiting reason a kubelet gives
// (ImagePullBackOff, CreateContainerConfigError); any other pod the agent cannot start fails
// with exit code 128, and the reason in its status message.
func (a *Agent) runPod(ctx context.Context, pod *corev1.Pod) {
	log := a.Logger.With("pod", pod.Namespace+"/"+pod.Name)
	cmd, logFile, err := a.command(ctx, pod)
	var w *waitingError
	if errors.As(err, &w) {
		log.Warn("pod cannot start; it stays pending", "reason", w.reason, "err", w.message)
		state := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: w.reason, Message: w.message}}
		if err := a.setStatus(ctx, pod, corev1.PodPending, state, ""); err != nil {
			log.Warn("report pending pod", "err", err)
		}
		return
	}
	if err == nil {
		// The process holds its own copy of the descriptor from its start.
		defer logFile.Close()
		err = a.reportRunning(ctx, pod)
	}
	if err == nil {
		err = a.start(pod, cmd)
	}
	if errors.Is(err, errDeleted) {
		log.Info("pod deleted before it started; not starting it")
		return // the caller lets it go
	}
	if err != nil {
		log.Warn("cannot run pod", "err", err)
		a.finish(ctx, pod, 128, err.Error())
		return
	}
	log.Info("pod started", "pid", cmd.Process.Pid)
	code := exitCode(cmd.Wait())
	log.Info("pod exited", "exit_code", code)
	a.finish(ctx, pod, code, "")
}

// reportRunning sets the pod Running, unless it is being deleted.
func (a *Agent) reportRunning(ctx context.Context, pod *corev1.Pod) error {
	a.mu.Lock()
	stopping := a.active[pod.UID].stopping
	a.mu.Unlock()
	if stopping {
		return errDeleted
	}
	return a.setStatus(ctx, pod, corev1.PodRunning, running(), "")
}

// errDeleted says that a pod was deleted before its process started.
var errDeleted = errors.New("node agent: pod deleted before it started")

func (a *Agent) start(pod *corev1.Pod, cmd *exec.Cmd) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.active[pod.UID]
	if r.stopping {
		return errDeleted // a kubelet starts no container of a pod being deleted
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	r.proc = cmd.Process
	return nil
}

// command builds the process for the pod's container, and opens the log it writes.
func (a *Agent) command(ctx context.Context, pod *corev1.Pod) (*exec.Cmd, *os.File, error) {
	if len(pod.Spec.Containers) != 1 || len(pod.Spec.InitContainers) != 0 {
		return nil, nil, errors.New("node agent: exactly one container and no init containers are supported")
	}
	c := pod.Spec.Containers[0]
	bin, ok := a.Images[c.Image]
	if !ok {
		return nil, nil, &waitingError{"ImagePullBackOff", fmt.Sprintf("Back-off pulling image %q: not found", c.Image)}
	}
	if len(c.Command) != 0 {
		return nil, nil, errors.New("node agent: container command is not supported; use args")
	}
	dir := a.podDir(pod)
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, nil, err
	}
	env, err := a.environment(ctx, pod, c)
	if apierrors.IsNotFound(err) {
		return nil, nil, &waitingError{"CreateContainerConfigError", err.Error()}
	}
	if err != nil {
		return nil, nil, err
	}
	if a.Tamper != nil {
		env = a.Tamper(pod, env)
	}
	out, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.CommandContext(ctx, bin, c.Args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, out, nil
}

// waitingError is a reason a kubelet would leave a pod's container waiting for.
type waitingError struct{ reason, message string }

func (w *waitingError) Error() string { return w.reason + ": " + w.message }

// finish writes the container's exit code into the pod status, then lets a pod that was
// deleted meanwhile go.
func (a *Agent) finish(ctx context.Context, pod *corev1.Pod, code int, message string) {
	phase, reason := corev1.PodSucceeded, "Completed"
	if code != 0 {
		phase, reason = corev1.PodFailed, "Error"
	}
	state := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: int32(code), Reason: reason, Message: message,
		StartedAt: metav1.Now(), FinishedAt: metav1.Now(),
	}}
	if err := a.setStatus(ctx, pod, phase, state, message); err != nil {
		a.Logger.Warn("report pod exit", "pod", pod.Namespace+"/"+pod.Name, "err", err)
	}
	latest, err := a.Client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err == nil && latest.UID == pod.UID && latest.DeletionTimestamp != nil {
		a.forget(ctx, latest)
	}
}

// setStatus writes the pod's phase and its container's state, re-reading the pod on a
// conflict with the Job controller's own writes.
func (a *Agent) setStatus(ctx context.Context, pod *corev1.Pod, phase corev1.PodPhase, state corev1.ContainerState, message string) error {
	pods := a.Client.CoreV1().Pods(pod.Namespace)
	for attempt := 0; ; attempt++ {
		latest, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if latest.UID != pod.UID {
			return nil
		}
		now := metav1.Now()
		latest.Status.Phase, latest.Status.Message = phase, message
		latest.Status.PodIP, latest.Status.HostIP = "127.0.0.1", "127.0.0.1"
		if latest.Status.StartTime == nil {
			latest.Status.StartTime = &now
		}
		c := pod.Spec.Containers[0]
		latest.Status.ContainerStatuses = []corev1.ContainerStatus{{
			Name: c.Name, Image: c.Image, ImageID: c.Image, State: state,
			Ready: state.Running != nil, Started: ptr(state.Running != nil),
		}}
		latest.Status.Conditions = podConditions(latest.Status.Conditions, state.Running != nil, now)
		_, err = pods.UpdateStatus(ctx, latest, metav1.UpdateOptions{})
		if err == nil || attempt == 5 || !apierrors.IsConflict(err) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kubeletConditions are the pod conditions a kubelet owns (k8s.io/kubernetes
// pkg/kubelet/types PodConditionsByKubelet, with PodReadyToStartContainers); it keeps every
// other condition as it finds it, such as the DisruptionTarget the API server sets on an
// eviction.
var kubeletConditions = map[corev1.PodConditionType]bool{
	corev1.PodScheduled: true, corev1.PodReady: true, corev1.PodInitialized: true, corev1.ContainersReady: true,
	corev1.PodReadyToStartContainers: true, corev1.PodResizeInProgress: true, corev1.PodResizePending: true,
}

// podConditions are the pod's conditions with the kubelet's own set anew.
func podConditions(current []corev1.PodCondition, ready bool, now metav1.Time) []corev1.PodCondition {
	var out []corev1.PodCondition
	for _, c := range current {
		if !kubeletConditions[c.Type] {
			out = append(out, c)
		}
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return append(out,
		corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		corev1.PodCondition{Type: corev1.PodReady, Status: status, LastTransitionTime: now},
		corev1.PodCondition{Type: corev1.ContainersReady, Status: status, LastTransitionTime: now},
	)
}

// notFound is the state a kubelet gives a container it cannot find when it terminates the
// pod: one that never started, say (k8s.io/kubernetes pkg/kubelet/status TerminatePod).
func notFound() corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: 137, Reason: "ContainerStatusUnknown", Message: "The container could not be located when the pod was terminated"}}
}

func running() corev1.ContainerState {
	return corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}
}

// exitCode reads a finished process's code the way a container runtime reports it: 128 plus
// the signal for a killed process.
func exitCode(err error) int {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		if err != nil {
			return 128
		}
		return 0
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return exit.ExitCode()
}
