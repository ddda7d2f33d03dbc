package blob_test

import (
	"context"
	"strings"
	"testing"

	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/blob/blobtest"
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
