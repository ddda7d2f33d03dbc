package testenv

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// S3Session returns temporary credentials of the test S3 server that may do only what the
// IAM policy document allows: STS AssumeRole as the server's root user, with the policy as
// the session's, so that the session's rights are exactly the policy's.
func S3Session(t testing.TB, policy string) aws.Credentials {
	t.Helper()
	s := S3Server(t)
	client := sts.New(sts.Options{
		BaseEndpoint: aws.String(s.Endpoint), Region: s.Region,
		Credentials: credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
	out, err := client.AssumeRole(context.Background(), &sts.AssumeRoleInput{
		RoleArn: aws.String("arn:aws:iam::minio:role/karch-test"), RoleSessionName: aws.String("karch-test"),
		Policy: aws.String(policy), DurationSeconds: aws.Int32(3600),
	})
	if err != nil {
		t.Fatalf("S3 AssumeRole with a session policy: %v", err)
	}
	c := out.Credentials
	return aws.Credentials{AccessKeyID: aws.ToString(c.AccessKeyId), SecretAccessKey: aws.ToString(c.SecretAccessKey), SessionToken: aws.ToString(c.SessionToken)}
}
