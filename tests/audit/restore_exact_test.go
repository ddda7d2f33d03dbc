package audit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/restore"
	"github.com/karch-archive/karch/tests/chaos/checker"
)

// originSet reads topic through at read_committed, as its consumers that want each record
// once do, and returns its origins, failing on one seen twice.
func originSet(t *testing.T, addr, topic string) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := checker.ReadCommitted(ctx, []string{addr}, topic, func(r *kgo.Record) {
		for _, h := range r.Headers {
			if h.Key == restore.OriginHeader {
				if seen[string(h.Value)] {
					t.Errorf("origin %s twice in %s", h.Value, topic)
				}
				seen[string(h.Value)] = true
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return seen
}

// wantOrigins are the origins (topic/partition/offset) of the archived records of windows
// [from, to) of a.
func (a *archived) wantOrigins(t *testing.T, from, to int) map[string]bool {
	t.Helper()
	want := map[string]bool{}
	for id := range a.records(t, false) {
		var p int32
		var off int64
		topic := id[:strings.LastIndexByte(id[:strings.LastIndexByte(id, '/')], '/')]
		if _, err := fmt.Sscanf(id[len(topic):], "/%d/%d", &p, &off); err != nil {
			t.Fatal(err)
		}
		for _, m := range a.ms[from:to] {
			for _, r := range m.Partitions {
				if r.Partition == p && off >= r.First && off < r.End {
					want[id] = true
				}
			}
		}
	}
	return want
}

func sameSet(t *testing.T, what string, got, want map[string]bool) {
	t.Helper()
	for id := range want {
		if !got[id] {
			t.Fatalf("%s: origin %s is not in the target (%d of %d there)", what, id, len(got), len(want))
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d origins in the target, want %d", what, len(got), len(want))
	}
}

func window(h int) string { return t0.Add(time.Duration(h) * time.Hour).Format(time.RFC3339) }

// Restoring window 01:00 and then window 00:00 into one topic writes both: the resume
// skips a record only if that very record is there.
func TestRestoreEarlierWindowAfterLater(t *testing.T) {
	addr := testenv.Kafka(t)
	a := newArchive(t)
	dst := testenv.Topic(t, addr, 2)
	for _, w := range []int{1, 0} {
		if code, out := a.karch(t, "restore", "--window", window(w), "--to-topic", dst); code != 0 {
			t.Fatalf("restore window %d: exit %d\n%s", w, code, out)
		}
	}
	sameSet(t, "windows 1 then 0", originSet(t, addr, dst), a.wantOrigins(t, 0, 2))
}

// --from-offset 50 and then the whole window: the offsets below 50 are written by the second.
func TestRestoreFromOffsetThenAll(t *testing.T) {
	addr := testenv.Kafka(t)
	a := newArchive(t)
	dst := testenv.Topic(t, addr, 2)
	for _, args := range [][]string{{"--from-offset", "30"}, nil} {
		if code, out := a.karch(t, append([]string{"restore", "--window", window(0), "--to-topic", dst}, args...)...); code != 0 {
			t.Fatalf("restore %v: exit %d\n%s", args, code, out)
		}
	}
	sameSet(t, "--from-offset 30, then all", originSet(t, addr, dst), a.wantOrigins(t, 0, 1))
}

// A target that holds the window's first records but one, whose produce failed while the
// ones after it landed: the rerun writes exactly that one.
func TestRestoreFillsTheRecordAFailedProduceLeft(t *testing.T) {
	addr := testenv.Kafka(t)
	a := newArchive(t)
	dst := testenv.Topic(t, addr, 2)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(dst), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for off := range 10 {
		if off == 5 {
			continue
		}
		r := &kgo.Record{Partition: 0, Value: []byte("earlier"), Headers: []kgo.RecordHeader{{Key: restore.OriginHeader, Value: fmt.Appendf(nil, "%s/0/%d", a.topic, off)}}}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	code, out := a.karch(t, "restore", "--window", window(0), "--to-topic", dst)
	if code != 0 || !strings.Contains(out, "9 were there already") {
		t.Fatalf("rerun: exit %d; want 0 with 9 there already:\n%s", code, out)
	}
	sameSet(t, "the hole filled", originSet(t, addr, dst), a.wantOrigins(t, 0, 1))
}

// Two restores of the same windows into one topic at once: one holds the target's lease,
// the other is refused with exit 1 saying so, and every record is there once.
func TestRestoreTwoAtOnce(t *testing.T) {
	addr := testenv.Kafka(t)
	a := newArchive(t)
	dst := testenv.Topic(t, addr, 2)
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for range 2 {
		cmd := exec.Command(karchBin, a.args([]string{"restore", "--from", window(0), "--to", window(3), "--to-topic", dst, "--rate", "100"})...) // 3 s: both run at once
		cmd.Env = append(os.Environ(), "KARCH_REDIS="+testenv.Redis(t))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, &out)
	}
	codes := map[int]int{}
	for i, cmd := range cmds {
		cmd.Wait()
		code := cmd.ProcessState.ExitCode()
		codes[code]++
		if code == 1 && !strings.Contains(outs[i].String(), "another restore into the target topic is running") {
			t.Fatalf("restore %d: exit 1 without naming the other restore:\n%s", i, outs[i])
		}
	}
	if codes[0] != 1 || codes[1] != 1 {
		t.Fatalf("exit codes %v; want one 0 and one 1:\n%s\n%s", codes, outs[0], outs[1])
	}
	sameSet(t, "two restores at once", originSet(t, addr, dst), a.wantOrigins(t, 0, 3))
}

// A restore into a topic where another producer's transaction is open below the end waits
// for it to end before it reads what is there: a rerun after the records an earlier restore
// wrote behind that transaction writes none of them again. With no time to wait, it stops,
// exit 1, naming the transaction.
func TestRestoreWaitsForAnOpenTransaction(t *testing.T) {
	addr := testenv.Kafka(t)
	a := newArchive(t)
	dst := testenv.Topic(t, addr, 2)
	openTransaction(t, addr, dst, "dead")
	// Behind it, ten records an earlier restore wrote: read_committed sees them only once
	// the broker has aborted the dead producer's transaction, after its 15 s.
	produceOrigins(t, addr, dst, a.topic, 10)
	code, out := a.karch(t, "restore", "--window", window(0), "--to-topic", dst)
	if code != 0 || !strings.Contains(out, "10 were there already") {
		t.Fatalf("rerun behind an open transaction: exit %d; want 0 with 10 there already:\n%s", code, out)
	}
	sameSet(t, "after the open transaction", originSet(t, addr, dst), a.wantOrigins(t, 0, 1))
	openTransaction(t, addr, dst, "dead-again")
	if code, out := a.karch(t, "restore", "--window", window(0), "--to-topic", dst, "--stable-wait", "1ms"); code != 1 || !strings.Contains(out, "a transaction is open") {
		t.Fatalf("restore behind an open transaction with no wait: exit %d; want 1 naming it:\n%s", code, out)
	}
}

// openTransaction begins a transaction in topic, writes into both partitions and leaves it
// open, as a producer that died would; the broker aborts it after 15 s.
func openTransaction(t *testing.T, addr, topic, name string) {
	t.Helper()
	txn, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.TransactionalID(topic+"-"+name), kgo.TransactionTimeout(15*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(txn.Close)
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for p := range int32(2) {
		if err := txn.ProduceSync(context.Background(), &kgo.Record{Partition: p, Value: []byte("in an open transaction")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// produceOrigins writes records with the origins of the first n offsets of source partition
// 0, as a restore would have, and without transactions.
func produceOrigins(t *testing.T, addr, topic, source string, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for off := range n {
		r := &kgo.Record{Partition: 0, Value: []byte("restored before"), Headers: []kgo.RecordHeader{{Key: restore.OriginHeader, Value: fmt.Appendf(nil, "%s/0/%d", source, off)}}}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// A record of 1.5 MB, which a topic with max.message.bytes raised holds, is restored into a
// topic that takes it, byte for byte; into one that does not (Kafka's default 1 MB) the
// restore stops with exit 3 naming the record and the limit.
func TestRestoreLargeRecord(t *testing.T) {
	addr := testenv.Kafka(t)
	src := testenv.Topic(t, addr, 1, "max.message.bytes=3000000")
	big := bytes.Repeat([]byte("0123456789abcdef"), 1_500_000/16)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(src), kgo.ProducerBatchMaxBytes(4<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 5 {
		r := &kgo.Record{Value: fmt.Appendf(nil, `{"i":%d}`, i), Timestamp: t0.Add(time.Duration(i) * time.Minute)}
		if i == 2 {
			r.Value = big
		}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	a := archiveTopic(t, addr, src, localStore(t), 1)
	dst := testenv.Topic(t, addr, 1, "max.message.bytes=3000000")
	if code, out := a.karch(t, "restore", "--window", window(0), "--to-topic", dst); code != 0 {
		t.Fatalf("restore into a topic that takes 3 MB: exit %d\n%s", code, out)
	}
	got := testenv.Consume(t, addr, dst, 0, 0, 5)
	if len(got) != 5 || !bytes.Equal(got[2].Value, big) {
		t.Fatalf("restored %d records; want 5 with the 1.5 MB one as produced", len(got))
	}
	small := testenv.Topic(t, addr, 1, "max.message.bytes=1048588") // Kafka's default; this broker's is 4 MiB
	code, out := a.karch(t, "restore", "--window", window(0), "--to-topic", small)
	if want := fmt.Sprintf("record %s/0@2 is", src); code != 3 || !strings.Contains(out, want) || !strings.Contains(out, "max.message.bytes") {
		t.Fatalf("restore into a 1 MB topic: exit %d; want 3 naming %q and max.message.bytes:\n%s", code, want, out)
	}
}

// A restore whose lease vanishes while it writes (Redis restarted empty, or a pause past the
// lease's TTL) must write nothing more once the next restore has taken the lease: the two
// would write the same records. The first renews every 20 s here, so it notices late; the
// broker must stop it instead, and the target holds each record once at read_committed.
func TestRestoreLeaseLostWhileWriting(t *testing.T) {
	addr := testenv.Kafka(t)
	a := newArchive(t)
	dst := testenv.Topic(t, addr, 2)
	args := a.args([]string{"restore", "--from", window(0), "--to", window(3), "--to-topic", dst})
	first := exec.Command(karchBin, append(args, "--rate", "30")...) // 10 s for the 300
	first.Env = append(os.Environ(), "KARCH_REDIS="+testenv.Redis(t), "KARCH_LEASE_TTL=60s")
	var out bytes.Buffer
	first.Stdout, first.Stderr = &out, &out
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	defer rdb.Close()
	keys, err := rdb.Keys(context.Background(), "karch:restore:*:"+dst).Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("the first restore's lease: keys %v, %v", keys, err)
	}
	if err := rdb.Del(context.Background(), keys...).Err(); err != nil {
		t.Fatal(err)
	}
	if code, out := a.karch(t, "restore", "--from", window(0), "--to", window(3), "--to-topic", dst); code != 0 {
		t.Fatalf("the second restore: exit %d\n%s", code, out)
	}
	first.Wait()
	if code := first.ProcessState.ExitCode(); code != 1 || !strings.Contains(out.String(), "another restore into the target topic took it over") {
		t.Errorf("the first restore: exit %d; want 1, saying that another took the topic over:\n%s", code, out.String())
	}
	rep, err := checker.CheckRestore(context.Background(), checker.RestoreConfig{Brokers: []string{addr}, Source: a.topic, Target: dst})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Records != 300 {
		t.Fatalf("the target at read_committed holds %d records, want the 300 once (first restore: exit %d):\n%s\n%s",
			rep.Records, first.ProcessState.ExitCode(), rep, out.String())
	}
}
