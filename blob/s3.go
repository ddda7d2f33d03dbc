package blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/karch-archive/karch/failure"
)

// S3Config configures the S3 backend. It holds a secret: log it only through its LogValue
// or String, which redact it.
type S3Config struct {
	// Endpoint is the S3 API URL; empty means AWS's own for Region.
	Endpoint string
	// Region, when empty, comes from the AWS SDK's own chain (AWS_REGION, the profile, the
	// web identity environment that IRSA or Pod Identity injects); with a custom Endpoint
	// and no region anywhere, us-east-1, which S3-compatible servers accept.
	Region string
	// PathStyle addresses buckets as endpoint/bucket rather than bucket.endpoint, as MinIO
	// and most S3-compatible servers want.
	PathStyle bool
	Bucket    string
	// Prefix is prepended, with a '/', to every key.
	Prefix       string
	StorageClass string
	// SSE is "" (the bucket's default), "AES256" (SSE-S3) or "aws:kms" (SSE-KMS, with
	// KMSKeyID or the account's default key).
	SSE      string
	KMSKeyID string
	// LockMode, GOVERNANCE or COMPLIANCE, puts an Object Lock retention on every object
	// written, until LockRetention from the write: on a bucket created with Object Lock, no
	// one (COMPLIANCE) or only a user allowed to bypass it (GOVERNANCE) can delete the
	// object's version before then. Empty: the bucket's default retention, if any.
	LockMode      string
	LockRetention time.Duration
	// Checksum is the algorithm the server verifies every upload with: SHA256 (the
	// default), CRC32C, CRC32 or CRC64NVME.
	Checksum string
	// PartSize is the size of multipart upload parts (default and least 5 MiB); an object
	// that fits in one part is sent with a single PutObject.
	PartSize int64
	// Concurrency is the number of parts uploaded at once (default 2: a shard's compressed
	// stream is a fraction of what it reads, and two 5 MiB parts in flight keep up with it).
	// Put holds at most Concurrency+1 parts in memory.
	Concurrency int
	// ResponseTimeout is how long a request may wait for the server's answer once it is
	// sent (default 1 minute). The SDK sets no limit, and a server that never answers would
	// hold a run for ever; past it the request fails, retryably, and the SDK retries it.
	ResponseTimeout time.Duration
	// AccessKeyID and SecretAccessKey are static credentials; when empty, the AWS default
	// chain (environment, profile, web identity, instance role) is used.
	AccessKeyID     string
	SecretAccessKey string
}

const minPartSize = 5 << 20

// defaultCompatRegion signs requests to an S3-compatible endpoint when nothing names a
// region: the one MinIO and its kind expect by default.
const defaultCompatRegion = "us-east-1"

func (c S3Config) withDefaults() S3Config {
	if c.Checksum == "" {
		c.Checksum = string(types.ChecksumAlgorithmSha256)
	}
	if c.PartSize == 0 {
		c.PartSize = minPartSize
	}
	if c.Concurrency == 0 {
		c.Concurrency = 2
	}
	if c.ResponseTimeout == 0 {
		c.ResponseTimeout = time.Minute
	}
	c.Prefix = strings.Trim(c.Prefix, "/")
	return c
}

// FieldError is a wrong field of an S3Config, named as karch's settings (and, with '-' for
// '_', its flags) name it: s3_sse, s3_kms_key_id, s3_object_lock_mode, ...
type FieldError struct{ Field, Reason string }

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// ValidateWrites checks what every write carries: encryption, Object Lock and checksum.
func (c S3Config) ValidateWrites() error {
	c = c.withDefaults()
	bad := func(field, format string, args ...any) error { return &FieldError{field, fmt.Sprintf(format, args...)} }
	switch {
	case c.SSE != "" && c.SSE != "AES256" && c.SSE != "aws:kms":
		return bad("s3_sse", "%q: want AES256 or aws:kms", c.SSE)
	case c.KMSKeyID != "" && c.SSE != "aws:kms":
		return bad("s3_kms_key_id", "needs s3_sse aws:kms")
	case c.LockMode != "" && c.LockMode != "GOVERNANCE" && c.LockMode != "COMPLIANCE":
		return bad("s3_object_lock_mode", "%q: want GOVERNANCE or COMPLIANCE", c.LockMode)
	case (c.LockMode == "") != (c.LockRetention == 0):
		return bad("s3_object_lock_retention", "goes with s3_object_lock_mode: give both or neither")
	case c.LockRetention < 0:
		return bad("s3_object_lock_retention", "%s: want a positive period", c.LockRetention)
	case !validChecksum(c.Checksum):
		return bad("s3_checksum", "%q: want SHA256, CRC32C, CRC32 or CRC64NVME", c.Checksum)
	}
	return nil
}

// Validate names the first field that is wrong. Its messages never include the secret.
func (c S3Config) Validate() error {
	if err := c.ValidateWrites(); err != nil {
		return err
	}
	c = c.withDefaults()
	switch {
	case c.Bucket == "":
		return errors.New("s3: bucket is required")
	case c.PartSize < minPartSize:
		return fmt.Errorf("s3: part size %d: want at least %d", c.PartSize, minPartSize)
	case c.Concurrency < 1:
		return fmt.Errorf("s3: concurrency %d: want at least 1", c.Concurrency)
	case c.ResponseTimeout < 0:
		return fmt.Errorf("s3: response timeout %s: want a positive duration", c.ResponseTimeout)
	case (c.AccessKeyID == "") != (c.SecretAccessKey == ""):
		return errors.New("s3: give both access key id and secret access key, or neither")
	}
	return nil
}

