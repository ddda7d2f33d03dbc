package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/audit"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/lock"
	"github.com/karch-archive/karch/restore"
)

func init() {
	commands["restore"] = command{"write archived records back into a Kafka topic, exactly once", runRestore}
}

const restoreUsage = `usage: karch restore [--config file.yaml] (--window T | --from T --to T) [--topic NAME] (--to-topic NAME | --to-stdout) [flags]

Writes the records of the committed windows named back into a Kafka topic: key, value and
the null-ness of each, headers in order with duplicates, and the create timestamp, exactly
as archived. Each record gets a header karch.origin = topic/partition/offset (unless
--no-origin-header), by which a rerun after a crash finds what is there already and
writes only the records that are not there, exactly (a record is skipped only if that very
record is there). It writes in Kafka transactions under the target topic's own
transactional id (karch:restore:<cluster id>:<topic>), which fences any earlier restore into
the topic that still runs: read at read_committed, the target holds every record exactly
once (a read_uncommitted reader also sees what an interrupted restore wrote and aborted).
Before it reads the target it waits (--stable-wait) until no transaction is open in it, and it
holds a lease on the target topic in the pipeline's Redis, so a second restore into the same
topic at the same time is refused, exit 1 (--no-lease when no other restore can run). The target
topic must exist; by default each record keeps its partition number (the topic needs that
many partitions; checked before anything is written), or --partition-map 0=3,1=4 maps them,
or --by-key hashes keys as Kafka's default partitioner does. --dry-run counts, --to-stdout
prints JSON Lines instead of writing. One restore writes the records of one source topic:
--topic names it, and windows that hold records of several topics are refused without it
(--to-stdout prints them all); a topic deleted and created again under its name within the
windows is refused too, since the records of the two would have the same origins. With
--translate-group, --topic is the group's source topic (default: the pipeline's one topic).
Exit codes: 0 done, 1 retryable (another restore into the topic is running or took it over,
a transaction still open in it), 3 permanent (no such window or topic, several source topics and no
--topic, too few partitions, a record larger than the topic's max.message.bytes, no redis
without --no-lease).
`

type restoreFlags struct {
	window, from, to, partitionMap, toBrokers string
	toStdout                                  bool
	group, groupOffsets                       string
	commitGroup, noLease                      bool
	opts                                      restore.Options
}

func (f *restoreFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.window, "window", "", "restore the window that starts at this time (2026-11-24T23:00Z)")
	fs.StringVar(&f.from, "from", "", "restore the windows that start at or after this time")
	fs.StringVar(&f.to, "to", "", "restore the windows that start before this time")
	fs.StringVar(&f.opts.ToTopic, "to-topic", "", "the Kafka topic to write to; it must exist")
	fs.StringVar(&f.toBrokers, "to-brokers", "", "the target's bootstrap brokers, comma-separated (default: the pipeline's)")
	fs.StringVar(&f.partitionMap, "partition-map", "", "source=target partitions, comma-separated (0=3,1=4)")
	fs.BoolVar(&f.opts.ByKey, "by-key", false, "choose target partitions by key hash, as Kafka's default partitioner")
	fs.BoolVar(&f.opts.NoOrigin, "no-origin-header", false, "leave the karch.origin header off (a rerun then cannot resume)")
	fs.Float64Var(&f.opts.Rate, "rate", 0, "records per second at most (0: no bound)")
	fs.Float64Var(&f.opts.RateBytes, "rate-mb", 0, "megabytes of keys and values per second at most (0: no bound)")
	fs.BoolVar(&f.opts.DryRun, "dry-run", false, "count what would be written, write nothing")
	fs.BoolVar(&f.noLease, "no-lease", false, "restore without the target topic's lease in the pipeline's Redis: only when no other restore can write into that topic")
	fs.DurationVar(&f.opts.StableWait, "stable-wait", restore.DefaultStableWait, "how long to wait for an open transaction in the target topic to end")
	fs.BoolVar(&f.toStdout, "to-stdout", false, "print the records as JSON Lines instead of writing them")
	f.opts.Filter.Partition = -1
	fs.Func("partition", "only this source partition", func(v string) error {
		p, err := strconv.ParseInt(v, 10, 32)
		f.opts.Filter.Partition = int32(p)
		return err
	})
	fs.StringVar(&f.group, "translate-group", "", "instead of restoring: the target offsets of this consumer group, from its committed source offsets")
	fs.StringVar(&f.groupOffsets, "group-offsets", "", "the group's source offsets as partition=offset, comma-separated (default: read from the pipeline's brokers)")
	fs.BoolVar(&f.commitGroup, "commit", false, "with --translate-group: commit the translated offsets for the group on the target topic")
	fs.Int64Var(&f.opts.Filter.FromOffset, "from-offset", 0, "only records at or after this source offset")
	fs.Int64Var(&f.opts.Filter.ToOffset, "to-offset", 0, "only records before this source offset (0: no bound)")
	fs.StringVar(&f.opts.Filter.Format, "format", archive.FormatJSONL, "the copy to read the records from: jsonl or parquet (the windows must have it)")
}

