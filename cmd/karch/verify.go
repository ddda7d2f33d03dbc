package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/audit"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/icetable"
	"github.com/karch-archive/karch/metrics"
)

func init() {
	commands["verify"] = command{"check the archive: manifests, objects, receipts, the chain of windows and the table", runVerify}
}

const verifyUsage = `usage: karch verify [--config file.yaml] [--window T | --from T --to T] [--deep] [--json] [flags]

Checks every committed window of the pipeline (or the one at --window, or those starting
in [--from, --to)) against what the store holds: each manifest decodes and adds up, its
objects exist with the recorded size, checksum and bounds, and agree with the receipts and
the plan; consecutive windows leave no hole in time or offsets (declared gaps are listed),
and each manifest's record of the one before matches it. --deep also reads every object:
every record decodes, lies in its piece's bounds in offset order, and the counts and
SHA-256 match. --against-kafka also compares, for the ranges Kafka still holds, every
archived record with Kafka's at read_committed (key, value, headers, timestamp), read with
franz-go, a second client that shares no decoding with the shards' kafka-go, and checks
that every partition of the topic is covered. --table also proves, from the catalog and the
table's metadata, that the Iceberg table's live data files are exactly the Parquet objects
of the committed windows its snapshots name, each once, with the manifests' record counts,
sizes and offset bounds, that no snapshot added a file no manifest lists, and lists the
committed windows not in the table yet (the next run appends them). Reads only; no lease.
Exit codes: 0 clean, 1 retryable (the store failed), 3 anything missing, corrupt or
mismatched.
`

// verifyFlags are verify's own flags.
type verifyFlags struct {
	window, from, to string
	againstKafka     bool
	table            bool
	opts             audit.Options
}

func (v *verifyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&v.window, "window", "", "only the window that starts at this time (2026-11-24T23:00Z)")
	fs.StringVar(&v.from, "from", "", "only windows that start at or after this time, RFC3339")
	fs.StringVar(&v.to, "to", "", "only windows that start before this time, RFC3339")
	fs.BoolVar(&v.opts.Deep, "deep", false, "read every object through, not only its size and checksum")
	fs.IntVar(&v.opts.Parallel, "parallel", 8, "objects checked at once (reads wait on the store more than on the CPU)")
	fs.BoolVar(&v.table, "table", false, "also check the pipeline's Iceberg table (the table settings) against the committed windows")
	fs.BoolVar(&v.againstKafka, "against-kafka", false, "also compare every archived record of the ranges Kafka still holds with Kafka's, and check that every partition of the topic is covered")
}

// scope turns --window, --from and --to into the options' bounds.
func (v *verifyFlags) scope() error {
	parse := func(name, s string) (time.Time, error) {
		if s == "" {
			return time.Time{}, nil
		}
		return parseTimeFlag(name, s)
	}
	if v.window != "" && (v.from != "" || v.to != "") {
		return failure.Permanent(errors.New("--window goes alone, without --from or --to"))
	}
	var err error
	if v.window != "" {
		if v.opts.From, err = parse("window", v.window); err != nil {
			return err
		}
		v.opts.To = v.opts.From.Add(time.Nanosecond)
		return nil
	}
	if v.opts.From, err = parse("from", v.from); err != nil {
		return err
	}
	v.opts.To, err = parse("to", v.to)
	return err
}

// parseTimeFlag reads a time flag, RFC3339 with or without seconds (2026-11-24T23:00Z).
func parseTimeFlag(name, s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04Z07:00"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, failure.Permanent(fmt.Errorf("--%s %q: want a time such as 2026-11-24T23:00Z", name, s))
}

// kafkaSource is the source cluster as verify --against-kafka reads it: the coordinator's
// view of partitions and offsets, and records read with franz-go, a second client that shares
// no decoding with the shards' kafka-go: a record one of them drops, the other still sees.
type kafkaSource struct {
	*coordinator.KafkaOffsets
	franz *audit.FranzReader
}

// ReadRange reads with franz-go, not with the kafka-go reader KafkaOffsets has.
func (k kafkaSource) ReadRange(ctx context.Context, topic string, partition int32, first, end int64, fn func(*archive.Record) error) error {
	return k.franz.ReadRange(ctx, topic, partition, first, end, fn)
}

// TopicIDs maps the cluster's topics to their IDs.
func (k kafkaSource) TopicIDs(ctx context.Context) (map[string]string, error) {
	topics, err := k.Topics(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(topics))
	for name, t := range topics {
		out[name] = t.ID
	}
	return out, nil
}

// errProblems makes verify exit 3 when the archive is not what its manifests say.
var errProblems = errors.New("the archive has problems")

