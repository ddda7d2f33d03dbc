package shard_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/compress"
	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/shard"
)

var windowStart = time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)

// planRanges splits each partition's [0, end) into pieces of at most per offsets and deals
// them round-robin to shards.
func planRanges(topic string, ends []int64, per int64, shards int, brokers string) *archive.Plan {
	p := &archive.Plan{
		Format: archive.PlanFormat, Pipeline: "test", RunID: "run-1", Brokers: []string{brokers},
		Window: archive.Window{Start: windowStart, End: windowStart.Add(time.Hour)},
	}
	for i := range shards {
		p.Shards = append(p.Shards, archive.ShardPlan{Index: i, Pieces: []archive.Piece{}})
	}
	n := 0
	for part, end := range ends {
		for first := int64(0); first < end; first += per {
			pc := archive.Piece{Topic: topic, Partition: int32(part), First: first, End: min(first+per, end)}
			pc.Key = archive.PieceKey(pc.Topic, pc.Partition, pc.First)
			p.Shards[n%shards].Pieces = append(p.Shards[n%shards].Pieces, pc)
			n++
		}
	}
	return p
}

func putPlan(t *testing.T, b blob.Bucket, p *archive.Plan) string {
	t.Helper()
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	key := archive.WindowDir(p.Pipeline, p.Window.Start, time.Hour) + archive.PlanName
	if _, err := b.Put(context.Background(), key, bytes.NewReader(data), blob.PutOptions{IfAbsent: true}); err != nil {
		t.Fatalf("put plan: %v", err)
	}
	return key
}

func runShard(t *testing.T, b blob.Bucket, planKey string, index int) (*archive.Receipt, error) {
	t.Helper()
	return shard.Run(t.Context(), shard.Spec{PlanKey: planKey, Index: index, Compress: compress.Options{FrameSize: 1 << 20}}, shard.Deps{
		Bucket: b,
		OpenReader: func(brokers []string) shard.RecordReader {
			return shard.NewKafkaReader(brokers, shard.DefaultKafkaOptions())
		},
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
}

// archived decodes every piece of every receipt, checking each receipt entry against the
// stored object (size and SHA-256).
func archived(t *testing.T, b blob.Bucket, planKey string, receipts []*archive.Receipt) map[int32][]archive.Record {
	t.Helper()
	out := map[int32][]archive.Record{}
	for _, r := range receipts {
		for _, pc := range r.Pieces {
			data := testenv.ReadObject(t, b, path.Join(path.Dir(planKey), pc.Key))
			sum := sha256.Sum256(data)
			if int64(len(data)) != pc.Bytes || hex.EncodeToString(sum[:]) != pc.SHA256 {
				t.Fatalf("piece %s: stored %d bytes sha256 %x, receipt says %d bytes %s", pc.Key, len(data), sum, pc.Bytes, pc.SHA256)
			}
			recs := decodePiece(t, data)
			if int64(len(recs)) != pc.Records {
				t.Fatalf("piece %s: %d records stored, receipt says %d", pc.Key, len(recs), pc.Records)
			}
			out[pc.Partition] = append(out[pc.Partition], recs...)
		}
	}
	return out
}

func decodePiece(t *testing.T, data []byte) []archive.Record {
	t.Helper()
	zr, err := compress.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	dec := archive.NewDecoder(zr)
	var recs []archive.Record
	for {
		r, err := dec.Next()
		if err == io.EOF {
			return recs
		}
		if err != nil {
			t.Fatalf("decode piece: %v", err)
		}
		recs = append(recs, r)
	}
}

// mixedMessages makes n records that exercise every encoding rule, plus a few 1 MiB values.
func mixedMessages(n int, partitions int) []kafka.Message {
	rng := rand.New(rand.NewPCG(1, 2))
	randBytes := func(k int) []byte {
		b := make([]byte, k)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		m := kafka.Message{
			Partition: i % partitions,
			Key:       []byte(fmt.Sprintf("44%d-%d", i%97, i)),
			Time:      windowStart.Add(time.Duration(i) * time.Millisecond),
			Headers:   []kafka.Header{{Key: "trace", Value: randBytes(8)}, {Key: "source", Value: []byte("switch-7")}},
		}
		switch i % 10 {
		case 0:
			m.Value = []byte(fmt.Sprintf(`{"call_id":"c-%d","caller":"+447900%06d","duration_ms":%d,"result":"ANSWERED"}`, i, i, rng.IntN(1e6)))
		case 1:
			m.Value = []byte(fmt.Sprintf("{\n  \"call_id\": \"c-%d\",\n  \"note\": \"pretty\"\n}", i))
		case 2:
			m.Value = []byte(fmt.Sprintf("plain text call %d \u00e9\u4e2d", i))
		case 3:
			m.Value = randBytes(64 + rng.IntN(400))
		case 4:
			m.Value = []byte{}
		case 5:
			m.Value = nil // tombstone
		case 6:
			m.Key = nil
			m.Value = []byte(`[1,2,{"a":null}]`)
		case 7:
			m.Key = randBytes(12)
			m.Value = []byte(`{"k":"binary key"}`)
		case 8:
			m.Headers = append(m.Headers, kafka.Header{Key: "bin", Value: randBytes(32)}, kafka.Header{Key: "empty", Value: []byte{}})
			m.Value = []byte(`{"headers":"many"}`)
		case 9:
			m.Headers = nil
			m.Value = []byte(`"a json string is not verbatim"`)
		}
		if i%25000 == 11 {
			m.Value = randBytes(1 << 20)
		}
		msgs[i] = m
	}
	return msgs
}

func TestShardRoundTripByteExact(t *testing.T) {
	addr := testenv.Kafka(t)
	b := testenv.S3Bucket(t)
	const n, partitions = 100_000, 2
	topic := testenv.Topic(t, addr, partitions)
	msgs := mixedMessages(n, partitions)
	testenv.Produce(t, addr, topic, msgs)

	ends := testenv.EndOffsets(t, addr, topic, partitions)
	planKey := putPlan(t, b, planRanges(topic, ends, 20_000, 2, addr))
	var receipts []*archive.Receipt
	for i := range 2 {
		r, err := runShard(t, b, planKey, i)
		if err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
		receipts = append(receipts, r)
	}
	got := archived(t, b, planKey, receipts)

	total := 0
	for p := range partitions {
		want := testenv.Consume(t, addr, topic, p, 0, ends[p])
		if len(got[int32(p)]) != len(want) {
			t.Fatalf("partition %d: archived %d records, Kafka holds %d", p, len(got[int32(p)]), len(want))
		}
		sortByOffset(got[int32(p)])
		for i, w := range want {
			compareWithKafka(t, got[int32(p)][i], w)
			compareWithProduced(t, got[int32(p)][i], msgs[i*partitions+p])
		}
		total += len(want)
	}
	if total != n {
		t.Fatalf("archived %d records, produced %d", total, n)
	}
}
