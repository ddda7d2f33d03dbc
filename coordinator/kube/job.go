// Package kube runs a window's shards as a Kubernetes Indexed Job: a pure builder of the Job
// (docs/DESIGN.md, "Kubernetes") and a Runner that creates or adopts it and watches it.
package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/failure"
)

// Labels and annotations karch puts on its Jobs.
const (
	LabelPipeline = "karch.io/pipeline"
	LabelWindow   = "karch.io/window"
	// LabelBackfill marks a backfill's Jobs with its range, <from>-<to>.
	LabelBackfill  = "karch.io/backfill"
	AnnotationPlan = "karch.io/plan"
	// AnnotationTemplate is a digest of the Job's spec: a Job is adopted only when it is
	// what this run would create, so that a fixed image or setting takes effect.
	AnnotationTemplate = "karch.io/template-hash"
	containerName      = "shard"
)

// SecretFiles is a Secret whose keys become files in Dir.
type SecretFiles struct{ Secret, Dir string }

// JobTemplate is what every shard Job of a deployment shares.
type JobTemplate struct {
	Namespace      string
	Image          string
	ServiceAccount string
	// Env is given to every shard; CredentialsSecret, when set, adds all keys of that
	// Secret (S3 credentials) as environment variables.
	Env               []corev1.EnvVar
	CredentialsSecret string
	// SecretFiles mounts Secrets read-only as files (certificates, password files, an AWS
	// shared credentials file), so that no secret value enters the Job's spec or environment.
	SecretFiles []SecretFiles
	Parallelism int32
	// BackoffLimitPerIndex is the retries of each completion index; MaxFailedIndexes how
	// many indexes may fail for good before the Job does.
	BackoffLimitPerIndex int32
	MaxFailedIndexes     int32
	TTLAfterFinished     time.Duration
	Resources            corev1.ResourceRequirements
	TmpSize              resource.Quantity
	// HostNetwork runs the shard pods in their node's network namespace.
	HostNetwork bool
	// Owner owns every shard Job: the pipeline's CronJob, which lives as long as the
	// pipeline, so that a shard Job outlives the coordinator that created it and any other
	// that adopts it. Nil: the Jobs go by their TTL only.
	Owner *metav1.OwnerReference
}

// JobName derives a window's Job name from its pipeline and window start. The name leaves
// room for the "-<index>" suffix of pod hostnames inside a 63-character DNS label; a long
// pipeline name is shortened with a hash so that names stay unique.
func JobName(pipeline string, window time.Time) string {
	return shorten(fmt.Sprintf("karch-%s-%s", pipeline, window.UTC().Format("200601021504")))
}

// BatchJobName derives the name of a backfill batch's Job from its pipeline, range and part.
func BatchJobName(pipeline string, backfill archive.Window, part int) string {
	return shorten(fmt.Sprintf("karch-%s-%s-%s-%d", pipeline, backfill.Start.UTC().Format("200601021504"), backfill.End.UTC().Format("200601021504"), part))
}

