// Package failure classifies errors as retryable or permanent and maps them to karch's exit
// codes (shared/DESIGN.md): 0 done, 1 retryable (Kubernetes retries the pod), 2 permanent
// (fail fast: a retry would fail the same way).
//
// Unknown errors count as retryable: a retry bounded by the Job's backoff limit costs little,
// while failing a window for good on a passing fault costs an operator's night.
package failure

import (
	"context"
	"errors"
	"net/http"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/segmentio/kafka-go"
)

// ErrPermanent marks errors that no retry can cure: bad configuration, a missing topic, a plan
// that does not match what is stored, a corrupt object.
var ErrPermanent = errors.New("permanent failure")

// Exit codes of the karch commands.
const (
	ExitOK        = 0
	ExitRetryable = 1
	ExitPermanent = 2
)

// Permanent marks err as permanent. It returns nil for a nil err.
func Permanent(err error) error {
	if err == nil || errors.Is(err, ErrPermanent) {
		return err
	}
	return permanentError{err}
}

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }

// Unwrap keeps both the cause and the mark visible to errors.Is and errors.As.
func (e permanentError) Unwrap() []error { return []error{e.err, ErrPermanent} }

// IsPermanent reports whether a retry cannot cure err: it was marked Permanent, or it is a
// Kafka error the broker does not call temporary (an unknown topic, an offset out of range), or
// an S3 answer in the 4xx range other than timeouts, throttling and failed preconditions.
func IsPermanent(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, ErrPermanent) {
		return true
	}
	var kerr kafka.Error
	if errors.As(err, &kerr) {
		return !kerr.Temporary()
	}
	return isPermanentHTTP(err)
}

func isPermanentHTTP(err error) bool {
	var api smithy.APIError
	if errors.As(err, &api) && api.ErrorFault() == smithy.FaultServer {
		return false
	}
	var re *smithyhttp.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	switch code := re.HTTPStatusCode(); {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests,
		code == http.StatusPreconditionFailed, code == http.StatusConflict:
		// Timeouts and throttling pass; a failed precondition or a conflict is for the
		// caller to judge (a concurrent writer), not a verdict on the request itself.
		return false
	default:
		return code >= 400 && code < 500
	}
}

// ExitCode maps err to the process exit code.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case IsPermanent(err):
		return ExitPermanent
	default:
		return ExitRetryable
	}
}
