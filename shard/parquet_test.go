package shard_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"reflect"
	"regexp"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/columnar"
	"github.com/karch-archive/karch/internal/testenv"
)

// callColumns are typed columns of callMessages' values, nested paths among them.
var callColumns = []archive.ValueColumn{
	{Name: "call_id", Path: []string{"call_id"}, Type: archive.TypeString},
	{Name: "caller", Path: []string{"caller"}, Type: archive.TypeString},
	{Name: "duration_ms", Path: []string{"duration_ms"}, Type: archive.TypeInt64},
	{Name: "result", Path: []string{"result"}, Type: archive.TypeString},
	{Name: "cell", Path: []string{"cell", "id"}, Type: archive.TypeString},
	{Name: "lat", Path: []string{"cell", "lat"}, Type: archive.TypeDouble},
	{Name: "start", Path: []string{"start"}, Type: archive.TypeTimestamp},
	{Name: "answered", Path: []string{"answered"}, Type: archive.TypeBool},
	{Name: "day", Path: []string{"day"}, Type: archive.TypeDate},
}

// callMessages are mixedMessages with one record in ten a nested call record, some of
// whose fields hold another type than their column's.
func callMessages(n, partitions int) []kafka.Message {
	msgs := mixedMessages(n, partitions)
	for i := range msgs {
		if i%10 != 0 || len(msgs[i].Value) > 1<<16 {
			continue
		}
		duration, day := strconv.Itoa(i*7), `"2026-11-23"`
		if i%30 == 0 {
			duration, day = `"long"`, `"23/11/2026"`
		}
		msgs[i].Value = fmt.Appendf(nil, `{"call_id":"c-%d","caller":"+447900%06d","duration_ms":%s,"result":"ANSWERED",`+
			`"cell":{"id":"C%d","lat":51.%d},"start":"%s","answered":%t,"day":%s}`,
			i, i, duration, i%13, i%1000, windowStart.Add(time.Duration(i)*time.Second).Format(time.RFC3339), i%20 == 0, day)
	}
	return msgs
}

func parquetPlan(topic string, ends []int64, per int64, shards int, brokers string) *archive.Plan {
	p := planRanges(topic, ends, per, shards, brokers)
	p.Formats, p.ValueColumns = []string{archive.FormatJSONL, archive.FormatParquet}, callColumns
	return p
}

// Both formats of every piece hold exactly Kafka's records, the Parquet object on its
// own, and each receipt entry is the stored object's.
func TestShardParquetLossless(t *testing.T) {
	addr := testenv.Kafka(t)
	b := testenv.S3Bucket(t)
	const n, partitions = 30_000, 2
	topic := testenv.Topic(t, addr, partitions)
	msgs := callMessages(n, partitions)
	testenv.Produce(t, addr, topic, msgs)
	ends := testenv.EndOffsets(t, addr, topic, partitions)
	planKey := putPlan(t, b, parquetPlan(topic, ends, 4_000, 2, addr))

	var receipts []*archive.Receipt
	for i := range 2 {
		r, err := runShard(t, b, planKey, i)
		if err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
		receipts = append(receipts, r)
	}
	jsonl := archived(t, b, planKey, receipts)
	columns, nulls := archivedParquet(t, b, planKey, receipts)
	for p := range partitions {
		want := testenv.Consume(t, addr, topic, p, 0, ends[p])
		for name, got := range map[string][]archive.Record{"JSON Lines": jsonl[int32(p)], "Parquet": columns[int32(p)]} {
			if len(got) != len(want) {
				t.Fatalf("partition %d: %s hold %d records, Kafka %d", p, name, len(got), len(want))
			}
			sortByOffset(got)
			for i, w := range want {
				compareWithKafka(t, got[i], w)
				compareWithProduced(t, got[i], msgs[i*partitions+p])
			}
		}
	}
	if want := expectedNulls(msgs, callColumns); !maps.Equal(nulls, want) {
		t.Fatalf("the receipts count nulls %v, encoding/json finds %v", nulls, want)
	}
	testenv.CheckDocuments(t, b)
}

// archivedParquet reads every Parquet object of the receipts with the plan's schema,
// checking each receipt entry against the stored object, and sums their null counts.
func archivedParquet(t *testing.T, b blob.Bucket, planKey string, receipts []*archive.Receipt) (map[int32][]archive.Record, map[string]int64) {
	t.Helper()
	out, nulls := map[int32][]archive.Record{}, map[string]int64{}
	for _, r := range receipts {
		for _, pc := range r.Pieces {
			q := pc.Parquet
			if q == nil {
				t.Fatalf("piece %s has no Parquet object in its receipt", pc.Key)
			}
			data := testenv.ReadObject(t, b, path.Join(path.Dir(planKey), q.Key))
			if sum := sha256.Sum256(data); int64(len(data)) != q.Bytes || hex.EncodeToString(sum[:]) != q.SHA256 {
				t.Fatalf("piece %s: stored %d bytes sha256 %x, receipt says %d bytes %s", q.Key, len(data), sum, q.Bytes, q.SHA256)
			}
			recs := decodeParquet(t, data)
			if int64(len(recs)) != q.Records || q.Records != pc.Records {
				t.Fatalf("piece %s: %d records stored, receipt says %d (and %d in JSON Lines)", q.Key, len(recs), q.Records, pc.Records)
			}
			out[pc.Partition] = append(out[pc.Partition], recs...)
			for k, v := range q.Nulls {
				nulls[k] += v
			}
		}
	}
	return out, nulls
}

