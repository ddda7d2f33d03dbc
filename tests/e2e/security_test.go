package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/tests/chaos/faults"
)

// The pipeline over Kafka's SASL_SSL listener with each mechanism, the password read from a
// file as a mounted Secret gives it, and the lease over Redis TLS: every record archived as
// produced, and the password in no output and no object.
func TestRunKafkaSASLSSL(t *testing.T) {
	sasl, files := testenv.KafkaSASLListener(t), testenv.TLS(t)
	passwordFile := filepath.Join(t.TempDir(), "kafka-password")
	if err := os.WriteFile(passwordFile, []byte(sasl.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			p := newRunPipeline(t, 2, 500)
			p.env = append(p.env, "KARCH_BROKERS="+sasl.Addr, "KARCH_KAFKA_SASL_PASSWORD_FILE="+passwordFile)
			// Settings as flags, not in the environment the shards inherit: the coordinator
			// must pass them on.
			cmd, out := p.run(t, "--kafka-tls-ca-file", files.CA, "--kafka-sasl-mechanism", mech, "--kafka-sasl-username", sasl.User,
				"--redis", testenv.RedisTLS(t), "--redis-tls-ca-file", files.CA)
			if code := exitCode(t, cmd); code != 0 {
				t.Fatalf("exit %d, want 0:\n%s", code, out)
			}
			p.assertCommitted(t)
			p.assertNoSecret(t, out.String(), sasl.Password)
		})
	}
}

// mTLS: the broker's SSL listener requires a client certificate. With one the pipeline
// archives every record; without one, or trusting another CA, the run stops at once with
// exit 3 and the reason; a wrong SASL password is exit 3 too; a plaintext client at a TLS
// port is a network failure, exit 1. No refused run writes anything.
func TestRunKafkaTLSRefusals(t *testing.T) {
	sasl, files, mtls := testenv.KafkaSASLListener(t), testenv.TLS(t), testenv.KafkaMTLS(t)
	p := newRunPipeline(t, 2, 500)
	base := p.env
	withEnv := func(env ...string) { p.env = append(append([]string(nil), base...), env...) }
	for _, tc := range []struct {
		name string
		env  []string
		code int
		want string
	}{
		{"no client certificate", []string{"KARCH_BROKERS=" + mtls, "KARCH_KAFKA_TLS_CA_FILE=" + files.CA}, 3, "tls: bad certificate"},
		{"unknown CA", []string{"KARCH_BROKERS=" + mtls, "KARCH_KAFKA_TLS_CA_FILE=" + testenv.StrangerCA(t),
			"KARCH_KAFKA_TLS_CERT_FILE=" + files.Cert, "KARCH_KAFKA_TLS_KEY_FILE=" + files.Key}, 3, "certificate signed by unknown authority"},
		{"wrong password", []string{"KARCH_BROKERS=" + sasl.Addr, "KARCH_KAFKA_TLS_CA_FILE=" + files.CA, "KARCH_KAFKA_SASL_MECHANISM=SCRAM-SHA-512",
			"KARCH_KAFKA_SASL_USERNAME=" + sasl.User, "KARCH_KAFKA_SASL_PASSWORD=" + sasl.Password + "-not"}, 3, "SASL Authentication Failed"},
		{"SASL without TLS", []string{"KARCH_BROKERS=" + sasl.Addr, "KARCH_KAFKA_SASL_MECHANISM=PLAIN",
			"KARCH_KAFKA_SASL_USERNAME=" + sasl.User, "KARCH_KAFKA_SASL_PASSWORD=" + sasl.Password}, 3, "needs kafka_tls"},
		{"a server name the certificate lacks", []string{"KARCH_BROKERS=" + mtls, "KARCH_KAFKA_TLS_CA_FILE=" + files.CA,
			"KARCH_KAFKA_TLS_CERT_FILE=" + files.Cert, "KARCH_KAFKA_TLS_KEY_FILE=" + files.Key, "KARCH_KAFKA_TLS_SERVER_NAME=kafka.invalid"}, 3, "not kafka.invalid"},
		{"plaintext at a TLS port", []string{"KARCH_BROKERS=" + mtls}, 1, "is this a plaintext connection speaking to a tls endpoint?"},
	} {
		withEnv(tc.env...)
		cmd, out := p.run(t)
		if code, line := exitCode(t, cmd), lastLine(out.String()); code != tc.code || !strings.Contains(line, tc.want) {
			t.Fatalf("%s: exit %d, last line %q; want %d with %q:\n%s", tc.name, code, line, tc.code, tc.want, out)
		}
		p.assertNoSecret(t, out.String(), sasl.Password)
	}
	if objs := p.objects(t); len(objs) != 0 {
		t.Fatalf("refused runs wrote %d objects", len(objs))
	}
	// The certificate names localhost too: a server name it carries is accepted.
	withEnv("KARCH_BROKERS="+mtls, "KARCH_KAFKA_TLS_CA_FILE="+files.CA, "KARCH_KAFKA_TLS_CERT_FILE="+files.Cert, "KARCH_KAFKA_TLS_KEY_FILE="+files.Key,
		"KARCH_KAFKA_TLS_SERVER_NAME=localhost")
	cmd, out := p.run(t)
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("mTLS: exit %d, want 0:\n%s", code, out)
	}
	p.assertCommitted(t)
}

