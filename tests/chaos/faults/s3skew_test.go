package faults_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/karch-archive/karch/tests/chaos/faults"
)

// TestS3ProxySkewClock: through SkewClock the server sees the client's clock off by the skew
// (past 15 minutes: 403, RequestTimeTooSkewed) and the client sees the server's Date off by
// as much, so the SDK, which corrects its signing time from Date, gets through on its retry.
// With no skew, the re-signed request passes at once.
func TestS3ProxySkewClock(t *testing.T) {
	for _, tc := range []struct {
		skew    time.Duration
		refused int
	}{{0, 0}, {20 * time.Minute, 1}, {-20 * time.Minute, 1}} {
		t.Run(tc.skew.String(), func(t *testing.T) {
			ctx := context.Background()
			f := newS3Fixture(t, 1)
			key := f.key("receipts/shard-00001.json")
			creds := aws.Credentials{AccessKeyID: f.srv.accessKey, SecretAccessKey: f.srv.secretKey}
			f.addRule(t, faults.Rule{Action: faults.SkewClock(tc.skew, creds, "us-east-1")})
			c := f.through(3)
			if err := f.put(ctx, c, key, []byte(`{}`)); err != nil {
				t.Fatalf("put: %v", err)
			}
			if _, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &f.srv.bucket, Key: &key}); err != nil {
				t.Fatalf("get after the SDK corrected its clock: %v", err)
			}
			refused := 0
			for _, l := range f.requests(faults.OpPutObject, key) {
				if l.Upstream == 403 {
					refused++
				}
			}
			if refused != tc.refused || f.size(t, f.direct, key) != 2 {
				t.Fatalf("%d puts refused, object of %d bytes; want %d refused and the object stored", refused, f.size(t, f.direct, key), tc.refused)
			}
		})
	}
}
