package checker

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// karchBin is the karch binary that TestMain builds: the tests archive with the real thing.
// The tests keep their own build and server lookup rather than internal/testenv's, which
// imports karch's store: the checker's own tests stay apart from the code it checks.
var karchBin string

func TestMain(m *testing.M) {
	if karchBin = os.Getenv("KARCH_TEST_KARCH"); karchBin != "" { // built once by make test
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "karch-checker-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	karchBin = filepath.Join(dir, "karch")
	build := exec.Command("go", "build", "-o", karchBin, "github.com/karch-archive/karch/cmd/karch")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build karch:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// servers are the test servers that `make test` starts, from the KARCH_TEST_* variables.
type servers struct {
	kafka, redis                             string
	s3Endpoint, bucket, accessKey, secretKey string
}

// testServers returns the test servers, failing the test (never skipping it) when one is
// not configured or does not answer.
func testServers(t *testing.T) servers {
	t.Helper()
	s := servers{
		kafka: mustEnv(t, "KARCH_TEST_KAFKA"), redis: mustEnv(t, "KARCH_TEST_REDIS"),
		s3Endpoint: mustEnv(t, "KARCH_TEST_S3_ENDPOINT"), bucket: mustEnv(t, "KARCH_TEST_S3_BUCKET"),
		accessKey: mustEnv(t, "KARCH_TEST_S3_ACCESS_KEY"), secretKey: mustEnv(t, "KARCH_TEST_S3_SECRET_KEY"),
	}
	u, err := url.Parse(s.s3Endpoint)
	if err != nil {
		t.Fatalf("KARCH_TEST_S3_ENDPOINT=%q: %v", s.s3Endpoint, err)
	}
	for name, addr := range map[string]string{"KARCH_TEST_KAFKA": s.kafka, "KARCH_TEST_REDIS": s.redis, "KARCH_TEST_S3_ENDPOINT": u.Host} {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			t.Fatalf("%s=%s does not answer (%v): start the test servers with `make test` (or `make services`)", name, addr, err)
		}
		c.Close()
	}
	return s
}

func mustEnv(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set: this test needs the real servers; run it with `make test`, which starts them and sets it", name)
	}
	return v
}

// produced is one record the fixture wrote, where Kafka put it.
type produced struct {
	partition int32
	offset    int64
	key       string
	value     string
	ts        time.Time
}

// fixture is a topic of three partitions with records of every shape in three hourly
// windows, committed and aborted transactions among them, and the archive that the real
// karch made of it.
type fixture struct {
	srv   servers
	s3    *s3.Client
	cfg   Config // the archive's, for Check
	start time.Time
	// committed are the offsets of every record Kafka holds at read_committed;
	// aborted the records of the aborted transaction.
	committed map[int32][]int64
	aborted   []produced
}

const (
	fixturePartitions = 3
	fixtureWindows    = 3
	perWindow         = 60 // plain records per partition and window
	// pieceRecords is KARCH_PIECE_RECORDS: an aborted transaction of twice as many records
	// in one partition covers a whole piece, which is then stored as a zero-byte object.
	pieceRecords = 25
)

// newFixture produces the records and archives them with `karch run`.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := testServers(t)
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	f := &fixture{srv: srv, start: time.Now().UTC().Truncate(24 * time.Hour).Add(-22 * time.Hour), committed: map[int32][]int64{}}
	f.cfg = Config{
		Endpoint: srv.s3Endpoint, Bucket: srv.bucket, Prefix: "checker-test/" + id, AccessKey: srv.accessKey, SecretKey: srv.secretKey,
		Pipeline: "chk-" + id, Brokers: []string{srv.kafka}, Topic: "checker-test-" + id,
		Start: f.start, Until: f.start.Add(fixtureWindows * time.Hour),
	}
	f.s3 = newStore(f.cfg).client
	t.Cleanup(func() { f.cleanUp(t) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f.produce(t, ctx)
	f.archive(t, ctx)
	return f
}

func (f *fixture) produce(t *testing.T, ctx context.Context) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.srv.kafka), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	createTopic(t, ctx, kadm.NewClient(cl), f.cfg.Topic)
	tx, err := kgo.NewClient(kgo.SeedBrokers(f.srv.kafka), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.TransactionalID("checker-test-"+f.cfg.Topic))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	// Partition 0's log begins with an aborted transaction: karch's first window may begin
	// after it, and no record is lost.
	f.transaction(t, ctx, tx, f.start, map[int32]int{0: 2}, kgo.TryAbort)
	for w := range fixtureWindows {
		base := f.start.Add(time.Duration(w) * time.Hour)
		f.sync(t, cl.ProduceSync(ctx, f.plain(w, base)...), true)
		switch w {
		case 1: // a committed transaction, and a record without a timestamp (-1)
			f.transaction(t, ctx, tx, base.Add(40*time.Minute), map[int32]int{0: 2, 1: 2}, kgo.TryCommit)
			r := &kgo.Record{Topic: f.cfg.Topic, Partition: 2, Timestamp: time.UnixMilli(-1), Value: []byte("no timestamp")}
			f.sync(t, cl.ProduceSync(ctx, r), true)
		case 2: // an aborted transaction, then a committed one, so that partitions end with a marker
			f.transaction(t, ctx, tx, base.Add(45*time.Minute), map[int32]int{1: 2, 2: 2 * pieceRecords}, kgo.TryAbort)
			f.transaction(t, ctx, tx, base.Add(50*time.Minute), map[int32]int{0: 2, 1: 2, 2: 2}, kgo.TryCommit)
		}
	}
	waitStable(t, ctx, kadm.NewClient(cl), f.cfg.Topic)
}

