// Package failure marks errors as permanent and maps them to karch's exit codes
// (docs/DESIGN.md, "Exit codes"): 0 done, 1 retryable (Kubernetes retries the pod), 2 Go's
// own crash code (a panic: retried like 1), 3 permanent (fail fast: a retry would fail the
// same way).
//
// The package knows no backend. Each backend classifies the errors it knows where it knows
// them (blob for S3, the Kafka adapters for Kafka, the kube runner for the API server) and
// marks the permanent ones with Permanent. Unmarked errors count as retryable: a retry
// bounded by the Job's backoff limit costs little, while failing a window for good on a
// passing fault costs an operator's night.
package failure

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
)

// ErrPermanent marks errors that no retry can cure: bad configuration, a missing topic, a plan
// that does not match what is stored, a corrupt object, denied access.
var ErrPermanent = errors.New("permanent failure")

// Exit codes of the karch commands.
const (
	ExitOK        = 0
	ExitRetryable = 1
	// ExitCrash is what Go's runtime exits with on an unrecovered panic or a fatal error.
	// karch never returns it itself: a crash is a bug, not a verdict on the input, so
	// runners retry it like ExitRetryable, within their bounded retries.
	ExitCrash     = 2
	ExitPermanent = 3
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

// IsPermanent reports whether err, or an error it wraps, was marked Permanent.
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }

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

// IsTLSRefusal reports whether err is a TLS handshake that only configuration can fix: the
// peer's certificate is not trusted or names another host, the peer refused karch's (or its
// lack of one), or the peer does not speak TLS at all. A retry meets the same certificates.
func IsTLSRefusal(err error) bool {
	var (
		verify  *tls.CertificateVerificationError
		alert   tls.AlertError
		header  tls.RecordHeaderError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
	)
	return errors.As(err, &verify) || errors.As(err, &alert) || errors.As(err, &header) ||
		errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &invalid) || remoteTLSAlert(err)
}

// remoteTLSAlert reports whether err is an alert the peer sent during or after the handshake
// ("remote error: tls: bad certificate"): crypto/tls reports those as a net.OpError of that
// Op around an unexported type, not as a tls.AlertError, on TCP connections.
func remoteTLSAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error" && strings.HasPrefix(op.Err.Error(), "tls: ")
}
