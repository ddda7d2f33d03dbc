package coordinator

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
)

// Preview returns the plans the next run would carry out, without a lease and without
// writing anything: an existing plan as stored, a new one as it would be made now.
func Preview(ctx context.Context, cfg Config, deps Deps) ([]*archive.Plan, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &coordinator{cfg: cfg, deps: deps, runID: "preview", log: deps.Logger}
	prev, err := c.latestManifest(ctx)
	if err != nil {
		return nil, err
	}
	var plans []*archive.Plan
	for len(plans) < cfg.MaxWindows {
		w, due, err := c.nextWindow(ctx, prev) // the chain's claim first, as a run follows it
		if err != nil {
			return nil, err
		}
		if !due {
			break
		}
		p, err := c.previewWindow(ctx, w, prev)
		if err != nil {
			return nil, err
		}
		plans = append(plans, p)
		prev = &stored{Manifest: &archive.Manifest{Window: w, Partitions: partitionsOf(p), Topics: p.Topics}}
	}
	return plans, nil
}

func (c *coordinator) previewWindow(ctx context.Context, w archive.Window, prev *stored) (*archive.Plan, error) {
	p, err := c.readPlan(ctx, archive.WindowDir(c.cfg.Pipeline, w.Start, w.End.Sub(w.Start))+archive.PlanName)
	if err == nil || !blob.IsNotFound(err) {
		return p, err
	}
	return c.newPlan(ctx, w, prev)
}

func partitionsOf(p *archive.Plan) []archive.PartitionRange {
	out := make([]archive.PartitionRange, len(p.Ranges))
	for i, r := range p.Ranges {
		out[i] = archive.PartitionRange{Topic: r.Topic, Partition: r.Partition, First: r.First, End: r.End}
	}
	return out
}

// next is the start of the first window not yet committed.
func (c *coordinator) next(prev *stored) time.Time {
	switch {
	case prev != nil:
		return prev.Window.End
	case !c.cfg.Start.IsZero():
		return c.cfg.Start
	default:
		return latestDue(c.cfg.Window, c.cfg.Lateness, c.clock())
	}
}

// WindowState is what the store holds of one window. Its JSON form is an element of
// 'karch status --json' (docs/FORMAT.md), with the stored documents' field names.
type WindowState struct {
	Window archive.Window `json:"window"`
	// State is "committed", "planned" (a plan, no manifest yet) or "missing".
	State string `json:"state"`
	// Manifest is the window's MANIFEST.json when it is committed, else nil.
	Manifest *archive.Manifest `json:"manifest,omitempty"`
	// InTable says, with a table, whether the Iceberg table holds a committed window that
	// has Parquet objects; absent otherwise.
	InTable *bool `json:"in_table,omitempty"`
}

// Status lists every window from the pipeline's first (or cfg.Start) to the newest due one,
// with what the store holds of it. Reading only; no lease.
func Status(ctx context.Context, cfg Config, deps Deps) ([]WindowState, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &coordinator{cfg: cfg, deps: deps, log: deps.Logger}
	found := map[string]string{}
	var first string
	err := deps.Bucket.List(ctx, cfg.Pipeline+"/dt=", func(o blob.ObjectInfo) error {
		dir, name := o.Key[:strings.LastIndex(o.Key, "/")+1], o.Key[strings.LastIndex(o.Key, "/")+1:]
		switch {
		case name == archive.ManifestName:
			found[dir] = "committed"
		case name == archive.PlanName && found[dir] == "":
			found[dir] = "planned"
		default:
			return nil
		}
		if first == "" || dir < first {
			first = dir
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	start := c.next(nil)
	if first != "" {
		if w, ok := archive.ParseWindowDir(first); ok && (cfg.Start.IsZero() || w.Start.Before(start)) {
			start = w.Start
		}
	}
	var holds map[time.Time]bool
	if deps.Table != nil {
		if holds, err = deps.Table.Holds(ctx, cfg.Pipeline); err != nil {
			return nil, fmt.Errorf("read the table: %w", err)
		}
	}
	var out []WindowState
	for _, w := range dueWindows(start, cfg.Window, cfg.Lateness, c.clock(), 1<<20) {
		dir := archive.WindowDir(cfg.Pipeline, w.Start, cfg.Window)
		st := WindowState{Window: w, State: found[dir]}
		if st.State == "" {
			st.State = "missing"
		}
		if st.State == "committed" {
			m, err := c.readManifest(ctx, dir+archive.ManifestName)
			if err != nil {
				return nil, err
			}
			st.Manifest = m.Manifest
			if holds != nil && m.Parquet() {
				in := holds[w.Start]
				st.InTable = &in
			}
		}
		out = append(out, st)
	}
	return out, nil
}
