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
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/karch-archive/karch/blob"
)

// contender is one way of archiving the topic to the same store.
type contender struct {
	name string
	run  func(ctx context.Context, i int) (result, error)
}

// runPeers archives the same topic with every contender, alternating them run by run so
// that a slow spell of the shared machine falls on all of them, and prints the medians.
func runPeers(ctx context.Context, o options, d dataset) error {
	if o.oso == "" || o.kcat == "" {
		return fmt.Errorf("-peers needs -oso (the OSO peer binary) and -kcat (Debian's kcat)")
	}
	cs := []contender{
		{"karch, 1 shard", func(ctx context.Context, i int) (result, error) { return runShards(ctx, o, d, 1, i, false) }},
		{"karch, 2 shards", func(ctx context.Context, i int) (result, error) { return runShards(ctx, o, d, 2, i, false) }},
		{"karch, 1 shard, JSON Lines and Parquet", func(ctx context.Context, i int) (result, error) { return runShards(ctx, o, d, 1, i, true) }},
		{"OSO kafka-backup-core 0.25.2", func(ctx context.Context, i int) (result, error) { return runOSO(ctx, o, d, i) }},
		{"kcat -J | zstd -3 | aws s3 cp", func(ctx context.Context, i int) (result, error) { return runKcat(ctx, o, d, i) }},
	}
	runs := make([][]result, len(cs))
	for i := range o.runs {
		for c, ct := range cs {
			r, err := ct.run(ctx, i)
			if err != nil {
				return fmt.Errorf("%s: %w", ct.name, err)
			}
			fmt.Fprintf(os.Stderr, "run %d %s: %.1f s\n", i+1, ct.name, r.seconds)
			runs[c] = append(runs[c], r)
		}
	}
	base, err := baseline(ctx, o, d)
	if err != nil {
		return err
	}
	rows := make([]row, 0, len(cs)+1)
	for c, ct := range cs {
		rows = append(rows, row{name: ct.name, r: median(runs[c])})
	}
	in := rows[0].r.rawBytes
	rows = append(rows, row{name: "zstd in process (ceiling)", ceiling: true,
		r: result{seconds: float64(in) / 1e6 / base, cpu: float64(in) / 1e6 / base, records: d.records, rawBytes: in}})
	for i := range rows {
		rows[i].r.rawBytes = in // every contender read the same topic: one measure of it
	}
	var table bytes.Buffer
	peersTable(&table, o, d, rows)
	os.Stdout.Write(table.Bytes())
	if o.results == "" {
		return nil
	}
	if err := os.MkdirAll(o.results, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.results, "peers.md"), table.Bytes(), 0o644); err != nil {
		return err
	}
	return chart(filepath.Join(o.results, "peers.png"), rows, o.runs)
}

type row struct {
	name    string
	r       result
	ceiling bool // not an archiver: no upload, no stored bytes, no RSS
}

func peersTable(w io.Writer, o options, d dataset, rows []row) {
	fmt.Fprintf(w, "# karch against its peers\n\n")
	fmt.Fprintf(w, "`go run ./bench/shardbench %s` (what `make bench-peers` runs), %s, %d cores.\n",
		strings.Join(os.Args[1:], " "), time.Now().UTC().Format("2006-01-02"), runtime.NumCPU())
	fmt.Fprintf(w, "Topic %s: %d records in %d partitions, %.0f MB as karch's JSON Lines (the MB in of every row); zstd level %d;\n",
		d.topic, d.records, partitions, float64(rows[0].r.rawBytes)/1e6, o.level)
	fmt.Fprintf(w, "every archiver writes to the local MinIO. Medians of %d runs, contenders alternating run by run.\n", o.runs)
	fmt.Fprintf(w, "Peak RSS is the largest single process's; CPU is user and system time of all processes of a run.\n")
	fmt.Fprintf(w, "Every run is checked to have archived every record: karch's receipts, OSO's own report, the pipeline's stored lines.\n\n")
	fmt.Fprintln(w, "| contender | wall s | MB/s in | records/s | MB stored | CPU s | CPU s/GB | peak RSS MiB |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for _, rw := range rows {
		r, name := rw.r, strings.ReplaceAll(rw.name, "|", `\|`)
		stored, rss := fmt.Sprintf("%.0f", float64(r.bytes)/1e6), fmt.Sprintf("%.0f", float64(r.peakRSS)/(1<<20))
		if rw.ceiling {
			stored, rss = "-", "-"
		}
		fmt.Fprintf(w, "| %s | %.2f | %.1f | %.0f | %s | %.1f | %.2f | %s |\n", name, r.seconds, r.mbPerSec(), r.recsPerSec(), stored, r.cpu, r.cpuPerGB(), rss)
	}
	karch, oso := rows[0].r, rows[slices.IndexFunc(rows, func(r row) bool { return strings.HasPrefix(r.name, "OSO") })].r
	fmt.Fprintf(w, "\nkarch, 1 shard / OSO, medians: %.2fx the records/s, %.2fx the CPU s/GB, %.2fx the peak RSS.\n",
		karch.recsPerSec()/oso.recsPerSec(), karch.cpuPerGB()/oso.cpuPerGB(), float64(karch.peakRSS)/float64(oso.peakRSS))
}

