package main

import (
	"cmp"
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
	commands["status"] = command{"each window of the pipeline: committed, planned or missing, and in the table or not", runStatus}
}

const planUsage = `usage: karch plan [--config file.yaml] [--json] [flags]

Shows what the next 'karch run' would do, writing nothing: the windows that are due, each
partition's offsets, and the shards. A window whose plan exists shows that plan.
--json prints a JSON array, one element per window: {"window", "state" (planned: its
plan.json is stored; new: the plan the run would create now), "plan" (a plan document)}
(docs/FORMAT.md, "karch plan --json").
`

// previewRunID is the run id coordinator.Preview gives a plan it made rather than read.
const previewRunID = "preview"

// plannedWindow is one element of 'karch plan --json' (docs/FORMAT.md, docs/schema/
// plan-output.schema.json). Its field names are the stored documents' own.
type plannedWindow struct {
	Window archive.Window `json:"window"`
	// State is "planned" when Plan is the window's stored plan.json, "new" when it is the
	// plan the next run would create.
	State string        `json:"state"`
	Plan  *archive.Plan `json:"plan"`
}

func plannedWindows(plans []*archive.Plan) []plannedWindow {
	out := make([]plannedWindow, len(plans))
	for i, p := range plans {
		out[i] = plannedWindow{Window: p.Window, State: "planned", Plan: p}
		if p.RunID == previewRunID {
			out[i].State = "new"
		}
	}
	return out
}

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
		return writeJSON(stdout, plannedWindows(plans))
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "window\tpartition\tfirst\tend\toffsets\tshards\tplan")
	for _, p := range plans {
		state := "new"
		if p.RunID != previewRunID {
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

// writeJSON prints v as indented JSON with the stored documents' encoding, a nil slice as [].
func writeJSON[T any](w io.Writer, v []T) error {
	if v == nil {
		v = []T{}
	}
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON output: %w", err)
	}
	_, err = w.Write(append(data, '\n'))
	return err
}

const statusUsage = `usage: karch status [--config file.yaml] [--json] [flags]

Lists every window from the pipeline's first to the newest due one: committed (with its
records and bytes), planned (a plan but no manifest yet) or missing; with a table, whether
each committed window is in it. Then the topics, as the newest committed window records
them: archived, or ended (deleted, created again under its name, or no longer matched),
with the window it ended at and its Kafka topic ID.
--json prints a JSON array, one element per window: {"window", "state", "manifest" (the
window's MANIFEST.json, committed windows only), "in_table" (with a table)} (docs/FORMAT.md, "karch status --json").
`

func inTable(in *bool) string {
	switch {
	case in == nil:
		return "-"
	case *in:
		return "yes"
	}
	return "not yet"
}

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
	closeTable, err := useTable(ctx, cli.cfg, &deps)
	if err != nil {
		return err
	}
	defer closeTable()
	states, err := coordinator.Status(ctx, cli.cfg.coord, deps)
	if err != nil {
		return err
	}
	if cli.json {
		return writeJSON(stdout, states)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	header := "window\tstate\trecords\tMB stored\tobjects"
	if deps.Table != nil {
		header += "\tin table"
	}
	fmt.Fprintln(tw, header)
	for _, s := range states {
		m := s.Manifest
		if m == nil {
			m = &archive.Manifest{}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%d", s.Window.Start.Format("2006-01-02 15:04Z"), s.State, m.Records, float64(m.Bytes)/1e6, len(m.Objects))
		if deps.Table != nil {
			fmt.Fprintf(tw, "\t%s", inTable(s.InTable))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printTopics(stdout, states)
}

// printTopics lists the chain's topics as the newest committed window records them:
// archived, or ended, since when and why.
func printTopics(w io.Writer, states []coordinator.WindowState) error {
	var newest *archive.Manifest
	for _, s := range states {
		if s.Manifest != nil {
			newest = s.Manifest
		}
	}
	if newest == nil || len(newest.Topics) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\ntopic\tstate\tkafka topic id")
	for _, t := range newest.Topics {
		state := "archived"
		if !t.Active() {
			state = fmt.Sprintf("ended %s (%s)", t.Ended.Format("2006-01-02 15:04Z"), t.EndReason)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Topic, state, cmp.Or(t.ID, "-"))
	}
	return tw.Flush()
}
