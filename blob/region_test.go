package blob

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karch-archive/karch/failure"
)

// The region comes from the pipeline's setting, else from the AWS SDK's own chain
// (AWS_REGION, as IRSA and Pod Identity inject it), never from a default that overrides them.
func TestS3Region(t *testing.T) {
	for _, tc := range []struct {
		name, setting, env, endpoint, want string
	}{
		{"the setting wins", "ap-south-1", "eu-central-1", "", "ap-south-1"},
		{"else the SDK's chain", "", "eu-central-1", "", "eu-central-1"},
		{"an S3-compatible endpoint and no region anywhere", "", "", "http://127.0.0.1:19000", "us-east-1"},
		{"AWS and no region anywhere", "", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Setenv("AWS_REGION", tc.env)
			t.Setenv("AWS_DEFAULT_REGION", "")
			t.Setenv("AWS_PROFILE", "")
			t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
			t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
			b, err := NewS3(context.Background(), S3Config{Bucket: "b", Region: tc.setting, Endpoint: tc.endpoint})
			if tc.want == "" {
				if !failure.IsPermanent(err) || !strings.Contains(err.Error(), "s3_region") {
					t.Fatalf("err %v; want a permanent error naming s3_region", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := b.client.Options().Region; got != tc.want {
				t.Fatalf("region %q, want %q", got, tc.want)
			}
		})
	}
}
