package shard

import (
	"bytes"
	"testing"

	"github.com/segmentio/kafka-go/protocol"
	fetchapi "github.com/segmentio/kafka-go/protocol/fetch"
)

// The Fetch request karch writes is, byte for byte, the one kafka-go's encoder writes, at
// every version karch speaks.
func TestFetchRequestAsKafkaGoWritesIt(t *testing.T) {
	r := &fetchapi.Request{ReplicaID: -1, MaxWaitTime: 500, MinBytes: 1, MaxBytes: 2 << 20, IsolationLevel: 1, SessionID: 7, SessionEpoch: -1,
		Topics: []fetchapi.RequestTopic{
			{Topic: "cdr-voice", Partitions: []fetchapi.RequestPartition{
				{Partition: 0, CurrentLeaderEpoch: 3, FetchOffset: 1 << 40, LogStartOffset: -1, PartitionMaxBytes: 1 << 20},
				{Partition: 17, CurrentLeaderEpoch: -1, FetchOffset: 5, LogStartOffset: 2, PartitionMaxBytes: 64}}},
			{Topic: "", Partitions: []fetchapi.RequestPartition{}},
		},
		ForgottenTopics: []fetchapi.RequestForgottenTopic{{Topic: "cdr-sms", Partitions: []int32{1, 2}}},
		RackID:          "rack-a",
	}
	for v := int16(minFetchVersion); v <= 11; v++ {
		var want bytes.Buffer
		if err := protocol.WriteRequest(&want, v, 42, "karch-cdr", r); err != nil {
			t.Fatal(err)
		}
		got, err := appendFetchRequest(nil, v, 42, "karch-cdr", r)
		if err != nil || !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("v%d: %v\n got %x\nwant %x", v, err, got, want.Bytes())
		}
	}
	if _, err := appendFetchRequest(nil, 12, 42, "karch-cdr", r); err == nil {
		t.Fatal("v12 (flexible) encoded; want an error")
	}
}
