// Package testenv hands tests the addresses of the real servers that `make test` starts.
//
// A test that needs a server and cannot reach it fails with a message that says how to start
// it: a silent skip would count a test that tested nothing as passed.
package testenv

import (
	"net"
	"net/url"
	"os"
	"testing"
	"time"
)

// S3 is how tests reach the S3 server that `make test` starts.
type S3 struct {
	Endpoint  string
	Bucket    string
	AccessKey string
	SecretKey string
	Region    string
}

// Kafka returns the bootstrap address of the test Kafka broker.
func Kafka(t testing.TB) string {
	t.Helper()
	return reachable(t, "KARCH_TEST_KAFKA", mustEnv(t, "KARCH_TEST_KAFKA"))
}

// Redis returns the address of the test Redis server.
func Redis(t testing.TB) string {
	t.Helper()
	return reachable(t, "KARCH_TEST_REDIS", mustEnv(t, "KARCH_TEST_REDIS"))
}

// S3Server returns the test S3 server, its bucket and credentials.
func S3Server(t testing.TB) S3 {
	t.Helper()
	s := S3{
		Endpoint:  mustEnv(t, "KARCH_TEST_S3_ENDPOINT"),
		Bucket:    mustEnv(t, "KARCH_TEST_S3_BUCKET"),
		AccessKey: mustEnv(t, "KARCH_TEST_S3_ACCESS_KEY"),
		SecretKey: mustEnv(t, "KARCH_TEST_S3_SECRET_KEY"),
		Region:    "us-east-1",
	}
	u, err := url.Parse(s.Endpoint)
	if err != nil {
		t.Fatalf("KARCH_TEST_S3_ENDPOINT=%q: %v", s.Endpoint, err)
	}
	reachable(t, "KARCH_TEST_S3_ENDPOINT", u.Host)
	return s
}

// Kube returns the admin kubeconfig of the test Kubernetes control plane.
func Kube(t testing.TB) string {
	t.Helper()
	path := mustEnv(t, "KARCH_TEST_KUBECONFIG")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("KARCH_TEST_KUBECONFIG: %v: start the control plane with `make test`", err)
	}
	return path
}

func mustEnv(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set: this test needs the real servers; run it with `make test`, which starts them and sets it", name)
	}
	return v
}

func reachable(t testing.TB, name, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("%s=%s is not reachable (%v): start the servers with `make services-up` or run `make test`", name, addr, err)
	}
	c.Close()
	return addr
}