// resolve checks the flags and fills the options' range and mapping.
func (f *restoreFlags) resolve(pipelineBrokers []string) error {
	var err error
	switch {
	case f.group != "":
		// a translation reads the target, not the archive
	case f.window != "" && (f.from != "" || f.to != ""):
		return failure.Permanent(errors.New("--window goes alone, without --from or --to"))
	case f.window != "":
		if f.opts.From, err = parseTimeFlag("window", f.window); err != nil {
			return err
		}
		f.opts.To = f.opts.From.Add(time.Nanosecond)
	case f.from == "" || f.to == "":
		return failure.Permanent(errors.New("name what to restore: --window, or --from and --to"))
	default:
		if f.opts.From, err = parseTimeFlag("from", f.from); err != nil {
			return err
		}
		if f.opts.To, err = parseTimeFlag("to", f.to); err != nil {
			return err
		}
	}
	if err := checkFormatFlag(f.opts.Filter.Format); err != nil {
		return err
	}
	if f.opts.ToTopic == "" && !f.toStdout {
		return failure.Permanent(errors.New("--to-topic is required (or --to-stdout)"))
	}
	f.opts.RateBytes *= 1e6
	if f.opts.ByKey && f.partitionMap != "" {
		return failure.Permanent(errors.New("--by-key and --partition-map exclude each other"))
	}
	f.opts.Brokers = pipelineBrokers
	if f.toBrokers != "" {
		f.opts.Brokers = splitList(f.toBrokers)
	}
	if f.partitionMap != "" {
		f.opts.PartitionMap, err = parsePartitionMap(f.partitionMap)
	}
	return err
}

func parsePartitionMap(s string) (map[int32]int32, error) {
	pairs, err := parsePairs("partition-map", s, 31)
	out := map[int32]int32{}
	for p, v := range pairs {
		out[p] = int32(v)
	}
	return out, err
}

// parsePairs reads "partition=value,..." with values of at most bits bits.
func parsePairs(flag, s string, bits int) (map[int32]int64, error) {
	out := map[int32]int64{}
	for _, pair := range splitList(s) {
		key, value, ok := strings.Cut(pair, "=")
		p, perr := strconv.ParseInt(key, 10, 32)
		v, verr := strconv.ParseInt(value, 10, bits+1)
		if !ok || perr != nil || verr != nil || p < 0 || v < 0 {
			return nil, failure.Permanent(fmt.Errorf("--%s: %q: want partition=number, such as 0=3", flag, pair))
		}
		out[int32(p)] = v
	}
	return out, nil
}

func runRestore(ctx context.Context, args []string, stdout io.Writer) error {
	var rf restoreFlags
	cli, err := parseSourceFlags("restore", restoreUsage, args, &rf.opts.Filter.Topic, rf.register)
	if cli == nil || err != nil {
		return err
	}
	if err := rf.resolve(cli.cfg.coord.Brokers); err != nil {
		return err
	}
	if rf.opts.Client, err = cli.cfg.kafkaSec.franzOpts(); err != nil {
		return err
	}
	bucket, err := blob.Open(ctx, cli.cfg.store, cli.cfg.s3)
	if err != nil {
		return failure.Permanent(fmt.Errorf("open store %s: %w", cli.cfg.store, err))
	}
	if rf.group != "" {
		return translateGroup(ctx, stdout, cli, &rf)
	}
	if rf.toStdout {
		return printRecords(ctx, stdout, bucket, cli.cfg.coord.Pipeline, rf.opts)
	}
	locker, closeLocker, err := restoreLocker(cli, &rf)
	if err != nil {
		return err
	}
	defer closeLocker()
	rf.opts.Locker = locker
	var bar *restoreBar
	if onTerminal() {
		bar = newRestoreBar()
		rf.opts.Progress = bar
	}
	stats, err := restore.Run(ctx, bucket, cli.cfg.coord.Pipeline, rf.opts, cli.logger)
	if bar != nil {
		bar.finish()
	}
	if stats != nil {
		printRestored(stdout, stats, rf.opts)
	}
	return err
}