func shorten(name string) string {
	const maxLen = 63 - len("-99999") // the index suffix of the Job's pods
	if len(name) <= maxLen {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	suffix := "-" + hex.EncodeToString(sum[:4])
	return strings.TrimRight(name[:maxLen-len(suffix)], "-") + suffix
}

// BuildJob returns the Indexed Job that runs every shard of a plan: one completion index per
// shard, failing fast on exit code 3 (permanent), ignoring evictions, replacing a pod only once the old
// one is gone.
func BuildJob(t JobTemplate, pipeline string, window time.Time, planURL string, shards int32) *batchv1.Job {
	return buildJob(t, JobName(pipeline, window), map[string]string{"app.kubernetes.io/name": "karch", "app.kubernetes.io/component": "shard",
		LabelPipeline: pipeline, LabelWindow: window.UTC().Format("200601021504")}, planURL, shards)
}

// BuildBatchJob returns the Indexed Job that runs a backfill's batch: one completion index
// per task, which the shard finds in the batch at batchURL, so that the spec stays small
// however many windows the Job spans.
func BuildBatchJob(t JobTemplate, batchURL string, b *archive.Batch) *batchv1.Job {
	span := b.Backfill.Start.UTC().Format("200601021504") + "-" + b.Backfill.End.UTC().Format("200601021504")
	return buildJob(t, BatchJobName(b.Pipeline, b.Backfill, b.Part), map[string]string{"app.kubernetes.io/name": "karch", "app.kubernetes.io/component": "shard",
		LabelPipeline: b.Pipeline, LabelBackfill: span}, batchURL, int32(len(b.Tasks)))
}

func buildJob(t JobTemplate, name string, labels map[string]string, planURL string, shards int32) *batchv1.Job {
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: t.Namespace, Labels: labels,
			Annotations: map[string]string{AnnotationPlan: planURL},
		},
		Spec: batchv1.JobSpec{
			CompletionMode:          ptr(batchv1.IndexedCompletion),
			Completions:             ptr(shards),
			Parallelism:             ptr(min(t.Parallelism, shards)),
			BackoffLimitPerIndex:    ptr(t.BackoffLimitPerIndex),
			MaxFailedIndexes:        ptr(min(t.MaxFailedIndexes, shards)),
			PodReplacementPolicy:    ptr(batchv1.Failed),
			TTLSecondsAfterFinished: ptr(int32(t.TTLAfterFinished.Seconds())),
			PodFailurePolicy: &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{
				{Action: batchv1.PodFailurePolicyActionFailJob, OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{
					ContainerName: ptr(containerName), Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{failure.ExitPermanent}}},
				{Action: batchv1.PodFailurePolicyActionIgnore, OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{
					{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue}}},
			}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       podSpec(t, planURL),
			},
		},
	}
	if t.Owner != nil {
		job.OwnerReferences = []metav1.OwnerReference{*t.Owner}
	}
	job.Annotations[AnnotationTemplate] = specHash(job.Spec)
	return job
}

// specHash digests a Job spec. encoding/json writes map keys in order, so equal specs give
// equal digests.
func specHash(spec batchv1.JobSpec) string {
	data, err := json.Marshal(spec)
	if err != nil {
		panic(fmt.Sprintf("kube: a Job spec does not encode: %v", err)) // only plain data types
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16])
}

func podSpec(t JobTemplate, planURL string) corev1.PodSpec {
	env := append([]corev1.EnvVar{{Name: "TZ", Value: "UTC"}, {Name: "KARCH_PLAN", Value: planURL}}, t.Env...)
	c := corev1.Container{
		Name: containerName, Image: t.Image, Args: []string{"shard"}, Env: env, Resources: t.Resources,
		VolumeMounts: []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot: ptr(true), ReadOnlyRootFilesystem: ptr(true), AllowPrivilegeEscalation: ptr(false),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
	if t.CredentialsSecret != "" {
		c.EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: t.CredentialsSecret}}}}
	}
	volumes := []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr(t.TmpSize)}}}}
	for i, f := range t.SecretFiles {
		name := fmt.Sprintf("secret-%d", i)
		volumes = append(volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: f.Secret}}})
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: name, MountPath: f.Dir, ReadOnly: true})
	}
	dns := corev1.DNSClusterFirst
	if t.HostNetwork {
		dns = corev1.DNSClusterFirstWithHostNet // cluster names still resolve
	}
	return corev1.PodSpec{
		HostNetwork:                  t.HostNetwork,
		DNSPolicy:                    dns,
		RestartPolicy:                corev1.RestartPolicyNever,
		ServiceAccountName:           t.ServiceAccount,
		AutomountServiceAccountToken: ptr(false),
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot: ptr(true), RunAsUser: ptr(int64(65532)), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Containers: []corev1.Container{c},
		Volumes:    volumes,
	}
}

// OwnerReference names the owner of the shard Jobs (kind CronJob or Job of batch/v1). It does
// not block the owner's deletion: that would need update on the owner's finalizers where the
// OwnerReferencesPermissionEnforcement admission plugin runs, beyond the coordinator's Role.
func OwnerReference(kind, name string, uid types.UID) *metav1.OwnerReference {
	return &metav1.OwnerReference{APIVersion: "batch/v1", Kind: kind, Name: name, UID: uid}
}

func ptr[T any](v T) *T { return &v }
