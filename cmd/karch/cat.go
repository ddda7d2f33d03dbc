package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/audit"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/failure"
)

func init() {
	commands["cat"] = command{"print a committed window's records as JSON Lines", runCat}
}

const catUsage = `usage: karch cat [--config file.yaml] --window T [--partition N] [--from-offset N] [--to-offset N] [--raw-values] [--format jsonl|parquet] [flags]

Prints the records of the committed window that starts at T as JSON Lines on stdout, in
the archive's own line format (docs/FORMAT.md), partition by partition and in offset order
within each, streaming. --raw-values prints each record's value bytes and a newline
instead (a tombstone prints an empty line), for jq. --format parquet reads the records from
the window's Parquet copies instead of its JSON Lines: the output is the same.
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
	cli, err := parseCoordinatorFlags("cat", catUsage, args, cf.register)
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
