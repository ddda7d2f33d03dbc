package shard_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/shard"
)

// stampedReader serves every offset of a range, each record stamped by stamp.
type stampedReader func(off int64) time.Time

func (s stampedReader) ReadRangeTally(_ context.Context, topic string, partition int32, first, end int64, fn func(*archive.Record) error) (shard.Tally, error) {
	for off := first; off < end; off++ {
		if err := fn(&archive.Record{Topic: topic, Partition: partition, Offset: off, Timestamp: s(off), Value: fmt.Appendf(nil, "v%d", off)}); err != nil {
			return shard.Tally{}, err
		}
	}
	return shard.Tally{Records: end - first}, nil
}

// lateEveryThird stamps every third offset before the window's start (one of them with no
// timestamp at all), offset 1 exactly at it, and the rest inside the window.
func lateEveryThird(off int64) time.Time {
	switch {
	case off == 9:
		return time.UnixMilli(-1)
	case off%3 == 0:
		return windowStart.Add(-time.Duration(off+1) * time.Minute)
	case off == 1:
		return windowStart
	}
	return windowStart.Add(time.Duration(off) * time.Second)
}

// A shard counts each piece's records stamped before the plan's window start; an attempt
// that adopts the stored pieces counts them from what is stored, not from what Kafka serves
// it now, and writes the same receipt.
func TestShardCountsLateRecords(t *testing.T) {
	dir, b := testenv.LocalStore(t)
	planKey := putPlan(t, b, planRanges("cdr", []int64{20}, 10, 1, "127.0.0.1:1"))
	first, err := runWith(t, b, planKey, stampedReader(lateEveryThird))
	if err != nil {
		t.Fatal(err)
	}
	if got := []int64{first.Pieces[0].Late, first.Pieces[1].Late}; !reflect.DeepEqual(got, []int64{4, 3}) {
		t.Fatalf("late records of the pieces %v; want [4 3] (offsets 0 3 6 9 and 12 15 18)", got)
	}
	if err := os.Remove(filepath.Join(dir, filepath.FromSlash(filepath.Dir(planKey)), archive.ReceiptKey(0))); err != nil {
		t.Fatal(err)
	}
	onTime := stampedReader(func(int64) time.Time { return windowStart })
	again, err := runWith(t, b, planKey, onTime)
	if err != nil {
		t.Fatalf("the attempt that adopts the stored pieces: %v", err)
	}
	if !reflect.DeepEqual(again, first) {
		t.Fatalf("the adopting attempt's receipt %+v; want the first's %+v", again.Pieces, first.Pieces)
	}
}
