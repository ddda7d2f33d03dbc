package faults_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/tests/chaos/faults"
)

// These tests run against the real servers that `make test` starts; a missing server fails
// the test rather than skipping it.

type s3Server struct{ endpoint, bucket, accessKey, secretKey string }

func testS3(t *testing.T) s3Server {
	t.Helper()
	s := testenv.S3Server(t)
	return s3Server{endpoint: s.Endpoint, bucket: s.Bucket, accessKey: s.AccessKey, secretKey: s.SecretKey}
}

func testRedis(t *testing.T) string { return testenv.Redis(t) }

func testKafka(t *testing.T) string { return testenv.Kafka(t) }

// s3Fixture is a proxy in front of the test S3 server, a client through it and one straight
// to the server, and a key prefix of the test's own.
type s3Fixture struct {
	srv    s3Server
	proxy  *faults.S3Proxy
	direct *s3.Client
	prefix string
}

func newS3Fixture(t *testing.T, seed uint64) *s3Fixture {
	t.Helper()
	srv := testS3(t)
	p, err := faults.NewS3Proxy(srv.endpoint, seed)
	if err != nil {
		t.Fatal(err)
	}
	f := &s3Fixture{
		srv: srv, proxy: p, direct: srv.client(srv.endpoint, 3),
		prefix: fmt.Sprintf("faults-test/%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano()),
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close proxy: %v", err)
		}
		f.removeAll(t)
	})
	return f
}

// client returns an S3 client of the test server at endpoint that makes up to attempts
// attempts per request, with a short backoff.
func (s s3Server) client(endpoint string, attempts int) *s3.Client {
	return s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(s.accessKey, s.secretKey, ""),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = attempts
			o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 20 * time.Millisecond, nil })
		}),
	})
}

// through returns a client through the proxy, with attempts attempts per request.
func (f *s3Fixture) through(attempts int) *s3.Client { return f.srv.client(f.proxy.URL(), attempts) }

// key returns a key under the test's prefix laid out as karch lays out a window's objects,
// '=' and all.
func (f *s3Fixture) key(rel string) string {
	return f.prefix + "/pipe/dt=2026-01-02/window=0300Z-1h/" + rel
}

func (f *s3Fixture) removeAll(t *testing.T) {
	ctx := context.Background()
	out, err := f.direct.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &f.srv.bucket, Prefix: aws.String(f.prefix + "/")})
	if err != nil {
		t.Errorf("list test objects: %v", err)
		return
	}
	for _, o := range out.Contents {
		if _, err := f.direct.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &f.srv.bucket, Key: o.Key}); err != nil {
			t.Errorf("remove %s: %v", *o.Key, err)
		}
	}
}

func (f *s3Fixture) put(ctx context.Context, c *s3.Client, key string, body []byte) error {
	_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &f.srv.bucket, Key: &key, Body: bytes.NewReader(body)})
	return err
}

// size returns the size of key as the server has it, -1 if it does not exist.
func (f *s3Fixture) size(t *testing.T, c *s3.Client, key string) int64 {
	t.Helper()
	out, err := c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: &f.srv.bucket, Key: &key})
	var nf *types.NotFound
	switch {
	case errors.As(err, &nf):
		return -1
	case err != nil:
		t.Fatalf("head %s: %v", key, err)
	}
	return aws.ToInt64(out.ContentLength)
}

// addRule adds r to the fixture's proxy.
func (f *s3Fixture) addRule(t *testing.T, r faults.Rule) faults.RuleID {
	t.Helper()
	id, err := f.proxy.AddRule(r)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// requests returns the logged requests of op on key.
func (f *s3Fixture) requests(op faults.Op, key string) []faults.LoggedRequest {
	var out []faults.LoggedRequest
	for _, r := range f.proxy.Requests() {
		if r.Op == op && r.Key == key {
			out = append(out, r)
		}
	}
	return out
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}
