// Package audit tests `karch verify` and `karch cat` as processes on archives that a real
// coordinator wrote from the real Kafka, then damaged one way at a time.
package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/compress"
	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/lock"
	"github.com/karch-archive/karch/shard"
)

var karchBin string

func TestMain(m *testing.M) { testenv.MainWithKarch(m, &karchBin) }

var t0 = time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)

// archived is committed hourly windows of one topic in a store.
type archived struct {
	store
	pipeline, topic, brokers string
	ms                       []*archive.Manifest
}

// store is where an archive is written: a local directory (dir set), or the test MinIO.
type store struct {
	url    string
	dir    string
	bucket blob.Bucket
	// env is what karch processes need to reach it (S3 credentials).
	env []string
}

// localStore is a fresh local directory store, whose documents testenv checks against the
// schemas when the test ends.
func localStore(t *testing.T) store {
	t.Helper()
	dir, b := testenv.LocalStore(t)
	return store{url: dir, dir: dir, bucket: b}
}

func s3Store(t *testing.T) store {
	t.Helper()
	cfg := testenv.S3Config(t)
	b, err := blob.NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return store{url: fmt.Sprintf("s3://%s/%s", cfg.Bucket, cfg.Prefix), bucket: b, env: []string{
		"KARCH_S3_ENDPOINT=" + cfg.Endpoint, "KARCH_S3_PATH_STYLE=true",
		"AWS_ACCESS_KEY_ID=" + cfg.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + cfg.SecretAccessKey}}
}

// newArchive produces 2 partitions × 150 records over the three hours from t0 and has a
// coordinator archive them into a fresh local store.
func newArchive(t *testing.T) *archived {
	t.Helper()
	addr := testenv.Kafka(t)
	return archiveTopic(t, addr, produceHours(t, addr), localStore(t), 3)
}

// produceHours makes a topic of 2 partitions × 150 records over the three hours from t0.
func produceHours(t *testing.T, addr string) string {
	t.Helper()
	topic := testenv.Topic(t, addr, 2)
	var msgs []kafka.Message
	for i := range 300 {
		ts := t0.Add(time.Duration(i) * 36 * time.Second)
		msgs = append(msgs, kafka.Message{Partition: i % 2, Time: ts, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, `{"n":%d}`, i)})
	}
	testenv.Produce(t, addr, topic, msgs)
	return topic
}

// archiveTopic has a coordinator archive the first windows of topic, from t0, into st,
// under a pipeline of its own, with the configuration changes configure makes.
func archiveTopic(t *testing.T, addr, topic string, st store, windows int, configure ...func(*coordinator.Config)) *archived {
	t.Helper()
	return archiveInto(t, addr, topic, st, windows, nil, configure...)
}

// archiveInto is archiveTopic with committed windows joining table, when not nil.
func archiveInto(t *testing.T, addr, topic string, st store, windows int, table coordinator.Table, configure ...func(*coordinator.Config)) *archived {
	t.Helper()
	a := &archived{store: st, pipeline: fmt.Sprintf("audit-%d", time.Now().UnixNano()%1e12), topic: topic, brokers: addr}
	cfg := coordinator.DefaultConfig()
	cfg.Pipeline, cfg.Brokers, cfg.Topic, cfg.Start, cfg.PieceRecords = a.pipeline, []string{addr}, topic, t0, 40
	cfg.Until = t0.Add(time.Duration(windows) * time.Hour)
	for _, f := range configure {
		f(&cfg)
	}
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	_, err := coordinator.Run(context.Background(), cfg, coordinator.Deps{
		Bucket: a.bucket, StoreURL: a.url, Locker: lock.NewLocal(), Offsets: coordinator.NewKafkaOffsets(cfg.Brokers, shard.KafkaOptions{ClientID: "karch-test"}),
		Logger: logger, Version: "test", Now: func() time.Time { return t0.Add(24 * time.Hour) }, Table: table,
		Runner: &coordinator.LocalRunner{Karch: karchBin, Parallelism: 2, Retries: 1, Logger: logger, Env: append([]string{"KARCH_LOG_LEVEL=warn"}, a.env...)},
	})
	if err != nil {
		t.Fatalf("archive: %v", err)
	}
	for w := range windows {
		key := archive.WindowDir(a.pipeline, t0.Add(time.Duration(w)*time.Hour), time.Hour) + archive.ManifestName
		m, err := archive.DecodeManifest(testenv.ReadObject(t, a.bucket, key))
		if err != nil {
			t.Fatal(err)
		}
		a.ms = append(a.ms, m)
	}
	return a
}

// path is the file of key in window w's folder.
func (a *archived) path(w int, key string) string {
	return filepath.Join(a.dir, filepath.FromSlash(archive.WindowDir(a.pipeline, t0.Add(time.Duration(w)*time.Hour), time.Hour)+key))
}

// args puts the archive's settings between the command and its own flags, so that the
// command's own win.
func (a *archived) args(cmd []string) []string {
	out := []string{cmd[0], "--store", a.url, "--pipeline", a.pipeline, "--brokers", a.brokers, "--topic", a.topic}
	return append(out, cmd[1:]...)
}

