// Package nodeagent is a stand-in kubelet for tests on a control plane without nodes: it binds
// pending pods to its own Node, runs each one as a local process (the image mapped to a local
// binary), and reports the container's exit code in the pod status, so that the real Job
// controller sees pods start, succeed, fail and get retried as in a cluster.
//
// What a pod gets is what a kubelet would give it that karch uses: args, env with
// Secret, ConfigMap and downward-API references resolved, envFrom, the completion index the
// Job controller sets, and, unless automountServiceAccountToken is false, a kubeconfig with a
// token of the pod's ServiceAccount from the TokenRequest API (KUBECONFIG), so RBAC applies.
// Volumes, probes and init containers are not supported; a pod that needs them fails.
//
// A deleted pod (kubectl delete, an eviction, its Job's garbage collection) is stopped as a
// kubelet stops it: its process gets SIGTERM, and SIGKILL after the pod's grace period; one
// not started yet never starts. The pod is then reported terminal (Failed, unless the process
// exited 0) before the agent lets it go, and the agent keeps the pod conditions it does not
// own, such as the DisruptionTarget an eviction sets: a Job's pod failure policy reads a
// Failed pod's conditions, and a Job with podReplacementPolicy Failed replaces a pod only
// once it is Failed.
package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// Agent runs the pods of one Node.
type Agent struct {
	// Client acts for the node: binds pods, reads Secrets, requests tokens, writes status.
	Client kubernetes.Interface
	// Server is the API server URL written into pods' kubeconfigs.
	Server string
	Node   string
	// Namespace limits the agent to one namespace's pods; empty means all.
	Namespace string
	// Images maps an image name to the local binary that stands for its entrypoint.
	Images map[string]string
	// Dir holds each pod's working directory, kubeconfig and log.
	Dir string
	// BaseEnv is given to every process before the pod's own env (PATH, say).
	BaseEnv []string
	// Tamper, when set, may change a pod's environment before it starts: tests use it to make
	// one attempt of one shard fail the way a real fault would.
	Tamper func(pod *corev1.Pod, env []string) []string
	Logger *slog.Logger

	mu     sync.Mutex
	seen   map[types.UID]bool
	active map[types.UID]*podRun
}

// podRun is a pod the agent has claimed and not yet finished with.
type podRun struct {
	proc *os.Process // nil until the process starts
	// stopping: the pod is being deleted. Its process is never started, or is stopped, and
	// the pod is let go once it is reported terminal, as a kubelet does.
	stopping bool
	kill     *time.Timer // SIGKILL at the end of the grace period
}

// Run registers the Node and serves its pods until ctx ends; running processes are killed
// then and waited for.
func (a *Agent) Run(ctx context.Context) error {
	a.seen, a.active = map[types.UID]bool{}, map[types.UID]*podRun{}
	if err := a.registerNode(ctx); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.watchPods(gctx, g) })
	err := g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// ErrNotRunning says that a pod runs no process here (not yet, or no longer).
var ErrNotRunning = errors.New("nodeagent: pod not running here")

// Kill sends SIGKILL to the process of the named pod, as a node losing a container would.
func (a *Agent) Kill(ctx context.Context, namespace, name string) error {
	pod, err := a.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if !a.signal(pod, syscall.SIGKILL) {
		return fmt.Errorf("kill pod %s/%s: %w", namespace, name, ErrNotRunning)
	}
	return nil
}

func (a *Agent) registerNode(ctx context.Context) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: a.Node}}
	_, err := a.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("register node %s: %w", a.Node, err)
	}
	return nil
}

// watchPods lists and then watches every pod, starting over whenever the watch ends.
func (a *Agent) watchPods(ctx context.Context, g *errgroup.Group) error {
	pods := a.Client.CoreV1().Pods(a.Namespace)
	for ctx.Err() == nil {
		list, err := pods.List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("list pods: %w", err)
		}
		for i := range list.Items {
			a.handle(ctx, g, &list.Items[i])
		}
		w, err := pods.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
		if err != nil {
			return fmt.Errorf("watch pods: %w", err)
		}
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			switch {
			case !ok:
			case ev.Type == watch.Deleted:
				a.signal(pod, syscall.SIGKILL)
			default:
				a.handle(ctx, g, pod)
			}
		}
		w.Stop()
	}
	return ctx.Err()
}

