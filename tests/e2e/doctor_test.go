package e2e

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/tests/chaos/faults"
)

// doctorChecks are the lines of a checklist in which everything passed, by check name.
var doctorChecks = []string{
	"kafka: the topic exists", "kafka: committed records are readable", "redis: the lease's commands are allowed",
	"store: the pipeline's folder is listable", "store: a second create of one key is refused",
	"store: a second multipart completion of one key is refused", "store: the probe reads back whole, and the clocks agree",
	"store: encryption, class and Object Lock as configured",
}

// TestDoctor: against the local servers, secured as a production pipeline would be (Kafka
// SASL_SSL, Redis TLS as a least-privilege user, a locked bucket with SSE-KMS), every check
// passes, exit 0. Against a store that ignores If-None-Match (the proxy strips it), both
// create checks fail with the reason and a fix, exit 3; with a wrong Kafka password, the
// Kafka checks fail, and the rest still run.
func TestDoctor(t *testing.T) {
	sasl, files, s := testenv.KafkaSASLListener(t), testenv.TLS(t), testenv.S3Server(t)
	user, password := testenv.RedisUser(t, append([]string{"~karch:*"}, testenv.LeaseCommands...)...)
	p := newRunPipeline(t, 2, 500)
	cfg := testenv.LockedS3Config(t)
	proxy, err := faults.NewS3Proxy(s.Endpoint, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	p.env = append(p.env, "KARCH_BROKERS="+sasl.Addr, "KARCH_KAFKA_SASL_PASSWORD="+sasl.Password,
		"KARCH_REDIS="+testenv.RedisTLS(t), "KARCH_REDIS_USERNAME="+user, "KARCH_REDIS_PASSWORD="+password,
		"KARCH_STORE=s3://"+cfg.Bucket+"/"+cfg.Prefix, "KARCH_S3_ENDPOINT="+proxy.URL())
	args := []string{"--kafka-tls-ca-file", files.CA, "--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-username", sasl.User,
		"--redis-tls-ca-file", files.CA, "--s3-sse", "aws:kms", "--s3-kms-key-id", testenv.S3KMSKey(t),
		"--s3-object-lock-mode", "GOVERNANCE", "--s3-object-lock-retention", "1h"}

	cmd, out := p.command(t, "doctor", args...)
	if code := exitCode(t, cmd); code != 0 || checksPassed(out.String()) != len(doctorChecks) || strings.Contains(out.String(), "FAIL") {
		t.Fatalf("doctor on the local servers: exit %d; want 0 and %d checks passed:\n%s", code, len(doctorChecks), out)
	}
	for _, name := range doctorChecks {
		if !strings.Contains(out.String(), "ok    "+name+": ") {
			t.Fatalf("no passed check %q:\n%s", name, out)
		}
	}
	p.assertNoSecret(t, out.String(), sasl.Password)
	p.assertNoSecret(t, out.String(), password)
	t.Logf("doctor's checklist:\n%s", out)

	if _, err := proxy.AddRule(faults.Rule{Ops: []faults.Op{faults.OpPutObject, faults.OpCompleteMultipartUpload},
		Action: faults.IgnoreConditional(aws.Credentials{AccessKeyID: s.AccessKey, SecretAccessKey: s.SecretKey}, s.Region)}); err != nil {
		t.Fatal(err)
	}
	cmd, out = p.command(t, "doctor", args...)
	code := exitCode(t, cmd)
	for _, want := range []string{"FAIL  store: a second create of one key is refused: ", "FAIL  store: a second multipart completion of one key is refused: "} {
		if !strings.Contains(out.String(), want+"probe ") || !strings.Contains(out.String(), "the store ignores If-None-Match") {
			t.Fatalf("doctor on a store that ignores If-None-Match: no line %q naming the cause:\n%s", want, out)
		}
	}
	if code != 3 || !strings.Contains(out.String(), "fix: use a store that honours If-None-Match") {
		t.Fatalf("doctor on a store that ignores If-None-Match: exit %d, want 3 with the fix:\n%s", code, out)
	}
	t.Logf("doctor on a store that ignores If-None-Match:\n%s", out)
	proxy.ClearRules()

	p.env = append(p.env, "KARCH_KAFKA_SASL_PASSWORD="+sasl.Password+"-not")
	cmd, out = p.command(t, "doctor", args...)
	if code := exitCode(t, cmd); code != 3 || !strings.Contains(out.String(), "FAIL  kafka: the topic exists: ") ||
		!strings.Contains(out.String(), "SASL Authentication Failed") || !strings.Contains(out.String(), "ok    store: a second create of one key is refused") {
		t.Fatalf("doctor with a wrong Kafka password: exit %d; want 3, the Kafka check failed and the store's passed:\n%s", code, out)
	}
}

// checksPassed counts the checklist's passed lines.
func checksPassed(out string) int {
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "ok    ") {
			n++
		}
	}
	return n
}
