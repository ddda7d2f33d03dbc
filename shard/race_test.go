package shard_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/compress"
	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/shard"
)

// fixedReader serves a piece's range from a fixed set of offsets, as Kafka would serve a
// compacted partition at one moment.
type fixedReader []int64

func (f fixedReader) ReadRangeTally(_ context.Context, topic string, partition int32, first, end int64, fn func(*archive.Record) error) (shard.Tally, error) {
	t := shard.Tally{Compacted: end - first}
	for _, off := range f {
		if off >= first && off < end {
			if err := fn(&archive.Record{Topic: topic, Partition: partition, Offset: off, Timestamp: windowStart, Value: fmt.Appendf(nil, "v%d", off)}); err != nil {
				return t, err
			}
			t.Records, t.Compacted = t.Records+1, t.Compacted-1
		}
	}
	return t, nil
}

// lateHead answers NotFound to the first Head of key: the attempt looked before the winner
// published, as a concurrent attempt may.
type lateHead struct {
	blob.Bucket
	key  string
	seen atomic.Bool
}

func (l *lateHead) Head(ctx context.Context, key string) (blob.ObjectInfo, error) {
	if key == l.key && !l.seen.Swap(true) {
		return blob.ObjectInfo{}, fmt.Errorf("head %s: %w", key, blob.ErrNotFound)
	}
	return l.Bucket.Head(ctx, key)
}

// Two attempts of one index far apart in time on a compacted topic read different records
// for the same offsets. The loser of the create race adopts the winner's piece, which covers
// the planned range and decodes, instead of failing for good; its receipt describes what is
// stored.
func TestLoserAdoptsAWinnerThatReadOtherRecords(t *testing.T) {
	dir, local := testenv.LocalStore(t)
	plan := planRanges("cdr", []int64{10}, 10, 1, "127.0.0.1:1")
	planKey := putPlan(t, local, plan)
	winner, err := runWith(t, local, planKey, fixedReader{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	if err != nil {
		t.Fatalf("first attempt: %v", err)
	}
	// The first attempt died after its piece and before its receipt.
	winDir := filepath.Dir(filepath.Join(dir, planKey))
	if err := os.Remove(filepath.Join(winDir, archive.ReceiptKey(0))); err != nil {
		t.Fatal(err)
	}
	pieceKey := filepath.ToSlash(filepath.Join(filepath.Dir(planKey), plan.Shards[0].Pieces[0].Key))
	loser, err := runWith(t, &lateHead{Bucket: local, key: pieceKey}, planKey, fixedReader{2, 5, 9})
	if err != nil {
		t.Fatalf("the attempt that lost the race: %v; want it to adopt the stored piece", err)
	}
	if got, want := loser.Pieces[0], winner.Pieces[0]; got.SHA256 != want.SHA256 || got.Records != 10 {
		t.Fatalf("loser's receipt piece %+v; want the winner's %+v", got, want)
	}
	if recs := decodePiece(t, testenv.ReadObject(t, local, pieceKey)); len(recs) != 10 {
		t.Fatalf("stored piece holds %d records, want the winner's 10", len(recs))
	}
}

func runWith(t *testing.T, b blob.Bucket, planKey string, r shard.RecordReader) (*archive.Receipt, error) {
	t.Helper()
	return shard.Run(t.Context(), shard.Spec{PlanKey: planKey, Index: 0, Compress: compress.Options{FrameSize: 1 << 20}}, shard.Deps{
		Bucket: b, OpenReader: func([]string) shard.RecordReader { return r }, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
}
