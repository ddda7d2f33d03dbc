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
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/compress"
	"github.com/karch-archive/karch/internal/cdrgen"
)

// result is one run of one contender.
type result struct {
	seconds         float64
	cpu             float64 // user and system seconds, summed over the run's processes
	records         int64
	rawBytes, bytes int64
	parquetBytes    int64
	peakRSS         int64 // bytes, of the largest process
}

// benchColumns are the demo's typed columns of the call records.
const benchColumns = "caller:string,callee:string,cell:string,start:timestamp,duration_ms:int64,result:string,imsi:string"

func (r result) mbPerSec() float64   { return float64(r.rawBytes) / 1e6 / r.seconds }
func (r result) recsPerSec() float64 { return float64(r.records) / r.seconds }

// cpuPerGB is CPU seconds per GB of JSON Lines in.
func (r result) cpuPerGB() float64 { return r.cpu / (float64(r.rawBytes) / 1e9) }

// usage adds a finished child's CPU time and peak RSS to r.
func (r *result) usage(ps *os.ProcessState) {
	ru := ps.SysUsage().(*syscall.Rusage)
	r.cpu += time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	r.peakRSS = max(r.peakRSS, ru.Maxrss<<10)
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
	cfg := s3Config()
	b, err := blob.NewS3(ctx, cfg)
	return b, fmt.Sprintf("s3://%s/%s", cfg.Bucket, cfg.Prefix), err
}

func s3Config() blob.S3Config {
	return blob.S3Config{
		Endpoint: envOr("KARCH_TEST_S3_ENDPOINT", "http://127.0.0.1:19000"), Region: "us-east-1", PathStyle: true,
		Bucket: envOr("KARCH_TEST_S3_BUCKET", "karch-test"), Prefix: "shardbench",
		AccessKeyID: envOr("KARCH_TEST_S3_ACCESS_KEY", "karchtest"), SecretAccessKey: envOr("KARCH_TEST_S3_SECRET_KEY", "karchtest-secret"),
	}
}

// runShards plans the whole dataset as n shards (partitions dealt round-robin) under a
// fresh window folder and runs `karch shard` for each as a child process, all at once,
// whose CPU time and peak RSS the kernel reports at exit. Records and bytes are the
// receipts'.
func runShards(ctx context.Context, o options, d dataset, n, i int, parquet bool) (result, error) {
	b, base, err := store(ctx, o)
	if err != nil {
		return result{}, err
	}
	start := time.Now().UTC().Truncate(time.Hour)
	p := &archive.Plan{
		Format: archive.PlanFormat, Pipeline: fmt.Sprintf("bench-%d-%d-%d", time.Now().Unix(), n, i), RunID: "bench",
		Brokers: []string{o.brokers}, Window: archive.Window{Start: start, End: start.Add(time.Hour)},
	}
	if parquet {
		cols, err := archive.ParseValueColumns(strings.Split(benchColumns, ","))
		if err != nil {
			return result{}, err
		}
		p.Formats, p.ValueColumns = []string{archive.FormatJSONL, archive.FormatParquet}, cols
		p.Pipeline += "-parquet"
	}
	for s := range n {
		p.Shards = append(p.Shards, archive.ShardPlan{Index: s})
	}
	for _, pc := range d.pieces(o) {
		sp := &p.Shards[int(pc.Partition)%n]
		sp.Pieces = append(sp.Pieces, pc)
	}
	planKey := archive.WindowDir(p.Pipeline, start, time.Hour) + archive.PlanName
	data, err := json.Marshal(p)
	if err != nil {
		return result{}, err
	}
	if _, err := b.Put(ctx, planKey, bytes.NewReader(data), blob.PutOptions{IfAbsent: true}); err != nil {
		return result{}, fmt.Errorf("put plan: %w", err)
	}
	cmds := make([]*exec.Cmd, n)
	t0 := time.Now()
	for s := range n {
		args := []string{"shard", "--plan", base + "/" + planKey, "--index", fmt.Sprint(s), "--zstd-level", fmt.Sprint(o.level), "--log-level", "warn"}
		if o.profile != "" && n == 1 && i == 0 && parquet == o.parquet {
			args = append(args, "--cpu-profile", o.profile)
		}
		if o.memMiB > 0 {
			args = append(args, "--memory-limit-mib", fmt.Sprint(o.memMiB))
		}
		cmds[s] = exec.CommandContext(ctx, o.karch, args...)
		cmds[s].Env = append(os.Environ(), "KARCH_S3_ENDPOINT="+envOr("KARCH_TEST_S3_ENDPOINT", "http://127.0.0.1:19000"), "KARCH_S3_PATH_STYLE=true",
			"AWS_ACCESS_KEY_ID="+envOr("KARCH_TEST_S3_ACCESS_KEY", "karchtest"), "AWS_SECRET_ACCESS_KEY="+envOr("KARCH_TEST_S3_SECRET_KEY", "karchtest-secret"))
		cmds[s].Stdout, cmds[s].Stderr = os.Stderr, os.Stderr
		if err := cmds[s].Start(); err != nil {
			return result{}, fmt.Errorf("start %s: %w", cmds[s], err)
		}
	}
	var r result
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			return result{}, fmt.Errorf("run %s: %w", cmd, err)
		}
		r.usage(cmd.ProcessState)
	}
	r.seconds = time.Since(t0).Seconds()
	for s := range n {
		rc, err := receipt(ctx, b, filepath.Dir(planKey)+"/"+archive.ReceiptKey(s))
		if err != nil {
			return result{}, err
		}
		r.records += rc.Records
		r.rawBytes += rc.RawBytes
		r.bytes += rc.Bytes
		for _, pc := range rc.Pieces {
			if pc.Parquet != nil {
				r.parquetBytes += pc.Parquet.Bytes
			}
		}
	}
	if r.records != d.records {
		return result{}, fmt.Errorf("the shards' receipts count %d records, the topic holds %d", r.records, d.records)
	}
	return r, nil
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
	fmt.Fprintln(tw, "run\trecords\tMB in\tMB stored\tratio\tseconds\tCPU s\tCPU s/GB\trecords/s\tMB/s in\tpeak RSS MiB\t")
	for i, r := range rs {
		fmt.Fprintf(tw, "%d\t%d\t%.0f\t%.0f\t%.3f\t%.1f\t%.1f\t%.2f\t%.0f\t%.1f\t%.0f\t\n", i+1, r.records, float64(r.rawBytes)/1e6,
			float64(r.bytes)/1e6, float64(r.bytes)/float64(r.rawBytes), r.seconds, r.cpu, r.cpuPerGB(), r.recsPerSec(), r.mbPerSec(), float64(r.peakRSS)/(1<<20))
	}
	tw.Flush()
	med := median(rs)
	fmt.Fprintf(w, "\nmedian shard: %.1f MB/s in, %.0f records/s, %.2f CPU s/GB, peak RSS %.0f MiB (max over runs)\n",
		med.mbPerSec(), med.recsPerSec(), med.cpuPerGB(), maxRSS(rs)/(1<<20))
	fmt.Fprintf(w, "zstd EncodeAll, same level, one goroutine, in memory: %.1f MB/s\n", zstdMBps)
	fmt.Fprintf(w, "efficiency (median shard MB/s / zstd MB/s): %.2f\n", med.mbPerSec()/zstdMBps)
}

// median is the run of median wall time.
func median(rs []result) result {
	s := append([]result(nil), rs...)
	sort.Slice(s, func(i, j int) bool { return s[i].seconds < s[j].seconds })
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
