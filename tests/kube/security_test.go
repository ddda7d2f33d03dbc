package kube

import (
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"

	"github.com/karch-archive/karch/internal/testenv"
)

// TestSecretsMountedAsFiles: Kafka's CA and SASL password in a Secret that the coordinator
// mounts (a patch, as an overlay would add) and every shard mounts by shard_secret_files,
// beside the S3 credentials file of deploy/base. The pipeline archives over SASL_SSL every
// record, and no Job spec or pod log holds the password.
func TestSecretsMountedAsFiles(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil)
	p := newPipeline(t, c.ns, 1)
	sasl, files := testenv.KafkaSASLListener(t), testenv.TLS(t)
	ca, err := os.ReadFile(files.CA)
	if err != nil {
		t.Fatal(err)
	}
	settings := maps.Clone(p.settings)
	maps.Copy(settings, map[string]string{
		"KARCH_BROKERS": sasl.Addr, "KARCH_KAFKA_TLS_CA_FILE": "/etc/karch/kafka/ca.crt",
		"KARCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KARCH_KAFKA_SASL_USERNAME": sasl.User,
		// A path, not a secret: the ConfigMap may hold it.
		"KARCH_KAFKA_SASL_PASSWORD_FILE": "/etc/karch/kafka/password",
		"KARCH_SHARD_SECRET_FILES":       "karch-s3=/etc/karch/s3,karch-kafka=/etc/karch/kafka",
	})
	secret := "apiVersion: v1\nkind: Secret\nmetadata: {name: karch-kafka}\nstringData: " +
		jsonMap(map[string]string{"ca.crt": string(ca), "password": sasl.Password}) + "\n"
	mount := `apiVersion: batch/v1
kind: CronJob
metadata: {name: karch-cdr}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
            - name: coordinator
              volumeMounts: [{name: kafka, mountPath: /etc/karch/kafka, readOnly: true}]
          volumes: [{name: kafka, secret: {secretName: karch-kafka}}]
`
	// The Secret is a resource of its own, not a patch of the overlay's.
	c.deploy(settings, mount)
	c.kubectl([]byte(secret), "-n", c.ns, "apply", "-f", "-")
	c.startRun("run-1")
	if run := c.waitJob("run-1", 3*time.Minute); finished(run) != batchv1.JobComplete {
		t.Fatalf("coordinator job: %+v", run.Status)
	}
	p.assertChained(t, 1)
	jobs := c.shardJobs()
	if len(jobs) != 1 {
		t.Fatalf("%d shard jobs, want 1", len(jobs))
	}
	var mounts []string
	for _, m := range jobs[0].Spec.Template.Spec.Containers[0].VolumeMounts {
		mounts = append(mounts, m.MountPath)
	}
	if got := strings.Join(mounts, ","); got != "/tmp,/etc/karch/s3,/etc/karch/kafka" {
		t.Fatalf("shard mounts %s, want /tmp, the S3 and the Kafka Secrets", got)
	}
	c.assertNoSecret(sasl.Password, jobs)
	c.assertNoSecret(testenv.S3Server(t).SecretKey, jobs)
}
