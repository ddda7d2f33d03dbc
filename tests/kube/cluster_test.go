// Package kube tests karch on a real Kubernetes node and control plane, both started by
// `make test` (tests/services/services.sh): etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler, and a kubelet with containerd and runc that runs every pod as a container
// of karch's image, built from the checkout. The deploy/ overlays are applied as they are,
// the coordinator is started from its CronJob, and the shards run as the real Job controller
// and kubelet run them. Each test has its own namespace, topic and pipeline, so they run in
// parallel on the one node.
package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
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

	"github.com/karch-archive/karch/internal/testenv"
)

// The images the tests' pods run, both built from the checkout by TestMain: image is the kind
// overlay's, karch's release build as `make image` makes it; testImage is the same build with
// karch's test hooks (cmd/karch/testhook.go), for the tests that reach into a shard.
const (
	image     = "karch:dev"
	testImage = "karch:testhooks"
)

// TestMain builds and imports the images. It runs more of the tests at once than go test would (GOMAXPROCS, 2 on the project's
// machine), unless -parallel says how many: they wait on the control plane (pods starting, the
// Job controller's backoffs of 10 s and more after each failed pod) far more than they compute.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", strconv.Itoa(max(8, runtime.GOMAXPROCS(0))))
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	if err := testenv.KarchImage(ctx, "docker.io/library/"+image); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := testenv.KarchImage(ctx, "docker.io/library/"+testImage, "karch_testhooks"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// cluster is one test's namespace on the local control plane and node.
type cluster struct {
	t          *testing.T
	kubeconfig string
	rest       *rest.Config
	client     kubernetes.Interface
	ns         string
	node       testenv.Node
	// image is what the test's pods run; tamperURL, with testImage, is where its shards
	// ask what to change before they start.
	image, tamperURL string
}

// newCluster makes a fresh namespace. tamper, when not nil, is asked by every shard before it
// starts (through testImage's hook) for NAME=value lines to set in its environment, and may
// hold its answer to hold the shard until ctx ends.
func newCluster(t *testing.T, tamper func(ctx context.Context, index int) []string) *cluster {
	t.Helper()
	kc := testenv.Kube(t)
	rc, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	client := kubernetes.NewForConfigOrDie(rc)
	c := &cluster{t: t, kubeconfig: kc, rest: rc, client: client, ns: fmt.Sprintf("karch-t%d", time.Now().UnixNano()%1e10),
		node: testenv.KubeNode(t), image: image}
	if tamper != nil {
		c.image, c.tamperURL = testImage, c.serveTamper(tamper)
	}
	t.Cleanup(c.cleanup)
	return c
}

// serveTamper serves tamper to the test's shards on 127.0.0.1, where their host network
// reaches it.
func (c *cluster) serveTamper(tamper func(ctx context.Context, index int) []string) string {
	stop, cancel := context.WithCancel(context.Background())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		index, err := strconv.Atoi(r.URL.Query().Get("index"))
		if err != nil {
			http.Error(w, "index: "+err.Error(), http.StatusBadRequest)
			return
		}
		ctx, done := context.WithCancel(r.Context())
		defer done()
		defer context.AfterFunc(stop, done)()
		for _, kv := range tamper(ctx, index) {
			fmt.Fprintln(w, kv)
		}
	}))
	// Cleanups run last-in first-out: held shards are let go before the server closes.
	c.t.Cleanup(srv.Close)
	c.t.Cleanup(cancel)
	return srv.URL
}

func (c *cluster) cleanup() {
	if c.t.Failed() {
		c.dumpLogs()
	}
	ctx := context.Background()
	c.client.CoreV1().Namespaces().Delete(ctx, c.ns, metav1.DeleteOptions{})
	deadline := time.Now().Add(time.Minute)
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
		out, err := c.log(&p)
		c.t.Logf("pod %s phase %s (%v):\n%s", p.Name, p.Status.Phase, err, out)
	}
}

// log is what a pod's one container wrote, every attempt.
func (c *cluster) log(pod *corev1.Pod) ([]byte, error) {
	return c.node.PodLog(pod.Namespace, pod.Name, string(pod.UID), pod.Spec.Containers[0].Name)
}

// kill sends SIGKILL to a pod's running container.
func (c *cluster) kill(pod *corev1.Pod) error {
	id := ""
	if s := pod.Status.ContainerStatuses; len(s) == 1 && s[0].State.Running != nil {
		id = s[0].ContainerID
	}
	return c.node.Kill(context.Background(), id)
}

// deploy applies the kind overlay to the test's namespace with the pipeline's settings and
// the test servers' credentials, its CronJob suspended so that only the test starts runs.
// Every pod runs in the node's network namespace, where Kafka, Redis, MinIO and the API
// server listen on 127.0.0.1: the shards by the kube runner's shard_host_network, the
// coordinator by a patch, which also points its in-cluster client at the API server there.
// The pod specs are the overlay's otherwise: securityContext, read-only root, emptyDir,
// limits. patches are further strategic-merge patches of the overlay's resources.
func (c *cluster) deploy(settings map[string]string, patches ...string) {
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
	api, err := url.Parse(c.rest.Host)
	if err != nil {
		c.t.Fatal(err)
	}
	settings = maps.Clone(settings)
	settings["KARCH_SHARD_HOST_NETWORK"] = "true"
	if c.tamperURL != "" {
		settings["KARCHTEST_TAMPER_URL"] = c.tamperURL
	}
	cron, err := os.ReadFile("testdata/node-coordinator.yaml")
	if err != nil {
		c.t.Fatal(err)
	}
	name, tag, _ := strings.Cut(c.image, ":")
	s3 := testenv.S3Server(c.t)
	files := map[string]string{
		"kustomization.yaml": fmt.Sprintf("resources: [%q]\nnamespace: %s\nimages: [{name: karch, newName: %s, newTag: %s}]\n"+
			"patches:\n- path: cron.yaml\n- path: config.yaml\n- path: s3.yaml\n- path: redis.yaml\n", rel, c.ns, name, tag),
		"cron.yaml":   strings.NewReplacer("@HOST@", api.Hostname(), "@PORT@", api.Port()).Replace(string(cron)),
		"config.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: karch-pipeline}\ndata: " + jsonMap(settings) + "\n",
		"s3.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: karch-s3}\nstringData: " + jsonMap(map[string]string{"credentials": fmt.Sprintf(
			"[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", s3.AccessKey, s3.SecretKey)}) + "\n",
		"redis.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: karch-redis}\nstringData: {password: \"\"}\n",
	}
	for i, body := range patches {
		name := fmt.Sprintf("extra-%d.yaml", i)
		files[name] = body
		files["kustomization.yaml"] += "- path: " + name + "\n"
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
	rc := &rest.Config{Host: c.rest.Host, BearerToken: tok.Status.Token, TLSClientConfig: c.rest.TLSClientConfig}
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
