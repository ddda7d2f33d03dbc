package shard_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/shard"
)

func TestClassifyKafkaError(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tc := range []struct {
		err       error
		permanent bool
	}{
		{kafka.BrokerNotAvailable, false},
		{kafka.ReplicaNotAvailable, false},
		{kafka.LeaderNotAvailable, false},
		{kafka.NotLeaderForPartition, false},
		{kafka.RequestTimedOut, false},
		{kafka.NotEnoughReplicas, false},
		{kafka.KafkaStorageError, false},
		{kafka.FencedLeaderEpoch, false},
		{kafka.UnknownLeaderEpoch, false},
		{kafka.NetworkException, false},
		{kafka.GroupCoordinatorNotAvailable, false}, // COORDINATOR_NOT_AVAILABLE
		{kafka.UnknownTopicOrPartition, false},      // the metadata check decides
		{kafka.InvalidMessage, false},               // CORRUPT_MESSAGE: Temporary to kafka-go
		{dial, false},
		{fmt.Errorf("fetch t/0 at 5: %w", dial), false},
		{context.DeadlineExceeded, false},
		{context.Canceled, false},
		{io.ErrUnexpectedEOF, false},
		{syscall.ECONNRESET, false},
		{errors.New("an error with no Kafka code"), false},
		{kafka.TopicAuthorizationFailed, true},
		{kafka.ClusterAuthorizationFailed, true},
		{kafka.SASLAuthenticationFailed, true},
		{kafka.UnsupportedVersion, true},
		{kafka.InvalidRequest, true},
		{kafka.OffsetOutOfRange, true},
		{kafka.Unknown, false}, // UNKNOWN_SERVER_ERROR: the broker's own 500; seen from a broker just restarted
		{fmt.Errorf("read metadata of topic t: %w", kafka.TopicAuthorizationFailed), true},
		{errors.Join(io.EOF, fmt.Errorf("wrapped: %w", kafka.InvalidRequest)), true},
	} {
		if got := shard.IsPermanentKafkaError(tc.err); got != tc.permanent {
			t.Errorf("IsPermanentKafkaError(%v) = %v, want %v", tc.err, got, tc.permanent)
		}
		marked := shard.ClassifyKafkaError(tc.err)
		if failure.IsPermanent(marked) != tc.permanent || !errors.Is(marked, tc.err) {
			t.Errorf("ClassifyKafkaError(%v) = %v: permanent %v, want %v, and the cause kept", tc.err, marked, failure.IsPermanent(marked), tc.permanent)
		}
	}
	if shard.ClassifyKafkaError(nil) != nil {
		t.Error("ClassifyKafkaError(nil) != nil")
	}
}