// assertNoSecret fails if secret is in output or in any object the pipeline wrote.
func (p *runPipeline) assertNoSecret(t *testing.T, output, secret string) {
	t.Helper()
	if strings.Contains(output, secret) {
		t.Fatalf("the output holds the secret:\n%s", output)
	}
	for key := range p.objects(t) {
		if strings.Contains(string(testenv.ReadObject(t, p.bucket, key)), secret) {
			t.Fatalf("object %s holds the secret", key)
		}
	}
}

// The pipeline into a bucket created with Object Lock, with SSE-KMS and a storage class,
// through a proxy that logs every request: every record archived as produced; every object
// karch wrote is encrypted with the key, in the class and locked in GOVERNANCE mode for the
// retention; and no request deleted, copied or overwrote anything: every create was
// conditional. A second run, with nothing due, writes nothing.
func TestRunIntoLockedEncryptedBucket(t *testing.T) {
	s, kms := testenv.S3Server(t), testenv.S3KMSKey(t)
	proxy, err := faults.NewS3Proxy(s.Endpoint, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	p := newRunPipeline(t, 2, 500)
	cfg := testenv.LockedS3Config(t)
	if p.bucket, err = blob.NewS3(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	p.env = append(p.env, "KARCH_STORE=s3://"+cfg.Bucket+"/"+cfg.Prefix, "KARCH_S3_ENDPOINT="+proxy.URL())
	args := []string{"--s3-sse", "aws:kms", "--s3-kms-key-id", kms, "--s3-storage-class", "REDUCED_REDUNDANCY",
		"--s3-object-lock-mode", "GOVERNANCE", "--s3-object-lock-retention", "1d"}
	start := time.Now()
	cmd, out := p.run(t, args...)
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("exit %d, want 0:\n%s", code, out)
	}
	p.assertCommitted(t)
	raw := testenv.RawS3(t)
	objects := p.objects(t)
	for key := range objects {
		h, err := raw.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: &cfg.Bucket, Key: aws.String(cfg.Prefix + "/" + key)})
		if err != nil {
			t.Fatal(err)
		}
		until := aws.ToTime(h.ObjectLockRetainUntilDate)
		if h.ServerSideEncryption != "aws:kms" || !strings.HasSuffix(aws.ToString(h.SSEKMSKeyId), kms) || h.StorageClass != "REDUCED_REDUNDANCY" ||
			h.ObjectLockMode != "GOVERNANCE" || until.Before(start.Add(24*time.Hour-time.Minute)) {
			t.Fatalf("%s: encryption %q key %q class %q lock %q until %s; want aws:kms, %s, REDUCED_REDUNDANCY, GOVERNANCE for a day",
				key, h.ServerSideEncryption, aws.ToString(h.SSEKMSKeyId), h.StorageClass, h.ObjectLockMode, until, kms)
		}
	}
	cmd, out = p.run(t, args...)
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("second run: exit %d, want 0:\n%s", code, out)
	}
	creates, ops := 0, map[faults.Op]int{}
	for _, r := range proxy.Requests() {
		ops[r.Op]++
		switch r.Op {
		case faults.OpDeleteObject, faults.OpDeleteObjects, faults.OpAbortMultipartUpload, faults.OpCopyObject, faults.OpOther:
			if r.Op != faults.OpOther || r.Method != http.MethodGet {
				t.Errorf("%s %s %s: karch must never delete, copy or alter an object", r.Op, r.Method, r.Key)
			}
		case faults.OpPutObject, faults.OpCompleteMultipartUpload:
			if strings.HasPrefix(r.Key, cfg.Prefix+"/"+p.name+"/") {
				creates++
			}
			if r.IfNoneMatch != "*" {
				t.Errorf("%s %s without If-None-Match: *: an overwrite", r.Op, r.Key)
			}
		}
	}
	t.Logf("requests by operation over both runs: %v", ops)
	if creates != len(objects) {
		t.Errorf("%d creates for %d objects: each object is created once, and the second run creates none", creates, len(objects))
	}
}

