package blob

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"
)

// Put streams r to key: one PutObject when r fits in a part, a multipart upload otherwise,
// with Concurrency parts in flight and one more being filled. With IfAbsent the create is
// conditional (If-None-Match: * on PutObject or CompleteMultipartUpload), so the object
// appears whole or not at all, and never replaces another.
func (b *S3) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (ObjectInfo, error) {
	buffers := make(chan []byte, b.cfg.Concurrency+1)
	for range cap(buffers) {
		buffers <- nil
	}
	first, n, ended, err := fill(<-buffers, b.cfg.PartSize, r)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("put %s: read: %w", key, err)
	}
	if ended {
		return b.putSingle(ctx, key, first[:n], opts)
	}
	return b.putMultipart(ctx, key, first, r, buffers, opts)
}

// fill reads r into buf (allocated on first use) until buf is full or r ends, and reports
// whether r ended. Only the bare io.EOF that the io.Reader contract defines ends r: any other
// error, even one that wraps io.EOF (a Kafka connection closed mid-fetch) or is
// io.ErrUnexpectedEOF (a decoder on a truncated stream), is the writer failing, and taking
// it for the end would commit a truncated object. io.ReadFull cannot tell these apart: it
// returns a reader's own io.ErrUnexpectedEOF as it reports a short read.
func fill(buf []byte, size int64, r io.Reader) ([]byte, int, bool, error) {
	if buf == nil {
		buf = make([]byte, size)
	}
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err == io.EOF { // the contract's own io.EOF, compared as such: see above
			return buf, n, true, nil
		}
		if err != nil {
			return buf, n, false, err
		}
	}
	return buf, n, false, nil
}

func (b *S3) putSingle(ctx context.Context, key string, body []byte, opts PutOptions) (ObjectInfo, error) {
	in := &s3.PutObjectInput{
		Bucket: &b.cfg.Bucket, Key: aws.String(b.key(key)), Body: bodyOf(body), ContentLength: aws.Int64(int64(len(body))),
		Metadata: opts.Metadata, ChecksumAlgorithm: types.ChecksumAlgorithm(b.cfg.Checksum),
	}
	b.decorate(&in.StorageClass, &in.ServerSideEncryption, &in.SSEKMSKeyId, &in.ContentType, opts)
	in.ObjectLockMode, in.ObjectLockRetainUntilDate = b.lock()
	if opts.IfAbsent {
		in.IfNoneMatch = aws.String("*")
	}
	out, err := b.client.PutObject(ctx, in)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("put %s: %w", key, classify(denied(err, b.putActions(), b.arn(key))))
	}
	return ObjectInfo{Key: key, Size: int64(len(body)), ETag: aws.ToString(out.ETag), Metadata: opts.Metadata,
		Checksum: checksumOf(out.ChecksumSHA256, out.ChecksumCRC32C, out.ChecksumCRC32, out.ChecksumCRC64NVME)}, nil
}

func (b *S3) decorate(class *types.StorageClass, sse *types.ServerSideEncryption, kms, contentType **string, opts PutOptions) {
	*class = types.StorageClass(b.cfg.StorageClass)
	*sse = types.ServerSideEncryption(b.cfg.SSE)
	if b.cfg.KMSKeyID != "" {
		*kms = aws.String(b.cfg.KMSKeyID)
	}
	if opts.ContentType != "" {
		*contentType = aws.String(opts.ContentType)
	}
}

// lock is the Object Lock retention of an object written now. S3 demands an integrity
// checksum of every locked write: each request carries Checksum's (the default SHA256).
func (b *S3) lock() (types.ObjectLockMode, *time.Time) {
	if b.cfg.LockMode == "" {
		return "", nil
	}
	return types.ObjectLockMode(b.cfg.LockMode), aws.Time(time.Now().Add(b.cfg.LockRetention).UTC())
}

