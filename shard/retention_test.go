package shard_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/internal/testenv"
)

// A shard killed after its first piece and before its receipt, whose first piece's offsets
// retention then deletes: the rerun adopts the stored piece, though Kafka can no longer give
// the account of its offsets, and writes its receipt. Before, the re-read for the account
// failed on the deleted offsets, permanently, on every rerun: the window was wedged.
func TestAdoptedPieceAfterRetention(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 1)
	var msgs []kafka.Message
	for i := range 100 {
		msgs = append(msgs, kafka.Message{Time: windowStart, Value: fmt.Appendf(nil, `{"i":%d}`, i)})
	}
	testenv.Produce(t, addr, topic, msgs)
	dir, b := testenv.LocalStore(t)
	planKey := putPlan(t, b, planRanges(topic, []int64{100}, 40, 1, addr))
	first, err := runShard(t, b, planKey, 0)
	if err != nil {
		t.Fatal(err)
	}
	receipt := filepath.Join(dir, filepath.FromSlash(archive.WindowDir("test", windowStart, 3600e9)+archive.ReceiptKey(0)))
	if err := os.Remove(receipt); err != nil {
		t.Fatalf("remove the receipt, as a kill before it would have left the store: %v", err)
	}
	testenv.DeleteRecords(t, addr, topic, 0, 40)
	second, err := runShard(t, b, planKey, 0)
	if err != nil {
		t.Fatalf("rerun after retention deleted the stored piece's offsets: %v", err)
	}
	for i, pc := range second.Pieces {
		if pc.SHA256 != first.Pieces[i].SHA256 || pc.Records != first.Pieces[i].Records {
			t.Fatalf("piece %s: %d records, sha256 %s; the stored piece has %d, %s", pc.Key, pc.Records, pc.SHA256, first.Pieces[i].Records, first.Pieces[i].SHA256)
		}
		if sum := pc.Records + pc.Control + pc.Aborted + pc.Compacted; sum != pc.End-pc.First {
			t.Fatalf("piece %s accounts for %d of its %d offsets", pc.Key, sum, pc.End-pc.First)
		}
	}
}