// karch runs a karch command on the archive's pipeline and returns its exit code and output.
func (a *archived) karch(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(karchBin, a.args(args)...)
	cmd.Env = append(append(os.Environ(), "KARCH_REDIS="+testenv.Redis(t)), a.env...) // restore's lease
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String()
	}
	t.Fatalf("run karch: %v", err)
	return 0, ""
}

func TestVerifyCleanArchive(t *testing.T) {
	a := newArchive(t)
	for _, mode := range [][]string{{"verify"}, {"verify", "--deep"}, {"verify", "--window", t0.Add(time.Hour).Format(time.RFC3339)}} {
		code, out := a.karch(t, mode...)
		if code != 0 || !strings.Contains(out, ", 0 problems") {
			t.Fatalf("karch %v on a clean archive: exit %d\n%s", mode, code, out)
		}
	}
	_, out := a.karch(t, "verify")
	if !strings.Contains(out, "3 windows") || !strings.Contains(out, "300 records") {
		t.Fatalf("want 3 windows and 300 records in the summary:\n%s", out)
	}
}

// Each damage is found, named by the object it hit, and exits 3.
func TestVerifyFindsDamage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		deep   bool
		damage func(t *testing.T, a *archived) string // returns what the output must name
	}{
		{"flipped byte", true, func(t *testing.T, a *archived) string {
			key := a.ms[1].Objects[0].Key
			rewrite(t, a.path(1, key), func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b })
			return key
		}},
		{"truncated piece", false, func(t *testing.T, a *archived) string {
			key := a.ms[0].Objects[1].Key
			rewrite(t, a.path(0, key), func(b []byte) []byte { return b[:len(b)-7] })
			return key + ": is "
		}},
		{"deleted piece", false, func(t *testing.T, a *archived) string {
			key := a.ms[2].Objects[0].Key
			remove(t, a.path(2, key))
			return key + ": is missing"
		}},
		{"deleted receipt", false, func(t *testing.T, a *archived) string {
			remove(t, a.path(1, archive.ReceiptKey(0)))
			return archive.ReceiptKey(0) + ": is missing"
		}},
		{"edited count", false, func(t *testing.T, a *archived) string {
			rewrite(t, a.path(0, archive.ManifestName), func(b []byte) []byte {
				return bytes.Replace(b, fmt.Appendf(nil, `"records": %d`, a.ms[0].Records), fmt.Appendf(nil, `"records": %d`, a.ms[0].Records+1), 1)
			})
			return "which now has"
		}},
		{"window removed from the middle", false, func(t *testing.T, a *archived) string {
			if err := os.RemoveAll(filepath.Dir(a.path(1, archive.ManifestName))); err != nil {
				t.Fatal(err)
			}
			return "the chain has a hole"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newArchive(t)
			want := tc.damage(t, a)
			args := []string{"verify"}
			if tc.deep {
				args = append(args, "--deep")
			}
			code, out := a.karch(t, args...)
			t.Logf("karch %v:\n%s", args, out)
			if code != 3 || !strings.Contains(out, want) || strings.Contains(out, ", 0 problems") {
				t.Fatalf("karch %v after damage: exit %d, want 3 and a line naming %q:\n%s", args, code, want, out)
			}
		})
	}
}

// karch cat prints a window's records in offset order per partition, each line what the
// archive stores, and its filters select by partition and offset.
func TestCat(t *testing.T) {
	a := newArchive(t)
	window := t0.Add(time.Hour).Format(time.RFC3339)
	code, out := a.karch(t, "cat", "--window", window, "--log-level", "error")
	if code != 0 {
		t.Fatalf("karch cat: exit %d\n%s", code, out)
	}
	var got []archive.Record
	for _, line := range strings.SplitAfter(strings.TrimSuffix(out, "\n"), "\n") {
		r, err := archive.DecodeLine([]byte(line))
		if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, r)
	}
	if int64(len(got)) != a.ms[1].Records {
		t.Fatalf("%d records printed, the manifest holds %d", len(got), a.ms[1].Records)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Partition == got[i-1].Partition && got[i].Offset <= got[i-1].Offset {
			t.Fatalf("record %d: %d/%d after %d/%d", i, got[i].Partition, got[i].Offset, got[i-1].Partition, got[i-1].Offset)
		}
	}
	p1 := a.ms[1].Partitions[1]
	code, out = a.karch(t, "cat", "--window", window, "--partition", "1", "--from-offset", fmt.Sprint(p1.First+3), "--to-offset", fmt.Sprint(p1.First+5), "--raw-values", "--log-level", "error")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], `{"n":`) {
		t.Fatalf("karch cat of two values: exit %d\n%s", code, out)
	}
	if code, out := a.karch(t, "cat", "--window", t0.Add(9*time.Hour).Format(time.RFC3339)); code != 3 || !strings.Contains(out, "not committed") {
		t.Fatalf("karch cat of a window never committed: exit %d\n%s", code, out)
	}
}

func rewrite(t *testing.T, path string, change func([]byte) []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0) // in place: the same file, as a disk error would leave it
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(change(data)); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func compressReader(data []byte) (io.Reader, error) { return compress.NewReader(bytes.NewReader(data)) }
