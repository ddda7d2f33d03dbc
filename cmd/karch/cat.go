package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/audit"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/failure"
)

func init() {
	commands["cat"] = command{"print a committed window's records as JSON Lines", runCat}
}

const catUsage = `usage: karch cat [--config file.yaml] --window T [--topic NAME] [--partition N] [--from-offset N] [--to-offset N] [--raw-values] [--format jsonl|parquet] [flags]

Prints the records of the committed window that starts at T as JSON Lines on stdout, in
the archive's own line format (docs/FORMAT.md), topic by topic, partition by partition and
in offset order within each, streaming. --topic prints those of one source topic only (one
the window does not archive: exit 3). --raw-values prints each record's value bytes and a
newline instead (a tombstone prints an empty line), for jq. --format parquet reads the
records from the window's Parquet copies instead of its JSON Lines: the output is the same.
`

type catFlags struct {
	window    string
	filter    audit.Filter
	rawValues bool
}

func (c *catFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.window, "window", "", "start of the window (2026-11-24T23:00Z; required)")
	c.filter.Partition = -1
	fs.Func("partition", "only this partition", func(v string) error {
		_, err := fmt.Sscan(v, &c.filter.Partition)
		return err
	})
	fs.Int64Var(&c.filter.FromOffset, "from-offset", 0, "only records at or after this offset")
	fs.Int64Var(&c.filter.ToOffset, "to-offset", 0, "only records before this offset (0: no bound)")
	fs.BoolVar(&c.rawValues, "raw-values", false, "print values only")
	fs.StringVar(&c.filter.Format, "format", archive.FormatJSONL, "the copy to read: jsonl or parquet")
}

func runCat(ctx context.Context, args []string, stdout io.Writer) error {
	var cf catFlags
	cli, err := parseSourceFlags("cat", catUsage, args, &cf.filter.Topic, cf.register)
	if cli == nil || err != nil {
		return err
	}
	start, err := parseTimeFlag("window", cf.window)
	if err != nil {
		return err
	}
	if err := checkFormatFlag(cf.filter.Format); err != nil {
		return err
	}
	bucket, err := blob.Open(ctx, cli.cfg.store, cli.cfg.s3)
	if err != nil {
		return failure.Permanent(fmt.Errorf("open store %s: %w", cli.cfg.store, err))
	}
	w, err := audit.Committed(ctx, bucket, cli.cfg.coord.Pipeline, start)
	if err != nil {
		return err
	}
	if err := audit.CheckTopic([]audit.Stored{w}, cf.filter.Topic); err != nil {
		return err
	}
	out := bufio.NewWriterSize(stdout, 1<<20)
	var line []byte
	err = audit.Records(ctx, bucket, w.Dir, w.Manifest, cf.filter, func(r *archive.Record) error {
		if cf.rawValues {
			line = append(append(line[:0], r.Value...), '\n')
		} else {
			line = archive.AppendLine(line[:0], r)
		}
		_, err := out.Write(line)
		return err
	})
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	return err
}

// checkFormatFlag checks --format, which names the copy of the windows to read.
func checkFormatFlag(v string) error {
	if v != archive.FormatJSONL && v != archive.FormatParquet {
		return failure.Permanent(fmt.Errorf("--format %q: want jsonl or parquet", v))
	}
	return nil
}

// parseSourceFlags parses the flags of cat and restore. Their own --topic, the one source
// topic to read, hides the topic setting's flag (a command's own flag wins), so the
// pipeline's topics come from file or environment. Where neither names them, the
// configuration cannot validate: then the flags are parsed once more with --topic as the
// setting too, the pipeline's one topic, as on the other commands.
func parseSourceFlags(name, usage string, args []string, topic *string, register func(*flag.FlagSet)) (*coordinatorCLI, error) {
	var fs *flag.FlagSet
	own := func(f *flag.FlagSet) {
		fs = f
		f.StringVar(topic, "topic", "", "only the records of this source topic (default: every topic; restore: the windows' only one)")
	}
	cli, err := parseCoordinatorFlags(name, usage, args, register, own)
	if err == nil || *topic == "" || !errors.Is(err, coordinator.ErrConfig) || topicsConfigured(fs) {
		return cli, err
	}
	return parseCoordinatorFlags(name, usage, args, register)
}

// topicsConfigured reports whether the environment, or the configuration file that fs was
// given, names the pipeline's topics. A file that cannot be read counts as naming them: the
// error it caused stands.
func topicsConfigured(fs *flag.FlagSet) bool {
	layers := []map[string]string{envValues()}
	if file := fs.Lookup("config").Value.String(); file != "" {
		values, err := readConfigFile(file)
		if err != nil {
			return true
		}
		layers = append(layers, values)
	}
	for _, layer := range layers {
		for _, setting := range []string{"topic", "topics", "topics_pattern"} {
			if _, ok := layer[setting]; ok {
				return true
			}
		}
	}
	return false
}
