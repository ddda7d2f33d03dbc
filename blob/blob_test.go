package blob_test

import (
	"context"
	"strings"
	"testing"

	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/blob/blobtest"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/internal/testenv"
)

func TestLocalAcceptance(t *testing.T) {
	blobtest.Acceptance(t, func(t *testing.T) blob.Bucket {
		b, err := blob.NewLocal(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

func TestS3Acceptance(t *testing.T) {
	blobtest.Acceptance(t, func(t *testing.T) blob.Bucket { return testenv.S3Bucket(t) })
}

func TestS3ConfigNeverShowsTheSecret(t *testing.T) {
	cfg := blob.S3Config{Bucket: "b", Region: "r", AccessKeyID: "AKIA", SecretAccessKey: "s3cr3t-value"}
	for _, s := range []string{cfg.String(), cfg.LogValue().String()} {
		if strings.Contains(s, "s3cr3t-value") {
			t.Fatalf("secret shown: %s", s)
		}
	}
	bad := cfg
	bad.SSE = "rot13"
	if err := bad.Validate(); err == nil || strings.Contains(err.Error(), "s3cr3t-value") {
		t.Fatalf("Validate: %v", err)
	}
	if _, err := blob.NewS3(context.Background(), bad); err == nil {
		t.Fatal("NewS3 accepted a bad configuration")
	}
}

func TestSplitURL(t *testing.T) {
	for _, tc := range []struct{ in, folder, name string }{
		{"s3://bkt/pre/fix/plan.json", "s3://bkt/pre/fix", "plan.json"},
		{"s3://bkt/plan.json", "s3://bkt", "plan.json"},
		{"file:///plan.json", "file:///", "plan.json"},
		{"file:///data/w/plan.json", "file:///data/w", "plan.json"},
		{"/data/w/plan.json", "/data/w", "plan.json"},
		{"/plan.json", "/", "plan.json"},
		{"plan.json", ".", "plan.json"},
	} {
		if f, n := blob.SplitURL(tc.in); f != tc.folder || n != tc.name {
			t.Errorf("SplitURL(%q) = %q, %q; want %q, %q", tc.in, f, n, tc.folder, tc.name)
		}
	}
}

func TestLocalRejectsBadKeys(t *testing.T) {
	b, err := blob.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"", "/abs", "a/../b", "a//b", ".karch-tmp/x", ".karch-meta/x", "dir/"} {
		if _, err := b.Head(context.Background(), k); err == nil || blob.IsNotFound(err) {
			t.Errorf("key %q: %v, want an invalid-key error", k, err)
		}
	}
}

// TestS3PermanentAnswersFromMinIO checks the classes against a real server's answers: a
// wrong secret and a missing bucket are verdicts, including for a HEAD, whose answer has no
// body to name its error.
func TestS3PermanentAnswersFromMinIO(t *testing.T) {
	badSecret := testenv.S3Config(t)
	badSecret.SecretAccessKey = "wrong-secret"
	noBucket := testenv.S3Config(t)
	noBucket.Bucket = "karch-no-such-bucket"
	for name, cfg := range map[string]blob.S3Config{"bad secret": badSecret, "no bucket": noBucket} {
		b, err := blob.NewS3(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		_, putErr := b.Put(ctx, "k", strings.NewReader("x"), blob.PutOptions{IfAbsent: true})
		_, getErr := b.Get(ctx, "k")
		listErr := b.List(ctx, "", func(blob.ObjectInfo) error { return nil })
		for op, err := range map[string]error{"put": putErr, "get": getErr, "list": listErr} {
			if !failure.IsPermanent(err) || blob.IsNotFound(err) {
				t.Errorf("%s: %s: %v, want a permanent error", name, op, err)
			}
		}
	}
	b, err := blob.NewS3(context.Background(), badSecret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Head(context.Background(), "k"); !failure.IsPermanent(err) {
		t.Errorf("bad secret: head: %v, want a permanent error", err)
	}
}