func decodeParquet(t *testing.T, data []byte) []archive.Record {
	t.Helper()
	rd, err := columnar.Open(bytes.NewReader(data), int64(len(data)), callColumns)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var recs []archive.Record
	for {
		var r archive.Record
		err := rd.Next(&r)
		if errors.Is(err, io.EOF) {
			return recs
		}
		if err != nil {
			t.Fatalf("decode Parquet: %v", err)
		}
		recs = append(recs, r)
	}
}

// expectedNulls counts, with encoding/json and FORMAT.md's rules, the records whose typed
// column is null.
func expectedNulls(msgs []kafka.Message, cols []archive.ValueColumn) map[string]int64 {
	nulls := map[string]int64{}
	for _, m := range msgs {
		var doc any
		dec := json.NewDecoder(bytes.NewReader(m.Value))
		dec.UseNumber()
		_ = dec.Decode(&doc)
		for _, c := range cols {
			if !typed(c.Type, field(doc, c.Path)) {
				nulls[c.Name]++
			}
		}
	}
	return nulls
}

func field(doc any, path []string) any {
	for _, name := range path {
		obj, ok := doc.(map[string]any)
		if !ok {
			return nil
		}
		doc = obj[name]
	}
	return doc
}

var dateOnly = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)

func typed(typ string, v any) bool {
	switch typ {
	case archive.TypeString:
		s, ok := v.(string)
		return ok && utf8.ValidString(s)
	case archive.TypeInt64:
		n, ok := v.(json.Number)
		_, err := strconv.ParseInt(string(n), 10, 64)
		return ok && err == nil
	case archive.TypeDouble:
		_, ok := v.(json.Number)
		return ok
	case archive.TypeBool:
		_, ok := v.(bool)
		return ok
	case archive.TypeTimestamp:
		s, ok := v.(string)
		_, err := time.Parse(time.RFC3339, s)
		return ok && err == nil
	case archive.TypeDate:
		s, ok := v.(string)
		return ok && dateOnly.MatchString(s)
	}
	return false
}

// A shard killed between the two objects of a piece, or before its receipt, leaves one
// format stored: the rerun derives the other from it, and its receipt is the one an
// uninterrupted run writes, byte for byte.
func TestShardParquetKilledBetweenFormats(t *testing.T) {
	addr := testenv.Kafka(t)
	cfg := testenv.S3Config(t)
	b, err := blob.NewS3(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	topic := testenv.Topic(t, addr, 2)
	msgs := callMessages(12_000, 2)
	testenv.Produce(t, addr, topic, msgs)
	ends := testenv.EndOffsets(t, addr, topic, 2)
	planKey := putPlan(t, b, parquetPlan(topic, ends, 2_000, 1, addr))
	first, err := runShard(t, b, planKey, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := path.Dir(planKey)
	want := testenv.ReadObject(t, b, path.Join(dir, archive.ReceiptKey(0)))

	raw := testenv.RawS3(t)
	del := func(key string) {
		t.Helper()
		full := path.Join(cfg.Prefix, dir, key)
		if _, err := raw.DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: aws.String(cfg.Bucket), Key: aws.String(full)}); err != nil {
			t.Fatalf("delete %s: %v", key, err)
		}
	}
	pieces := first.Pieces
	del(archive.ReceiptKey(0))
	del(pieces[0].Parquet.Key) // killed after the JSON Lines of the piece
	del(pieces[1].Key)         // the Parquet object went up first
	del(pieces[2].Key)         // killed before anything of the piece reached the store
	del(pieces[2].Parquet.Key)
	second, err := runShard(t, b, planKey, 0)
	if err != nil {
		t.Fatalf("rerun: %v", err)
	}
	if got := testenv.ReadObject(t, b, path.Join(dir, archive.ReceiptKey(0))); !bytes.Equal(got, want) {
		t.Fatalf("the rerun's receipt differs:\n%s\nwant\n%s", got, want)
	}
	jsonl := archived(t, b, planKey, []*archive.Receipt{second})
	columns, _ := archivedParquet(t, b, planKey, []*archive.Receipt{second})
	for p := range 2 {
		for name, got := range map[string][]archive.Record{"JSON Lines": jsonl[int32(p)], "Parquet": columns[int32(p)]} {
			sortByOffset(got)
			for i, w := range testenv.Consume(t, addr, topic, p, 0, ends[p]) {
				if i >= len(got) {
					t.Fatalf("partition %d: %s hold %d records, Kafka more", p, name, len(got))
				}
				compareWithKafka(t, got[i], w)
			}
			if int64(len(got)) != ends[p] {
				t.Fatalf("partition %d: %s hold %d records, want %d", p, name, len(got), ends[p])
			}
		}
	}
}

// Two pods for one index, both writing both formats, agree on one receipt.
func TestShardParquetTwoAttemptsAtOnce(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 2)
	testenv.Produce(t, addr, topic, callMessages(12_000, 2))
	b := testenv.S3Bucket(t)
	planKey := putPlan(t, b, parquetPlan(topic, testenv.EndOffsets(t, addr, topic, 2), 1_000, 1, addr))

	receipts := make([]*archive.Receipt, 2)
	var g errgroup.Group
	for i := range receipts {
		g.Go(func() (err error) {
			receipts[i], err = runShard(t, b, planKey, 0)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("an attempt failed: %v", err)
	}
	if !reflect.DeepEqual(receipts[0], receipts[1]) {
		t.Fatalf("the two attempts disagree:\n%+v\n%+v", receipts[0], receipts[1])
	}
	jsonl := archived(t, b, planKey, receipts[:1])
	columns, _ := archivedParquet(t, b, planKey, receipts[:1])
	if n := len(jsonl[0]) + len(jsonl[1]); n != 12_000 || len(columns[0])+len(columns[1]) != n {
		t.Fatalf("archived %d records in JSON Lines and %d in Parquet, want 12000", n, len(columns[0])+len(columns[1]))
	}
}