// handle binds an unscheduled pod, starts a bound one once, and finishes a deleted one.
func (a *Agent) handle(ctx context.Context, g *errgroup.Group, pod *corev1.Pod) {
	switch {
	case pod.DeletionTimestamp != nil:
		a.terminate(ctx, pod)
	case pod.Spec.NodeName == "" && pod.Status.Phase == corev1.PodPending:
		a.bind(ctx, pod)
	case pod.Spec.NodeName == a.Node && pod.Status.Phase == corev1.PodPending && a.claim(pod.UID):
		g.Go(func() error {
			a.runPod(ctx, pod)
			if a.release(pod.UID) {
				a.letGo(ctx, pod)
			}
			return nil
		})
	}
}

func (a *Agent) claim(uid types.UID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.seen[uid] {
		return false
	}
	a.seen[uid] = true
	a.active[uid] = &podRun{}
	return true
}

// release ends the agent's run of a pod, and reports whether the pod was deleted meanwhile:
// then it is the caller's to let go, since terminate left it to the run.
func (a *Agent) release(uid types.UID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.active[uid]
	delete(a.active, uid)
	if r.kill != nil {
		r.kill.Stop()
	}
	return r.stopping
}

func (a *Agent) bind(ctx context.Context, pod *corev1.Pod) {
	b := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: a.Node},
	}
	if err := a.Client.CoreV1().Pods(pod.Namespace).Bind(ctx, b, metav1.CreateOptions{}); err != nil && !apierrors.IsConflict(err) {
		a.Logger.Warn("bind pod", "pod", pod.Namespace+"/"+pod.Name, "err", err)
	}
}

// terminate stops a deleted pod as a kubelet does: a process that runs gets SIGTERM, and
// SIGKILL if it outlives the pod's grace period; a pod whose process has not started never
// starts it. The run reports such a pod terminal and lets it go (release); a pod that no run
// holds is let go here.
func (a *Agent) terminate(ctx context.Context, pod *corev1.Pod) {
	a.mu.Lock()
	r := a.active[pod.UID]
	if r != nil && !r.stopping {
		r.stopping = true
		if r.proc != nil {
			r.proc.Signal(syscall.SIGTERM)
			r.kill = time.AfterFunc(gracePeriod(pod), func() { r.proc.Signal(syscall.SIGKILL) })
		}
	}
	a.mu.Unlock()
	if r == nil && (pod.Spec.NodeName == a.Node || pod.Spec.NodeName == "") {
		a.letGo(ctx, pod)
	}
}

// gracePeriod is how long a deleted pod's process may take to stop after SIGTERM.
func gracePeriod(pod *corev1.Pod) time.Duration {
	if s := pod.DeletionGracePeriodSeconds; s != nil {
		return time.Duration(*s) * time.Second
	}
	return 30 * time.Second
}

// signal reports whether the pod's process runs here, signalling it if so.
func (a *Agent) signal(pod *corev1.Pod, sig syscall.Signal) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.active[pod.UID]
	if r == nil || r.proc == nil {
		return false
	}
	r.proc.Signal(sig)
	return true
}

// letGo finishes a deleted pod that runs no process here: as a kubelet does before it lets
// a pod go, it reports a pod that is not terminal yet Failed, keeping the conditions others
// set (DisruptionTarget, which a Job's pod failure policy reads), and only then deletes it.
// A controller that waits for a terminal phase (a Job with podReplacementPolicy Failed or a
// pod failure policy) would otherwise wait for ever.
func (a *Agent) letGo(ctx context.Context, pod *corev1.Pod) {
	latest, err := a.Client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil || latest.UID != pod.UID {
		return // gone already
	}
	if p := latest.Status.Phase; p != corev1.PodSucceeded && p != corev1.PodFailed {
		if err := a.setStatus(ctx, latest, corev1.PodFailed, notFound(), ""); err != nil {
			a.Logger.Warn("report deleted pod failed", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		}
	}
	a.forget(ctx, latest)
}

func (a *Agent) forget(ctx context.Context, pod *corev1.Pod) {
	err := a.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr(int64(0)), Preconditions: &metav1.Preconditions{UID: &pod.UID}})
	if err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		a.Logger.Warn("delete pod", "pod", pod.Namespace+"/"+pod.Name, "err", err)
	}
}

func (a *Agent) podDir(pod *corev1.Pod) string {
	return filepath.Join(a.Dir, pod.Namespace, pod.Name)
}

func ptr[T any](v T) *T { return &v }
