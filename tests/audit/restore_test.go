package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/restore"
	"github.com/karch-archive/karch/tests/chaos/checker"
)

// edgeCases produces, over the hour from t0, the records a restore gets wrong first: null
// and empty keys and values, tombstones, invalid UTF-8, JSON with newlines, binary and
// duplicate headers, a 900 KB value, and committed transactions beside aborted ones.
func edgeCases(t *testing.T, addr, topic string) {
	t.Helper()
	ts := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	recs := []*kgo.Record{
		{Partition: 0, Key: nil, Value: []byte(`{"n":1}`)},
		{Partition: 0, Key: []byte{}, Value: []byte{}},
		{Partition: 1, Key: []byte("tomb"), Value: nil},
		{Partition: 1, Key: []byte{0xff, 0xfe, 'x'}, Value: []byte("caf\xc3")},
		{Partition: 0, Key: []byte("json"), Value: []byte("{\"a\":\n1}")},
		{Partition: 1, Key: []byte("hdr"), Value: []byte("v"), Headers: []kgo.RecordHeader{{Key: "b", Value: []byte{0, 1, 2}}, {Key: "b", Value: nil}, {Key: "a", Value: []byte{}}}},
		{Partition: 0, Key: []byte("big"), Value: bytes.Repeat([]byte("0123456789"), 90_000)},
		{Partition: 1, Key: []byte("deep"), Value: []byte(strings.Repeat("[", 10_000) + strings.Repeat("]", 10_000))},
	}
	for i := range 200 {
		recs = append(recs, &kgo.Record{Partition: int32(i % 2), Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, `{"i":%d}`, i)})
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.TransactionalID(topic+"-txn"), kgo.ProducerBatchMaxBytes(2<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	for i, r := range recs {
		r.Timestamp = ts(i)
	}
	aborted := []*kgo.Record{{Partition: 0, Value: []byte("aborted"), Timestamp: ts(500)}, {Partition: 1, Value: []byte("aborted"), Timestamp: ts(501)}}
	third := len(recs) / 3
	for _, txn := range []struct {
		recs []*kgo.Record
		end  kgo.TransactionEndTry
	}{{recs[:third], kgo.TryCommit}, {aborted, kgo.TryAbort}, {recs[third : 2*third], kgo.TryCommit}, {recs[2*third:], kgo.TryCommit}} {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, txn.recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, txn.end); err != nil {
			t.Fatal(err)
		}
	}
}

// records decodes every record of an archive's windows, by origin: the source
// topic/partition/offset for a restored one (its origin header, which is removed), its own
// otherwise.
func (a *archived) records(t *testing.T, byOrigin bool) map[string]archive.Record {
	t.Helper()
	out := map[string]archive.Record{}
	for w, m := range a.ms {
		for _, o := range m.Objects {
			data := testenv.ReadObject(t, a.bucket, archive.WindowDir(a.pipeline, t0.Add(time.Duration(w)*time.Hour), time.Hour)+o.Key)
			for _, r := range decodePiece(t, data) {
				id := fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset)
				if byOrigin {
					last := r.Headers[len(r.Headers)-1]
					if last.Key != restore.OriginHeader {
						t.Fatalf("restored record %s has no origin header last: %+v", id, r.Headers)
					}
					id, r.Headers = string(last.Value), r.Headers[:len(r.Headers)-1]
					if len(r.Headers) == 0 {
						r.Headers = nil
					}
				}
				if _, dup := out[id]; dup {
					t.Fatalf("record %s twice", id)
				}
				r.Topic, r.Partition, r.Offset = "", 0, 0
				out[id] = r
			}
		}
	}
	return out
}

