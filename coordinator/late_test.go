package coordinator_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/audit"
	"github.com/karch-archive/karch/internal/testenv"
)

// jittered produces n records to partition over hour h after t0, in order, except that
// every tenth (the 6th, 16th, ...) is stamped a minute before the hour: a producer whose
// clock lags. It returns how many it stamped so.
func jittered(t *testing.T, addr, topic string, partition, n, h int) int64 {
	t.Helper()
	var msgs []kafka.Message
	var lagged int64
	start := t0.Add(time.Duration(h) * time.Hour)
	for i := range n {
		ts := start.Add(time.Hour * time.Duration(i) / time.Duration(n))
		if i%10 == 5 {
			ts, lagged = start.Add(-time.Minute), lagged+1
		}
		msgs = append(msgs, kafka.Message{Partition: partition, Time: ts, Value: fmt.Appendf(nil, `{"h":%d,"n":%d}`, h, i)})
	}
	testenv.Produce(t, addr, topic, msgs)
	return lagged
}

// A window counts, per object and per partition, the records stamped before its start:
// a lagging producer's, and all of those of a partition that joined the chain with older
// records (archived from its log start). The manifest's counts are those of the records
// its objects hold, and verify --deep finds them right.
func TestManifestCountsLateRecords(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 1)
	hourly(t, addr, topic, []int{0}, 60, 0, 1)
	lagged1 := jittered(t, addr, topic, 0, 60, 1)
	p := newPipeline(t, topic, 1)
	p.cfg.PieceRecords = 25 // several objects per partition
	if res, err := p.runAt(t0.Add(2*time.Hour + 2*time.Minute)); err != nil || len(res) != 2 {
		t.Fatalf("first two windows: %d committed, %v", len(res), err)
	}
	addPartitions(t, addr, topic, 2)
	hourly(t, addr, topic, []int{1}, 20, 0, 1) // all before the next window
	hourly(t, addr, topic, []int{1}, 10, 2, 3)
	lagged2 := jittered(t, addr, topic, 0, 40, 2)
	if res, err := p.runAt(t0.Add(3*time.Hour + 2*time.Minute)); err != nil || len(res) != 1 {
		t.Fatalf("third window: %d committed, %v", len(res), err)
	}
	ms := manifests(t, p)
	want := []map[int32]int64{{0: 0}, {0: lagged1}, {0: lagged2, 1: 20}}
	if len(ms) != len(want) {
		t.Fatalf("%d manifests, want %d", len(ms), len(want))
	}
	for i, m := range ms {
		got := map[int32]int64{}
		for _, r := range m.Partitions {
			got[r.Partition] = r.Late
		}
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("window %s: late records by partition %v, want %v", m.Window.Start, got, want[i])
		}
		assertLateAsStored(t, p, m)
	}
	r, err := audit.Verify(context.Background(), p.deps.Bucket, p.cfg.Pipeline, audit.Options{Deep: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range r.Windows {
		if len(w.Problems) != 0 {
			t.Errorf("verify --deep of window %s: %v", w.Window.Start, w.Problems)
		}
	}
}

// assertLateAsStored decodes every object of m and checks that each object's and each
// partition's late count is the number of its records stamped before the window's start.
func assertLateAsStored(t *testing.T, p *pipeline, m *archive.Manifest) {
	t.Helper()
	dir := archive.WindowDir(m.Pipeline, m.Window.Start, m.Window.End.Sub(m.Window.Start))
	perPartition := map[int32]int64{}
	for _, o := range m.Objects {
		var late int64
		for _, rec := range decode(t, p.deps.Bucket, dir+o.Key) {
			if rec.Timestamp.Before(m.Window.Start) {
				late++
			}
		}
		if late != o.Late {
			t.Errorf("window %s object %s: %d records stamped before the window, the manifest says %d late", m.Window.Start, o.Key, late, o.Late)
		}
		perPartition[o.Partition] += late
	}
	for _, r := range m.Partitions {
		if perPartition[r.Partition] != r.Late {
			t.Errorf("window %s partition %d: its objects hold %d late records, the manifest says %d", m.Window.Start, r.Partition, perPartition[r.Partition], r.Late)
		}
	}
}