// A store that ignores If-None-Match (the proxy strips it and signs the request again): the
// first run refuses it before writing anything of the pipeline's, exit 3, saying why. The same
// store honest again, the run commits, and leaves the probe's record for later runs.
func TestRunRefusesStoreIgnoringConditionalCreate(t *testing.T) {
	s := testenv.S3Server(t)
	proxy, err := faults.NewS3Proxy(s.Endpoint, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	rule, err := proxy.AddRule(faults.Rule{Ops: []faults.Op{faults.OpPutObject, faults.OpCompleteMultipartUpload},
		Action: faults.IgnoreConditional(aws.Credentials{AccessKeyID: s.AccessKey, SecretAccessKey: s.SecretKey}, s.Region)})
	if err != nil {
		t.Fatal(err)
	}
	p := newRunPipeline(t, 2, 500)
	p.env = append(p.env, "KARCH_S3_ENDPOINT="+proxy.URL())
	cmd, out := p.run(t)
	if code, line := exitCode(t, cmd), lastLine(out.String()); code != 3 || !strings.Contains(line, "the store ignores If-None-Match") {
		t.Fatalf("exit %d, last line %q; want 3 saying the store ignores If-None-Match:\n%s", code, line, out)
	}
	if proxy.Fired(rule) < 2 {
		t.Fatalf("the proxy stripped %d conditions, want the probe's two", proxy.Fired(rule))
	}
	if objs := p.objects(t); len(objs) != 0 {
		t.Fatalf("the refused run wrote %d objects of the pipeline", len(objs))
	}
	proxy.ClearRules()
	cmd, out = p.run(t)
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("honest store: exit %d, want 0:\n%s", code, out)
	}
	p.assertCommitted(t)
	marker := archive.ProbeDir(p.name) + archive.ProbeMarkerName
	if _, err := p.bucket.Head(context.Background(), marker); err != nil {
		t.Fatalf("the probe's record %s: %v", marker, err)
	}
}

