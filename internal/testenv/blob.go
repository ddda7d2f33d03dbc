package testenv

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/karch-archive/karch/blob"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3Config returns a configuration for the test S3 server under a prefix unique to the test,
// so that tests can share the bucket. When the test ends, every plan, receipt and manifest
// under the prefix is validated against docs/schema (CheckDocuments).
func S3Config(t testing.TB) blob.S3Config {
	t.Helper()
	return s3ConfigIn(t, S3Server(t).Bucket)
}

func s3ConfigIn(t testing.TB, bucket string) blob.S3Config {
	t.Helper()
	s := S3Server(t)
	cfg := blob.S3Config{
		Endpoint: s.Endpoint, Region: s.Region, PathStyle: true, Bucket: bucket,
		Prefix:      fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano()),
		AccessKeyID: s.AccessKey, SecretAccessKey: s.SecretKey, PartSize: 5 << 20,
	}
	checkWhenDone(t, func() (blob.Bucket, error) { return blob.NewS3(context.Background(), cfg) })
	return cfg
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

// LocalBucket returns a bucket in a fresh temporary directory. When the test ends, before
// the directory is removed, every plan, receipt and manifest in it is validated against
// docs/schema (CheckDocuments).
func LocalBucket(t testing.TB) blob.Bucket {
	t.Helper()
	_, b := LocalStore(t)
	return b
}

// LocalStore is LocalBucket with its directory, for a test that hands the store to a karch
// process or looks at its files.
func LocalStore(t testing.TB) (string, blob.Bucket) {
	t.Helper()
	dir := t.TempDir()
	b, err := blob.NewLocal(dir)
	if err != nil {
		t.Fatalf("open local bucket: %v", err)
	}
	checkWhenDone(t, func() (blob.Bucket, error) { return b, nil })
	return dir, b
}

// LockedS3Config is S3Config in the test bucket that the services script created with
// Object Lock (versioned, WORM).
func LockedS3Config(t testing.TB) blob.S3Config {
	t.Helper()
	return s3ConfigIn(t, mustEnv(t, "KARCH_TEST_S3_LOCKED_BUCKET"))
}

// S3KMSKey is the name of the key the test MinIO's static KMS serves.
func S3KMSKey(t testing.TB) string {
	t.Helper()
	return mustEnv(t, "KARCH_TEST_S3_KMS_KEY")
}

// RawS3 is a plain SDK client of the test S3 server, to read what karch's writes left there
// (encryption, lock, versions) or to act on the store behind karch's back.
func RawS3(t testing.TB) *s3.Client {
	t.Helper()
	s := S3Server(t)
	return s3.New(s3.Options{BaseEndpoint: aws.String(s.Endpoint), Region: s.Region, UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, "")})
}
