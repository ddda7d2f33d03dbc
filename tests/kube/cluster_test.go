// Package kube tests karch on a real Kubernetes control plane (etcd, kube-apiserver and
// kube-controller-manager started by `make test`), with internal/nodeagent standing in for a
// kubelet: the deploy/ overlays applied as they are, the coordinator started from its CronJob,
// and the shards run by the real Job controller. Each test has its own namespace, node agent,
// topic and pipeline, so they run in parallel.
package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/karch-archive/karch/internal/nodeagent"
	"github.com/karch-archive/karch/internal/testenv"
)

var karchBin string

// TestMain runs more of the tests at once than go test would (GOMAXPROCS, 2 on the project's
// machine), unless -parallel says how many: they wait on the control plane (pods starting, the
// Job controller's backoffs of 10 s and more after each failed pod) far more than they compute.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", strconv.Itoa(max(8, runtime.GOMAXPROCS(0))))
	}
	testenv.MainWithKarch(m, &karchBin)
}

// image is the kind overlay's image; the node agent runs the karch binary for it.
const image = "karch:dev"

// cluster is one test's namespace on the local control plane and the node agent that runs
// its pods.
type cluster struct {
	t          *testing.T
	kubeconfig string
	rest       *rest.Config
	client     kubernetes.Interface
	ns         string
	agent      *nodeagent.Agent
}

// newCluster starts a node agent for a fresh namespace; tamper, when not nil, may change a
// pod's environment before it starts.
func newCluster(t *testing.T, tamper func(*corev1.Pod, []string) []string) *cluster {
	t.Helper()
	kc := testenv.Kube(t)
	rc, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	client := kubernetes.NewForConfigOrDie(rc)
	c := &cluster{t: t, kubeconfig: kc, rest: rc, client: client, ns: fmt.Sprintf("karch-t%d", time.Now().UnixNano()%1e10)}
	c.agent = &nodeagent.Agent{
		Client: client, Server: rc.Host, Node: c.ns, Namespace: c.ns, Images: map[string]string{image: karchBin},
		Dir: t.TempDir(), BaseEnv: []string{"PATH=" + os.Getenv("PATH")}, Tamper: tamper,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.agent.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node agent: %v", err)
		}
		client.CoreV1().Nodes().Delete(context.Background(), c.ns, metav1.DeleteOptions{})
	})
	// Cleanups run last-in first-out: the namespace goes while the agent still runs, so that
	// it can let the namespace's pods go.
	t.Cleanup(c.cleanup)
	return c
}

func (c *cluster) cleanup() {
	if c.t.Failed() {
		c.dumpLogs()
	}
	ctx := context.Background()
	c.client.CoreV1().Namespaces().Delete(ctx, c.ns, metav1.DeleteOptions{})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := c.client.CoreV1().Namespaces().Get(ctx, c.ns, metav1.GetOptions{}); err != nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dumpLogs prints every pod's status and output, so that a failure explains itself in CI.
func (c *cluster) dumpLogs() {
	pods, err := c.client.CoreV1().Pods(c.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		c.t.Logf("list pods: %v", err)
		return
	}
	for _, p := range pods.Items {
		out, _ := os.ReadFile(c.agent.LogFile(p.Namespace, p.Name))
		c.t.Logf("pod %s phase %s:\n%s", p.Name, p.Status.Phase, out)
	}
}

// deploy applies the kind overlay to the test's namespace with the pipeline's settings and
// the test servers' credentials, its CronJob suspended so that only the test starts runs.
func (c *cluster) deploy(settings map[string]string) {
	c.t.Helper()
	dir := c.t.TempDir()
	overlay, err := filepath.Abs("../../deploy/overlays/kind")
	if err != nil {
		c.t.Fatal(err)
	}
	rel, err := filepath.Rel(dir, overlay)
	if err != nil {
		c.t.Fatal(err)
	}
	s3 := testenv.S3Server(c.t)
	files := map[string]string{
		"kustomization.yaml": fmt.Sprintf("resources: [%q]\nnamespace: %s\npatches:\n- path: cron.yaml\n- path: config.yaml\n- path: s3.yaml\n- path: redis.yaml\n", rel, c.ns),
		"cron.yaml":          "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: karch-cdr}\nspec: {suspend: true}\n",
		"config.yaml":        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: karch-pipeline}\ndata: " + jsonMap(settings) + "\n",
		"s3.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: karch-s3}\nstringData: " +
			jsonMap(map[string]string{"AWS_ACCESS_KEY_ID": s3.AccessKey, "AWS_SECRET_ACCESS_KEY": s3.SecretKey}) + "\n",
		"redis.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: karch-redis}\nstringData: {KARCH_REDIS_PASSWORD: \"\"}\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			c.t.Fatal(err)
		}
	}
	c.kubectl(nil, "apply", "-k", dir)
}

// clientAs is a client acting as one of the namespace's ServiceAccounts, with a token from
// the TokenRequest API, as a pod of that account would have.
func (c *cluster) clientAs(serviceAccount string) kubernetes.Interface {
	c.t.Helper()
	tok, err := c.client.CoreV1().ServiceAccounts(c.ns).CreateToken(context.Background(), serviceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{}}, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	rc := &rest.Config{Host: c.rest.Host, BearerToken: tok.Status.Token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	return kubernetes.NewForConfigOrDie(rc)
}

// kubectl runs Debian's kubectl as the cluster admin and returns its output.
func (c *cluster) kubectl(stdin []byte, args ...string) string {
	c.t.Helper()
	cmd := exec.Command("kubectl", args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.kubeconfig)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// startRun starts the coordinator as an operator would outside the schedule.
func (c *cluster) startRun(name string) {
	c.t.Helper()
	c.kubectl(nil, "-n", c.ns, "create", "job", "--from=cronjob/karch-cdr", name)
}

// waitJob waits for a Job to complete or fail and returns it.
func (c *cluster) waitJob(name string, timeout time.Duration) *batchv1.Job {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		job, err := c.client.BatchV1().Jobs(c.ns).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && finished(job) != "" {
			return job
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("job %s not finished after %s (last error %v)", name, timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// finished names a Job's terminal condition, or is empty.
func finished(job *batchv1.Job) batchv1.JobConditionType {
	for _, cond := range job.Status.Conditions {
		if cond.Status == corev1.ConditionTrue && (cond.Type == batchv1.JobComplete || cond.Type == batchv1.JobFailed) {
			return cond.Type
		}
	}
	return ""
}

// shardJobs lists the Jobs the coordinator created.
func (c *cluster) shardJobs() []batchv1.Job {
	c.t.Helper()
	list, err := c.client.BatchV1().Jobs(c.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "karch.io/window"})
	if err != nil {
		c.t.Fatal(err)
	}
	return list.Items
}

// exitCodes returns the exit code of every finished pod of a Job, oldest first.
func (c *cluster) exitCodes(job string) []int32 {
	c.t.Helper()
	pods, err := c.client.CoreV1().Pods(c.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + job})
	if err != nil {
		c.t.Fatal(err)
	}
	var codes []int32
	for _, p := range pods.Items {
		for _, s := range p.Status.ContainerStatuses {
			if s.State.Terminated != nil {
				codes = append(codes, s.State.Terminated.ExitCode)
			}
		}
	}
	return codes
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func jsonMap(m map[string]string) string {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // a map of strings always marshals
	}
	return string(b)
}
