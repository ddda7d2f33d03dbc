package kube

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestBackfillJobArchives24Windows runs deploy/backfill's Job in the cluster: a day of hourly
// windows, two shards each, as the coordinator's ServiceAccount, with at most 20 completion
// indexes per Job. It runs 48 shards as three Indexed Jobs that each span several windows
// (10, 10 and 4: no window is split), owned by the backfill's Job, and commits all 24 windows
// exactly once, decoded record by record.
func TestBackfillJobArchives24Windows(t *testing.T) {
	t.Parallel()
	const hours = 24
	c := newCluster(t, nil)
	p := newPipelineOver(t, c.ns, hours, hours)
	settings := map[string]string{"KARCH_SHARDS": "2", "KARCH_PARALLELISM": "4", "KARCH_JOB_MAX_INDEXES": "20"}
	for k, v := range p.settings {
		if _, ok := settings[k]; !ok {
			settings[k] = v
		}
	}
	c.deploy(settings)
	c.startBackfill(p.start, p.start.Add(hours*time.Hour))
	job := c.waitJob("karch-backfill", 8*time.Minute)
	if finished(job) != batchv1.JobComplete {
		c.dumpLogs()
		t.Fatalf("backfill job: %+v", job.Status)
	}
	p.assertChained(t, hours)
	list, err := c.client.BatchV1().Jobs(c.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "karch.io/backfill"})
	if err != nil {
		t.Fatal(err)
	}
	var completions []int32
	for _, j := range list.Items {
		completions = append(completions, *j.Spec.Completions)
		if finished(&j) != batchv1.JobComplete || len(j.OwnerReferences) != 1 || j.OwnerReferences[0].Name != "karch-backfill" {
			t.Errorf("shard job %s: complete %v, owners %+v; want complete and owned by the Job karch-backfill", j.Name, finished(&j), j.OwnerReferences)
		}
	}
	if slices.Sort(completions); !slices.Equal(completions, []int32{8, 20, 20}) {
		t.Fatalf("shard jobs of %v completions; want 20, 20 and 8", completions)
	}
}

// startBackfill applies deploy/backfill's Job for [from, to) with the patch that puts it on
// the local node, as deploy does for the CronJob.
func (c *cluster) startBackfill(from, to time.Time) {
	c.t.Helper()
	dir := c.t.TempDir()
	base, err := filepath.Abs("../../deploy/backfill")
	if err != nil {
		c.t.Fatal(err)
	}
	rel, err := filepath.Rel(dir, base)
	if err != nil {
		c.t.Fatal(err)
	}
	api, err := url.Parse(c.rest.Host)
	if err != nil {
		c.t.Fatal(err)
	}
	name, tag, _ := strings.Cut(c.image, ":")
	patch := fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata: {name: karch-backfill}
spec:
  template:
    spec:
      hostNetwork: true
      dnsPolicy: ClusterFirstWithHostNet
      containers:
        - name: coordinator
          args: [backfill, --from=%s, --to=%s]
          env:
            - {name: KUBERNETES_SERVICE_HOST, value: %q}
            - {name: KUBERNETES_SERVICE_PORT, value: %q}
`, from.Format(time.RFC3339), to.Format(time.RFC3339), api.Hostname(), api.Port())
	files := map[string]string{
		// deploy/backfill names the production overlay's image; the test's replaces it.
		"kustomization.yaml": fmt.Sprintf("resources: [%q]\nnamespace: %s\nimages: [{name: registry.example.com/platform/karch, newName: %s, newTag: %s}]\npatches:\n- path: job.yaml\n",
			rel, c.ns, name, tag),
		"job.yaml": patch,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			c.t.Fatal(err)
		}
	}
	c.kubectl(nil, "apply", "-k", dir)
}

// TestDeletedBackfillBatchJobIsRelaunched: the Indexed Job of a backfill's batch deleted (by
// hand, or by a garbage collection gone wrong) while its shards are held: the backfill
// creates the Job again rather than waiting on it for ever, and commits every window exactly
// once, decoded record by record.
func TestDeletedBackfillBatchJobIsRelaunched(t *testing.T) {
	t.Parallel()
	hold := make(chan struct{})
	c := newCluster(t, holdShards(hold)) // until the first batch Job is deleted
	p := newPipeline(t, c.ns, dueWindows)
	c.deploy(p.settings)
	c.startBackfill(p.start, p.start.Add(dueWindows*time.Hour))
	first := c.waitBatchJob()
	c.deleteJob(first.Name)
	t.Logf("chaos: deleted the backfill's batch job %s", first.Name)
	close(hold)
	if job := c.waitJob("karch-backfill", 5*time.Minute); finished(job) != batchv1.JobComplete {
		c.dumpLogs()
		t.Fatalf("backfill job: %+v", job.Status)
	}
	if codes := c.exitCodes("karch-backfill"); !slices.Equal(codes, []int32{0}) {
		t.Fatalf("backfill pods exited %v; want one exit 0", codes)
	}
	list, err := c.client.BatchV1().Jobs(c.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "karch.io/backfill"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].UID == first.UID {
		t.Fatalf("%d batch jobs; want one, created again after the deletion", len(list.Items))
	}
	p.assertChained(t, dueWindows)
	p.assertChecked(t)
}

// waitBatchJob waits for the first Indexed Job of a backfill.
func (c *cluster) waitBatchJob() batchv1.Job {
	c.t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		list, err := c.client.BatchV1().Jobs(c.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "karch.io/backfill"})
		if err == nil && len(list.Items) > 0 {
			return list.Items[0]
		}
	}
	c.t.Fatal("the backfill created no batch job")
	return batchv1.Job{}
}
