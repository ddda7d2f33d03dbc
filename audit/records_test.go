package audit

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/compress"
	"github.com/karch-archive/karch/failure"
)

func TestFilterObject(t *testing.T) {
	sms0 := archive.ManifestObject{Topic: "cdr-sms", Partition: 0, First: 100, End: 200}
	voice1 := archive.ManifestObject{Topic: "cdr-voice", Partition: 1, First: 100, End: 200}
	for _, tc := range []struct {
		name   string
		f      Filter
		object archive.ManifestObject
		want   bool
	}{
		{"every topic", Filter{Partition: -1}, voice1, true},
		{"the topic", Filter{Topic: "cdr-sms", Partition: -1}, sms0, true},
		{"another topic", Filter{Topic: "cdr-sms", Partition: -1}, voice1, false},
		{"a topic's prefix is not the topic", Filter{Topic: "cdr", Partition: -1}, sms0, false},
		{"topic and partition", Filter{Topic: "cdr-voice", Partition: 1}, voice1, true},
		{"the topic, another partition", Filter{Topic: "cdr-voice", Partition: 0}, voice1, false},
		{"the partition of another topic", Filter{Topic: "cdr-sms", Partition: 1}, voice1, false},
		{"the topic, offsets after the object", Filter{Topic: "cdr-sms", Partition: -1, FromOffset: 200}, sms0, false},
		{"the topic, offsets in the object", Filter{Topic: "cdr-sms", Partition: -1, FromOffset: 150, ToOffset: 160}, sms0, true},
	} {
		if got := tc.f.object(tc.object); got != tc.want {
			t.Errorf("%s: object(%+v) with %+v = %v, want %v", tc.name, tc.object, tc.f, got, tc.want)
		}
	}
}

// A window of two topics, two partitions each: Records gives them in the manifest's order,
// topic by topic, partition by partition, in offset order; Filter.Topic keeps one topic's.
func TestRecordsByTopic(t *testing.T) {
	b, dir, m := twoTopicWindow(t)
	all := []string{"cdr-sms/0/0", "cdr-sms/0/1", "cdr-sms/1/0", "cdr-sms/1/1", "cdr-voice/0/0", "cdr-voice/0/1", "cdr-voice/1/0", "cdr-voice/1/1"}
	for _, tc := range []struct {
		f    Filter
		want []string
	}{
		{Filter{Partition: -1}, all},
		{Filter{Topic: "cdr-voice", Partition: -1}, all[4:]},
		{Filter{Topic: "cdr-sms", Partition: 1}, all[2:4]},
		{Filter{Topic: "cdr-voice", Partition: 0, FromOffset: 1}, all[5:6]},
		{Filter{Topic: "cdr-fax", Partition: -1}, nil},
	} {
		var got []string
		err := Records(context.Background(), b, dir, m, tc.f, func(r *archive.Record) error {
			if want := fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset); string(r.Value) != want {
				t.Errorf("record %s has value %q", want, r.Value)
			}
			got = append(got, string(r.Value))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Records with %+v:\n got %q\nwant %q", tc.f, got, tc.want)
		}
	}
}

func TestTopicsOfWindows(t *testing.T) {
	_, dir, m := twoTopicWindow(t)
	// A third topic planned with no record in the window: archived, and holding no records.
	m.Partitions = append(m.Partitions, archive.PartitionRange{Topic: "cdr-fax", Partition: 0, First: 7, End: 7})
	ws := []Stored{{Dir: dir, Manifest: m}}
	if got, want := Topics(ws), []string{"cdr-fax", "cdr-sms", "cdr-voice"}; !slices.Equal(got, want) {
		t.Errorf("Topics = %q, want %q", got, want)
	}
	if got, want := TopicsWithRecords(ws), []string{"cdr-sms", "cdr-voice"}; !slices.Equal(got, want) {
		t.Errorf("TopicsWithRecords = %q, want %q", got, want)
	}
	for _, topic := range []string{"", "cdr-sms", "cdr-fax"} {
		if err := CheckTopic(ws, topic); err != nil {
			t.Errorf("CheckTopic(%q): %v", topic, err)
		}
	}
	err := CheckTopic(ws, "cdr-mms")
	if !failure.IsPermanent(err) || !strings.Contains(err.Error(), "topic cdr-mms: the window archives no topic of that name (only cdr-fax, cdr-sms, cdr-voice)") {
		t.Errorf("CheckTopic of a topic the window does not archive: %v, want a permanent error naming it", err)
	}
}

// twoTopicWindow stores a window of topics cdr-sms and cdr-voice, 2 partitions × 2 records
// each, whose values are their origins, and returns its bucket, folder and manifest.
func twoTopicWindow(t *testing.T) (blob.Bucket, string, *archive.Manifest) {
	t.Helper()
	b, err := blob.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)
	dir := archive.WindowDir("cdr", start, time.Hour)
	m := &archive.Manifest{Format: archive.ManifestFormat, Pipeline: "cdr", Window: archive.Window{Start: start, End: start.Add(time.Hour)}}
	for _, topic := range []string{"cdr-sms", "cdr-voice"} {
		for p := range int32(2) {
			key := archive.PieceKey(topic, p, 0)
			putPiece(t, b, dir+key, topic, p, 2)
			m.Objects = append(m.Objects, archive.ManifestObject{Key: key, Topic: topic, Partition: p, First: 0, End: 2, Records: 2})
			m.Partitions = append(m.Partitions, archive.PartitionRange{Topic: topic, Partition: p, First: 0, End: 2, Records: 2})
		}
	}
	return b, dir, m
}

func putPiece(t *testing.T, b blob.Bucket, key, topic string, partition int32, n int64) {
	t.Helper()
	var buf bytes.Buffer
	zw, err := compress.NewWriter(context.Background(), &buf, compress.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var line []byte
	for off := range n {
		r := archive.Record{Topic: topic, Partition: partition, Offset: off, Timestamp: time.UnixMilli(1_700_000_000_000 + off).UTC(),
			Value: fmt.Appendf(nil, "%s/%d/%d", topic, partition, off)}
		if _, err := zw.Write(archive.AppendLine(line[:0], &r)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(context.Background(), key, &buf, blob.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}
