package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karch-archive/karch/internal/testenv"
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
		{"plaintext at a TLS port", []string{"KARCH_BROKERS=" + mtls}, 1, "broker appears to be expecting TLS"},
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
	withEnv("KARCH_BROKERS="+mtls, "KARCH_KAFKA_TLS_CA_FILE="+files.CA, "KARCH_KAFKA_TLS_CERT_FILE="+files.Cert, "KARCH_KAFKA_TLS_KEY_FILE="+files.Key)
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
