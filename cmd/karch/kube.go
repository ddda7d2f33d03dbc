package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/coordinator/kube"
	"github.com/karch-archive/karch/failure"
)

// The coordinator's own Job, through which the shard Jobs' owner is found; the CronJob passes
// them from its pod's labels through the downward API.
const (
	envOwnerJob    = "KARCH_OWNER_JOB"
	envOwnerJobUID = "KARCH_OWNER_JOB_UID"
	// envPodName names the coordinator's own pod, whose image the shards run by default.
	envPodName = "KARCH_POD_NAME"
)

const inClusterNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

func newKubeRunner(ctx context.Context, cfg runConfig, kubeconfig string, logger *slog.Logger) (coordinator.Runner, error) {
	rc, err := restConfig(kubeconfig)
	if err != nil {
		return nil, failure.Permanent(fmt.Errorf("%w: kubeconfig %q (empty: in-cluster): %v", coordinator.ErrConfig, kubeconfig, err))
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, failure.Permanent(fmt.Errorf("kubernetes client: %w", err))
	}
	ns, err := namespace(cfg.kube.namespace)
	if err != nil {
		return nil, failure.Permanent(err)
	}
	t := kube.JobTemplate{
		Namespace: ns, Image: cfg.kube.image, ServiceAccount: cfg.kube.serviceAccount,
		Env: envVars(append(shardEnv(cfg), memoryLimitEnv(cfg.kube.memory))), CredentialsSecret: cfg.kube.secret,
		SecretFiles: cfg.kube.secretFiles,
		Parallelism: int32(cfg.coord.Parallelism), BackoffLimitPerIndex: int32(cfg.coord.Retries),
		MaxFailedIndexes: int32(cfg.coord.Shards), TTLAfterFinished: 24 * time.Hour, TmpSize: shardTmp(cfg),
		HostNetwork: cfg.kube.hostNetwork,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: cfg.kube.cpu, corev1.ResourceMemory: cfg.kube.memory},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: cfg.kube.memory},
		},
	}
	if t.Owner, err = shardOwner(ctx, client, ns); err != nil {
		return nil, err
	}
	if t.Image == "" {
		if t.Image, err = ownImage(ctx, client, ns); err != nil {
			return nil, err
		}
	}
	logger.Info("shards run as an Indexed Job", "namespace", ns, "image", t.Image, "owner", t.Owner)
	return &kube.Runner{Client: client, Template: t, StartTimeout: cfg.kube.startTimeout, Logger: logger}, nil
}

// shardOwner finds what owns the shard Jobs: the CronJob that started this coordinator, so
// that a shard Job lives as long as the pipeline, whichever coordinator created or adopts it
// (a coordinator's Job goes with the CronJob's history limits, while a later coordinator may
// still watch the shard Job it made). A coordinator Job started by hand, with no CronJob,
// owns its shard Jobs itself; outside a Job they have no owner and go by their TTL.
func shardOwner(ctx context.Context, client kubernetes.Interface, ns string) (*metav1.OwnerReference, error) {
	name, uid := os.Getenv(envOwnerJob), os.Getenv(envOwnerJobUID)
	if name == "" || uid == "" {
		return nil, nil
	}
	job, err := client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read the coordinator's own job %s: %w", name, err)
	}
	if c := metav1.GetControllerOfNoCopy(job); c != nil && c.APIVersion == "batch/v1" && c.Kind == "CronJob" {
		return kube.OwnerReference("CronJob", c.Name, c.UID), nil
	}
	return kube.OwnerReference("Job", name, types.UID(uid)), nil
}

// ownImage is the image of the coordinator's own container, read from its pod: the shards run
// the same build as the coordinator that planned for them, and a deployment moves both with
// one image setting.
func ownImage(ctx context.Context, client kubernetes.Interface, ns string) (string, error) {
	name := os.Getenv(envPodName)
	pod, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("read the coordinator's own pod %s for the shard image (or set shard_image): %w", name, err)
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == "coordinator" || len(pod.Spec.Containers) == 1 {
			return c.Image, nil
		}
	}
	return "", failure.Permanent(fmt.Errorf("%w: shard_image: pod %s has no container named coordinator to take the image from", coordinator.ErrConfig, name))
}

// restConfig uses the kubeconfig when one is given, else the pod's in-cluster identity.
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return rest.InClusterConfig()
}

func namespace(configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	b, err := os.ReadFile(inClusterNamespaceFile)
	if ns := strings.TrimSpace(string(b)); err == nil && ns != "" {
		return ns, nil
	}
	return "", fmt.Errorf("%w: kube_namespace: not set, and not running in a pod", coordinator.ErrConfig)
}

// memoryLimitEnv sets a shard's soft memory limit to three quarters of its pod's limit, leaving
// the rest for what the Go runtime does not count (stacks, the binary, page cache of /tmp).
func memoryLimitEnv(limit resource.Quantity) string {
	return fmt.Sprintf("KARCH_MEMORY_LIMIT_MIB=%d", limit.Value()*3/4>>20)
}

func envVars(kv []string) []corev1.EnvVar {
	out := make([]corev1.EnvVar, 0, len(kv))
	for _, s := range kv {
		k, v, _ := strings.Cut(s, "=")
		out = append(out, corev1.EnvVar{Name: k, Value: v})
	}
	return out
}

// shardTmp is the size of a shard pod's /tmp. A shard keeps nothing there unless it must
// read a stored Parquet piece (adopting it after a kill, or deriving its JSON Lines from
// it): Parquet is read from its footer, so the piece is copied to /tmp first, and a /tmp
// smaller than the piece would have the pod evicted at every retry and wedge the window.
func shardTmp(cfg runConfig) resource.Quantity {
	switch {
	case !cfg.kube.tmp.IsZero():
		return cfg.kube.tmp
	case slices.Contains(cfg.coord.Formats, archive.FormatParquet):
		return resource.MustParse("2Gi")
	}
	return resource.MustParse("64Mi")
}