func (b *S3) putMultipart(ctx context.Context, key string, first []byte, r io.Reader, buffers chan []byte, opts PutOptions) (ObjectInfo, error) {
	in := &s3.CreateMultipartUploadInput{Bucket: &b.cfg.Bucket, Key: aws.String(b.key(key)), Metadata: opts.Metadata,
		ChecksumAlgorithm: types.ChecksumAlgorithm(b.cfg.Checksum)}
	b.decorate(&in.StorageClass, &in.ServerSideEncryption, &in.SSEKMSKeyId, &in.ContentType, opts)
	in.ObjectLockMode, in.ObjectLockRetainUntilDate = b.lock()
	up, err := b.client.CreateMultipartUpload(ctx, in)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("put %s: create multipart upload: %w", key, classify(denied(err, b.putActions(), b.arn(key))))
	}
	parts, size, err := b.uploadParts(ctx, key, up.UploadId, first, r, buffers)
	if err != nil {
		b.abort(ctx, key, up.UploadId)
		return ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	done := &s3.CompleteMultipartUploadInput{Bucket: &b.cfg.Bucket, Key: aws.String(b.key(key)), UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}}
	if opts.IfAbsent {
		done.IfNoneMatch = aws.String("*")
	}
	out, err := b.client.CompleteMultipartUpload(ctx, done)
	if err != nil {
		b.abort(ctx, key, up.UploadId)
		return ObjectInfo{}, fmt.Errorf("put %s: complete multipart upload: %w", key, classify(denied(err, "s3:PutObject", b.arn(key))))
	}
	return ObjectInfo{Key: key, Size: size, ETag: aws.ToString(out.ETag), Metadata: opts.Metadata,
		Checksum: checksumOf(out.ChecksumSHA256, out.ChecksumCRC32C, out.ChecksumCRC32, out.ChecksumCRC64NVME)}, nil
}

// uploadParts sends first and the rest of r as parts. Each part's buffer returns to the
// pool once the part is stored, which is what bounds memory.
func (b *S3) uploadParts(ctx context.Context, key string, uploadID *string, first []byte, r io.Reader, buffers chan []byte) ([]types.CompletedPart, int64, error) {
	g, gctx := errgroup.WithContext(ctx)
	var mu sync.Mutex
	done := map[int32]types.CompletedPart{}
	record := func(p types.CompletedPart) {
		mu.Lock()
		defer mu.Unlock()
		done[*p.PartNumber] = p
	}
	buf, n, ended, size := first, len(first), false, int64(0)
	for num := int32(1); n > 0; num++ {
		size += int64(n)
		b.startPart(g, gctx, key, uploadID, num, buf, n, buffers, record)
		if ended {
			break
		}
		select {
		case buf = <-buffers:
		case <-gctx.Done():
			return nil, 0, firstErr(g.Wait(), ctx.Err())
		}
		var err error
		// n == 0 when r ends on a part boundary: no empty part is sent.
		buf, n, ended, err = fill(buf, b.cfg.PartSize, r)
		if err != nil {
			return nil, 0, firstErr(fmt.Errorf("read: %w", err), g.Wait())
		}
	}
	if err := g.Wait(); err != nil {
		return nil, 0, err
	}
	parts := make([]types.CompletedPart, len(done))
	for num, p := range done {
		parts[num-1] = p
	}
	return parts, size, nil
}

// startPart uploads body[:n] as part num on g and hands its buffer back when done.
func (b *S3) startPart(g *errgroup.Group, ctx context.Context, key string, uploadID *string, num int32, body []byte, n int, buffers chan<- []byte, record func(types.CompletedPart)) {
	g.Go(func() error {
		defer func() { buffers <- body }()
		out, err := b.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &b.cfg.Bucket, Key: aws.String(b.key(key)), UploadId: uploadID, PartNumber: aws.Int32(num),
			Body: bodyOf(body[:n]), ContentLength: aws.Int64(int64(n)), ChecksumAlgorithm: types.ChecksumAlgorithm(b.cfg.Checksum),
		})
		if err != nil {
			return fmt.Errorf("upload part %d: %w", num, classify(denied(err, "s3:PutObject", b.arn(key))))
		}
		record(types.CompletedPart{PartNumber: aws.Int32(num), ETag: out.ETag, ChecksumSHA256: out.ChecksumSHA256,
			ChecksumCRC32C: out.ChecksumCRC32C, ChecksumCRC32: out.ChecksumCRC32, ChecksumCRC64NVME: out.ChecksumCRC64NVME})
		return nil
	})
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