// Records archived from topic A, restored into a new topic B, and B archived again: every
// record equal but for the origin header, each exactly once.
func TestRestoreRoundTrip(t *testing.T) {
	addr := testenv.Kafka(t)
	src := testenv.Topic(t, addr, 2)
	edgeCases(t, addr, src)
	a := archiveTopic(t, addr, src, localStore(t), 1)
	dst := testenv.Topic(t, addr, 2)
	if code, out := a.karch(t, "restore", "--window", t0.Format(time.RFC3339), "--to-topic", dst); code != 0 {
		t.Fatalf("karch restore: exit %d\n%s", code, out)
	}
	b := archiveTopic(t, addr, dst, a.store, 1)
	want, got := a.records(t, false), b.records(t, true)
	if len(got) != len(want) || len(want) < 200 {
		t.Fatalf("%d records restored and archived again, %d archived from the source", len(got), len(want))
	}
	for id, w := range want {
		if g, ok := got[id]; !ok || !reflect.DeepEqual(g, w) {
			t.Fatalf("record %s:\n got %+v\nwant %+v", id, brief(g), brief(w))
		}
	}
}

// TestRestoreOverSASLSSL: the pipeline's Kafka security reaches restore's clients too: the
// records restored through the broker's SASL_SSL listener (SCRAM-SHA-512, the password from
// the environment) are every archived record, and a wrong password is refused, exit 3.
func TestRestoreOverSASLSSL(t *testing.T) {
	addr, sasl, files := testenv.Kafka(t), testenv.KafkaSASLListener(t), testenv.TLS(t)
	a := newArchive(t)
	dst := testenv.Topic(t, addr, 2)
	secure := []string{"--to-brokers", sasl.Addr, "--kafka-tls-ca-file", files.CA, "--kafka-sasl-mechanism", "SCRAM-SHA-512",
		"--kafka-sasl-username", sasl.User}
	restoreArgs := append([]string{"restore", "--from", t0.Format(time.RFC3339), "--to", t0.Add(3 * time.Hour).Format(time.RFC3339), "--to-topic", dst}, secure...)
	env := a.env
	a.env = append(env, "KARCH_KAFKA_SASL_PASSWORD="+sasl.Password+"-not")
	if code, out := a.karch(t, restoreArgs...); code != 3 || !strings.Contains(out, "SASL") || strings.Contains(out, sasl.Password) {
		t.Fatalf("a wrong password: exit %d; want 3 naming SASL, and no password:\n%s", code, out)
	}
	a.env = append(env, "KARCH_KAFKA_SASL_PASSWORD="+sasl.Password)
	if code, out := a.karch(t, restoreArgs...); code != 0 {
		t.Fatalf("karch restore over SASL_SSL: exit %d\n%s", code, out)
	}
	if n := originsIn(t, addr, dst); n != 300 {
		t.Fatalf("%d records restored over SASL_SSL, want the archive's 300", n)
	}
}

// A restore killed with -9 in the middle and run again writes every record exactly once.
func TestRestoreKilledAndRerun(t *testing.T) {
	addr := testenv.Kafka(t)
	a := newArchive(t)
	dst := testenv.Topic(t, addr, 2)
	args := []string{"restore", "--from", t0.Format(time.RFC3339), "--to", t0.Add(3 * time.Hour).Format(time.RFC3339), "--to-topic", dst,
		"--store", a.url, "--pipeline", a.pipeline, "--brokers", a.brokers, "--topic", a.topic}
	// At 10 records/s the 300 take 30 s: reading the target (originsIn) on a loaded machine
	// takes seconds, and at 60/s the restore could end before a read saw 40 of them.
	cmd := exec.Command(karchBin, append(args, "--rate", "10")...)
	cmd.Env = append(os.Environ(), "KARCH_REDIS="+testenv.Redis(t), "KARCH_LEASE_TTL=2s")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for originsIn(t, addr, dst) < 20 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	before := originsIn(t, addr, dst)
	if before == 0 || before >= 300 {
		t.Fatalf("%d records in the target when the restore was killed; want it killed in the middle", before)
	}
	// The killed restore's lease on the target holds until its TTL runs out: until then a
	// rerun is refused as retryable, and then it carries on.
	var code int
	var out string
	testenv.WaitFor(t, "the killed restore's lease to expire", time.Minute, func() bool {
		code, out = a.karch(t, "restore", "--from", t0.Format(time.RFC3339), "--to", t0.Add(3*time.Hour).Format(time.RFC3339), "--to-topic", dst)
		return code != 1 || !strings.Contains(out, "another restore into the target topic is running")
	})
	if code != 0 || !strings.Contains(out, "were there already") {
		t.Fatalf("rerun: exit %d\n%s", code, out)
	}
	if n := originsIn(t, addr, dst); n != 300 {
		t.Fatalf("%d records after the rerun, want 300 exactly once", n)
	}
	translateGroup(t, a, dst)
}

