package testenv

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/karch-archive/karch/blob"
)

// S3Config returns a configuration for the test S3 server under a prefix unique to the test,
// so that tests can share the bucket.
func S3Config(t testing.TB) blob.S3Config {
	t.Helper()
	s := S3Server(t)
	return blob.S3Config{
		Endpoint: s.Endpoint, Region: s.Region, PathStyle: true, Bucket: s.Bucket,
		Prefix:      fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano()),
		AccessKeyID: s.AccessKey, SecretAccessKey: s.SecretKey, PartSize: 5 << 20,
	}
}

// S3Bucket returns the test S3 bucket under a prefix unique to the test.
func S3Bucket(t testing.TB) blob.Bucket {
	t.Helper()
	b, err := blob.NewS3(context.Background(), S3Config(t))
	if err != nil {
		t.Fatalf("open S3 bucket: %v", err)
	}
	return b
}

// LocalBucket returns a bucket in a fresh temporary directory.
func LocalBucket(t testing.TB) blob.Bucket {
	t.Helper()
	b, err := blob.NewLocal(t.TempDir())
	if err != nil {
		t.Fatalf("open local bucket: %v", err)
	}
	return b
}
