package failure

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

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
		{"joined", errors.Join(errors.New("a"), Permanent(errors.New("b"))), ExitPermanent},
		{"canceled", context.Canceled, ExitRetryable},
		{"deadline", fmt.Errorf("put: %w", context.DeadlineExceeded), ExitRetryable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ExitCode(tc.err); got != tc.want {
				t.Fatalf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}

func TestExitCodesApart(t *testing.T) {
	// 2 belongs to Go's runtime: a permanent verdict must never be mistaken for a crash.
	if ExitPermanent == ExitCrash || ExitRetryable == ExitCrash {
		t.Fatalf("exit codes overlap Go's crash code %d", ExitCrash)
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
