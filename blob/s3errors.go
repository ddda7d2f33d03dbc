package blob

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/karch-archive/karch/failure"
)

// verdict is what an S3 error means to the caller.
type verdict int

const (
	// retryable: a passing fault; the error is left unmarked, which failure reads as
	// retryable. The SDK has already retried the request; the Job's bounded pod retries
	// are the next owner.
	retryable verdict = iota
	notFound
	exists
	// permanent: S3's verdict on the request itself, which a retry would get again.
	permanent
)

// classify maps an S3 error onto the package's sentinels, and marks the errors that no retry
// can cure with failure.Permanent. A missing object and a lost conditional create are
// answers, not failures: the caller judges them.
func classify(err error) error {
	switch verdictOf(err) {
	case notFound:
		return errors.Join(ErrNotFound, err)
	case exists:
		return errors.Join(ErrExists, err)
	case permanent:
		return failure.Permanent(err)
	default:
		return err
	}
}

// denied adds to an access denial the action and resource the credentials' policy lacks:
// S3's own message ("Access Denied.") names neither. HEAD answers have no body, and the SDK
// names their code after the status.
func denied(err error, action, resource string) error {
	var api smithy.APIError
	switch {
	case !errors.As(err, &api):
		return err
	case api.ErrorCode() == "AccessDenied":
		return fmt.Errorf("%w (the credentials' policy must allow %s on %s)", err, action, resource)
	case api.ErrorCode() == "Forbidden": // no body, so no reason: a bad signature looks the same
		return fmt.Errorf("%w (does the credentials' policy allow %s on %s? check the credentials and the clock too)", err, action, resource)
	}
	return err
}

// verdictOf judges err by S3's error code where one is known, by HTTP status otherwise. An
// error with neither never got an answer from S3 (connection reset, timeout, DNS,
// cancellation), so it is retryable; but for a refused TLS handshake, which a retry meets
// again with the same certificate.
func verdictOf(err error) verdict {
	if failure.IsTLSRefusal(err) {
		return permanent
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		if v, ok := byCode[api.ErrorCode()]; ok {
			return v
		}
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return byStatus(re.HTTPStatusCode())
	}
	if api != nil && api.ErrorFault() == smithy.FaultClient {
		return permanent
	}
	return retryable
}

// byCode holds the codes whose verdict differs from their HTTP status's, or that must not
// depend on a status a proxy could change. HEAD answers have no body: the SDK names their
// code after the status ("NotFound", "Forbidden"), and byStatus judges those.
var byCode = map[string]verdict{
	"NoSuchKey": notFound,
	"NotFound":  notFound,
	// 404, but the bucket, not the object, is missing: no retry or adoption will help.
	"NoSuchBucket":          permanent,
	"PreconditionFailed":    exists,
	"AccessDenied":          permanent,
	"AllAccessDisabled":     permanent,
	"InvalidAccessKeyId":    permanent,
	"SignatureDoesNotMatch": permanent,
	"InvalidBucketName":     permanent,
	// 400: the server gave up waiting for the request body; the network was slow.
	"RequestTimeout": retryable,
	// 403: the clock was off; the SDK corrects its skew on the next attempt.
	"RequestTimeTooSkewed": retryable,
	// 400: temporary credentials expired; the credential provider renews them.
	"ExpiredToken":         retryable,
	"TokenRefreshRequired": retryable,
	"SlowDown":             retryable,
	"Throttling":           retryable,
	"ThrottlingException":  retryable,
	"RequestLimitExceeded": retryable,
	// 409: another conditional write or an abort on the key was in flight; S3 asks for a
	// retry, which then finds the key taken or free.
	"OperationAborted":           retryable,
	"ConditionalRequestConflict": retryable,
	// 404 from UploadPart or Complete: the upload was aborted under us (a lifecycle rule);
	// a new attempt starts a new upload. Not ErrNotFound: no object is meant.
	"NoSuchUpload": retryable,
	// 400: the body was cut or damaged in transit; the same bytes sent again pass.
	"IncompleteBody":            retryable,
	"BadDigest":                 retryable,
	"XAmzContentSHA256Mismatch": retryable,
}

// byStatus judges an answer by its HTTP status alone.
func byStatus(status int) verdict {
	switch {
	case status == http.StatusNotFound:
		return notFound
	case status == http.StatusPreconditionFailed:
		return exists
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests, status >= 500:
		return retryable
	case status == http.StatusMovedPermanently, status >= 400:
		// A verdict on the request: bad argument, method, length, a bucket in another
		// region; sent again, it gets the same answer.
		return permanent
	default:
		return retryable
	}
}
