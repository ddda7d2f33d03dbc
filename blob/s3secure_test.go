package blob_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/internal/testenv"
)

// Every object, a single PutObject and a multipart upload alike, carries the configured
// encryption, storage class and Object Lock retention, as the server reports them back.
func TestS3EncryptionClassAndLock(t *testing.T) {
	kms := testenv.S3KMSKey(t)
	for _, tc := range []struct {
		name, sse, kmsKey, wantKey string
		locked                     bool
	}{
		{"SSE-S3", "AES256", "", "", false},
		{"SSE-KMS locked", "aws:kms", kms, kms, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testenv.S3Config(t)
			if tc.locked {
				cfg = testenv.LockedS3Config(t)
				cfg.LockMode, cfg.LockRetention = "GOVERNANCE", time.Hour
			}
			cfg.SSE, cfg.KMSKeyID, cfg.StorageClass = tc.sse, tc.kmsKey, "REDUCED_REDUNDANCY"
			b, err := blob.NewS3(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			raw := testenv.RawS3(t)
			for _, size := range []int{1 << 10, 12 << 20} { // one PutObject; three parts
				key := fmt.Sprintf("object-%d", size)
				before := time.Now()
				if _, err := b.Put(context.Background(), key, bytes.NewReader(make([]byte, size)), blob.PutOptions{IfAbsent: true}); err != nil {
					t.Fatalf("put %d bytes: %v", size, err)
				}
				h, err := raw.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: &cfg.Bucket, Key: aws.String(cfg.Prefix + "/" + key)})
				if err != nil {
					t.Fatal(err)
				}
				if string(h.ServerSideEncryption) != tc.sse || !strings.HasSuffix(aws.ToString(h.SSEKMSKeyId), tc.wantKey) || h.StorageClass != "REDUCED_REDUNDANCY" {
					t.Fatalf("%d bytes: encryption %q key %q class %q; want %q, %q, REDUCED_REDUNDANCY", size, h.ServerSideEncryption, aws.ToString(h.SSEKMSKeyId), h.StorageClass, tc.sse, tc.wantKey)
				}
				until := aws.ToTime(h.ObjectLockRetainUntilDate)
				if tc.locked && (h.ObjectLockMode != "GOVERNANCE" || until.Before(before.Add(time.Hour-time.Second)) || until.After(time.Now().Add(time.Hour+time.Second))) {
					t.Fatalf("%d bytes: lock %q until %s; want GOVERNANCE until an hour after the write", size, h.ObjectLockMode, until)
				}
				if !tc.locked && h.ObjectLockMode != "" {
					t.Fatalf("%d bytes: lock %q on an unlocked write", size, h.ObjectLockMode)
				}
			}
		})
	}
}

// On a locked bucket, the version karch wrote can be neither deleted nor replaced: a delete
// of the version is refused, and a plain overwrite adds a version but leaves karch's readable
// byte for byte.
func TestS3LockedObjectSurvivesDeleteAndOverwrite(t *testing.T) {
	cfg := testenv.LockedS3Config(t)
	cfg.LockMode, cfg.LockRetention = "GOVERNANCE", time.Hour
	b, err := blob.NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, raw, key := context.Background(), testenv.RawS3(t), "piece"
	full := aws.String(cfg.Prefix + "/" + key)
	if _, err := b.Put(ctx, key, strings.NewReader("committed bytes"), blob.PutOptions{IfAbsent: true}); err != nil {
		t.Fatal(err)
	}
	h, err := raw.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &cfg.Bucket, Key: full})
	if err != nil {
		t.Fatal(err)
	}
	// AWS answers AccessDenied; MinIO InvalidRequest, "Object is WORM protected".
	_, err = raw.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &cfg.Bucket, Key: full, VersionId: h.VersionId})
	var api smithy.APIError
	if !errors.As(err, &api) || (api.ErrorCode() != "AccessDenied" && api.ErrorCode() != "InvalidRequest") {
		t.Fatalf("delete of the locked version: %v; want it refused", err)
	}
	if _, err := b.Put(ctx, key, strings.NewReader("again"), blob.PutOptions{IfAbsent: true}); !blob.IsExists(err) {
		t.Fatalf("karch's own second create: %v; want ErrExists", err)
	}
	if _, err := raw.PutObject(ctx, &s3.PutObjectInput{Bucket: &cfg.Bucket, Key: full, Body: strings.NewReader("forged"),
		ChecksumAlgorithm: "SHA256"}); err != nil {
		t.Fatal(err)
	}
	got, err := raw.GetObject(ctx, &s3.GetObjectInput{Bucket: &cfg.Bucket, Key: full, VersionId: h.VersionId})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Body.Close()
	var body bytes.Buffer
	if _, err := body.ReadFrom(got.Body); err != nil || body.String() != "committed bytes" {
		t.Fatalf("the committed version after an overwrite reads %q (%v)", body.String(), err)
	}
}
