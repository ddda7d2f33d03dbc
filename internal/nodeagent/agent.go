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

	mu      sync.Mutex
	seen    map[types.UID]bool
	running map[types.UID]*os.Process
}

// Run registers the Node and serves its pods until ctx ends; running processes are killed
// then and waited for.
func (a *Agent) Run(ctx context.Context) error {
	a.seen, a.running = map[types.UID]bool{}, map[types.UID]*os.Process{}
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

// Kill sends SIGKILL to the process of the named pod, as a node losing a container would.
func (a *Agent) Kill(ctx context.Context, namespace, name string) error {
	pod, err := a.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if !a.signal(pod, syscall.SIGKILL) {
		return fmt.Errorf("pod %s/%s is not running here", namespace, name)
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
	return true
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

// terminate stops a deleted pod's process, if it runs here, and lets the pod go, as a kubelet
// confirms a graceful deletion.
func (a *Agent) terminate(ctx context.Context, pod *corev1.Pod) {
	if a.signal(pod, syscall.SIGTERM) {
		return // runPod lets the pod go once the process has exited
	}
	if pod.Spec.NodeName == a.Node || pod.Spec.NodeName == "" {
		a.forget(ctx, pod)
	}
}

// signal reports whether the pod's process runs here, signalling it if so.
func (a *Agent) signal(pod *corev1.Pod, sig syscall.Signal) bool {
	a.mu.Lock()
	p := a.running[pod.UID]
	a.mu.Unlock()
	if p != nil {
		p.Signal(sig)
	}
	return p != nil
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
