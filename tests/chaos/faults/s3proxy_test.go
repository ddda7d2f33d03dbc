package faults_test

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/karch-archive/karch/tests/chaos/faults"
)

const partSize = 5 << 20 // S3's smallest part but the last

// TestS3ProxyPassesThrough: with no rule, every operation karch uses works through the
// proxy, signed requests, conditional writes and multipart uploads included, and each is
// logged with its operation and kind.
func TestS3ProxyPassesThrough(t *testing.T) {
	ctx := context.Background()
	f := newS3Fixture(t, 1)
	c := f.through(1)
	plan, piece := f.key("plan.json"), f.key("data/orders.v1/7/00000000000000000042.jsonl.zst")
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &f.srv.bucket, Key: &plan, Body: bytes.NewReader([]byte(`{"plan":1}`)),
		IfNoneMatch: aws.String("*"), Metadata: map[string]string{"karch-first": "42"},
	}); err != nil {
		t.Fatalf("put plan: %v", err)
	}
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &f.srv.bucket, Key: &plan, Body: bytes.NewReader([]byte(`{"plan":2}`)), IfNoneMatch: aws.String("*"),
	}); apiCode(err) != "PreconditionFailed" {
		t.Fatalf("second conditional put of the plan: got %v, want PreconditionFailed", err)
	}
	if err := f.multipart(t, c, piece, 2); err != nil {
		t.Fatalf("complete multipart upload: %v", err)
	}
	get, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &f.srv.bucket, Key: &plan})
	if err != nil {
		t.Fatalf("get plan: %v", err)
	}
	data, err := io.ReadAll(get.Body)
	get.Body.Close()
	if err != nil || string(data) != `{"plan":1}` || get.Metadata["karch-first"] != "42" {
		t.Fatalf("get plan: %q %v, metadata %v", data, err, get.Metadata)
	}
	if n := f.size(t, c, piece); n != 2*partSize {
		t.Fatalf("piece size %d, want %d", n, 2*partSize)
	}
	list, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &f.srv.bucket, Prefix: aws.String(f.prefix + "/")})
	if err != nil || len(list.Contents) != 2 {
		t.Fatalf("list: %v, %d objects, want 2", err, len(list.Contents))
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &f.srv.bucket, Key: &plan}); err != nil {
		t.Fatalf("delete plan: %v", err)
	}
	want := []string{
		"PutObject plan 200", "PutObject plan 412", "CreateMultipartUpload data 200", "UploadPart data 200",
		"UploadPart data 200", "CompleteMultipartUpload data 200", "GetObject plan 200", "HeadObject data 200",
		"ListObjects other 200", "DeleteObject plan 204",
	}
	if got := summary(f.proxy.Requests()); !slices.Equal(got, want) {
		t.Errorf("request log:\n got %q\nwant %q", got, want)
	}
	if ev := f.proxy.Events(); len(ev) != 0 {
		t.Errorf("events without rules: %v", ev)
	}
}

func summary(log []faults.LoggedRequest) []string {
	var out []string
	for _, r := range log {
		out = append(out, string(r.Op)+" "+string(r.Kind)+" "+strconv.Itoa(r.Status))
	}
	return out
}

// multipart uploads parts parts of partSize to key, one after the other, and returns the
// error of the completion.
func (f *s3Fixture) multipart(t *testing.T, c *s3.Client, key string, parts int) error {
	t.Helper()
	ctx := context.Background()
	up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &f.srv.bucket, Key: &key})
	if err != nil {
		t.Fatalf("create multipart upload: %v", err)
	}
	var done []types.CompletedPart
	for i := int32(1); i <= int32(parts); i++ {
		out, err := c.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &f.srv.bucket, Key: &key, UploadId: up.UploadId, PartNumber: aws.Int32(i),
			Body: bytes.NewReader(payload(partSize)),
		})
		if err != nil {
			t.Fatalf("upload part %d: %v", i, err)
		}
		done = append(done, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(i)})
	}
	_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &f.srv.bucket, Key: &key, UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: done},
	})
	return err
}
