package checker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// errMissing is returned by store.get for a key the bucket does not hold.
var errMissing = errors.New("checker: no such object")

// store reads the archive's bucket with the checker's own S3 client. Keys given to it are
// relative to the configured prefix, as FORMAT.md's keys are.
type store struct {
	client *s3.Client
	bucket string
	prefix string // without a leading or trailing '/'
}

// object is one stored object as read back.
type object struct {
	data        []byte
	contentType string
	meta        map[string]string
}

func newStore(c Config) *store {
	region := c.Region
	if region == "" {
		region = "us-east-1"
	}
	client := s3.New(s3.Options{
		Region:       region,
		BaseEndpoint: aws.String(c.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(c.AccessKey, c.SecretKey, ""),
		// The checker computes its own SHA-256 of every object; the SDK's optional checksums
		// would only add warnings where the server sends none.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	return &store{client: client, bucket: c.Bucket, prefix: strings.Trim(c.Prefix, "/")}
}

// key is the bucket key of rel, a key relative to the prefix.
func (s *store) key(rel string) string {
	if s.prefix == "" {
		return rel
	}
	return s.prefix + "/" + rel
}

// list calls fn with the relative key of every object under rel, in key order.
func (s *store) list(ctx context.Context, rel string, fn func(key string)) error {
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.key(rel))})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list s3://%s/%s: %w", s.bucket, s.key(rel), err)
		}
		for _, o := range page.Contents {
			k := aws.ToString(o.Key)
			if s.prefix != "" {
				k = strings.TrimPrefix(k, s.prefix+"/")
			}
			fn(k)
		}
	}
	return nil
}

// get reads a whole object; a key the bucket does not hold is errMissing.
func (s *store) get(ctx context.Context, rel string) (*object, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.key(rel))})
	if err != nil {
		if isMissing(err) {
			return nil, fmt.Errorf("get %s: %w", rel, errMissing)
		}
		return nil, fmt.Errorf("get s3://%s/%s: %w", s.bucket, s.key(rel), err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, fmt.Errorf("read s3://%s/%s: %w", s.bucket, s.key(rel), err)
	}
	return &object{data: data, contentType: aws.ToString(out.ContentType), meta: out.Metadata}, nil
}

func isMissing(err error) bool {
	var nsk *types.NoSuchKey
	if errors.As(err, &nsk) {
		return true
	}
	var api smithy.APIError
	return errors.As(err, &api) && (api.ErrorCode() == "NoSuchKey" || api.ErrorCode() == "NotFound")
}
