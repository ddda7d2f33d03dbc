// Command shardbench measures one karch shard end to end on the local servers: it fills a
// topic with call-detail records (once; later runs reuse it), plans one shard over the whole
// range, runs `karch shard` as a separate process several times, and prints records/s, MB/s
// of JSON Lines in, the compression ratio and the peak RSS of each run, beside the in-process
// zstd encode speed of the same bytes at the same level: the ceiling the shard approaches.
//
//	make bench-shard                     # 2 GB of JSON Lines, 3 runs, into the local MinIO
//	go run ./bench/shardbench -gb 0.2    # a quick look
//
// With -peers (make bench-peers) it archives the same topic with karch as one and as two
// shards, OSO's kafka-backup engine and the shell recipe of kcat, zstd and the AWS CLI, run
// by run in turn, and prints (and with -results writes) a table of medians and a bar chart.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
)

type options struct {
	brokers  string
	gb       float64
	runs     int
	level    int
	pieceMiB int
	karch    string
	store    string
	peers    bool
	oso      string
	kcat     string
	results  string
	profile  string
	memMiB   int
	parquet  bool
	base     string
}

func main() {
	var o options
	flag.StringVar(&o.brokers, "brokers", envOr("KARCH_TEST_KAFKA", "127.0.0.1:19092"), "Kafka bootstrap address")
	flag.Float64Var(&o.gb, "gb", 2, "uncompressed JSON Lines to archive, in GB")
	flag.IntVar(&o.runs, "runs", 3, "shard runs; the table gives each and the median")
	flag.IntVar(&o.level, "zstd-level", 3, "zstd level for the shard and the baseline")
	flag.IntVar(&o.pieceMiB, "piece-mib", 256, "uncompressed MiB per piece")
	flag.StringVar(&o.karch, "karch", "bin/karch", "the karch binary to run")
	flag.StringVar(&o.store, "store", "s3", "s3 (the local MinIO of make services-up) or local (a temporary directory)")
	flag.BoolVar(&o.peers, "peers", false, "also archive the topic with OSO's engine and with kcat, zstd and the AWS CLI, alternating runs")
	flag.StringVar(&o.oso, "oso", "", "with -peers: the binary of bench/peers/oso")
	flag.StringVar(&o.kcat, "kcat", "kcat", "with -peers: Debian's kcat")
	flag.StringVar(&o.results, "results", "", "with -peers: a folder to write peers.md and peers.png to")
	flag.StringVar(&o.profile, "cpu-profile", "", "write the first single-shard run's CPU profile to this file (karch shard --cpu-profile)")
	flag.IntVar(&o.memMiB, "memory-limit-mib", 0, "the shards' soft heap limit (karch shard --memory-limit-mib); 0: karch's default")
	flag.BoolVar(&o.parquet, "parquet", false, "alternate runs of JSON Lines alone and of JSON Lines with Parquet (the demo's typed columns), and compare them")
	flag.StringVar(&o.base, "karch-base", "", "alternate single-shard runs of this karch binary (main's, say) and of -karch's, and compare them")
	flag.Parse()
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "shardbench:", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, o options) error {
	if o.runs < 1 || o.gb <= 0 {
		return errors.New("-runs and -gb must be positive")
	}
	data, err := ensureTopic(ctx, o)
	if err != nil {
		return err
	}
	fmt.Printf("topic %s: %d records, %.0f MB of JSON Lines, %d pieces; zstd level %d; store %s\n",
		data.topic, data.records, float64(data.rawBytes)/1e6, len(data.pieces(o)), o.level, o.store)
	if o.peers {
		if o.store != "s3" {
			return errors.New("-peers writes to the local MinIO: -store s3")
		}
		return runPeers(ctx, o, data)
	}
	if o.parquet {
		return runParquet(ctx, o, data)
	}
	if o.base != "" {
		return runAgainstBase(ctx, o, data)
	}
	var results []result
	for i := range o.runs {
		r, err := runShards(ctx, o, data, 1, i, false)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	base, err := baseline(ctx, o, data)
	if err != nil {
		return err
	}
	printTable(os.Stdout, results, base)
	return nil
}

// alternate runs two single-shard variants o.runs times each, run by run in turn, so that
// the machine's drift falls on both alike, then the in-process zstd baseline.
func alternate(ctx context.Context, o options, data dataset, variants [2]func(i int) (result, error)) ([2][]result, float64, error) {
	var rs [2][]result
	for i := range o.runs {
		for v, run := range variants {
			r, err := run(i)
			if err != nil {
				return rs, 0, err
			}
			rs[v] = append(rs[v], r)
		}
	}
	base, err := baseline(ctx, o, data)
	return rs, base, err
}

// runAgainstBase alternates single-shard runs of the base binary and of -karch's, and
// prints both tables and the ratios of their medians.
func runAgainstBase(ctx context.Context, o options, data dataset) error {
	ob := o
	ob.karch = o.base
	rs, base, err := alternate(ctx, o, data, [2]func(int) (result, error){
		func(i int) (result, error) { return runShards(ctx, ob, data, 1, i, false) },
		func(i int) (result, error) { return runShards(ctx, o, data, 1, i, false) },
	})
	if err != nil {
		return err
	}
	before, after := rs[0], rs[1]
	fmt.Printf("\n%s:\n", o.base)
	printTable(os.Stdout, before, base)
	fmt.Printf("\n%s:\n", o.karch)
	printTable(os.Stdout, after, base)
	b, a := median(before), median(after)
	fmt.Printf("\n%s / %s, medians: %.2fx the records/s, %.2fx the CPU s/GB, %.2fx the peak RSS\n",
		o.karch, o.base, a.recsPerSec()/b.recsPerSec(), a.cpuPerGB()/b.cpuPerGB(), maxRSS(after)/maxRSS(before))
	return nil
}

// runParquet alternates single-shard runs of JSON Lines alone and of both formats, and
// prints both tables and the ratios of their medians.
func runParquet(ctx context.Context, o options, data dataset) error {
	rs, base, err := alternate(ctx, o, data, [2]func(int) (result, error){
		func(i int) (result, error) { return runShards(ctx, o, data, 1, i, false) },
		func(i int) (result, error) { return runShards(ctx, o, data, 1, i, true) },
	})
	if err != nil {
		return err
	}
	jsonl, both := rs[0], rs[1]
	fmt.Println("\nJSON Lines alone:")
	printTable(os.Stdout, jsonl, base)
	fmt.Printf("\nJSON Lines and Parquet (typed columns %s):\n", benchColumns)
	printTable(os.Stdout, both, base)
	j, b := median(jsonl), median(both)
	fmt.Printf("\nboth formats / JSON Lines alone, medians: %.2fx the CPU s/GB, %.2fx the records/s, %.2fx the peak RSS; Parquet is %.0f MB (%.3f of the JSON Lines in)\n",
		b.cpuPerGB()/j.cpuPerGB(), b.recsPerSec()/j.recsPerSec(), maxRSS(both)/maxRSS(jsonl), float64(b.parquetBytes)/1e6, float64(b.parquetBytes)/float64(b.rawBytes))
	return nil
}
