package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/compress"
	"github.com/karch-archive/karch/internal/cdrgen"
)

// result is one shard run.
type result struct {
	seconds            float64
	records            int64
	rawBytes, bytes    int64
	peakRSS            int64 // bytes
	mbPerSec, recsPerS float64
}

// store is where the runs write: the local MinIO or a temporary directory.
func store(ctx context.Context, o options) (blob.Bucket, string, error) {
	if o.store == "local" {
		dir, err := os.MkdirTemp("", "shardbench-")
		if err != nil {
			return nil, "", err
		}
		b, err := blob.NewLocal(dir)
		return b, dir, err
	}
	cfg := blob.S3Config{
		Endpoint: envOr("KARCH_TEST_S3_ENDPOINT", "http://127.0.0.1:19000"), Region: "us-east-1", PathStyle: true,
		Bucket: envOr("KARCH_TEST_S3_BUCKET", "karch-test"), Prefix: "shardbench",
		AccessKeyID: envOr("KARCH_TEST_S3_ACCESS_KEY", "karchtest"), SecretAccessKey: envOr("KARCH_TEST_S3_SECRET_KEY", "karchtest-secret"),
	}
	b, err := blob.NewS3(ctx, cfg)
	return b, fmt.Sprintf("s3://%s/%s", cfg.Bucket, cfg.Prefix), err
}

// runShard plans the whole dataset as one shard under a fresh window folder and runs
// `karch shard` on it as a child process, whose peak RSS the kernel reports at exit.
func runShard(ctx context.Context, o options, d dataset, i int) (result, error) {
	b, base, err := store(ctx, o)
	if err != nil {
		return result{}, err
	}
	start := time.Now().UTC().Truncate(time.Hour)
	p := &archive.Plan{
		Format: archive.PlanFormat, Pipeline: fmt.Sprintf("bench-%d-%d", time.Now().Unix(), i), RunID: "bench",
		Brokers: []string{o.brokers}, Window: archive.Window{Start: start, End: start.Add(time.Hour)},
		Shards: []archive.ShardPlan{{Index: 0, Pieces: d.pieces(o)}},
	}
	planKey := archive.WindowDir(p.Pipeline, start, time.Hour) + archive.PlanName
	data, err := json.Marshal(p)
	if err != nil {
		return result{}, err
	}
	if _, err := b.Put(ctx, planKey, bytes.NewReader(data), blob.PutOptions{IfAbsent: true}); err != nil {
		return result{}, fmt.Errorf("put plan: %w", err)
	}
	cmd := exec.CommandContext(ctx, o.karch, "shard", "--plan", base+"/"+planKey, "--index", "0", "--zstd-level", fmt.Sprint(o.level), "--log-level", "warn")
	cmd.Env = append(os.Environ(), "KARCH_S3_ENDPOINT="+envOr("KARCH_TEST_S3_ENDPOINT", "http://127.0.0.1:19000"), "KARCH_S3_PATH_STYLE=true",
		"AWS_ACCESS_KEY_ID="+envOr("KARCH_TEST_S3_ACCESS_KEY", "karchtest"), "AWS_SECRET_ACCESS_KEY="+envOr("KARCH_TEST_S3_SECRET_KEY", "karchtest-secret"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("run %s: %w", cmd, err)
	}
	secs := time.Since(t0).Seconds()
	r, err := receipt(ctx, b, filepath.Dir(planKey)+"/"+archive.ReceiptKey(0))
	if err != nil {
		return result{}, err
	}
	rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
	return result{seconds: secs, records: r.Records, rawBytes: r.RawBytes, bytes: r.Bytes, peakRSS: rss,
		mbPerSec: float64(r.RawBytes) / 1e6 / secs, recsPerS: float64(r.Records) / secs}, nil
}

func receipt(ctx context.Context, b blob.Bucket, key string) (*archive.Receipt, error) {
	rc, err := b.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("get receipt: %w", err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}
	return archive.DecodeReceipt(data)
}

// baseline compresses the first piece's JSON Lines in memory, frame by frame on one
// goroutine, at the shard's level: the speed a shard would have if reading, encoding and
// uploading cost nothing.
func baseline(ctx context.Context, o options, d dataset) (float64, error) {
	raw := rawSample(d, int64(o.pieceMiB)<<20)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(o.level)), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return 0, err
	}
	frame := compress.Options{}.WithDefaults().FrameSize
	var best float64
	for range 3 {
		var dst []byte
		t0 := time.Now()
		for off := 0; off < len(raw); off += frame {
			dst = enc.EncodeAll(raw[off:min(off+frame, len(raw))], dst[:0])
		}
		best = max(best, float64(len(raw))/1e6/time.Since(t0).Seconds())
	}
	return best, nil
}

// rawSample encodes records as the shard does, up to n bytes of JSON Lines.
func rawSample(d dataset, n int64) []byte {
	var out []byte
	for seed := uint64(0); int64(len(out)) < n; seed += 20_000 {
		recs := benchRecords(seed)
		for i := range recs {
			out = archive.AppendLine(out, &recs[i])
		}
	}
	return out
}

func printTable(w io.Writer, rs []result, zstdMBps float64) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\trecords\tMB in\tMB stored\tratio\tseconds\trecords/s\tMB/s in\tpeak RSS MiB\t")
	for i, r := range rs {
		fmt.Fprintf(tw, "%d\t%d\t%.0f\t%.0f\t%.3f\t%.1f\t%.0f\t%.1f\t%.0f\t\n", i+1, r.records, float64(r.rawBytes)/1e6,
			float64(r.bytes)/1e6, float64(r.bytes)/float64(r.rawBytes), r.seconds, r.recsPerS, r.mbPerSec, float64(r.peakRSS)/(1<<20))
	}
	tw.Flush()
	med := median(rs)
	fmt.Fprintf(w, "\nmedian shard: %.1f MB/s in, %.0f records/s, peak RSS %.0f MiB (max over runs)\n", med.mbPerSec, med.recsPerS, maxRSS(rs)/(1<<20))
	fmt.Fprintf(w, "zstd EncodeAll, same level, one goroutine, in memory: %.1f MB/s\n", zstdMBps)
	fmt.Fprintf(w, "efficiency (median shard MB/s / zstd MB/s): %.2f\n", med.mbPerSec/zstdMBps)
}

func median(rs []result) result {
	s := append([]result(nil), rs...)
	sort.Slice(s, func(i, j int) bool { return s[i].mbPerSec < s[j].mbPerSec })
	return s[len(s)/2]
}

func maxRSS(rs []result) float64 {
	var m int64
	for _, r := range rs {
		m = max(m, r.peakRSS)
	}
	return float64(m)
}

// benchRecords is one chunk of the records the topic was filled with.
func benchRecords(seed uint64) []archive.Record { return cdrgen.Records(20_000, seed) }
