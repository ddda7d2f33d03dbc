package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TLSFiles are the PEM files that the services script makes with openssl for the test
// servers' TLS ports: the CA that signs them, and a client certificate for mTLS.
type TLSFiles struct{ CA, Cert, Key string }

// TLS returns the test CA and client certificate.
func TLS(t testing.TB) TLSFiles {
	t.Helper()
	dir := mustEnv(t, "KARCH_TEST_TLS")
	f := TLSFiles{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, "client.crt"), Key: filepath.Join(dir, "client.key")}
	for _, p := range []string{f.CA, f.Cert, f.Key} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("KARCH_TEST_TLS: %v: the services script makes it; run `make services-up` or `make test`", err)
		}
	}
	return f
}

// KafkaSASL is the test broker's SASL_SSL listener and the user the services script made
// for PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512.
type KafkaSASL struct{ Addr, User, Password string }

// KafkaSASLListener returns the SASL_SSL listener of the test broker.
func KafkaSASLListener(t testing.TB) KafkaSASL {
	t.Helper()
	return KafkaSASL{Addr: reachable(t, "KARCH_TEST_KAFKA_SASL", mustEnv(t, "KARCH_TEST_KAFKA_SASL")),
		User: mustEnv(t, "KARCH_TEST_KAFKA_SASL_USER"), Password: mustEnv(t, "KARCH_TEST_KAFKA_SASL_PASSWORD")}
}

// KafkaMTLS returns the test broker's SSL listener, which requires a client certificate.
func KafkaMTLS(t testing.TB) string {
	t.Helper()
	return reachable(t, "KARCH_TEST_KAFKA_MTLS", mustEnv(t, "KARCH_TEST_KAFKA_MTLS"))
}

// RedisTLS returns the TLS port of the test Redis server; client certificates are optional.
func RedisTLS(t testing.TB) string {
	t.Helper()
	return reachable(t, "KARCH_TEST_REDIS_TLS", mustEnv(t, "KARCH_TEST_REDIS_TLS"))
}

// StrangerCA writes the certificate of a CA that signed none of the test servers' and returns
// its path: a client that trusts only it must refuse every server.
func StrangerCA(t testing.TB) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stranger CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "stranger-ca.crt")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