// translateGroup: a consumer group that consumed the source up to offset 10 of partition 0
// and all of partition 1 resumes on the restored topic at the same records.
func translateGroup(t *testing.T, a *archived, dst string) {
	t.Helper()
	group := dst + "-group"
	if err := restore.CommitGroup(context.Background(), []string{a.brokers}, group, a.topic, map[int32]int64{0: 10, 1: 150}); err != nil {
		t.Fatal(err)
	}
	// Where the group resumes: at the restored record of source offset 0@10, and after that
	// of 1@149. The target's offsets hold transaction markers and a killed restore's aborted
	// records too, so they are read back, not assumed.
	at := targetOffsets(t, a.brokers, dst)
	want0, want1 := at[fmt.Sprintf("%s/0/10", a.topic)], at[fmt.Sprintf("%s/1/149", a.topic)]+1
	code, out := a.karch(t, "restore", "--translate-group", group, "--to-topic", dst, "--commit", "--log-level", "error")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("%s\t0\t%d\n", dst, want0)) || !strings.Contains(out, fmt.Sprintf("%s\t1\t%d\n", dst, want1)) {
		t.Fatalf("translate group: exit %d; want 0:%d 1:%d\n%s", code, want0, want1, out)
	}
	got, err := restore.GroupOffsets(context.Background(), []string{a.brokers}, group, dst)
	if err != nil {
		t.Fatal(err)
	}
	if got[archive.TopicPartition{Topic: dst, Partition: 0}] != want0 || got[archive.TopicPartition{Topic: dst, Partition: 1}] != want1 {
		t.Fatalf("committed on the target: %v; want 0:%d 1:%d", got, want0, want1)
	}
}

// targetOffsets maps the origin of each record of topic at read_committed to its offset.
func targetOffsets(t *testing.T, addr, topic string) map[string]int64 {
	t.Helper()
	at := map[string]int64{}
	err := checker.ReadCommitted(context.Background(), []string{addr}, topic, func(r *kgo.Record) {
		for _, h := range r.Headers {
			if h.Key == restore.OriginHeader {
				at[string(h.Value)] = r.Offset
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// A restore into a topic with too few partitions fails with exit 3 before writing anything.
func TestRestoreTooFewPartitions(t *testing.T) {
	addr := testenv.Kafka(t)
	a := newArchive(t)
	dst := testenv.Topic(t, addr, 1)
	code, out := a.karch(t, "restore", "--window", t0.Format(time.RFC3339), "--to-topic", dst)
	if code != 3 || !strings.Contains(out, "has 1 partitions") {
		t.Fatalf("restore into 1 partition: exit %d\n%s", code, out)
	}
	if n := originsIn(t, addr, dst); n != 0 {
		t.Fatalf("%d records written before the check", n)
	}
}

// originsIn reads topic through and counts its records, failing on an origin seen twice.
func originsIn(t *testing.T, addr, topic string) int {
	t.Helper()
	return len(originSet(t, addr, topic))
}

func decodePiece(t *testing.T, data []byte) []archive.Record {
	t.Helper()
	zr, err := compressReader(data)
	if err != nil {
		t.Fatal(err)
	}
	var out []archive.Record
	dec := archive.NewDecoder(zr)
	for {
		r, err := dec.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
}

func brief(r archive.Record) archive.Record {
	if len(r.Value) > 64 {
		r.Value = append(r.Value[:64:64], "..."...)
	}
	return r
}
