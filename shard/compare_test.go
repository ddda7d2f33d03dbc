package shard_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/archive"
)

func sortByOffset(recs []archive.Record) {
	slices.SortFunc(recs, func(a, b archive.Record) int { return int(a.Offset - b.Offset) })
}

// compareWithKafka checks an archived record against kafka-go's independent read of it.
func compareWithKafka(t *testing.T, got archive.Record, want kafka.Message) {
	t.Helper()
	if got.Topic != want.Topic || got.Partition != int32(want.Partition) || got.Offset != want.Offset ||
		!got.Timestamp.Equal(want.Time) || !bytes.Equal(got.Key, want.Key) || !bytes.Equal(got.Value, want.Value) ||
		!sameHeaders(got.Headers, want.Headers) {
		t.Fatalf("record %s/%d@%d differs from Kafka's:\n got %+v\nwant %+v", want.Topic, want.Partition, want.Offset, brief(got), want)
	}
}

// compareWithProduced checks what kafka-go's reader cannot: a null key or value stays null
// and an empty one stays empty.
func compareWithProduced(t *testing.T, got archive.Record, sent kafka.Message) {
	t.Helper()
	if (got.Key == nil) != (sent.Key == nil) || (got.Value == nil) != (sent.Value == nil) ||
		!bytes.Equal(got.Key, sent.Key) || !bytes.Equal(got.Value, sent.Value) || !got.Timestamp.Equal(sent.Time) {
		t.Fatalf("record @%d differs from what was produced:\n got %+v\nsent key %q value %.80q", got.Offset, brief(got), sent.Key, sent.Value)
	}
}

func sameHeaders(got []archive.Header, want []kafka.Header) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].Key != want[i].Key || !bytes.Equal(got[i].Value, want[i].Value) {
			return false
		}
	}
	return true
}

// brief keeps 1 MiB values out of failure messages.
func brief(r archive.Record) archive.Record {
	if len(r.Value) > 200 {
		r.Value = append(r.Value[:200:200], "..."...)
	}
	return r
}
