package faults_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestS3ProxyStreamingBodies: bodies the SDK does not send over plain HTTP but other clients
// do pass through unchanged: an unsigned payload, and an aws-chunked body with a trailing
// checksum.
func TestS3ProxyStreamingBodies(t *testing.T) {
	f := newS3Fixture(t, 1)
	data := payload(300 << 10)
	crc := make([]byte, 4)
	sum := crc32.ChecksumIEEE(data)
	crc[0], crc[1], crc[2], crc[3] = byte(sum>>24), byte(sum>>16), byte(sum>>8), byte(sum)
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\nx-amz-checksum-crc32:%s\r\n\r\n", len(data), data, base64.StdEncoding.EncodeToString(crc))
	for _, tc := range []struct {
		name, payloadHash string
		body              []byte
		headers           map[string]string
	}{
		{name: "unsigned-payload", payloadHash: "UNSIGNED-PAYLOAD", body: data},
		{name: "aws-chunked-trailer", payloadHash: "STREAMING-UNSIGNED-PAYLOAD-TRAILER", body: []byte(chunked), headers: map[string]string{
			"Content-Encoding": "aws-chunked", "X-Amz-Decoded-Content-Length": strconv.Itoa(len(data)),
			"X-Amz-Trailer": "x-amz-checksum-crc32",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := f.key("data/t/0/" + tc.name + ".jsonl.zst")
			f.signedPut(t, key, tc.payloadHash, tc.body, tc.headers)
			out, err := f.direct.GetObject(context.Background(), &s3.GetObjectInput{Bucket: &f.srv.bucket, Key: &key})
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			defer out.Body.Close()
			if got, err := io.ReadAll(out.Body); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("stored %d bytes (%v), want the %d sent", len(got), err, len(data))
			}
		})
	}
}

// signedPut sends a PutObject of body through the proxy, signed by hand with payloadHash.
func (f *s3Fixture) signedPut(t *testing.T, key, payloadHash string, body []byte, headers map[string]string) {
	t.Helper()
	ctx := context.Background()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, f.proxy.URL()+"/"+f.srv.bucket+"/"+key, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Amz-Content-Sha256", payloadHash)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	creds := aws.Credentials{AccessKeyID: f.srv.accessKey, SecretAccessKey: f.srv.secretKey}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, payloadHash, "s3", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	defer resp.Body.Close()
	if msg, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK {
		t.Fatalf("put: %s: %s", resp.Status, msg)
	}
}
