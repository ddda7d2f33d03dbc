package nodeagent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// environment resolves the container's env and envFrom as a kubelet would, after the agent's
// base environment and, when the pod mounts its ServiceAccount token, KUBECONFIG.
func (a *Agent) environment(ctx context.Context, pod *corev1.Pod, c corev1.Container) ([]string, error) {
	dir := a.podDir(pod)
	env := append(append([]string(nil), a.BaseEnv...), "HOME="+dir, "TMPDIR="+filepath.Join(dir, "tmp"))
	mount, err := a.mountsToken(ctx, pod)
	if err != nil {
		return nil, err
	}
	if mount {
		kc, err := a.writeKubeconfig(ctx, pod)
		if err != nil {
			return nil, err
		}
		env = append(env, "KUBECONFIG="+kc)
	}
	for _, from := range c.EnvFrom {
		data, err := a.sourceData(ctx, pod.Namespace, from)
		if err != nil {
			return nil, err
		}
		for k, v := range data {
			env = append(env, from.Prefix+k+"="+v)
		}
	}
	for _, e := range c.Env {
		v, ok, err := a.value(ctx, pod, e)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		if ok {
			env = append(env, e.Name+"="+v)
		}
	}
	return env, nil
}

func (a *Agent) sourceData(ctx context.Context, ns string, from corev1.EnvFromSource) (map[string]string, error) {
	switch {
	case from.SecretRef != nil:
		s, err := a.Client.CoreV1().Secrets(ns).Get(ctx, from.SecretRef.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && deref(from.SecretRef.Optional) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("envFrom secret %s: %w", from.SecretRef.Name, err)
		}
		out := map[string]string{}
		for k, v := range s.Data {
			out[k] = string(v)
		}
		return out, nil
	case from.ConfigMapRef != nil:
		cm, err := a.Client.CoreV1().ConfigMaps(ns).Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && deref(from.ConfigMapRef.Optional) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("envFrom configmap %s: %w", from.ConfigMapRef.Name, err)
		}
		return cm.Data, nil
	}
	return nil, nil
}

// value resolves one env entry; ok is false for an optional reference that is absent.
func (a *Agent) value(ctx context.Context, pod *corev1.Pod, e corev1.EnvVar) (v string, ok bool, err error) {
	from := e.ValueFrom
	switch {
	case from == nil:
		return e.Value, true, nil
	case from.FieldRef != nil:
		v, err := fieldValue(pod, from.FieldRef.FieldPath)
		return v, err == nil, err
	case from.SecretKeyRef != nil:
		ref := from.SecretKeyRef
		s, err := a.Client.CoreV1().Secrets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return "", false, optional(err, ref.Optional)
		}
		b, ok := s.Data[ref.Key]
		if !ok && !deref(ref.Optional) {
			return "", false, fmt.Errorf("secret %s has no key %s", ref.Name, ref.Key)
		}
		return string(b), ok, nil
	case from.ConfigMapKeyRef != nil:
		ref := from.ConfigMapKeyRef
		cm, err := a.Client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return "", false, optional(err, ref.Optional)
		}
		v, ok := cm.Data[ref.Key]
		if !ok && !deref(ref.Optional) {
			return "", false, fmt.Errorf("configmap %s has no key %s", ref.Name, ref.Key)
		}
		return v, ok, nil
	}
	return "", false, fmt.Errorf("node agent: unsupported valueFrom")
}

func optional(err error, opt *bool) error {
	if apierrors.IsNotFound(err) && deref(opt) {
		return nil
	}
	return err
}

// fieldValue reads the downward-API fields a kubelet offers as env.
func fieldValue(pod *corev1.Pod, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.hostIP":
		return "127.0.0.1", nil
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": pod.Labels, "metadata.annotations": pod.Annotations} {
		if key, ok := strings.CutPrefix(path, prefix+"['"); ok && strings.HasSuffix(key, "']") {
			return m[strings.TrimSuffix(key, "']")], nil
		}
	}
	return "", fmt.Errorf("node agent: unsupported fieldRef %q", path)
}

// mountsToken applies the pod's, then its ServiceAccount's automountServiceAccountToken.
func (a *Agent) mountsToken(ctx context.Context, pod *corev1.Pod) (bool, error) {
	if pod.Spec.AutomountServiceAccountToken != nil {
		return *pod.Spec.AutomountServiceAccountToken, nil
	}
	sa, err := a.Client.CoreV1().ServiceAccounts(pod.Namespace).Get(ctx, serviceAccount(pod), metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("service account: %w", err)
	}
	return sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken, nil
}

// writeKubeconfig asks the TokenRequest API for a token of the pod's ServiceAccount, bound to
// the pod, and writes a kubeconfig that uses it.
func (a *Agent) writeKubeconfig(ctx context.Context, pod *corev1.Pod) (string, error) {
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: ptr(int64(3600)),
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	tok, err := a.Client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, serviceAccount(pod), req, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for service account %s: %w", serviceAccount(pod), err)
	}
	path := filepath.Join(a.podDir(pod), "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: pod, user: {token: %q}}]
contexts: [{name: local, context: {cluster: local, user: pod, namespace: %q}}]
current-context: local
`, a.Server, tok.Status.Token, pod.Namespace)
	return path, os.WriteFile(path, []byte(kc), 0o600)
}

func serviceAccount(pod *corev1.Pod) string {
	if pod.Spec.ServiceAccountName == "" {
		return "default"
	}
	return pod.Spec.ServiceAccountName
}

func deref(b *bool) bool { return b != nil && *b }