// TestNoSecretInAnythingARunProduces: a pipeline with every credential karch takes (the
// Kafka SASL password, the Redis ACL user's password, the S3 secret key), all from the
// environment, logging at debug level and pushing metrics: one run refused (a wrong Kafka
// password), one that commits, one verify. No secret, right or wrong, is in any log line or
// error, in any object under the store (plans, receipts, manifests, pieces, probes), or in
// any pushed metric.
func TestNoSecretInAnythingARunProduces(t *testing.T) {
	sasl, files, s := testenv.KafkaSASLListener(t), testenv.TLS(t), testenv.S3Server(t)
	user, password := testenv.RedisUser(t, append([]string{"~karch:*"}, testenv.LeaseCommands...)...)
	gw := newPushGateway(t)
	p := newRunPipeline(t, 2, 500)
	base := append(p.env, "KARCH_BROKERS="+sasl.Addr, "KARCH_KAFKA_TLS_CA_FILE="+files.CA, "KARCH_KAFKA_SASL_MECHANISM=SCRAM-SHA-256",
		"KARCH_KAFKA_SASL_USERNAME="+sasl.User, "KARCH_REDIS_USERNAME="+user, "KARCH_REDIS_PASSWORD="+password,
		"KARCH_PUSH_GATEWAY="+gw.URL, "KARCH_LOG_LEVEL=debug")
	wrong := sasl.Password + "-wrong"
	secrets := []string{sasl.Password, wrong, password, s.SecretKey}
	var outputs []string
	for _, step := range []struct {
		command, kafkaPassword string
		code                   int
	}{{"run", wrong, 3}, {"run", sasl.Password, 0}, {"verify", sasl.Password, 0}} {
		p.env = append(append([]string(nil), base...), "KARCH_KAFKA_SASL_PASSWORD="+step.kafkaPassword)
		cmd, out := p.command(t, step.command)
		if code := exitCode(t, cmd); code != step.code {
			t.Fatalf("%s: exit %d, want %d:\n%s", step.command, code, step.code, out)
		}
		outputs = append(outputs, out.String())
	}
	p.assertCommitted(t)
	var documents []string // everything under the store's prefix, the probes too
	if err := p.bucket.List(context.Background(), "", func(o blob.ObjectInfo) error {
		documents = append(documents, o.Key+"\n"+string(testenv.ReadObject(t, p.bucket, o.Key)))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	gw.mu.Lock()
	var pushed []string
	for _, push := range gw.pushes {
		pushed = append(pushed, push.path+"\n"+string(push.body))
	}
	gw.mu.Unlock()
	if len(documents) < 10 || len(pushed) < 3 {
		t.Fatalf("%d objects and %d pushes to scan; the run made too few for the scan to mean anything", len(documents), len(pushed))
	}
	for what, texts := range map[string][]string{"output": outputs, "object": documents, "metric push": pushed} {
		for _, text := range texts {
			for _, secret := range secrets {
				if strings.Contains(text, secret) {
					t.Fatalf("a %s holds a secret:\n%s", what, text)
				}
			}
		}
	}
	t.Logf("scanned %d outputs, %d objects and %d metric pushes for %d secrets", len(outputs), len(documents), len(pushed), len(secrets))
	for _, out := range outputs {
		assertLogLinesHaveEachKeyOnce(t, out)
	}
}

// assertLogLinesHaveEachKeyOnce: every JSON log line of output names each of its keys once; a
// duplicate is ambiguous to log pipelines, which keep the first or the last as they please.
func assertLogLinesHaveEachKeyOnce(t *testing.T, output string) {
	t.Helper()
	lines := 0
	for _, line := range strings.Split(output, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		lines++
		dec := json.NewDecoder(strings.NewReader(line))
		if _, err := dec.Token(); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			key := tok.(string)
			if seen[key] {
				t.Fatalf("log line names %q twice: %s", key, line)
			}
			seen[key] = true
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
		}
	}
	if lines == 0 {
		t.Fatalf("no JSON log line in:\n%s", output)
	}
}

// TestRunS3OverTLSWithPrivateCA: an S3 endpoint behind a certificate of a private CA (a TLS
// proxy in front of the local MinIO). With AWS_CA_BUNDLE naming the CA, the coordinator and
// its shards archive every record; without it, the run stops at once, exit 3, saying the
// certificate is not trusted.
func TestRunS3OverTLSWithPrivateCA(t *testing.T) {
	s, files := testenv.S3Server(t), testenv.TLS(t)
	target, err := url.Parse(s.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(filepath.Dir(files.CA), "server.crt"), filepath.Join(filepath.Dir(files.CA), "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	// The proxy passes the Host header on as the client signed it, as S3 checks signatures.
	proxy := httptest.NewUnstartedServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host
	}})
	proxy.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	proxy.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
	proxy.StartTLS()
	defer proxy.Close()
	p := newRunPipeline(t, 2, 500)
	p.env = append(p.env, "KARCH_S3_ENDPOINT="+proxy.URL)
	cmd, out := p.run(t)
	if code, line := exitCode(t, cmd), lastLine(out.String()); code != 3 || !strings.Contains(line, "certificate signed by unknown authority") {
		t.Fatalf("no CA bundle: exit %d, last line %q; want 3, the certificate not trusted:\n%s", code, line, out)
	}
	p.env = append(p.env, "AWS_CA_BUNDLE="+files.CA)
	cmd, out = p.run(t)
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("with AWS_CA_BUNDLE: exit %d, want 0:\n%s", code, out)
	}
	p.assertCommitted(t)
}