// plain returns the plain records of window w: null, empty and binary keys; JSON objects
// and arrays, null, empty, control-character and multi-line values; headers with duplicate
// keys, a null and an empty value, and a key that is not UTF-8.
func (f *fixture) plain(w int, base time.Time) []*kgo.Record {
	var recs []*kgo.Record
	for p := range int32(fixturePartitions) {
		for i := range perWindow {
			n := (w*fixturePartitions+int(p))*perWindow + i
			r := &kgo.Record{Topic: f.cfg.Topic, Partition: p, Timestamp: base.Add(time.Second + time.Duration(i)*10*time.Second + time.Duration(n%1000)*time.Millisecond)}
			r.Key = fmt.Appendf(nil, "k-%d", n)
			r.Value = fmt.Appendf(nil, `{"n":%d}`, n)
			switch i % 10 {
			case 0:
				r.Key = nil
			case 1:
				r.Key = []byte{}
			case 2:
				r.Key = fmt.Appendf(nil, "\xff\x00%d", n)
			case 3:
				r.Value = fmt.Appendf(nil, `{"n": %d,  "s":"a b", "l":[1, 2]}`, n)
			case 4:
				r.Value = nil
			case 5:
				r.Value = []byte{}
			case 6:
				r.Value = fmt.Appendf(nil, "ctl\x01%d", n)
				r.Headers = []kgo.RecordHeader{{Key: "trace", Value: fmt.Appendf(nil, "%x", n)}, {Key: "trace", Value: nil}, {Key: "e", Value: []byte{}}, {Key: "\xfe", Value: []byte(`{"h":1}`)}}
			case 7:
				r.Value = fmt.Appendf(nil, "[%d]", n)
			case 8:
				r.Value = fmt.Appendf(nil, "line %d\nwith \"quotes\"\tand é", n)
			case 9:
				if w == 0 && p == 0 { // large: window 0's pieces of partition 0 have several frames
					r.Value = bytes.Repeat(fmt.Appendf(nil, "%d|", n), 40<<10)[:40<<10]
				}
			}
			recs = append(recs, r)
		}
	}
	return recs
}

// transaction writes counts[p] records to each partition p in one transaction and ends it.
func (f *fixture) transaction(t *testing.T, ctx context.Context, tx *kgo.Client, ts time.Time, counts map[int32]int, end kgo.TransactionEndTry) {
	t.Helper()
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for _, p := range sortedKeys(counts) {
		for i := range counts[p] {
			recs = append(recs, &kgo.Record{Topic: f.cfg.Topic, Partition: p, Timestamp: ts.Add(time.Duration(i) * time.Second),
				Key: fmt.Appendf(nil, "tx-%d-%d", p, i), Value: fmt.Appendf(nil, "transaction %s %d/%d", ts.Format(time.TimeOnly), p, i)})
		}
	}
	f.sync(t, tx.ProduceSync(ctx, recs...), bool(end))
	if err := tx.EndTransaction(ctx, end); err != nil {
		t.Fatalf("end transaction: %v", err)
	}
}

// sync checks a produce and records where its records went.
func (f *fixture) sync(t *testing.T, res kgo.ProduceResults, committed bool) {
	t.Helper()
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("produce: %v", r.Err)
		}
		rec := r.Record
		if committed {
			f.committed[rec.Partition] = append(f.committed[rec.Partition], rec.Offset)
		} else {
			f.aborted = append(f.aborted, produced{rec.Partition, rec.Offset, string(rec.Key), string(rec.Value), rec.Timestamp})
		}
	}
	for _, offs := range f.committed {
		slices.Sort(offs)
	}
}