// restoreLocker is the lease of the restore's target topic: the pipeline's Redis, unless
// --no-lease or --dry-run. Without either, a restore with no Redis is refused: two restores
// into one topic at once would write every record twice.
func restoreLocker(cli *coordinatorCLI, rf *restoreFlags) (lock.Locker, func(), error) {
	if rf.noLease || rf.opts.DryRun {
		return nil, func() {}, nil
	}
	locker, closeLocker, err := redisLocker(cli.cfg, cli.logger)
	if err == nil && locker == nil {
		err = failure.Permanent(errors.New("redis: a restore takes a lease on its target topic in the pipeline's Redis, so that two restores never write into one topic at once; set redis, or give --no-lease when no other restore can run"))
	}
	return locker, closeLocker, err
}

// translateGroup prints, and with --commit commits, the target offsets of a consumer group.
func translateGroup(ctx context.Context, w io.Writer, cli *coordinatorCLI, rf *restoreFlags) error {
	topic, err := rf.groupTopic(cli.cfg.coord)
	if err != nil {
		return err
	}
	committed, err := rf.sourceOffsets(ctx, cli.cfg.coord.Brokers, topic)
	if err != nil {
		return err
	}
	offsets, err := restore.TranslateGroup(ctx, rf.opts, committed, cli.logger)
	if err != nil {
		return err
	}
	for _, p := range slices.Sorted(maps.Keys(offsets)) {
		fmt.Fprintf(w, "%s\t%d\t%d\n", rf.opts.ToTopic, p, offsets[p])
	}
	if !rf.commitGroup {
		return nil
	}
	return restore.CommitGroup(ctx, rf.opts.Brokers, rf.group, rf.opts.ToTopic, offsets, rf.opts.Client...)
}

// groupTopic is the source topic whose group offsets --translate-group translates: --topic,
// else the pipeline's one topic.
func (f *restoreFlags) groupTopic(cfg coordinator.Config) (string, error) {
	if f.opts.Filter.Topic != "" {
		return f.opts.Filter.Topic, nil
	}
	if names := cfg.TopicNames(); len(names) == 1 && cfg.TopicsPattern == "" {
		return names[0], nil
	}
	return "", failure.Permanent(errors.New("--translate-group: the pipeline archives more than one topic (topics, topics_pattern): name the group's source topic with --topic"))
}

// sourceOffsets are the group's committed offsets on the source topic: given, or read from
// the source cluster (which a restore may have lost: then give them).
func (f *restoreFlags) sourceOffsets(ctx context.Context, brokers []string, topic string) (map[archive.TopicPartition]int64, error) {
	if f.groupOffsets == "" {
		return restore.GroupOffsets(ctx, brokers, f.group, topic, f.opts.Client...)
	}
	pairs, err := parsePairs("group-offsets", f.groupOffsets, 63)
	if err != nil {
		return nil, err
	}
	out := map[archive.TopicPartition]int64{}
	for p, off := range pairs {
		out[archive.TopicPartition{Topic: topic, Partition: p}] = off
	}
	return out, nil
}

func printRestored(w io.Writer, s *restore.Stats, opts restore.Options) {
	verb := "restored"
	if opts.DryRun {
		verb = "would restore"
	}
	var total int64
	var parts []string
	for _, p := range slices.Sorted(maps.Keys(s.Written)) {
		total += s.Written[p]
		parts = append(parts, fmt.Sprintf("%d:%d", p, s.Written[p]))
	}
	fmt.Fprintf(w, "%s %d records to %s (partition:records %s); %d were there already\n", verb, total, opts.ToTopic, strings.Join(parts, " "), s.Skipped)
}

// printRecords writes the records of the range as JSON Lines, as karch cat does: of every
// topic, unless --topic names one.
func printRecords(ctx context.Context, w io.Writer, b blob.Bucket, pipeline string, opts restore.Options) error {
	windows, err := audit.Windows(ctx, b, pipeline, opts.From, opts.To)
	if err != nil {
		return err
	}
	if len(windows) > 0 { // no window: nothing to print, as ever, whatever --topic says
		if err := audit.CheckTopic(windows, opts.Filter.Topic); err != nil {
			return err
		}
	}
	out := bufio.NewWriterSize(w, 1<<20)
	var line []byte
	for _, win := range windows {
		err := audit.Records(ctx, b, win.Dir, win.Manifest, opts.Filter, func(r *archive.Record) error {
			line = archive.AppendLine(line[:0], r)
			_, err := out.Write(line)
			return err
		})
		if err != nil {
			return err
		}
	}
	return out.Flush()
}
