package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/coordinator"
)

func init() {
	commands["plan"] = command{"dry run: the windows, offsets and shards the next run would archive", runPlan}
	commands["status"] = command{"each window of the pipeline: committed, planned or missing", runStatus}
}

const planUsage = `usage: karch plan [--config file.yaml] [--json] [flags]

Shows what the next 'karch run' would do, writing nothing: the windows that are due, each
partition's offsets, and the shards. A window whose plan exists shows that plan.
`

func runPlan(ctx context.Context, args []string, stdout io.Writer) error {
	cli, err := parseCoordinatorFlags("plan", planUsage, args)
	if cli == nil || err != nil {
		return err
	}
	deps, closeDeps, err := coordinatorDeps(ctx, cli.cfg, cli.logger)
	if err != nil {
		return err
	}
	defer closeDeps()
	plans, err := coordinator.Preview(ctx, cli.cfg.coord, deps)
	if err != nil {
		return err
	}
	if cli.json {
		return json.NewEncoder(stdout).Encode(plans)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "window\tpartition\tfirst\tend\toffsets\tshards\tplan")
	for _, p := range plans {
		state := "new"
		if p.RunID != "preview" {
			state = "stored, run " + p.RunID
		}
		for _, r := range p.Ranges {
			fmt.Fprintf(tw, "%s\t%s/%d\t%d\t%d\t%d\t%d\t%s\n", p.Window.Start.Format("2006-01-02 15:04Z"), r.Topic, r.Partition, r.First, r.End, r.End-r.First, len(p.Shards), state)
		}
	}
	if len(plans) == 0 {
		fmt.Fprintln(tw, "(no window is due)")
	}
	return tw.Flush()
}

const statusUsage = `usage: karch status [--config file.yaml] [--json] [flags]

Lists every window from the pipeline's first to the newest due one: committed (with its
records and bytes), planned (a plan but no manifest yet) or missing.
`

func runStatus(ctx context.Context, args []string, stdout io.Writer) error {
	cli, err := parseCoordinatorFlags("status", statusUsage, args)
	if cli == nil || err != nil {
		return err
	}
	deps, closeDeps, err := coordinatorDeps(ctx, cli.cfg, cli.logger)
	if err != nil {
		return err
	}
	defer closeDeps()
	states, err := coordinator.Status(ctx, cli.cfg.coord, deps)
	if err != nil {
		return err
	}
	if cli.json {
		return json.NewEncoder(stdout).Encode(states)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "window\tstate\trecords\tMB stored\tobjects")
	for _, s := range states {
		m := s.Manifest
		if m == nil {
			m = &archive.Manifest{}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%d\n", s.Window.Start.Format("2006-01-02 15:04Z"), s.State, m.Records, float64(m.Bytes)/1e6, len(m.Objects))
	}
	return tw.Flush()
}