// chart draws records/s by contender as horizontal bars, top to bottom in table order.
func chart(path string, rows []row, runs int) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("records/s archived to the local MinIO (median of %d runs, %d cores)", runs, runtime.NumCPU())
	p.X.Label.Text = "records/s"
	p.X.Min = 0
	vals := make(plotter.Values, len(rows))
	names := make([]string, len(rows))
	for i, rw := range rows {
		j := len(rows) - 1 - i
		vals[j], names[j] = rw.r.recsPerSec(), rw.name
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(24))
	if err != nil {
		return err
	}
	bars.Horizontal = true
	p.Add(bars)
	p.NominalY(names...)
	return p.Save(9*vg.Inch, 4*vg.Inch, path)
}

// runOSO runs OSO's engine, one process for the whole topic, into a fresh prefix: the
// engine resumes from a manifest it finds there. Its last line on stdout counts the records
// it archived.
func runOSO(ctx context.Context, o options, d dataset, i int) (result, error) {
	prefix := fmt.Sprintf("peers/oso-%d-%d", time.Now().Unix(), i)
	cfg := s3Config()
	cmd := exec.CommandContext(ctx, o.oso)
	cmd.Env = append(os.Environ(), "OSO_BROKERS="+o.brokers, "OSO_TOPIC="+d.topic, "OSO_S3_ENDPOINT="+cfg.Endpoint,
		"OSO_BUCKET="+cfg.Bucket, "OSO_PREFIX="+cfg.Prefix+"/"+prefix,
		"AWS_ACCESS_KEY_ID="+cfg.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+cfg.SecretAccessKey)
	var out bytes.Buffer
	cmd.Stdout = &out
	r, err := runPeer(ctx, d, cmd, prefix)
	if err != nil {
		return r, err
	}
	var report struct{ Records int64 }
	if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &report); err != nil {
		return r, fmt.Errorf("read the peer's report %q: %w", out.String(), err)
	}
	if report.Records != d.records {
		return r, fmt.Errorf("the peer archived %d records, the topic holds %d", report.Records, d.records)
	}
	return r, nil
}

// kcatScript is the seeds' recipe: one kcat per partition, each piped through zstd into
// the store by the AWS CLI, all at once.
const kcatScript = `set -u
pids=""
for p in $(seq 0 $((PARTITIONS - 1))); do
  ( set -o pipefail
    "$KCAT" -C -b "$BROKERS" -t "$TOPIC" -p "$p" -o beginning -e -q -J |
      zstd -"$LEVEL" -T1 -q -c |
      aws --endpoint-url "$ENDPOINT" s3 cp - "s3://$BUCKET/$PREFIX/$p.json.zst" ) &
  pids="$pids $!"
done
for pid in $pids; do wait "$pid" || exit 1; done
`

func runKcat(ctx context.Context, o options, d dataset, i int) (result, error) {
	prefix := fmt.Sprintf("peers/kcat-%d-%d", time.Now().Unix(), i)
	cfg := s3Config()
	cmd := exec.CommandContext(ctx, "bash", "-c", kcatScript)
	cmd.Env = append(os.Environ(), "KCAT="+o.kcat, "BROKERS="+o.brokers, "TOPIC="+d.topic, fmt.Sprintf("PARTITIONS=%d", partitions),
		fmt.Sprintf("LEVEL=%d", o.level), "ENDPOINT="+cfg.Endpoint, "BUCKET="+cfg.Bucket, "PREFIX="+cfg.Prefix+"/"+prefix,
		"AWS_ACCESS_KEY_ID="+cfg.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+cfg.SecretAccessKey, "AWS_DEFAULT_REGION="+cfg.Region)
	cmd.Stdout = os.Stderr
	r, err := runPeer(ctx, d, cmd, prefix)
	if err != nil {
		return r, err
	}
	n, err := countLines(ctx, prefix)
	if err != nil {
		return r, err
	}
	if n != d.records {
		return r, fmt.Errorf("the pipeline stored %d records, the topic holds %d", n, d.records)
	}
	return r, nil
}

// runPeer runs cmd and measures what it stored under prefix.
func runPeer(ctx context.Context, d dataset, cmd *exec.Cmd, prefix string) (result, error) {
	cmd.Stderr = os.Stderr
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("run %s: %w", cmd.Path, err)
	}
	r := result{seconds: time.Since(t0).Seconds(), records: d.records, rawBytes: d.rawBytes}
	r.usage(cmd.ProcessState)
	err := peerObjects(ctx, prefix, func(b blob.Bucket, info blob.ObjectInfo) error {
		r.bytes += info.Size
		return nil
	})
	return r, err
}

// peerObjects calls fn for each object a peer stored under prefix.
func peerObjects(ctx context.Context, prefix string, fn func(blob.Bucket, blob.ObjectInfo) error) error {
	b, err := blob.NewS3(ctx, s3Config())
	if err != nil {
		return err
	}
	if err := b.List(ctx, prefix+"/", func(info blob.ObjectInfo) error { return fn(b, info) }); err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	return nil
}

// countLines counts the JSON lines (one per record) of the zstd objects under prefix.
func countLines(ctx context.Context, prefix string) (int64, error) {
	var n newlines
	err := peerObjects(ctx, prefix, func(b blob.Bucket, info blob.ObjectInfo) error {
		rc, err := b.Get(ctx, info.Key)
		if err != nil {
			return err
		}
		defer rc.Close()
		zr, err := zstd.NewReader(rc)
		if err != nil {
			return err
		}
		defer zr.Close()
		if _, err := io.Copy(&n, zr); err != nil {
			return fmt.Errorf("read %s: %w", info.Key, err)
		}
		return nil
	})
	return int64(n), err
}

// newlines counts the newlines written to it.
type newlines int64

func (n *newlines) Write(p []byte) (int, error) {
	*n += newlines(bytes.Count(p, []byte{'\n'}))
	return len(p), nil
}
