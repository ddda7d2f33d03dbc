package chaos

import (
	"context"
	"fmt"
	"path"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// committed is true when every window of the trial has its MANIFEST.json. It reads MinIO
// directly, not through the fault proxy, and waits for it while a scenario restarts it.
func (t *Trial) committed() (bool, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		done, err := t.countManifests()
		if err == nil || time.Now().After(deadline) || t.ctx.Err() != nil {
			return done, err
		}
		t.Sleep(500 * time.Millisecond)
	}
}

func (t *Trial) countManifests() (bool, error) {
	cl := s3.New(s3.Options{
		BaseEndpoint: aws.String(t.srv.S3.Endpoint), Region: "us-east-1", UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(t.srv.S3.AccessKey, t.srv.S3.SecretKey, ""),
	})
	ctx, cancel := context.WithTimeout(t.ctx, 30*time.Second)
	defer cancel()
	pages := s3.NewListObjectsV2Paginator(cl, &s3.ListObjectsV2Input{Bucket: aws.String(t.srv.S3.Bucket), Prefix: aws.String(t.prefix + "/" + t.pipeline + "/")})
	n := 0
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return false, fmt.Errorf("list the trial's store: %w", err)
		}
		for _, o := range page.Contents {
			if path.Base(aws.ToString(o.Key)) == "MANIFEST.json" {
				n++
			}
		}
	}
	return n >= windows, nil
}
