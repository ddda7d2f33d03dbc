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
