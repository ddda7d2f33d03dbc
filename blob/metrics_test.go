package blob_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/blob/blobtest"
	"github.com/karch-archive/karch/internal/testenv"
)

func TestMetricsBucketPassesAcceptance(t *testing.T) {
	blobtest.Acceptance(t, func(t *testing.T) blob.Bucket {
		b, err := blob.NewLocal(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return blob.WithMetrics(b, prometheus.NewRegistry())
	})
}

// TestMetricsBucketCountsFailures checks, against the real S3 server, that only a store in
// trouble counts as failing: lost creates, missing objects and a listing the caller stops
// are answers.
func TestMetricsBucketCountsFailures(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	b := blob.WithMetrics(testenv.S3Bucket(t), reg)
	key := "metrics/" + t.Name()
	if _, err := b.Put(ctx, key, strings.NewReader("hello"), blob.PutOptions{IfAbsent: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, key, strings.NewReader("again"), blob.PutOptions{IfAbsent: true}); !blob.IsExists(err) {
		t.Fatalf("second create: %v, want exists", err)
	}
	if _, err := b.Head(ctx, key+"-missing"); !blob.IsNotFound(err) {
		t.Fatalf("head of a missing key: %v", err)
	}
	boom := errors.New("reader died")
	if _, err := b.Put(ctx, key+"-broken", iotest.ErrReader(boom), blob.PutOptions{}); !errors.Is(err, boom) {
		t.Fatalf("put from a failing reader: %v", err)
	}
	stop := errors.New("enough")
	if err := b.List(ctx, "metrics/", func(blob.ObjectInfo) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("list: %v", err)
	}

	want := `
# HELP karch_store_request_failures_total Object store calls that failed, by operation.
# TYPE karch_store_request_failures_total counter
karch_store_request_failures_total{operation="get"} 0
karch_store_request_failures_total{operation="head"} 0
karch_store_request_failures_total{operation="list"} 0
karch_store_request_failures_total{operation="put"} 1
# HELP karch_store_requests_total Object store calls, by operation.
# TYPE karch_store_requests_total counter
karch_store_requests_total{operation="get"} 0
karch_store_requests_total{operation="head"} 1
karch_store_requests_total{operation="list"} 1
karch_store_requests_total{operation="put"} 3
# HELP karch_store_put_bytes_total Bytes written by successful puts.
# TYPE karch_store_put_bytes_total counter
karch_store_put_bytes_total 5
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"karch_store_requests_total", "karch_store_request_failures_total", "karch_store_put_bytes_total"); err != nil {
		t.Fatal(err)
	}
}
