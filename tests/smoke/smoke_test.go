// Package smoke proves, through the client libraries karch uses, that the servers `make test`
// starts do what karch relies on: Kafka topics, headers and offsets by timestamp; Redis
// SET NX PX; S3 conditional create and multipart uploads with SHA-256 checksums.
package smoke

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/internal/testenv"
)

func TestKafkaTopicHeadersAndOffsetsByTime(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	addr := testenv.Kafka(t)
	topic := fmt.Sprintf("smoke-%d", time.Now().UnixNano())
	client := &kafka.Client{Addr: kafka.TCP(addr)}

	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}},
	})
	if err != nil {
		t.Fatalf("create topic: %v", err)
	}
	if err := resp.Errors[topic]; err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}

	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var sent []kafka.Message
	for i := range 10 {
		sent = append(sent, kafka.Message{
			Key:     []byte(fmt.Sprintf("k%d", i)),
			Value:   []byte(fmt.Sprintf(`{"n":%d}`, i)),
			Headers: []kafka.Header{{Key: "trace", Value: []byte{0, 1, byte(i)}}},
			Time:    base.Add(time.Duration(i) * time.Minute),
		})
	}
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	if err := w.WriteMessages(ctx, sent...); err != nil {
		t.Fatalf("produce: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close writer: %v", err)
	}

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	for i, want := range sent {
		got, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if got.Offset != int64(i) || !bytes.Equal(got.Key, want.Key) || !bytes.Equal(got.Value, want.Value) ||
			!got.Time.Equal(want.Time) || len(got.Headers) != 1 || !bytes.Equal(got.Headers[0].Value, want.Headers[0].Value) {
			t.Fatalf("record %d: got %+v, want %+v", i, got, want)
		}
	}

	// The first record at or after minute 4 is offset 4; after the last, the log end.
	offs, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		topic: {kafka.TimeOffsetOf(0, base.Add(4*time.Minute))},
	}})
	if err != nil {
		t.Fatalf("list offsets: %v", err)
	}
	p := offs.Topics[topic][0]
	if ts, ok := p.Offsets[4]; p.Error != nil || !ok || !ts.Equal(base.Add(4*time.Minute)) {
		t.Fatalf("offset for minute 4: %+v", p)
	}
}

func TestRedisSetNXPX(t *testing.T) {
	ctx := t.Context()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	defer rdb.Close()
	key := fmt.Sprintf("smoke:%d", time.Now().UnixNano())

	ok, err := rdb.SetNX(ctx, key, "a", 30*time.Second).Result()
	if err != nil || !ok {
		t.Fatalf("first SET NX PX: ok=%v err=%v", ok, err)
	}
	ok, err = rdb.SetNX(ctx, key, "b", 30*time.Second).Result()
	if err != nil || ok {
		t.Fatalf("second SET NX PX must not set: ok=%v err=%v", ok, err)
	}
	ttl, err := rdb.PTTL(ctx, key).Result()
	if err != nil || ttl <= 0 || ttl > 30*time.Second {
		t.Fatalf("PTTL: %v %v", ttl, err)
	}
}

func newS3(t *testing.T) (*s3.Client, string) {
	srv := testenv.S3Server(t)
	c := s3.New(s3.Options{
		BaseEndpoint: aws.String(srv.Endpoint),
		Region:       srv.Region,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, ""),
	})
	return c, srv.Bucket
}

func TestS3PutIfNoneMatch(t *testing.T) {
	ctx := t.Context()
	c, bucket := newS3(t)
	key := fmt.Sprintf("smoke/put-%d", time.Now().UnixNano())
	put := func() error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader([]byte("x")), IfNoneMatch: aws.String("*")})
		return err
	}
	if err := put(); err != nil {
		t.Fatalf("first conditional put: %v", err)
	}
	err := put()
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != 412 {
		t.Fatalf("second conditional put: want HTTP 412, got %v", err)
	}
}

func TestS3MultipartSHA256(t *testing.T) {
	ctx := t.Context()
	c, bucket := newS3(t)
	key := fmt.Sprintf("smoke/mpu-%d", time.Now().UnixNano())
	body := make([]byte, 5<<20+12345)
	rand.Read(body)

	up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: &key, ChecksumAlgorithm: types.ChecksumAlgorithmSha256})
	if err != nil {
		t.Fatalf("create multipart upload: %v", err)
	}
	var parts []types.CompletedPart
	for i, chunk := range [][]byte{body[:5<<20], body[5<<20:]} {
		n := int32(i + 1)
		p, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: &bucket, Key: &key, UploadId: up.UploadId, PartNumber: &n,
			Body: bytes.NewReader(chunk), ChecksumAlgorithm: types.ChecksumAlgorithmSha256})
		if err != nil {
			t.Fatalf("upload part %d: %v", n, err)
		}
		if p.ChecksumSHA256 == nil {
			t.Fatalf("part %d: server returned no SHA-256", n)
		}
		parts = append(parts, types.CompletedPart{PartNumber: &n, ETag: p.ETag, ChecksumSHA256: p.ChecksumSHA256})
	}
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &bucket, Key: &key, UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}, IfNoneMatch: aws.String("*")}); err != nil {
		t.Fatalf("complete multipart upload: %v", err)
	}

	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key, ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	defer out.Body.Close()
	got, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("read back %d bytes that differ from the %d uploaded", len(got), len(body))
	}
}
