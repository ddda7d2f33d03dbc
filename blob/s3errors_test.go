package blob

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/karch-archive/karch/failure"
)

// sdkAnswer builds the error the SDK returns for an S3 answer: the API error inside the HTTP
// response error inside the operation error. For a HEAD, which has no body, the SDK names the
// code after the status ("Forbidden"), and so do these cases.
func sdkAnswer(status int, api error) error {
	return &smithy.OperationError{ServiceID: "S3", OperationName: "Op", Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: api},
		RequestID:     "req-1",
	}}
}

func code(status int, code string) error {
	return sdkAnswer(status, &smithy.GenericAPIError{Code: code, Message: "m"})
}

func sdkFailure(err error) error {
	return &smithy.OperationError{ServiceID: "S3", OperationName: "Op", Err: err}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want verdict
	}{
		{"403 AccessDenied", code(403, "AccessDenied"), permanent},
		{"403 InvalidAccessKeyId", code(403, "InvalidAccessKeyId"), permanent},
		{"403 SignatureDoesNotMatch", code(403, "SignatureDoesNotMatch"), permanent},
		{"404 NoSuchBucket", code(404, "NoSuchBucket"), permanent},
		{"404 NoSuchBucket typed", sdkAnswer(404, &types.NoSuchBucket{}), permanent},
		{"403 AllAccessDisabled", code(403, "AllAccessDisabled"), permanent},
		{"400 InvalidBucketName", code(400, "InvalidBucketName"), permanent},
		{"400 InvalidArgument", code(400, "InvalidArgument"), permanent},
		{"400 EntityTooSmall", code(400, "EntityTooSmall"), permanent},
		{"405 MethodNotAllowed", code(405, "MethodNotAllowed"), permanent},
		{"411 MissingContentLength", code(411, "MissingContentLength"), permanent},
		{"301 PermanentRedirect", code(301, "PermanentRedirect"), permanent},
		{"HEAD 403 without body", code(403, "Forbidden"), permanent},
		{"HEAD 400 without body", code(400, "BadRequest"), permanent},
		{"HEAD 405 without body", code(405, "MethodNotAllowed"), permanent},
		{"client fault without response", sdkFailure(&types.InvalidObjectState{}), permanent},

		{"400 RequestTimeout", code(400, "RequestTimeout"), retryable},
		{"403 RequestTimeTooSkewed", code(403, "RequestTimeTooSkewed"), retryable},
		{"400 ExpiredToken", code(400, "ExpiredToken"), retryable},
		{"503 SlowDown", code(503, "SlowDown"), retryable},
		{"503 without body", code(503, "ServiceUnavailable"), retryable},
		{"500 InternalError", code(500, "InternalError"), retryable},
		{"501 NotImplemented", code(501, "NotImplemented"), retryable},
		{"507 XMinioStorageFull", code(507, "XMinioStorageFull"), retryable},
		{"429 TooManyRequests", code(429, "TooManyRequests"), retryable},
		{"408 without body", code(408, "RequestTimeout"), retryable},
		{"409 ConditionalRequestConflict", code(409, "ConditionalRequestConflict"), retryable},
		{"409 OperationAborted", code(409, "OperationAborted"), retryable},
		{"404 NoSuchUpload", code(404, "NoSuchUpload"), retryable},
		{"400 IncompleteBody", code(400, "IncompleteBody"), retryable},
		{"SDK gave up after 503s", &retry.MaxAttemptsError{Attempt: 3, Err: code(503, "SlowDown")}, retryable},
		{"connection reset", sdkFailure(&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), retryable},
		{"connection refused", sdkFailure(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), retryable},
		{"DNS timeout", sdkFailure(&net.DNSError{Err: "i/o timeout", Name: "s3", IsTimeout: true}), retryable},
		{"deadline", sdkFailure(&smithy.CanceledError{Err: context.DeadlineExceeded}), retryable},
		{"garbled answer", sdkFailure(&smithy.DeserializationError{Err: errors.New("xml: unexpected EOF")}), retryable},
		{"server fault without response", sdkFailure(&smithy.GenericAPIError{Code: "X", Fault: smithy.FaultServer}), retryable},

		{"404 NoSuchKey", code(404, "NoSuchKey"), notFound},
		{"404 NoSuchKey typed", sdkAnswer(404, &types.NoSuchKey{}), notFound},
		{"HEAD 404 without body", sdkAnswer(404, &types.NotFound{}), notFound},
		{"412 PreconditionFailed", code(412, "PreconditionFailed"), exists},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := fmt.Errorf("head k: %w", classify(tc.err))
			got := verdict(retryable)
			switch {
			case IsNotFound(err):
				got = notFound
			case IsExists(err):
				got = exists
			case failure.IsPermanent(err):
				got = permanent
			}
			if got != tc.want || !errors.Is(err, tc.err) {
				t.Fatalf("%v: verdict %s, want %s (cause kept: %t)", err, got, tc.want, errors.Is(err, tc.err))
			}
			if failure.IsPermanent(err) && (IsNotFound(err) || IsExists(err)) {
				t.Fatalf("%v: an answer for the caller to judge is marked permanent", err)
			}
		})
	}
}

func (v verdict) String() string {
	return [...]string{"retryable", "not found", "exists", "permanent"}[v]
}