func createTopic(t *testing.T, ctx context.Context, adm *kadm.Client, topic string) {
	t.Helper()
	res, err := adm.CreateTopic(ctx, fixturePartitions, 1, nil, topic)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	waitFor(t, ctx, "the topic's leaders", func() bool {
		md, err := adm.Metadata(ctx, topic)
		if err != nil || len(md.Topics[topic].Partitions) != fixturePartitions {
			return false
		}
		for _, p := range md.Topics[topic].Partitions {
			if p.Leader < 0 || p.Err != nil {
				return false
			}
		}
		return true
	})
}

// waitStable waits until every partition's last stable offset is its high watermark: the
// transactions' markers are written, so karch plans and the checker reads the same ends.
func waitStable(t *testing.T, ctx context.Context, adm *kadm.Client, topic string) {
	t.Helper()
	waitFor(t, ctx, "the transactions' markers", func() bool {
		lso, err1 := adm.ListCommittedOffsets(ctx, topic)
		hwm, err2 := adm.ListEndOffsets(ctx, topic)
		if err1 != nil || err2 != nil {
			return false
		}
		for p, o := range hwm[topic] {
			if lso[topic][p].Offset != o.Offset {
				return false
			}
		}
		return true
	})
}

func waitFor(t *testing.T, ctx context.Context, what string, done func() bool) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// archive runs `karch run` over the fixture's three windows, with small pieces and the
// smallest zstd frames, so that partitions have several pieces and some pieces several
// frames.
func (f *fixture) archive(t *testing.T, ctx context.Context) {
	t.Helper()
	cmd := exec.CommandContext(ctx, karchBin, "run")
	cmd.Env = append(os.Environ(),
		"KARCH_PIPELINE="+f.cfg.Pipeline, "KARCH_TOPIC="+f.cfg.Topic, "KARCH_BROKERS="+f.srv.kafka,
		"KARCH_STORE=s3://"+f.cfg.Bucket+"/"+f.cfg.Prefix, "KARCH_S3_ENDPOINT="+f.srv.s3Endpoint, "KARCH_S3_PATH_STYLE=true",
		"KARCH_REDIS="+f.srv.redis, "KARCH_WINDOW=1h", "KARCH_LATENESS=0s", "KARCH_START="+f.start.Format(time.RFC3339),
		"KARCH_UNTIL="+f.cfg.Until.Format(time.RFC3339), "KARCH_SHARDS=2", "KARCH_PARALLELISM=2", "KARCH_PIECE_RECORDS="+strconv.Itoa(pieceRecords),
		"KARCH_FRAME_SIZE=65536", "KARCH_BINARY="+karchBin,
		"AWS_ACCESS_KEY_ID="+f.srv.accessKey, "AWS_SECRET_ACCESS_KEY="+f.srv.secretKey, "AWS_REGION=us-east-1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("karch run: %v\n%s", err, out)
	}
}

// windowDir is the folder of the fixture's w'th window, relative to the prefix.
func (f *fixture) windowDir(w int) string {
	s := f.start.Add(time.Duration(w) * time.Hour)
	return fmt.Sprintf("%s/dt=%s/window=%sZ-1h/", f.cfg.Pipeline, s.Format("2006-01-02"), s.Format("1504"))
}

// copyArchive copies the archive under a prefix of its own, for a test to tamper with,
// and returns the Config that checks the copy.
func (f *fixture) copyArchive(t *testing.T, name string) Config {
	t.Helper()
	ctx := context.Background()
	c := f.cfg
	c.Prefix = f.cfg.Prefix + "-" + name
	src, dst := newStore(f.cfg), newStore(c)
	var keys []string
	if err := src.list(ctx, "", func(k string) { keys = append(keys, k) }); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		obj, err := src.get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		put(t, dst, k, obj)
	}
	return c
}

func put(t *testing.T, s *store, key string, obj *object) {
	t.Helper()
	_, err := s.client.PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: &s.bucket, Key: aws.String(s.key(key)), Body: bytesReader(obj.data),
		ContentType: aws.String(obj.contentType), Metadata: obj.meta,
	})
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// cleanUp removes the archive and its tampered copies from the shared bucket, unless the
// test failed: then they are kept to look at.
func (f *fixture) cleanUp(t *testing.T) {
	if t.Failed() {
		t.Logf("kept the archive and its copies under s3://%s/%s*", f.cfg.Bucket, f.cfg.Prefix)
		return
	}
	root := newStore(Config{Bucket: f.cfg.Bucket})
	root.client = f.s3
	var keys []string
	ctx := context.Background()
	if err := root.list(ctx, f.cfg.Prefix, func(k string) { keys = append(keys, k) }); err != nil {
		t.Errorf("list the test's objects: %v", err)
	}
	for _, k := range keys {
		if _, err := f.s3.DeleteObject(ctx, deleteInput(root, k)); err != nil {
			t.Errorf("remove %s: %v", k, err)
		}
	}
}