func validChecksum(alg string) bool {
	switch types.ChecksumAlgorithm(alg) {
	case types.ChecksumAlgorithmSha256, types.ChecksumAlgorithmCrc32c, types.ChecksumAlgorithmCrc32, types.ChecksumAlgorithmCrc64nvme:
		return true
	}
	return false
}

// LogValue shows the configuration with the secret redacted.
func (c S3Config) LogValue() slog.Value {
	return slog.StringValue(c.String())
}

// String shows the configuration with the secret redacted.
func (c S3Config) String() string {
	secret := ""
	if c.SecretAccessKey != "" {
		secret = "REDACTED"
	}
	return fmt.Sprintf("s3{endpoint=%q region=%q bucket=%q prefix=%q path_style=%t access_key_id=%q secret_access_key=%s}",
		c.Endpoint, c.Region, c.Bucket, c.Prefix, c.PathStyle, c.AccessKeyID, secret)
}

// S3 is a Bucket in an S3 bucket, through aws-sdk-go-v2. The SDK retries throttling and
// server errors of each request; S3 adds no retry of its own.
type S3 struct {
	client *s3.Client
	cfg    S3Config
}

var _ Bucket = (*S3)(nil)

// NewS3 validates cfg and returns the bucket. It does no I/O.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	opts := []func(*config.LoadOptions) error{config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.ResponseHeaderTimeout = cfg.ResponseTimeout
	}))}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	switch {
	case awsCfg.Region != "":
	case cfg.Endpoint != "":
		awsCfg.Region = defaultCompatRegion
	default:
		return nil, failure.Permanent(errors.New("s3: no region: set s3_region (KARCH_S3_REGION), or AWS_REGION"))
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
	})
	return &S3{client: client, cfg: cfg}, nil
}

func (b *S3) key(key string) string {
	if b.cfg.Prefix == "" {
		return key
	}
	return b.cfg.Prefix + "/" + key
}

func (b *S3) relative(key string) string {
	if b.cfg.Prefix == "" {
		return key
	}
	return strings.TrimPrefix(key, b.cfg.Prefix+"/")
}

// Get opens key for reading.
func (b *S3) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &b.cfg.Bucket, Key: aws.String(b.key(key))})
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, classify(denied(err, "s3:GetObject", b.arn(key))))
	}
	return out.Body, nil
}

// Head describes key, with the checksum the server computed at upload.
func (b *S3) Head(ctx context.Context, key string) (ObjectInfo, error) {
	out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &b.cfg.Bucket, Key: aws.String(b.key(key)), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("head %s: %w", key, classify(denied(err, "s3:GetObject", b.arn(key))))
	}
	return ObjectInfo{
		Key: key, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified), ETag: aws.ToString(out.ETag),
		Checksum: checksumOf(out.ChecksumSHA256, out.ChecksumCRC32C, out.ChecksumCRC32, out.ChecksumCRC64NVME),
		Metadata: out.Metadata,
	}, nil
}

// checksumOf names the one checksum the server returned, "" when none.
func checksumOf(sha256, crc32c, crc32, crc64 *string) string {
	for _, c := range []struct {
		name string
		v    *string
	}{{"sha256", sha256}, {"crc32c", crc32c}, {"crc32", crc32}, {"crc64nvme", crc64}} {
		if c.v != nil && *c.v != "" {
			return c.name + ":" + *c.v
		}
	}
	return ""
}

// List calls fn for each object under prefix, in key order.
func (b *S3) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	pages := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{Bucket: &b.cfg.Bucket, Prefix: aws.String(b.key(prefix))})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list %s: %w", prefix, classify(denied(err, "s3:ListBucket", "arn:aws:s3:::"+b.cfg.Bucket+" with prefix "+b.key(prefix))))
		}
		for _, o := range page.Contents {
			info := ObjectInfo{Key: b.relative(aws.ToString(o.Key)), Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified), ETag: aws.ToString(o.ETag)}
			if err := fn(info); err != nil {
				return err
			}
		}
	}
	return nil
}

// abortTimeout bounds the clean-up of a failed multipart upload, which runs even when the
// caller's context is cancelled: a forgotten upload keeps costing storage.
const abortTimeout = 30 * time.Second

func (b *S3) abort(ctx context.Context, key string, uploadID *string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	_, _ = b.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &b.cfg.Bucket, Key: aws.String(b.key(key)), UploadId: uploadID})
}

func bodyOf(p []byte) io.ReadSeeker { return bytes.NewReader(p) }

// arn names key as an IAM policy's Resource does.
func (b *S3) arn(key string) string { return "arn:aws:s3:::" + b.cfg.Bucket + "/" + b.key(key) }

// putActions are what a write needs of the policy: a locked write sets a retention too.
func (b *S3) putActions() string {
	if b.cfg.LockMode != "" {
		return "s3:PutObject and s3:PutObjectRetention"
	}
	return "s3:PutObject"
}

// Protection is how a store keeps one object: its encryption, storage class and Object Lock
// retention, as the store reports them.
type Protection struct {
	SSE, KMSKeyID, StorageClass, LockMode string
	RetainUntil                           time.Time
}

// Protection reads key's protection back, so that a check can compare it with the
// configuration that wrote it.
func (b *S3) Protection(ctx context.Context, key string) (Protection, error) {
	out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &b.cfg.Bucket, Key: aws.String(b.key(key))})
	if err != nil {
		return Protection{}, fmt.Errorf("head %s: %w", key, classify(denied(err, "s3:GetObject", b.arn(key))))
	}
	return Protection{SSE: string(out.ServerSideEncryption), KMSKeyID: aws.ToString(out.SSEKMSKeyId), StorageClass: string(out.StorageClass),
		LockMode: string(out.ObjectLockMode), RetainUntil: aws.ToTime(out.ObjectLockRetainUntilDate)}, nil
}