func runVerify(ctx context.Context, args []string, stdout io.Writer) (err error) {
	var vf verifyFlags
	cli, err := parseCoordinatorFlags("verify", verifyUsage, args, vf.register)
	if cli == nil || err != nil {
		return err
	}
	proc := metrics.NewProcess(time.Now())
	audited := metrics.NewAudit(proc.Registerer())
	defer func() {
		pushMetrics(ctx, cli.logger, cli.cfg.pushGateway, proc, err, "karch-verify", "pipeline", cli.cfg.coord.Pipeline)
	}()
	if err := vf.scope(); err != nil {
		return err
	}
	if vf.table && !cli.cfg.table.on() {
		return failure.Permanent(fmt.Errorf("%w: --table: the settings name no table (table, table_catalog, table_catalog_uri)", coordinator.ErrConfig))
	}
	bucket, err := blob.Open(ctx, cli.cfg.store, cli.cfg.s3)
	if err != nil {
		return failure.Permanent(fmt.Errorf("open store %s: %w", cli.cfg.store, err))
	}
	if vf.againstKafka {
		conn, err := cli.cfg.kafkaConn()
		if err != nil {
			return err
		}
		franz, err := cli.cfg.kafkaSec.franzOpts()
		if err != nil {
			return err
		}
		vf.opts.Kafka = kafkaSource{coordinator.NewKafkaOffsets(cli.cfg.coord.Brokers, conn, franz...), audit.NewFranzReader(cli.cfg.coord.Brokers, franz...)}
	}
	var bar *verifyBar
	if onTerminal() {
		bar = newVerifyBar()
		vf.opts.Progress = bar.object
	}
	report, err := audit.Verify(ctx, bucket, cli.cfg.coord.Pipeline, vf.opts)
	if bar != nil {
		bar.finish() // cleared before the report is printed
	}
	if err != nil {
		return err
	}
	if n := len(report.Windows); n > 0 {
		audited.Verified(n, report.Problems(), report.Windows[n-1].Window)
	}
	var check *icetable.Check
	if vf.table {
		if check, err = checkTable(ctx, cli.cfg, bucket, report); err != nil {
			return err
		}
	}
	if cli.json {
		err = json.NewEncoder(stdout).Encode(struct {
			*audit.Report
			Table *icetable.Check `json:"table,omitempty"`
		}{report, check})
	} else if err = printReport(stdout, report); err == nil && check != nil {
		err = printCheck(stdout, check)
	}
	if err != nil {
		return err
	}
	n := report.Problems()
	if check != nil {
		n += len(check.Problems)
	}
	if n > 0 {
		return failure.Permanent(fmt.Errorf("%w: %d found", errProblems, n))
	}
	return nil
}

// checkTable checks the pipeline's table against the windows the report verified.
func checkTable(ctx context.Context, cfg runConfig, bucket blob.Bucket, report *audit.Report) (*icetable.Check, error) {
	tbl, closeTable, err := openTable(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer closeTable()
	refs := make([]archive.ManifestRef, len(report.Windows))
	for i, w := range report.Windows {
		refs[i] = archive.ManifestRef{Key: w.Manifest, SHA256: w.SHA256}
	}
	return tbl.Check(ctx, cfg.coord.Pipeline, refs, func(ctx context.Context, key string) ([]byte, error) { return blob.ReadAll(ctx, bucket, key) })
}

func printCheck(w io.Writer, c *icetable.Check) error {
	for _, l := range c.Lagging {
		fmt.Fprintf(w, "%s  committed, not in the table yet (the next run appends it)\n", l.Start.Format("2006-01-02T15:04Z"))
	}
	for _, p := range c.Problems {
		fmt.Fprintf(w, "table: %s\n", p)
	}
	_, err := fmt.Fprintf(w, "table %s: %d windows, %d data files, %d records, %d not in it yet, %d problems\n",
		c.Table, c.Windows, c.Files, c.Records, len(c.Lagging), len(c.Problems))
	return err
}

// printReport writes one line per window, the chain's problems, and a summary that names the
// newest manifest's digest, which an auditor keeps to prove the chain later.
func printReport(w io.Writer, r *audit.Report) error {
	var records, objects int64
	for _, win := range r.Windows {
		records, objects = records+win.Records, objects+int64(win.Objects)
		state := "ok"
		if len(win.Problems) > 0 {
			state = "PROBLEM"
		}
		fmt.Fprintf(w, "%s  %-7s  %d objects  %d records\n", win.Window.Start.Format("2006-01-02T15:04Z"), state, win.Objects, win.Records)
		for _, g := range win.Gaps {
			fmt.Fprintf(w, "    declared gap: %s/%d [%d, %d) %s\n", g.Topic, g.Partition, g.First, g.End, g.Reason)
		}
		for _, p := range win.Problems {
			fmt.Fprintf(w, "    %s\n", p)
		}
	}
	for _, p := range r.Chain {
		fmt.Fprintf(w, "chain: %s\n", p)
	}
	for _, u := range r.Uncommitted {
		fmt.Fprintf(w, "%s  planned, not committed yet\n", u.Start.Format("2006-01-02T15:04Z"))
	}
	mode := "quick"
	if r.Deep {
		mode = "deep"
	}
	_, err := fmt.Fprintf(w, "%s verify of %s: %d windows, %d objects, %d records, %d problems\n", mode, r.Pipeline, len(r.Windows), objects, records, r.Problems())
	if n := len(r.Windows); n > 0 && err == nil {
		_, err = fmt.Fprintf(w, "newest manifest: %s sha256 %s\n", r.Windows[n-1].Manifest, r.Windows[n-1].SHA256)
	}
	return err
}
