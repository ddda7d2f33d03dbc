package failure

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/segmentio/kafka-go"
)

func httpErr(code int) error {
	return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code}}, Err: errors.New("x")}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, ExitOK},
		{"unknown", errors.New("boom"), ExitRetryable},
		{"marked", fmt.Errorf("read plan: %w", Permanent(errors.New("bad json"))), ExitPermanent},
		{"wrapped ErrPermanent", fmt.Errorf("config: %w", ErrPermanent), ExitPermanent},
		// Kafka calls an unknown topic temporary (it may be being created); the shard checks
		// metadata and marks a topic that is truly missing as permanent itself.
		{"unknown topic", fmt.Errorf("dial: %w", kafka.UnknownTopicOrPartition), ExitRetryable},
		{"authorization", kafka.TopicAuthorizationFailed, ExitPermanent},
		{"offset out of range", kafka.OffsetOutOfRange, ExitPermanent},
		{"leader moved", kafka.NotLeaderForPartition, ExitRetryable},
		{"s3 403", httpErr(403), ExitPermanent},
		{"s3 404", httpErr(404), ExitPermanent},
		{"s3 429", httpErr(429), ExitRetryable},
		{"s3 412", httpErr(412), ExitRetryable},
		{"s3 503", httpErr(503), ExitRetryable},
		{"canceled", context.Canceled, ExitRetryable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ExitCode(tc.err); got != tc.want {
				t.Fatalf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}

func TestPermanentKeepsCause(t *testing.T) {
	cause := errors.New("cause")
	err := Permanent(cause)
	if !errors.Is(err, cause) || !errors.Is(err, ErrPermanent) || err.Error() != "cause" {
		t.Fatalf("Permanent(cause) = %v", err)
	}
	if Permanent(nil) != nil {
		t.Fatal("Permanent(nil) != nil")
	}
}
